//! Link impairment (`vswitchctl port impair`) measured between two
//! sandboxes: the delay added to ping RTTs, the loss rate of a ping run,
//! the throughput of a TCP transfer under a rate limit, against the
//! settings and within tolerances stated below; `--clear` restores the
//! link; settings survive `kill -9` and a restart, show in `show`, `stats`
//! and the metrics; a refused request changes nothing; a VTEP's
//! impairment delays one host's overlay traffic toward another host and
//! survives `kill -9`. Needs root.
//!
//! The impairment applies to frames leaving the switch toward b (b's
//! port), so a→b traffic is impaired and b→a is not.

use std::net::Ipv4Addr;
use std::time::Duration;

use ctl::proto::{PortStats, ShowTree};
use serde_json::Value;
use vswitch::overlay::{ip_of, sandbox_on, tunnel_port, vtep_daemon};
use vswitch::underlay::Underlay;
use vswitch::{Daemon, netns_exec, netns_exec_ok, ping, require_root, tcp_transfer, text};

/// Ping RTTs in ms from `ns` to `ip`: `count` echoes, `interval` seconds apart.
fn rtts(ns: &str, ip: Ipv4Addr, count: u32, interval: &str) -> Vec<f64> {
    let out = netns_exec(ns, "ping", &["-n", "-c", &count.to_string(), "-i", interval, "-W", "2", &ip.to_string()]);
    let rtts: Vec<f64> = text(&out.stdout)
        .lines()
        .filter_map(|l| l.split("time=").nth(1)?.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(!rtts.is_empty(), "no ping reply: {}{}", text(&out.stdout), text(&out.stderr));
    rtts
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The impairment stats of `port`.
fn impair_stats(d: &Daemon, port: &str) -> Value {
    let stats: Vec<Value> = d.ctl_json(&["stats", port]);
    stats[0]["impair"].clone()
}

/// The `impair` of `port` in `show --json`, if any.
fn shown(d: &Daemon, port: &str) -> Option<ctl::Impairment> {
    let tree: ShowTree = d.ctl_json(&["show"]);
    tree.networks.iter().flat_map(|n| &n.ports).find(|p| p.name == port).and_then(|p| p.impair)
}

/// `ln P(X = k)` for X ~ Binomial(n, p).
fn ln_pmf(n: u64, k: u64, p: f64) -> f64 {
    let ln_choose: f64 = (1..=k).map(|i| ((n - k + i) as f64).ln() - (i as f64).ln()).sum();
    ln_choose + k as f64 * p.ln() + (n - k) as f64 * (1.0 - p).ln()
}

/// The smallest interval `[lo, hi]` with `P(X < lo) ≤ α/2` and
/// `P(X > hi) ≤ α/2` for X ~ Binomial(n, p), from the exact distribution.
fn binomial_bounds(n: u64, p: f64, alpha: f64) -> (u64, u64) {
    let pmf: Vec<f64> = (0..=n).map(|k| ln_pmf(n, k, p).exp()).collect();
    let mut below = 0.0;
    let mut lo = 0;
    while below + pmf[lo as usize] <= alpha / 2.0 {
        below += pmf[lo as usize];
        lo += 1;
    }
    let mut above = 0.0;
    let mut hi = n;
    while above + pmf[hi as usize] <= alpha / 2.0 {
        above += pmf[hi as usize];
        hi -= 1;
    }
    (lo, hi)
}

#[test]
fn binomial_bounds_are_exact_tails() {
    // Binomial(10, 0.5): P(X ≤ 1) = 11/1024 ≈ 0.0107, P(X = 0) ≈ 0.00098.
    assert_eq!(binomial_bounds(10, 0.5, 0.02), (1, 9));
    assert_eq!(binomial_bounds(10, 0.5, 0.03), (2, 8));
}

#[test]
fn impairment_delays_loses_and_paces_as_set() {
    if !require_root("impairment_delays_loses_and_paces_as_set") {
        return;
    }
    let mut d = Daemon::start();
    let net = d.name("n");
    let (a, b) = (d.name("a"), d.name("b"));
    d.ctl_ok(&["network", "create", &net, "--subnet", "10.232.0.0/24", "-o", "egress=false"]);
    d.sandbox_create(&a);
    d.sandbox_create(&b);
    let ea = d.connect(&net, &a, None);
    let eb = d.connect(&net, &b, None);
    let (ip_a, ip_b) = (ea.ipv4.expect("ip").addr(), eb.ipv4.expect("ip").addr());
    // Fixed neighbour entries: a lost ARP probe must not count as a lost ping.
    for (ns, e, ip) in [(&a, &eb, ip_b), (&b, &ea, ip_a)] {
        let mac = e.mac.to_string();
        let dev = if ns == &a { &ea.ifname } else { &eb.ifname };
        netns_exec_ok(ns, "ip", &["neigh", "replace", &ip.to_string(), "lladdr", &mac, "dev", dev, "nud", "permanent"]);
    }
    assert!(ping(&a, ip_b, 2), "no connectivity");
    let port = eb.port.clone();

    // --- Delay. Lower bound: a frame never leaves before its departure
    // time, so every RTT is at least the delay. Upper bound on the median:
    // the frame leaves at the first 1 ms timer tick at or after its
    // departure, plus the datapath's wake-up and the scheduler's latency;
    // 10 ms covers both (measured: +1.3–1.4 ms on an idle 2-core machine,
    // +5.8 ms with both cores running a CPU hog at the same priority).
    let base = median(&rtts(&a, ip_b, 20, "0.02"));
    d.ctl_ok(&["port", "impair", &b, "--delay", "20ms"]);
    let delayed = rtts(&a, ip_b, 20, "0.05");
    let added = median(&delayed) - base;
    eprintln!("delay 20ms: RTT median {base:.3} ms -> {:.3} ms (+{added:.3} ms), min {:.3} ms", median(&delayed), {
        delayed.iter().copied().fold(f64::MAX, f64::min)
    });
    assert!(delayed.iter().all(|&r| r >= 20.0), "an RTT below the 20 ms delay: {delayed:?}");
    assert!((20.0..30.0).contains(&added), "median RTT rose by {added:.3} ms for a 20 ms delay: {delayed:?}");
    assert_eq!(shown(&d, &port).map(|i| i.delay_us), Some(20_000));
    let human = d.ctl_ok(&["show"]);
    assert!(human.contains("impair: delay 20ms"), "{human}");

    // Delay with jitter: each draw lies in [15, 25] ms. Hard lower bound:
    // no RTT below 15 ms. The median, with the same 10 ms allowance for
    // release and scheduling latency as above, below 35 ms (the median is
    // robust to a few pings a loaded machine delays more).
    // Spread: 20 draws uniform over 10 ms all within 2 ms of each other has
    // probability below 20 × 0.2¹⁹ ≈ 1e-12 (latency only widens it).
    d.ctl_ok(&["port", "impair", &port, "--delay", "20ms", "--jitter", "5ms"]);
    let jittered = rtts(&a, ip_b, 20, "0.05");
    let (lo, hi) = jittered.iter().fold((f64::MAX, 0.0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
    eprintln!("delay 20ms jitter 5ms: RTTs {lo:.3}..{hi:.3} ms, median {:.3} ms", median(&jittered));
    assert!(lo >= 15.0, "an RTT below 20 - 5 ms: {jittered:?}");
    assert!(median(&jittered) < 35.0, "median RTT above 20 + 5 ms + 10 ms: {jittered:?}");
    assert!(hi - lo > 2.0, "no jitter in {jittered:?}");

    // --- Loss 20% of N = 1000 echo requests (replies are not impaired).
    // The exact binomial tails give the interval a correct switch falls
    // outside of with probability below 1e-6.
    d.ctl_ok(&["port", "impair", &port, "--loss", "20%"]);
    let before = impair_stats(&d, &port)["lost"].as_u64().unwrap_or(0);
    let n = 1000u64;
    let out = netns_exec(&a, "ping", &["-n", "-q", "-c", &n.to_string(), "-i", "0.002", "-W", "1", &ip_b.to_string()]);
    let summary = text(&out.stdout);
    let received: u64 = summary
        .split(", ")
        .find_map(|part| part.strip_suffix(" received")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ping summary: {summary}"));
    let lost = n - received;
    let (lo, hi) = binomial_bounds(n, 0.2, 1e-6);
    eprintln!("loss 20%: {lost} of {n} pings lost ({:.1}%), accepted {lo}..={hi}", lost as f64 / n as f64 * 100.0);
    assert!((lo..=hi).contains(&lost), "{lost} of {n} lost; outside [{lo}, {hi}]");
    let stats = impair_stats(&d, &port);
    let counted = stats["lost"].as_u64().unwrap_or(0) - before;
    // Every lost request was counted (other frames toward b may be too).
    assert!(counted >= lost, "{counted} counted as lost, {lost} pings lost: {stats}");
    let rows: Vec<PortStats> = d.ctl_json(&["stats", &port]);
    assert_eq!(rows[0].drops.get("impair_loss").copied(), stats["lost"].as_u64(), "{:?}", rows[0]);
    let prom = d.ctl_ok(&["stats", "--prometheus"]);
    let metric = format!("vswitch_port_impair_lost_total{{network=\"{net}\",port=\"{port}\"}} ");
    assert!(prom.lines().any(|l| l.starts_with(&metric)), "no {metric} in metrics");
    vswitch::promtool_accepts(&prom);

    // --- Rate 50 Mbit/s, a→b TCP. Upper bound: the link carries 50 Mbit/s
    // of Ethernet frames, of which TCP payload is at most 1448 of every
    // 1514 bytes (47.8 Mbit/s), and the switch grants no burst; 50 Mbit/s
    // leaves only timer rounding. Lower bound 0.8 × 47.8 = 38 Mbit/s: the
    // transfer also pays connection setup and TCP's losses when it
    // overfills the queue (drops as impair_queue_full, then retransmits)
    // while the link stays busy from the 2 MiB queue; measured 45–47.
    d.ctl_ok(&["port", "impair", &port, "--rate", "50mbit"]);
    let r = tcp_transfer(&b, ip_b, &a, 15 << 20).expect("TCP transfer");
    let mbit = r.mbit_per_s();
    let stats = impair_stats(&d, &port);
    eprintln!("rate 50mbit: TCP {:.1} Mbit/s over {:?} ({} bytes); {stats}", mbit, r.elapsed, r.bytes);
    assert!(r.intact, "stream corrupted: {r:?}");
    assert!((38.0..=50.0).contains(&mbit), "{mbit:.1} Mbit/s through a 50 Mbit/s link");

    // --- A refused request changes nothing, with a clear message.
    let show_before: Value = d.ctl_json(&["show"]);
    let e = d.ctl_err(&["port", "impair", &port, "--reorder", "1%"]);
    assert!(e.contains("reorder needs a delay"), "{e}");
    let e = d.ctl_err(&["port", "impair", &d.name("nope"), "--delay", "1ms"]);
    assert!(e.contains("not found"), "{e}");
    let e = d.ctl_err(&["port", "impair", &format!("gw:{net}"), "--delay", "1ms"]);
    assert!(e.contains("cannot be impaired"), "{e}");
    assert_eq!(d.ctl_json::<Value>(&["show"]), show_before, "a refused request changed the state");

    // --- Clear: RTTs back to the baseline, no settings shown.
    d.ctl_ok(&["port", "impair", &format!("{net}:{b}"), "--delay", "20ms"]);
    assert!(median(&rtts(&a, ip_b, 5, "0.05")) >= 20.0);
    d.ctl_ok(&["port", "impair", &port, "--clear"]);
    let cleared = median(&rtts(&a, ip_b, 20, "0.02"));
    assert!(cleared < 10.0, "RTT {cleared:.3} ms after --clear (baseline {base:.3} ms)");
    assert_eq!(shown(&d, &port), None);
    assert!(impair_stats(&d, &port)["settings"].is_null(), "cleared settings still in stats");

    // --- Restart: the setting was acknowledged, so it survives kill -9.
    d.ctl_ok(&["port", "impair", &port, "--delay", "20ms", "--loss", "0.5%"]);
    let show_before: Value = d.ctl_json(&["show"]);
    d.kill9();
    d.restart();
    assert_eq!(d.ctl_json::<Value>(&["show"]), show_before, "show changed across the restart");
    let after = vswitch::wait_for(Duration::from_secs(30), || {
        let r = netns_exec(&a, "ping", &["-n", "-c", "3", "-i", "0.05", "-W", "2", &ip_b.to_string()]);
        r.status.success().then(|| rtts(&a, ip_b, 10, "0.05"))
    })
    .expect("no connectivity after the restart");
    assert!(after.iter().all(|&r| r >= 20.0), "the delay did not survive the restart: {after:?}");
    // And goes with the endpoint.
    d.ctl_ok(&["network", "disconnect", &net, &b]);
    let again = d.connect(&net, &b, None);
    assert_eq!(shown(&d, &again.port), None, "a new endpoint inherited an impairment");
}

/// `port impair vx:ADDR:PORT` delays what one host's overlay sends toward
/// another host's VTEP (and only that), shows on the tunnel port, and
/// survives `kill -9`; `--clear` takes it off.
#[test]
fn a_vtep_impairment_delays_the_overlay_toward_that_host_and_survives_kill_9() {
    if !require_root("a_vtep_impairment_delays_the_overlay_toward_that_host_and_survives_kill_9") {
        return;
    }
    let u = Underlay::new([10, 212, 1], 2);
    let (h1, h2) = (u.host(0), u.host(1));
    let mut d1 = vtep_daemon(h1, &[]);
    let d2 = vtep_daemon(h2, &[]);
    let net = u.name("ov");
    for d in [&d1, &d2] {
        d.overlay_create(&net, "10.213.1.0/24", 4099, &["--attachable"]);
    }
    d1.peer_add(h2.vtep(), &[]);
    d2.peer_add(h1.vtep(), &[]);
    let (s1, _) = sandbox_on(&d1, &net, "s", "10.213.1.11");
    let (_s2, e2) = sandbox_on(&d2, &net, "s", "10.213.1.12");
    assert!(ping(&s1, ip_of(&e2), 3), "no overlay connectivity");
    let tunnel = tunnel_port(h2.vtep());

    // Same bounds as the endpoint's delay above: every RTT at least the
    // delay (only host 1 → host 2 is impaired), the median within 10 ms.
    let base = median(&rtts(&s1, ip_of(&e2), 20, "0.02"));
    d1.ctl_ok(&["port", "impair", &tunnel, "--delay", "20ms"]);
    let check_delayed = |what: &str| {
        let delayed = rtts(&s1, ip_of(&e2), 20, "0.05");
        let added = median(&delayed) - base;
        eprintln!("{what}: RTT median {base:.3} ms -> {:.3} ms (+{added:.3} ms)", median(&delayed));
        assert!(delayed.iter().all(|&r| r >= 20.0), "{what}: an RTT below the 20 ms delay: {delayed:?}");
        assert!((20.0..30.0).contains(&added), "{what}: median RTT rose by {added:.3} ms: {delayed:?}");
    };
    check_delayed("VTEP delay 20ms");
    assert_eq!(shown(&d1, &tunnel).map(|i| i.delay_us), Some(20_000));
    assert!(impair_stats(&d1, &tunnel)["delayed"].as_u64().unwrap_or(0) >= 20, "{}", impair_stats(&d1, &tunnel));
    assert_eq!(shown(&d2, &tunnel_port(h1.vtep())), None, "the other host's tunnel is not impaired");

    d1.kill9();
    d1.restart();
    assert_eq!(shown(&d1, &tunnel).map(|i| i.delay_us), Some(20_000), "the setting after kill -9");
    check_delayed("after kill -9 and a restart");

    d1.ctl_ok(&["port", "impair", &tunnel, "--clear"]);
    let cleared = median(&rtts(&s1, ip_of(&e2), 20, "0.02"));
    assert!(cleared < 10.0, "median RTT {cleared:.3} ms after --clear");
    assert_eq!(shown(&d1, &tunnel), None);
    let refused = d1.ctl_err(&["port", "impair", "vx:0.0.0.0:4789", "--delay", "1ms"]);
    assert!(refused.contains("unicast"), "{refused}");
}
