//! `vswitchd --metrics-listen`: every counter for Prometheus, checked with
//! `promtool check metrics` (Debian `prometheus`), consistent with `stats
//! --json`, and the same metrics from `vswitchctl stats --prometheus`.
//! Needs root.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};

use std::time::Duration;

use ctl::proto::PortStats;
use vswitch::{Daemon, ping, require_root};

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// `GET path` over HTTP/1.0: (status line, headers and body).
fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect to the metrics port");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("send the request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read the response");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (head.to_owned(), body.to_owned())
}

/// The value of the sample `name{labels}` (labels as printed, sorted).
fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
}

#[test]
fn metrics_are_served_valid_and_match_stats() {
    if !require_root("metrics_are_served_valid_and_match_stats") {
        return;
    }
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let d = Daemon::builder().args(&["--metrics-listen", &addr.to_string(), "--workers", "2"]).start();
    let net = d.name("n");
    let (a, b) = (d.name("a"), d.name("b"));
    // No egress: the daemon runs in the host's namespace, whose network
    // tests must not reach; the outside ping below is answered by the
    // gateway (ICMP network unreachable) and counted as `no_route`.
    let _: ctl::proto::NetworkInfo =
        d.ctl_json(&["network", "create", &net, "--subnet", "10.220.0.0/24", "-o", "egress=false"]);
    d.sandbox_create(&a);
    d.sandbox_create(&b);
    let ea = d.connect(&net, &a, None);
    let eb = d.connect(&net, &b, None);
    assert!(ping(&a, eb.ipv4.expect("ip").addr(), 2));
    assert!(!ping(&a, Ipv4Addr::new(192, 0, 2, 1), 1), "an outside address answered");

    let (head, text) = get(addr, "/metrics");
    assert!(head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_lowercase().contains("content-type: text/plain; version=0.0.4"), "{head}");
    vswitch::promtool_accepts(&text);

    // The counters are the ones `stats` shows: read between two `stats`
    // (the sandbox's kernel may send something meanwhile), the metric lies
    // between them.
    let rx_of = |d: &Daemon| -> u64 {
        let stats: Vec<PortStats> = d.ctl_json(&["stats", "--json"]);
        stats.iter().find(|s| s.port == ea.port).expect("a's port in stats").rx_packets
    };
    let labels = format!("{{network=\"{net}\",port=\"{}\"}}", ea.port);
    let before = rx_of(&d);
    let (_, text) = get(addr, "/metrics");
    let after = rx_of(&d);
    let metric = sample(&text, &format!("vswitch_port_rx_packets_total{labels}")).expect("a's rx_packets metric");
    assert!(before as f64 <= metric && metric <= after as f64, "{before} <= {metric} <= {after}");
    let drops = format!("vswitch_port_drops_total{{network=\"{net}\",port=\"{}\",reason=\"no_route\"}}", ea.port);
    assert!(sample(&text, &drops).is_some_and(|n| n >= 1.0), "no no_route drop in:\n{text}");
    assert!(sample(&text, &format!("vswitch_fdb_entries{{network=\"{net}\"}}")).is_some_and(|n| n >= 2.0));
    // One series per worker thread, each of which has woken up (its tick).
    for worker in ["vsw-dp-0", "vsw-dp-1"] {
        let labels = format!("{{worker=\"{worker}\"}}");
        let wakeups = sample(&text, &format!("vswitch_datapath_wakeups_total{labels}"));
        assert!(wakeups.is_some_and(|n| n > 0.0), "no wake-ups of {worker} in:\n{text}");
        assert!(sample(&text, &format!("vswitch_datapath_busy_seconds_total{labels}")).is_some(), "{text}");
        // No spread network here: every worker's spread series is zero.
        for role in ["replica", "to_owner", "from_replicas"] {
            let series = format!("vswitch_datapath_spread_frames_total{{role=\"{role}\",worker=\"{worker}\"}}");
            assert_eq!(sample(&text, &series), Some(0.0), "{series} in:\n{text}");
        }
    }
    // The two connects were events (port_up), and nobody follows them.
    assert!(sample(&text, "vswitch_events_total{kind=\"port_up\"}").is_some_and(|n| n >= 2.0), "{text}");
    assert_eq!(sample(&text, "vswitch_event_subscribers"), Some(0.0));
    assert!(text.contains("vswitch_dns_queries_total{"), "{text}");

    // The same families from the ctl socket.
    let printed = d.ctl_ok(&["stats", "--prometheus"]);
    let families =
        |t: &str| -> Vec<String> { t.lines().filter(|l| l.starts_with("# TYPE")).map(str::to_owned).collect() };
    assert_eq!(families(&printed), families(&text));
    let (head, _) = get(addr, "/nothing-here");
    assert!(head.contains(" 404"), "{head}");
}
