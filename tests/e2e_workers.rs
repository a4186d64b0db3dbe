//! End-to-end datapath workers (`vswitchd --workers 2`): networks are
//! spread over the worker threads (`show` says which owns each), two bridge
//! networks carry ping and TCP at the same time with each worker doing its
//! own network's work, and two overlays whose VNIs differ in parity work
//! between two hosts with each worker's underlay socket carrying its own
//! overlay: the kernel's reuseport group steers each VNI to its owner.
//! Needs root.

use std::collections::BTreeMap;
use std::thread;
use std::time::Duration;

use std::net::Ipv4Addr;

use ctl::proto::{EndpointInfo, PortStats, ShowTree, WorkerLoad};
use vswitch::encrypted::{SecretFile, encrypted_vtep_daemon};
use vswitch::overlay::{ip_of, sandbox_on};
use vswitch::underlay::lan_link;
use vswitch::{
    Daemon, TcpBlast, Underlay, ping, require_root, tcp_transfer, transfers_until, vtep_daemon, wait_for_ping,
};

/// Each worker's row of `stats --json`, by worker index.
fn worker_rows(d: &Daemon) -> BTreeMap<u32, (PortStats, WorkerLoad)> {
    let stats: Vec<PortStats> = d.ctl_json(&["stats"]);
    stats.into_iter().filter_map(|s| Some((s.worker?.index, (s.clone(), s.worker?)))).collect()
}

/// The worker `show --json` gives network `net`.
fn worker_of(d: &Daemon, net: &str) -> u32 {
    let tree: ShowTree = d.ctl_json(&["show"]);
    let n = tree.networks.iter().find(|n| n.name == net).unwrap_or_else(|| panic!("no {net} in {tree:#?}"));
    n.worker.unwrap_or_else(|| panic!("network {net} has no worker: {n:#?}"))
}

/// The bytes every port of network `net` received.
fn network_rx(d: &Daemon, net: &str) -> u64 {
    let stats: Vec<PortStats> = d.ctl_json(&["stats"]);
    stats.iter().filter(|s| s.network == net).map(|s| s.rx_bytes).sum()
}

/// Frames received on network `net`'s ports (every worker's, summed).
fn network_rx_frames(d: &Daemon, net: &str) -> u64 {
    let stats: Vec<PortStats> = d.ctl_json(&["stats"]);
    stats.iter().filter(|s| s.network == net).map(|s| s.rx_packets).sum()
}

#[test]
fn two_bridge_networks_run_on_two_workers_at_once() {
    if !require_root("two_bridge_networks_run_on_two_workers_at_once") {
        return;
    }
    let d = Daemon::builder().args(&["--workers", "2"]).start();
    let (n1, n2) = (d.name("w1"), d.name("w2"));
    d.network_create(&n1, "10.244.1.0/24");
    d.network_create(&n2, "10.244.2.0/24");
    assert_ne!(worker_of(&d, &n1), worker_of(&d, &n2), "the two networks share a worker");
    let (a1, e_a1) = sandbox_on(&d, &n1, "a1", "10.244.1.11");
    let (b1, e_b1) = sandbox_on(&d, &n1, "b1", "10.244.1.12");
    let (a2, e_a2) = sandbox_on(&d, &n2, "a2", "10.244.2.11");
    let (b2, e_b2) = sandbox_on(&d, &n2, "b2", "10.244.2.12");
    let before = worker_rows(&d);
    assert_eq!(before.len(), 2, "one stats row per worker: {before:#?}");
    let (rx1, rx2) = (network_rx(&d, &n1), network_rx(&d, &n2));

    // Both networks at the same time: ping, then a TCP stream each.
    const LEN: u64 = 16 << 20;
    thread::scope(|s| {
        let runs = [(&a1, &b1, &e_b1), (&a2, &b2, &e_b2)].map(|(client, server, e_server)| {
            s.spawn(move || {
                assert!(ping(client, ip_of(e_server), 3), "{client} cannot ping {server}");
                let r = tcp_transfer(server, ip_of(e_server), client, LEN).expect("a TCP transfer");
                eprintln!("tcp {client} -> {server}: {:.0} Mbit/s", r.mbit_per_s());
                assert!(r.intact, "TCP {client} -> {server} corrupted: {r:?}");
            })
        });
        for run in runs {
            run.join().expect("a traffic thread");
        }
    });
    assert!(ping(&b1, ip_of(&e_a1), 1) && ping(&b2, ip_of(&e_a2), 1), "the way back works too");
    let (d1, d2) = (network_rx(&d, &n1) - rx1, network_rx(&d, &n2) - rx2);
    assert!(d1 >= LEN && d2 >= LEN, "both networks' ports counted their stream: {d1} and {d2} bytes");
    let after = worker_rows(&d);
    for (k, (_, load)) in &after {
        let (_, was) = &before[k];
        assert!(load.wakeups > was.wakeups, "worker {k} did not wake up: {was:?} -> {load:?}");
        assert!(load.busy_ms > was.busy_ms, "worker {k} did no work: {was:?} -> {load:?}");
    }
}

#[test]
fn overlays_of_both_parities_are_steered_to_their_workers() {
    if !require_root("overlays_of_both_parities_are_steered_to_their_workers") {
        return;
    }
    let u = Underlay::new([10, 210, 44], 2);
    let (h1, h2) = (u.host(0), u.host(1));
    let d1 = vtep_daemon(h1, &["--workers", "2"]);
    let d2 = vtep_daemon(h2, &["--workers", "2"]);
    let (even, odd) = (u.name("ev"), u.name("od"));
    for d in [&d1, &d2] {
        d.overlay_create(&even, "10.244.10.0/24", 4200, &["--attachable"]);
        d.overlay_create(&odd, "10.244.11.0/24", 4201, &["--attachable"]);
        assert_eq!((worker_of(d, &even), worker_of(d, &odd)), (0, 1), "overlays go to worker VNI % 2");
    }
    d1.peer_add(h2.vtep(), &[]);
    d2.peer_add(h1.vtep(), &[]);
    let (s1e, e1e) = sandbox_on(&d1, &even, "s1e", "10.244.10.11");
    let (s2e, e2e) = sandbox_on(&d2, &even, "s2e", "10.244.10.12");
    let (s1o, e1o) = sandbox_on(&d1, &odd, "s1o", "10.244.11.11");
    let (s2o, e2o) = sandbox_on(&d2, &odd, "s2o", "10.244.11.12");
    let before = [worker_rows(&d1), worker_rows(&d2)];

    const LEN: u64 = 4 << 20;
    thread::scope(|s| {
        let runs = [(&s1e, &s2e, &e2e), (&s1o, &s2o, &e2o)].map(|(client, server, e_server)| {
            s.spawn(move || {
                assert!(ping(client, ip_of(e_server), 3), "{client} cannot ping {server} over the overlay");
                let r = tcp_transfer(server, ip_of(e_server), client, LEN).expect("a TCP transfer");
                assert!(r.intact, "TCP {client} -> {server} corrupted: {r:?}");
            })
        });
        for run in runs {
            run.join().expect("a traffic thread");
        }
    });
    assert!(ping(&s2e, ip_of(&e1e), 1) && ping(&s2o, ip_of(&e1o), 1), "the way back works too");

    // Each worker's own underlay socket carried its overlay, both ways, on
    // both hosts: a packet of the odd VNI landing on worker 0 would have
    // been dropped (unknown VNI) and the odd overlay would not work.
    for (h, d) in [&d1, &d2].into_iter().enumerate() {
        let after = worker_rows(d);
        for k in [0u32, 1] {
            let (was, _) = &before[h][&k];
            let (now, _) = &after[&k];
            assert!(now.rx_packets > was.rx_packets, "host {h} worker {k} received no VXLAN: {now:?}");
            assert!(now.tx_packets > was.tx_packets, "host {h} worker {k} sent no VXLAN: {now:?}");
            // The stream's data went host 0 -> host 1 through each worker.
            let data = if h == 0 { now.tx_bytes - was.tx_bytes } else { now.rx_bytes - was.rx_bytes };
            assert!(data >= LEN, "host {h} worker {k} carried {data} bytes of a {LEN}-byte stream: {now:?}");
            assert_eq!(now.drops.get("unknown_vni").copied().unwrap_or(0), 0, "host {h} worker {k}: {now:?}");
        }
    }
}

/// The CPUs thread `tid` of process `pid` may run on, as `/proc` lists them.
fn cpus_allowed(pid: u32, tid: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).expect("thread status");
    let line = status.lines().find(|l| l.starts_with("Cpus_allowed_list:")).expect("Cpus_allowed_list");
    line.split_once(':').unwrap().1.trim().to_owned()
}

#[test]
fn workers_bound_by_a_cpu_list_run_there_and_a_cpu_outside_the_affinity_is_refused() {
    if !require_root("workers_bound_by_a_cpu_list_run_there_and_a_cpu_outside_the_affinity_is_refused") {
        return;
    }
    // Both workers on CPU 0: every machine has it.
    let d = Daemon::builder().args(&["--workers", "2", "--cpu-affinity", "0"]).start();
    let rows = worker_rows(&d);
    assert_eq!(rows.len(), 2);
    for (k, (_, load)) in &rows {
        assert_eq!(load.cpu, Some(0), "worker {k} is not shown bound to CPU 0: {load:?}");
    }
    let pid = d.pid().expect("the daemon's pid");
    let mut bound = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks") {
        let tid = task.expect("task").file_name().to_string_lossy().into_owned();
        let comm = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).unwrap_or_default();
        if comm.trim().starts_with("vsw-dp-") {
            assert_eq!(cpus_allowed(pid, &tid), "0", "thread {} is not bound to CPU 0", comm.trim());
            bound += 1;
        }
    }
    assert_eq!(bound, 2, "two vsw-dp threads");
    // Still switches frames.
    let net = d.name("pin");
    d.network_create(&net, "10.244.9.0/24");
    let (a, _) = sandbox_on(&d, &net, "pa", "10.244.9.11");
    let (_b, e_b) = sandbox_on(&d, &net, "pb", "10.244.9.12");
    assert!(ping(&a, ip_of(&e_b), 2), "no ping between two sandboxes with pinned workers");

    // A CPU this process may not use: the daemon refuses to start, and says why.
    let dir = d.state_dir().join("refused");
    let out = std::process::Command::new(&vswitch::Binaries::get().vswitchd)
        .arg("--ctl-socket")
        .arg(dir.join("ctl.sock"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["--cpu-affinity", "1023"])
        .output()
        .expect("run vswitchd");
    assert!(!out.status.success(), "vswitchd started with --cpu-affinity 1023");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CPU 1023 is not one this process may run on"), "unclear error: {err}");
}

/// The workers' rows of `stats --json` as (replica frames, frames to the
/// owner, frames from replicas), by worker index.
/// Waits until some worker spent at least 40% of 300 ms or more working,
/// by its busy time in `stats` (a worker carrying a stream at full speed).
fn wait_for_a_busy_worker(d: &Daemon) {
    let busy = |d: &Daemon| -> Vec<u64> { worker_rows(d).values().map(|(_, w)| w.busy_ms).collect() };
    let mut since = (std::time::Instant::now(), busy(d));
    vswitch::wait::wait_until(
        Duration::from_secs(20),
        || format!("no worker got busy: busy ms {:?}", busy(d)),
        || {
            let elapsed = since.0.elapsed().as_millis() as u64;
            if elapsed < 300 {
                return None;
            }
            let now = busy(d);
            let most = now.iter().zip(&since.1).map(|(n, b)| n - b).max().unwrap_or(0);
            since = (std::time::Instant::now(), now);
            (most * 10 >= elapsed * 4).then_some(())
        },
    );
}

fn spread_counts(d: &Daemon) -> BTreeMap<u32, (u64, u64, u64)> {
    worker_rows(d).into_iter().map(|(k, (_, w))| (k, (w.replica_frames, w.to_owner, w.from_replicas))).collect()
}

/// Creates network `suffix` (a unique name) on `subnet` with `-o spread`
/// on `d`, a daemon of two workers: its name, its owner worker and the
/// other (its replica).
fn spread_network(d: &Daemon, suffix: &str, subnet: &str) -> (String, u32, u32) {
    let net = d.name(suffix);
    d.ctl_ok(&["network", "create", &net, "--subnet", subnet, "-o", "spread"]);
    let owner = worker_of(d, &net);
    (net, owner, 1 - owner)
}

/// The bytes of each connection [`transfers_until_the_replica_forwards`] makes.
const LEN: u64 = 2 << 20;

/// Makes TCP connections from `client` to `server` (a sandbox and its
/// address) on a spread network, each carrying [`LEN`] bytes intact, until
/// worker `replica` forwarded 100 frames as a replica; how many it made.
/// The kernel steers each new connection to one of the port's queues by
/// its hash, so a connection lands on the replica's with probability 1/2:
/// 40 all missing it would be a bug, not bad luck.
fn transfers_until_the_replica_forwards(d: &Daemon, replica: u32, server: (&str, Ipv4Addr), client: &str) -> u64 {
    transfers_until_the_replica_forwards_more(d, replica, 0, server, client)
}

/// [`transfers_until_the_replica_forwards`] from a count of `before`
/// frames the replica had already forwarded.
fn transfers_until_the_replica_forwards_more(
    d: &Daemon,
    replica: u32,
    before: u64,
    server: (&str, Ipv4Addr),
    client: &str,
) -> u64 {
    transfers_until(
        (server.0, server.1.into()),
        client,
        LEN,
        || spread_counts(d)[&replica].0 >= before + 100,
        || format!("the replica forwarded nothing: {:?}", spread_counts(d)),
    )
}

#[test]
fn a_spread_network_carries_flows_on_every_worker_and_survives_a_restart() {
    if !require_root("a_spread_network_carries_flows_on_every_worker_and_survives_a_restart") {
        return;
    }
    let mut d = Daemon::builder().args(&["--workers", "2"]).start();
    let (net, owner, replica) = spread_network(&d, "sp", "10.244.20.0/24");
    let spread_over = |d: &Daemon| {
        let tree: ShowTree = d.ctl_json(&["show"]);
        tree.networks.iter().find(|n| n.name == net).and_then(|n| n.spread_over)
    };
    assert_eq!(spread_over(&d), Some(2), "show says the network is spread over both workers");
    let (a, e_a) = sandbox_on(&d, &net, "spa", "10.244.20.11");
    let (b, e_b) = sandbox_on(&d, &net, "spb", "10.244.20.12");
    assert!(ping(&a, ip_of(&e_b), 3), "no ping across a spread network");

    let rx_before: u64 = network_rx(&d, &net);
    let transfers = transfers_until_the_replica_forwards(&d, replica, (&b, ip_of(&e_b)), &a);
    let counts = spread_counts(&d);
    eprintln!("{transfers} connections; per worker (replica, to owner, from replicas): {counts:?}");
    // Every port's counters are one row summed over both workers: every
    // byte of every stream is counted once as received from a.
    let rx = network_rx(&d, &net) - rx_before;
    assert!(rx >= transfers * LEN, "{rx} bytes counted for {transfers} streams of {LEN}");
    assert_eq!(counts[&owner].0, 0, "the owner is no replica: {counts:?}");
    assert_eq!(counts[&replica].2, 0, "the replica is no owner: {counts:?}");
    // A frame handed over just before the snapshot may still be on its way
    // (a sandbox's own ARP or neighbour traffic): the counts meet.
    vswitch::wait::wait_until(
        Duration::from_secs(5),
        || format!("frames handed over and taken differ: {:?}", spread_counts(&d)),
        || {
            let counts = spread_counts(&d);
            (counts[&replica].1 == counts[&owner].2).then_some(())
        },
    );

    // The same counts as metrics.
    let text = d.ctl_ok(&["stats", "--prometheus"]);
    let series = format!("vswitch_datapath_spread_frames_total{{role=\"replica\",worker=\"vsw-dp-{replica}\"}} ");
    let value = text.lines().find_map(|l| l.strip_prefix(series.as_str())).and_then(|v| v.trim().parse::<f64>().ok());
    assert!(value.is_some_and(|v| v >= 100.0), "{series}: {value:?} in\n{text}");

    // Connections are placed where there is room: while one stream keeps
    // its worker busy, a new connection opens on the other worker (whichever
    // queue the kernel's hash put its SYN in), so each carries one stream.
    let (frames_before, replica_before) = (network_rx_frames(&d, &net), spread_counts(&d)[&replica].0);
    let blast = TcpBlast::start(&b, ip_of(&e_b), &a).expect("a stream to load one worker");
    wait_for_a_busy_worker(&d);
    let second = tcp_transfer(&b, ip_of(&e_b), &a, 64 << 20).expect("a TCP transfer beside the stream");
    let blasted = blast.stop().expect("the stream, whole");
    assert!(second.intact, "{second:?}");
    let frames = network_rx_frames(&d, &net) - frames_before;
    let on_replica = spread_counts(&d)[&replica].0 - replica_before;
    let on_owner = frames - on_replica;
    let rows = worker_rows(&d);
    let placed: Vec<(u64, u64)> = rows.values().map(|(_, w)| (w.placed_out, w.placed_in)).collect();
    eprintln!(
        "a stream ({blasted} bytes) and a transfer at once: {on_owner} frames on the owner, {on_replica} on the \
         replica; connections placed (out, in) per worker: {placed:?}"
    );
    // 64 MiB are at least 1,000 frames of 64 KiB, and as many ACKs.
    assert!(
        on_owner >= 1000 && on_replica >= 1000,
        "both streams on one worker: owner {on_owner}, replica {on_replica}"
    );
    // A frame that places a connection may still be on its way: the counts meet.
    let placed_totals =
        |d: &Daemon| worker_rows(d).values().fold((0, 0), |(o, i), (_, w)| (o + w.placed_out, i + w.placed_in));
    vswitch::wait::wait_until(
        Duration::from_secs(5),
        || format!("connections placed out and in differ: {:?}", placed_totals(&d)),
        || {
            let (out, into) = placed_totals(&d);
            (out == into).then_some(())
        },
    );

    // Two streams that open together while both workers idle share a worker
    // when the kernel's hash puts them on one queue (half the time); once
    // their traffic shows, the busy worker moves one of them to the idle
    // one, so each worker carries a stream either way.
    let (frames_before, replica_before) = (network_rx_frames(&d, &net), spread_counts(&d)[&replica].0);
    let moves_before = placed_totals(&d).0;
    let one = TcpBlast::start(&b, ip_of(&e_b), &a).expect("a first stream");
    let two = TcpBlast::start(&b, ip_of(&e_b), &a).expect("a second stream");
    let per_worker = |d: &Daemon| {
        let on_replica = spread_counts(d)[&replica].0 - replica_before;
        (network_rx_frames(d, &net) - frames_before - on_replica, on_replica)
    };
    vswitch::wait::wait_until(
        Duration::from_secs(30),
        || format!("two streams and one worker idle: (owner, replica) frames {:?}", per_worker(&d)),
        || {
            let (on_owner, on_replica) = per_worker(&d);
            (on_owner >= 2000 && on_replica >= 2000).then_some(())
        },
    );
    let (one, two) = (one.stop().expect("the first stream, whole"), two.stop().expect("the second stream, whole"));
    eprintln!(
        "two streams ({one} and {two} bytes): (owner, replica) frames {:?}; connections moved: {}",
        per_worker(&d),
        placed_totals(&d).0 - moves_before
    );

    // The table is the owner's, listed once.
    let fdb = d.ctl_ok(&["fdb", "show", &net]);
    assert_eq!(fdb.matches(&e_a.mac.to_string()).count(), 1, "{fdb}");

    // A spread port cannot be impaired: its frames are sent by two workers.
    let err = d.ctl_err(&["port", "impair", &e_a.port, "--delay", "10ms"]);
    assert!(err.contains("spread"), "unclear refusal: {err}");

    // Acknowledged state survives kill -9: still spread, every queue
    // re-attached, traffic flows again.
    d.restart();
    assert_eq!(spread_over(&d), Some(2), "the network is spread after a restart");
    assert!(ping(&a, ip_of(&e_b), 3), "no ping across the spread network after a restart");
    let r = tcp_transfer(&b, ip_of(&e_b), &a, LEN).expect("a TCP transfer after the restart");
    assert!(r.intact, "{r:?}");
    d.ctl_ok(&["sandbox", "rm", &a, &b]);
    d.ctl_ok(&["network", "rm", &net]);
}

/// `ip -d -j link show` of `ifname` in sandbox `ns`.
fn link_details(ns: &str, ifname: &str) -> serde_json::Value {
    let out = vswitch::netns_exec_ok(ns, "ip", &["-d", "-j", "link", "show", "dev", ifname]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("ip's JSON");
    v[0].clone()
}

#[test]
fn afxdp_ports_of_a_spread_network_are_read_by_every_worker() {
    if !require_root("afxdp_ports_of_a_spread_network_are_read_by_every_worker") {
        return;
    }
    let mut d = Daemon::builder().args(&["--workers", "2"]).start();
    let (net, owner, replica) = spread_network(&d, "sx", "10.244.21.0/24");
    let a = d.name("sxa");
    d.sandbox_create(&a);
    let e_a: EndpointInfo = d.ctl_json(&["network", "connect", &net, &a, "--port-type", "afxdp"]);
    let (b, e_b) = sandbox_on(&d, &net, "sxb", "10.244.21.12");
    // The sandbox's end of the veth has a queue per worker each way, and
    // each worker reads one of them.
    let link = link_details(&a, &e_a.ifname);
    assert_eq!((link["num_tx_queues"].as_u64(), link["num_rx_queues"].as_u64()), (Some(2), Some(2)), "{link}");
    let mode = |d: &Daemon| {
        let tree: ShowTree = d.ctl_json(&["show"]);
        let port = tree.networks.into_iter().flat_map(|n| n.ports).find(|p| p.name == e_a.port);
        port.and_then(|p| p.xdp_mode).unwrap_or_default()
    };
    assert!(mode(&d).contains("2 queues, over 2 workers"), "show: {}", mode(&d));
    assert!(wait_for_ping(&a, ip_of(&e_b), Duration::from_secs(10)).is_some(), "afxdp -> tap on a spread network");

    // Connections from the AF_XDP sandbox: the ones its stack sends on the
    // replica's queue are forwarded there, both ways (the replica writes
    // them into the TAP's queue, whose answers then come back to it).
    let rx_before = network_rx(&d, &net);
    let transfers = transfers_until_the_replica_forwards(&d, replica, (&b, ip_of(&e_b)), &a);
    let counts = spread_counts(&d);
    eprintln!("{transfers} connections; per worker (replica, to owner, from replicas): {counts:?}");
    assert_eq!(counts[&owner].0, 0, "the owner is no replica: {counts:?}");
    // The port's row sums both workers' queues: every byte sent is counted.
    let rx = network_rx(&d, &net) - rx_before;
    assert!(rx >= transfers * LEN, "{rx} bytes counted for {transfers} streams of {LEN}");

    // Acknowledged state survives kill -9: the veth is read again by both
    // workers.
    d.restart();
    assert!(mode(&d).contains("over 2 workers"), "show after a restart: {}", mode(&d));
    assert!(wait_for_ping(&a, ip_of(&e_b), Duration::from_secs(10)).is_some(), "no ping after a restart");
    let replica_before = spread_counts(&d)[&replica].0;
    transfers_until_the_replica_forwards_more(&d, replica, replica_before, (&b, ip_of(&e_b)), &a);
    d.ctl_ok(&["sandbox", "rm", &a, &b]);
    d.ctl_ok(&["network", "rm", &net]);
}

#[test]
fn uplinks_of_a_spread_network_are_read_by_every_worker() {
    if !require_root("uplinks_of_a_spread_network_are_read_by_every_worker") {
        return;
    }
    // A "LAN" namespace behind a two-queue veth into the daemon's.
    let mut u = Underlay::new([10, 222, 0], 1);
    let host = u.host(0).ns.clone();
    let lan = u.add_netns("lan");
    lan_link(&host, &lan, "up0", 2, "10.223.0.200/24");
    let lan_ip = Ipv4Addr::new(10, 223, 0, 200);

    let mut d = vtep_daemon(u.host(0), &["--workers", "2"]);
    let (net, _owner, replica) = spread_network(&d, "su", "10.223.0.0/24");
    let (a, _) = sandbox_on(&d, &net, "sua", "10.223.0.11");

    // Connections from the LAN until the replica forwarded 100 frames.
    let replica_carries = |d: &Daemon, port_type: &str| {
        if port_type == "afxdp" {
            let tree: ShowTree = d.ctl_json(&["show"]);
            let port = tree.networks.into_iter().flat_map(|n| n.ports).find(|p| p.name == "up0").expect("up0 shown");
            let mode = port.xdp_mode.unwrap_or_default();
            assert!(mode.contains("2 queues, over 2 workers"), "show: {mode}");
        }
        assert!(
            wait_for_ping(&lan, Ipv4Addr::new(10, 223, 0, 11), Duration::from_secs(10)).is_some(),
            "LAN -> sandbox ({port_type})"
        );
        let before = spread_counts(d)[&replica].0;
        let transfers = transfers_until_the_replica_forwards_more(d, replica, before, (&lan, lan_ip), &a);
        eprintln!(
            "{port_type}: {transfers} connections; per worker (replica, to owner, from replicas): {:?}",
            spread_counts(d)
        );
    };
    // A raw uplink: a socket per worker in one fanout group, each reading
    // the flows that hash to it. Then the same interface through AF_XDP: a
    // socket per receive queue, one per worker. Each comes back spread
    // after kill -9.
    for port_type in ["raw", "afxdp"] {
        d.ctl_ok(&["port", "add", &net, "up0", "--port-type", port_type]);
        replica_carries(&d, port_type);
        d.restart();
        replica_carries(&d, port_type);
        d.ctl_ok(&["port", "rm", "up0"]);
    }
}

#[test]
fn a_spread_overlay_is_carried_by_every_worker_both_ways() {
    if !require_root("a_spread_overlay_is_carried_by_every_worker_both_ways") {
        return;
    }
    spread_overlay_both_ways([10, 210, 46], "10.244.12", Peers::Static);
}

#[test]
fn a_spread_overlay_on_a_vtep_that_learns_peers_is_carried_by_every_worker() {
    if !require_root("a_spread_overlay_on_a_vtep_that_learns_peers_is_carried_by_every_worker") {
        return;
    }
    spread_overlay_both_ways([10, 210, 48], "10.244.13", Peers::Learned);
}

#[test]
fn an_encrypted_spread_overlay_is_sealed_and_opened_by_every_worker() {
    if !require_root("an_encrypted_spread_overlay_is_sealed_and_opened_by_every_worker") {
        return;
    }
    spread_overlay_both_ways([10, 210, 50], "10.244.14", Peers::Encrypted);
}

#[test]
fn a_one_worker_hosts_encrypted_flows_are_opened_by_every_worker_of_a_spread_receiver() {
    if !require_root("a_one_worker_hosts_encrypted_flows_are_opened_by_every_worker_of_a_spread_receiver") {
        return;
    }
    spread_overlay_both_ways([10, 210, 52], "10.244.15", Peers::EncryptedFromOneWorker);
}

/// How host 1 of [`spread_overlay_both_ways`] knows host 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peers {
    /// `peer add`.
    Static,
    /// Learned from its traffic (`--learn-peers`).
    Learned,
    /// `peer add`, on an encrypted overlay (`-o encrypted`, both hosts with
    /// two workers: each worker seals in its own session, which the
    /// receiving host steers to one of its workers).
    Encrypted,
    /// As `Encrypted`, but host 2 has one worker and does not spread the
    /// overlay: it seals each flow in the session of its outer source port
    /// (one of `crypto::FLOW_SESSIONS`), so its flows still reach both of
    /// host 1's workers.
    EncryptedFromOneWorker,
}

/// Host 1 (two workers) and host 2 share a spread overlay on
/// `subnet`.0/24 over underlay `underlay`.0/24. Traffic both ways is
/// carried by host 1's replica worker too, whose own underlay socket
/// receives and sends, also after `kill -9`.
fn spread_overlay_both_ways(underlay: [u8; 3], subnet: &str, peers: Peers) {
    let u = Underlay::new(underlay, 2);
    let (h1, h2) = (u.host(0), u.host(1));
    let secret = SecretFile::generate(0o600);
    let encrypted = matches!(peers, Peers::Encrypted | Peers::EncryptedFromOneWorker);
    let (mut d1, d2) = match peers {
        Peers::Static => (vtep_daemon(h1, &["--workers", "2"]), vtep_daemon(h2, &[])),
        Peers::Learned => (vtep_daemon(h1, &["--workers", "2", "--learn-peers"]), vtep_daemon(h2, &[])),
        Peers::Encrypted => (
            encrypted_vtep_daemon(h1, &secret, &["--workers", "2"]),
            encrypted_vtep_daemon(h2, &secret, &["--workers", "2"]),
        ),
        Peers::EncryptedFromOneWorker => (
            encrypted_vtep_daemon(h1, &secret, &["--workers", "2"]),
            encrypted_vtep_daemon(h2, &secret, &["--workers", "1"]),
        ),
    };
    let net = u.name("so");
    let options: &[&str] = if encrypted {
        &["--attachable", "-o", "spread", "-o", "encrypted"]
    } else {
        &["--attachable", "-o", "spread"]
    };
    d1.overlay_create(&net, &format!("{subnet}.0/24"), 4300, options);
    let options: &[&str] = match peers {
        Peers::Encrypted => options,
        Peers::EncryptedFromOneWorker => &["--attachable", "-o", "encrypted"],
        Peers::Static | Peers::Learned => &["--attachable"],
    };
    d2.overlay_create(&net, &format!("{subnet}.0/24"), 4300, options);
    for d in [&d1, &d2].into_iter().take(if peers == Peers::Encrypted { 2 } else { 1 }) {
        let tree: ShowTree = d.ctl_json(&["show"]);
        let spread_over = tree.networks.iter().find(|n| n.name == net).and_then(|n| n.spread_over);
        assert_eq!(spread_over, Some(2), "the overlay is spread over both workers");
    }
    let replica = 1 - worker_of(&d1, &net);
    if peers != Peers::Learned {
        d1.peer_add(h2.vtep(), &[]);
    }
    d2.peer_add(h1.vtep(), &[]);
    let (s1, e1) = sandbox_on(&d1, &net, "so1", &format!("{subnet}.11"));
    let (s2, e2) = sandbox_on(&d2, &net, "so2", &format!("{subnet}.12"));
    assert!(wait_for_ping(&s2, ip_of(&e1), Duration::from_secs(10)).is_some(), "no ping over the overlay");
    let learned_host_2 =
        |d: &Daemon| d.peers().iter().any(|p| p.addr.ip() == std::net::IpAddr::V4(h2.addr) && p.learned);
    assert_eq!(learned_host_2(&d1), peers == Peers::Learned, "{:?}", d1.peers());

    // The kernel hashes each connection's packets (its outer source port;
    // encrypted: its sender session) over host 1's two workers; the
    // replica's carry them both ways, into the sandbox and into the tunnel.
    let replica_rows = |d: &Daemon| worker_rows(d)[&replica].0.clone();
    let owner_rows = |d: &Daemon| worker_rows(d)[&(1 - replica)].0.clone();
    let before = replica_rows(&d1);
    let owner_before = owner_rows(&d1);
    let mut transfers = transfers_until_the_replica_forwards(&d1, replica, (&s1, ip_of(&e1)), &s2);
    // Until its own socket both received and sent (the frames it forwarded
    // may all have gone one way so far).
    transfers += transfers_until(
        (&s1, ip_of(&e1).into()),
        &s2,
        LEN,
        || {
            let after = replica_rows(&d1);
            after.rx_packets > before.rx_packets && after.tx_packets > before.tx_packets
        },
        || format!("the replica's socket did not carry both ways: {:?}", replica_rows(&d1)),
    );
    eprintln!("{transfers} connections; replica's underlay socket: {:?}", replica_rows(&d1));
    let back =
        transfers_until_the_replica_forwards_more(&d1, replica, spread_counts(&d1)[&replica].0, (&s2, ip_of(&e2)), &s1);
    eprintln!("{back} connections the other way");
    if encrypted {
        // Host 1 steers each session to one of its workers, and host 2's
        // connections come in sessions that reach both: each of a spread
        // host 2's workers seals in sessions paired with one of host 1's
        // (the kernel hashes each connection to a TAP queue, so to one of
        // those workers); a one-worker host 2 seals each connection in the
        // session of its outer source port, one of four spread over host
        // 1's workers. So the owner's socket receives too. (Each new
        // connection has an even chance of either; with one session per
        // sending worker, a one-worker host 2 reaches one.)
        let more = transfers_until(
            (&s2, ip_of(&e2).into()),
            &s1,
            LEN,
            || owner_rows(&d1).rx_packets > owner_before.rx_packets && replica_rows(&d1).rx_packets > before.rx_packets,
            || format!("a worker opened nothing: {:?} {:?}", owner_rows(&d1), replica_rows(&d1)),
        );
        eprintln!("{more} more connections; owner's underlay socket: {:?}", owner_rows(&d1));
    }
    // No replica lacked a peer's port (peer add waits for the mirrors; a
    // learned peer's packets went to the owner); nothing failed to open or
    // reached a worker other than its session's (encrypted).
    let stats = d1.stats_map();
    let vtep = stats.iter().find(|((p, _), _)| p == "vtep").map(|(_, s)| s).expect("vtep row");
    for reason in ["unknown_peer", "replayed", "auth_failed", "reflected", "misdirected"] {
        assert_eq!(vtep.drops.get(reason).copied().unwrap_or(0), 0, "{reason}: {vtep:?}");
    }

    // Acknowledged state survives kill -9: spread again, peers mirrored (or
    // learned again).
    d1.restart();
    assert!(wait_for_ping(&s2, ip_of(&e1), Duration::from_secs(10)).is_some(), "no ping after a restart");
    assert_eq!(learned_host_2(&d1), peers == Peers::Learned, "{:?}", d1.peers());
    transfers_until_the_replica_forwards(&d1, replica, (&s1, ip_of(&e1)), &s2);
}
