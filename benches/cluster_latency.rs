//! Time from `network connect` on node A to the first ping reply from node B
//! (issue 13), over real etcd (one member, TLS) and three `vswitchd` hosts
//! in namespaces (`vswitch::cluster::ClusterHosts`). Run by
//! `benches/cluster.sh`, which builds the release binaries and repeats it.
//!
//! Setup: an attachable cluster overlay created on host 1 (A); sandbox `b`
//! on host 2 (B) connected first. Each trial: a fresh sandbox is created on
//! A (untimed); then `ping -D -i 0.005` starts in `b` toward the address
//! the next connect will get (the lowest free one: trials never free
//! addresses), the clock starts, `vswitchctl network connect` runs on A,
//! and the trial's time is the timestamp of ping's first reply minus the
//! start. The sandbox's ARP retransmission time is 5 ms (a sysctl of the
//! sandbox's own namespace), so a failed first resolution does not add the
//! kernel's default 1 s. Prints every trial, then p50, p99 and max.
//!
//! Usage: `cluster_latency [--trials 100]` as root (SKIP otherwise).

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ctl::proto::EndpointInfo;
use vswitch::cluster::ClusterHosts;
use vswitch::overlay::ip_of;
use vswitch::{netns_exec_ok, require_root, wait_for_ping};

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
    let mut next = u32::from(ip_of(&ew)).max(u32::from(ip_of(&eb))) + 1;

    let mut times = Vec::with_capacity(trials);
    let mut failed = 0;
    for k in 0..trials {
        let s = a.name(&format!("t{k}"));
        a.sandbox_create(&s);
        let target = Ipv4Addr::from(next);
        let mut ping = spawn_ping(&sb, target);
        let t0 = SystemTime::now();
        let out = a.ctl(&["--json", "network", "connect", &net, &s]);
        assert!(out.status.success(), "connect {s}: {}", String::from_utf8_lossy(&out.stderr));
        let e: EndpointInfo = serde_json::from_slice(&out.stdout).expect("endpoint JSON");
        let target = if ip_of(&e) == target {
            target
        } else {
            // Not the guessed address: ping the real one (this trial then
            // also counts ping's start-up).
            println!("trial {k:3}: got {} (expected {target}); pinging it from now", ip_of(&e));
            let _ = ping.kill();
            let _ = ping.wait();
            ping = spawn_ping(&sb, ip_of(&e));
            ip_of(&e)
        };
        next = u32::from(target) + 1;
        let first = BufReader::new(ping.stdout.take().expect("stdout"))
            .lines()
            .map_while(Result::ok)
            .find(|l| l.contains("bytes from"))
            .and_then(|l| reply_time(&l));
        let _ = ping.kill();
        let _ = ping.wait();
        match first {
            Some(t) if t.duration_since(t0).is_ok_and(|d| d <= TRIAL_TIMEOUT) => {
                let d = t.duration_since(t0).expect("checked");
                println!("trial {k:3}: {:8.1} ms ({target})", d.as_secs_f64() * 1e3);
                times.push(d);
            }
            _ => {
                println!("trial {k:3}: no reply within {TRIAL_TIMEOUT:?} ({target})");
                failed += 1;
            }
        }
    }
    times.sort();
    let pct = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
    if times.is_empty() {
        println!("RESULT trials={trials} ok=0 failed={failed}");
        return;
    }
    println!(
        "RESULT trials={trials} ok={} failed={failed} p50_ms={:.1} p99_ms={:.1} max_ms={:.1} min_ms={:.1}",
        times.len(),
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        times.last().expect("non-empty").as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3
    );
}

/// `ping -n -D -i 0.005 -w 10 TARGET` in `ns`, stdout piped.
fn spawn_ping(ns: &str, target: Ipv4Addr) -> std::process::Child {
    Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-n", "-D", "-i", "0.005", "-w", "10"])
        .arg(target.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ping")
}

/// The `[seconds.micros]` timestamp `ping -D` puts before a reply line.
fn reply_time(line: &str) -> Option<SystemTime> {
    let ts = line.strip_prefix('[')?.split(']').next()?;
    let secs: f64 = ts.parse().ok()?;
    Some(UNIX_EPOCH + Duration::from_secs_f64(secs))
}
