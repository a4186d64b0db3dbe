//! Control-plane scale by simulation (issue 13): N simulated nodes, each a
//! real `cluster::Cluster` (its own client thread, etcd connection, lease
//! and watch, as in vswitchd) against a real etcd (one member, TLS) in a
//! namespace this program makes, each writing E endpoints (address claim +
//! endpoint record, the two transactions of a `network connect`). Per N it
//! prints:
//!
//! - start: time until every node is registered and sees all N nodes;
//! - write: time for the N × E endpoints (all nodes writing at once), the
//!   etcd write rate in endpoints/s and transactions/s;
//! - fan-out: time from the first write until each node's mirror holds all
//!   N × E records (p50 and max over nodes), and the max lag behind the
//!   last acknowledged write;
//! - probe: then P single endpoint publications from node k % N, each timed
//!   from the call until every node's mirror has it (p50, p99, max over P).
//!
//! Run: `cargo bench --bench cluster_sim -- [--nodes 10,25,50,100]
//! [--endpoints 100] [--probes 20] [--insecure]` (as root: it makes a
//! network namespace; without root it says SKIP and exits).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use cluster::{AddressClaim, Cluster, ClusterConfig, EndpointRecord, NetworkRecord, TlsFiles, parse_store_url};
use crossbeam_channel::{Receiver, Select};
use vswitch::{Etcd, Underlay, netns::join_netns, require_root};

/// Longest any phase may take before the run is declared failed.
const PHASE_TIMEOUT: Duration = Duration::from_secs(180);

struct Args {
    nodes: Vec<usize>,
    endpoints: usize,
    probes: usize,
    tls: bool,
}

fn args() -> Args {
    let mut a = Args { nodes: vec![10, 25, 50, 100], endpoints: 100, probes: 20, tls: true };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--nodes" => {
                a.nodes = it.next().expect("--nodes LIST").split(',').map(|n| n.parse().expect("node count")).collect()
            }
            "--endpoints" => a.endpoints = it.next().expect("--endpoints N").parse().expect("endpoint count"),
            "--probes" => a.probes = it.next().expect("--probes N").parse().expect("probe count"),
            "--insecure" => a.tls = false,
            _ => {} // `cargo bench` passes --bench and filters
        }
    }
    a
}

fn main() {
    if !require_root("cluster_sim") {
        return;
    }
    let args = args();
    let underlay = Underlay::new([10, 240, 1], 1);
    let etcd = Etcd::single(underlay.host(0), args.tls);
    // Every client socket of this process lives next to etcd.
    join_netns(&underlay.host(0).ns).expect("join the etcd namespace");
    println!(
        "cluster_sim: etcd {} ({}), {} endpoints per node, {} probes; etcd 3.4 single member, one process for all nodes",
        etcd.endpoints(),
        if args.tls { "TLS" } else { "plain" },
        args.endpoints,
        args.probes
    );
    println!(
        "{:>5} {:>8} {:>8} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "nodes",
        "records",
        "start_s",
        "write_s",
        "ep_per_s",
        "txn_per_s",
        "fan_p50_s",
        "fan_max_s",
        "lag_max_ms",
        "probe_p50",
        "probe_p99"
    );
    for (round, &n) in args.nodes.iter().enumerate() {
        let r = run_round(&etcd, round, n, args.endpoints, args.probes);
        println!(
            "{:>5} {:>8} {:>8.2} {:>9.2} {:>10.0} {:>10.0} {:>10.2} {:>10.2} {:>10.1} {:>8.1}ms {:>8.1}ms",
            n,
            n * args.endpoints,
            r.start.as_secs_f64(),
            r.write.as_secs_f64(),
            (n * args.endpoints) as f64 / r.write.as_secs_f64(),
            (2 * n * args.endpoints) as f64 / r.write.as_secs_f64(),
            r.fan_p50.as_secs_f64(),
            r.fan_max.as_secs_f64(),
            r.lag_max.as_secs_f64() * 1e3,
            r.probe_p50.as_secs_f64() * 1e3,
            r.probe_p99.as_secs_f64() * 1e3,
        );
    }
}

struct RoundResult {
    start: Duration,
    write: Duration,
    fan_p50: Duration,
    fan_max: Duration,
    lag_max: Duration,
    probe_p50: Duration,
    probe_p99: Duration,
}

fn run_round(etcd: &Etcd, round: usize, n: usize, per_node: usize, probes: usize) -> RoundResult {
    let prefix = format!("/sim/r{round}-{}", std::process::id());
    let tls = etcd.tls().map(|t| TlsFiles { ca: t.ca.clone(), cert: t.client_cert.clone(), key: t.client_key.clone() });
    let endpoints = parse_store_url(&etcd.store_url(), tls.is_some()).expect("store URL");
    let t0 = Instant::now();
    let nodes: Vec<Cluster> = (0..n)
        .map(|i| {
            let vtep = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 99, (i / 250) as u8, (i % 250 + 1) as u8)), 4789);
            let mut cfg = ClusterConfig::new(endpoints.clone(), format!("sim{i}"), vtep, tls.clone());
            cfg.prefix = prefix.clone();
            Cluster::start(cfg).expect("Cluster::start")
        })
        .collect();
    let ticks: Vec<Receiver<()>> = nodes.iter().map(Cluster::changes).collect();
    watch_until(&nodes, &ticks, |_, c| c.status().connected && c.mirror().nodes.len() == n);
    let start = t0.elapsed();

    let net = nodes[0]
        .create_network(NetworkRecord {
            id: format!("{:064x}", 0x5157_0000_u64 + round as u64),
            name: format!("simnet{round}"),
            vni: 0,
            subnets: vec!["10.64.0.0/16".parse().expect("subnet")],
            created_by: "sim0".into(),
            spec: serde_json::json!({}),
        })
        .expect("create_network");
    watch_until(&nodes, &ticks, |_, c| c.mirror().networks.contains_key(&net.name));

    // Bulk: every node writes its endpoints at once; a monitor notes when
    // each node's mirror holds them all.
    let total = n * per_node;
    let t_write = Instant::now();
    let (fanout, acks) = std::thread::scope(|scope| {
        let monitor = scope.spawn(|| {
            let mut done = vec![None; n];
            watch_until(&nodes, &ticks, |i, c| {
                if done[i].is_none() && c.mirror().endpoints.len() >= total {
                    done[i] = Some(t_write.elapsed());
                }
                done[i].is_some()
            });
            done.into_iter().map(|d| d.expect("all done")).collect::<Vec<Duration>>()
        });
        let writers: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let net_id = net.id.clone();
                scope.spawn(move || {
                    for k in 0..per_node {
                        let seq = (i * per_node + k) as u32;
                        let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 64, 0, 2)) + seq);
                        let id = format!("{:064x}", (u64::from(seq) << 8) | 0x5e);
                        c.claim_address(
                            &net_id,
                            ip.into(),
                            AddressClaim { node: c.node().into(), endpoint_id: id.clone() },
                        )
                        .expect("claim_address");
                        c.publish_endpoint(record(&net_id, &id, c.node(), ip, seq)).expect("publish_endpoint");
                    }
                    t_write.elapsed()
                })
            })
            .collect();
        let acks: Vec<Duration> = writers.into_iter().map(|w| w.join().expect("writer")).collect();
        (monitor.join().expect("monitor"), acks)
    });
    let write = acks.iter().copied().max().unwrap_or_default();
    let mut fan = fanout.clone();
    fan.sort();

    // Probes: one record at a time, timed to the last node that sees it.
    let mut probe_times = Vec::new();
    for p in 0..probes {
        let c = &nodes[p % n];
        let seq = (total + p) as u32;
        let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 64, 0, 2)) + seq);
        let id = format!("{:064x}", (u64::from(seq) << 8) | 0x9b);
        let key = (net.id.clone(), id.clone());
        let t = Instant::now();
        c.publish_endpoint(record(&net.id, &id, c.node(), ip, seq)).expect("probe publish");
        watch_until(&nodes, &ticks, |_, c| c.mirror().endpoints.contains_key(&key));
        probe_times.push(t.elapsed());
    }
    probe_times.sort();
    let pct = |v: &[Duration], q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    drop(nodes);
    RoundResult {
        start,
        write,
        fan_p50: pct(&fan, 0.5),
        fan_max: *fan.last().expect("nodes"),
        lag_max: fan.last().copied().unwrap_or_default().saturating_sub(write),
        probe_p50: if probes > 0 { pct(&probe_times, 0.5) } else { Duration::ZERO },
        probe_p99: if probes > 0 { pct(&probe_times, 0.99) } else { Duration::ZERO },
    }
}

fn record(net_id: &str, id: &str, node: &str, ip: Ipv4Addr, seq: u32) -> EndpointRecord {
    let b = seq.to_be_bytes();
    EndpointRecord {
        network_id: net_id.into(),
        endpoint_id: id.into(),
        node: node.into(),
        name: format!("c{seq}"),
        aliases: Vec::new(),
        mac: format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3]),
        ipv4: Some(ip),
        ipv6: None,
        service: None,
    }
}

/// Waits (event-driven, on the nodes' change ticks) until `done(i, node)`
/// holds for every node; panics after [`PHASE_TIMEOUT`].
fn watch_until(nodes: &[Cluster], ticks: &[Receiver<()>], mut done: impl FnMut(usize, &Cluster) -> bool) {
    let mut pending: BTreeSet<usize> = (0..nodes.len()).filter(|&i| !done(i, &nodes[i])).collect();
    let deadline = Instant::now() + PHASE_TIMEOUT;
    let mut sel = Select::new();
    for t in ticks {
        sel.recv(t);
    }
    while !pending.is_empty() {
        let left = deadline.checked_duration_since(Instant::now()).unwrap_or_else(|| {
            panic!("cluster_sim: {} nodes still pending after {PHASE_TIMEOUT:?}: {pending:?}", pending.len())
        });
        let Ok(op) = sel.select_timeout(left.min(Duration::from_millis(200))) else {
            // No tick for a while: re-check everyone (a tick may have raced).
            pending.retain(|&i| !done(i, &nodes[i]));
            continue;
        };
        let i = op.index();
        let _ = op.recv(&ticks[i]);
        if pending.contains(&i) && done(i, &nodes[i]) {
            pending.remove(&i);
        }
    }
}
