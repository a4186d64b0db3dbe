//! Time from `network connect` on node A to the first ping reply from node B
//! (issue 13), over real etcd (one member, TLS) and three `vswitchd` hosts
//! in namespaces (`vswitch::cluster::ClusterHosts`). Run by
//! `benches/cluster.sh`, which builds the release binaries and repeats it.
//!
//! Setup: an attachable cluster overlay created on host 1 (A); sandbox `b`
//! on host 2 (B) connected first, and a warm-up sandbox on A. Each trial:
//! a fresh sandbox is created on A (untimed); the clock starts;
//! `vswitchctl network connect` runs on A; as soon as it returns, `b` pings
//! the address it got (`ping -D -c 1 -W 0.1`, repeated until a reply), and
//! the trial's time is the first reply's timestamp minus the start (so it
//! includes one `ip netns exec ping` start-up, a few ms). The sandbox's ARP
//! retransmission time is 5 ms (a sysctl of the sandbox's own namespace),
//! so a failed first resolution does not add the kernel's default 1 s.
//! Prints every trial, then p50, p99 and max.
//!
//! Usage: `cluster_latency [--trials 100]` as root (SKIP otherwise).

use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ctl::proto::EndpointInfo;
use vswitch::cluster::ClusterHosts;
use vswitch::overlay::ip_of;
use vswitch::{netns_exec, netns_exec_ok, require_root, wait_for_ping};

/// Longest one trial may take before it counts as failed.
const TRIAL_TIMEOUT: Duration = Duration::from_secs(10);

fn main() {
    if !require_root("cluster_latency") {
        return;
    }
    let mut trials = 100usize;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        if a == "--trials" {
            trials = it.next().and_then(|n| n.parse().ok()).expect("--trials N");
        }
    }
    let c = ClusterHosts::builder(3).tls(true).underlay([10, 241, 1]).start();
    let (a, b) = (c.host(0), c.host(1));
    let net = c.name("ov");
    a.cluster_overlay_create(&net, "10.242.0.0/24", &["--attachable"]);
    c.wait_network(1, &net);
    let sb = b.name("b");
    b.sandbox_create(&sb);
    let eb = b.connect(&net, &sb, None);
    netns_exec_ok(&sb, "sysctl", &["-qw", &format!("net.ipv4.neigh.{}.retrans_time_ms=5", eb.ifname)]);
    // A warm-up endpoint on A, so A is a member before the first trial
    // (the first connect of a node is not what users wait on most).
    let warm = a.name("w");
    a.sandbox_create(&warm);
    let ew = a.connect(&net, &warm, None);
    assert!(wait_for_ping(&sb, ip_of(&ew), Duration::from_secs(20)).is_some(), "warm-up endpoint unreachable");

    let mut times = Vec::with_capacity(trials);
    let mut failed = 0;
    let mut connects = Vec::with_capacity(trials);
    for k in 0..trials {
        let s = a.name(&format!("t{k}"));
        a.sandbox_create(&s);
        let t0 = SystemTime::now();
        let out = a.ctl(&["--json", "network", "connect", &net, &s]);
        assert!(out.status.success(), "connect {s}: {}", String::from_utf8_lossy(&out.stderr));
        let e: EndpointInfo = serde_json::from_slice(&out.stdout).expect("endpoint JSON");
        let target = ip_of(&e);
        let connect = t0.elapsed().unwrap_or_default();
        connects.push(connect);
        match first_reply(&sb, target, t0) {
            Some(d) => {
                println!(
                    "trial {k:3}: {:8.1} ms ({target}; the connect command itself {:.1} ms)",
                    d.as_secs_f64() * 1e3,
                    connect.as_secs_f64() * 1e3
                );
                times.push(d);
            }
            None => {
                println!("trial {k:3}: no reply within {TRIAL_TIMEOUT:?} ({target})");
                failed += 1;
            }
        }
    }
    times.sort();
    connects.sort();
    let connect_p50 = connects[connects.len() / 2];
    let pct = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
    if times.is_empty() {
        println!("RESULT trials={trials} ok=0 failed={failed}");
        return;
    }
    println!(
        "RESULT trials={trials} ok={} failed={failed} p50_ms={:.1} p99_ms={:.1} max_ms={:.1} min_ms={:.1} connect_cmd_p50_ms={:.1}",
        times.len(),
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        times.last().expect("non-empty").as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        connect_p50.as_secs_f64() * 1e3
    );
}

/// Runs `ping -n -D -c 1 -W 0.1 TARGET` in `ns` again and again until one
/// gets a reply; returns the reply's timestamp minus `t0`, or None after
/// [`TRIAL_TIMEOUT`]. (One long `ping -i` started before the connect is
/// not used: once its first neighbour resolution failed it often got no
/// reply for seconds although a fresh ping was answered at once.)
fn first_reply(ns: &str, target: Ipv4Addr, t0: SystemTime) -> Option<Duration> {
    let target = target.to_string();
    loop {
        let out = netns_exec(ns, "ping", &["-n", "-D", "-c", "1", "-W", "0.1", &target]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        if let Some(t) = stdout.lines().find(|l| l.contains("bytes from")).and_then(reply_time) {
            return t.duration_since(t0).ok();
        }
        if t0.elapsed().is_ok_and(|e| e > TRIAL_TIMEOUT) {
            return None;
        }
    }
}

/// The `[seconds.micros]` timestamp `ping -D` puts before a reply line.
fn reply_time(line: &str) -> Option<SystemTime> {
    let ts = line.strip_prefix('[')?.split(']').next()?;
    let secs: f64 = ts.parse().ok()?;
    Some(UNIX_EPOCH + Duration::from_secs_f64(secs))
}
