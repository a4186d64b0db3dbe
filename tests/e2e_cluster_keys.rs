//! Encrypted overlays in cluster mode get their keys through the store: no
//! `--secret-file` anywhere. Three `vswitchd` hosts share one etcd:
//! - `network create -d overlay -o encrypted` on host 1; sandboxes on hosts 1
//!   and 2 ping each other and carry TCP; on the underlay every VXLAN
//!   datagram between them is encrypted (a marker the pings carry is seen in
//!   the clear inside the sandbox, never on the wire), and the store's key
//!   record is sealed to exactly hosts 1 and 2;
//! - `network key rotate` (on host 2, which is not the publisher, then on
//!   host 1) under a ping flood and a TCP stream: no ping lost, the stream
//!   intact, no crypto drop, and the wire then carries the new epoch;
//! - host 3 joins the network (its first endpoint): a new epoch sealed to all
//!   three, and host 3's sandbox talks to both others;
//! - host 3's vswitchd stops: once its lease is gone the next epoch's sealed
//!   map (read from etcd with etcdctl) no longer includes it, and hosts 1 and
//!   2 still talk;
//! - host 2 is killed (-9) and restarted: it opens the current epoch again
//!   (its keypair persists) and talks, with no new epoch.
//!
//! Needs root and `/usr/bin/etcd` + `etcdctl`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::thread;
use std::time::{Duration, Instant};

use ctl::proto::EndpointInfo;
use vswitch::cluster::ClusterHosts;
use vswitch::encrypted::{CRYPTO_DROPS, EncryptedHeader, contains_bytes, ping_flood, udp_datagram};
use vswitch::overlay::VTEP_ROW;
use vswitch::underlay::VXLAN_PORT;
use vswitch::{
    Capture, Daemon, UnderlayHost, netns_exec, ping, require_root_and_etcd, tcp_transfer, tcp_transfer_paced,
};
use vswitch::{transfers_until, wait_for_ping, wait_until};

/// Long enough for a loaded machine; waits end as soon as they succeed.
const SETTLE: Duration = Duration::from_secs(45);
/// The store's key prefix (the daemons' default).
const PREFIX: &str = "/vswitch/v1";
/// Pings of the flood, 10 ms apart.
const PINGS: u32 = 600;
/// Bytes of the stream, spread over the rotations.
const STREAM: u64 = 16 << 20;

/// One network's keys in the store: the current epoch and each record's
/// epoch → the nodes it is sealed to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct StoreKeys {
    current: Option<u32>,
    sealed: BTreeMap<u32, BTreeSet<String>>,
    /// When each epoch was published (the publisher's clock, Unix seconds).
    published: BTreeMap<u32, u64>,
}

impl StoreKeys {
    /// The nodes the current epoch is sealed to, if it is settled (no newer
    /// epoch pending).
    fn settled(&self) -> Option<(u32, &BTreeSet<String>)> {
        let current = self.current?;
        let pending = self.sealed.keys().any(|&e| e > current);
        (!pending).then_some(())?;
        Some((current, self.sealed.get(&current)?))
    }
}

/// Reads the key records and current epoch of `network_id` from etcd with
/// etcdctl.
fn store_keys(c: &ClusterHosts, network_id: &str) -> StoreKeys {
    let out = c.etcd().etcdctl(&["get", "--prefix", &format!("{PREFIX}/key")]);
    assert!(out.status.success(), "etcdctl get: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    let mut keys = StoreKeys::default();
    // etcdctl prints each key, then its value on one line (JSON has none).
    for pair in lines.chunks(2) {
        let [key, value] = pair else { continue };
        if *key == format!("{PREFIX}/keycurrent/{network_id}") {
            keys.current = Some(value.trim().parse().unwrap_or_else(|_| panic!("keycurrent {value:?}")));
        } else if let Some(epoch) = key.strip_prefix(&format!("{PREFIX}/keys/{network_id}/")) {
            let record: serde_json::Value = serde_json::from_str(value).expect("a key record is JSON");
            let sealed = record["sealed"].as_object().expect("a sealed map");
            // The store holds sealed keys only: 112 bytes (80 + 32) each, base64.
            for (node, blob) in sealed {
                assert!(blob.as_str().is_some_and(|b| b.len() >= 100), "{node}: {blob}");
            }
            let epoch = epoch.parse().expect("an epoch");
            keys.sealed.insert(epoch, sealed.keys().cloned().collect());
            keys.published.insert(epoch, record["published_unix"].as_u64().expect("published_unix"));
        }
    }
    keys
}

/// Waits until the current epoch of `network_id` is settled and sealed to
/// exactly `nodes`, with an epoch of at least `min`; returns it.
fn wait_keys_for(c: &ClusterHosts, network_id: &str, nodes: &[usize], min: u32) -> u32 {
    let want: BTreeSet<String> = nodes.iter().map(|&i| ClusterHosts::node_name(i)).collect();
    let last = std::cell::RefCell::new(StoreKeys::default());
    wait_until(
        SETTLE,
        || format!("an epoch >= {min} sealed to {want:?}; the store has {:?}", last.borrow()),
        || {
            let keys = store_keys(c, network_id);
            let found = keys.settled().filter(|(e, sealed)| *e >= min && **sealed == want).map(|(e, _)| e);
            *last.borrow_mut() = keys;
            found
        },
    )
}

/// Like [`wait_keys_for`] with a timeout of its own.
fn wait_keys_for_within(c: &ClusterHosts, network_id: &str, nodes: &[usize], min: u32, timeout: Duration) -> u32 {
    let want: BTreeSet<String> = nodes.iter().map(|&i| ClusterHosts::node_name(i)).collect();
    wait_until(
        timeout,
        || format!("an epoch >= {min} sealed to {want:?}; the store has {:?}", store_keys(c, network_id)),
        || store_keys(c, network_id).settled().filter(|(e, sealed)| *e >= min && **sealed == want).map(|(e, _)| e),
    )
}

fn ipv4(e: &EndpointInfo) -> Ipv4Addr {
    e.ipv4.unwrap_or_else(|| panic!("{e:?} has no IPv4 address")).addr()
}

fn crypto_drops(d: &Daemon) -> Vec<(&'static str, u64)> {
    CRYPTO_DROPS.iter().map(|r| (*r, d.drops_of(VTEP_ROW, r))).collect()
}

/// The VXLAN payloads `from` sent to `to` among the captured frames.
fn vxlan_between(frames: &[vswitch::Frame], from: &UnderlayHost, to: &UnderlayHost) -> Vec<Vec<u8>> {
    frames
        .iter()
        .filter_map(|f| udp_datagram(&f.bytes))
        .filter(|d| d.src == from.addr && d.dst == to.addr && d.dst_port == VXLAN_PORT)
        .map(|d| d.payload)
        .collect()
}

/// The epochs on the wire both ways between hosts `a` and `b` while `ns`
/// pings `ip` a few times (captured on `a`'s underlay).
fn epochs_on_the_wire(a: &UnderlayHost, b: &UnderlayHost, ns: &str, ip: Ipv4Addr, vni: u32) -> [Vec<u32>; 2] {
    let cap = Capture::start(&a.ns, &a.ifname).expect("capture on the underlay");
    assert!(ping(ns, ip, 2), "ping for the epoch capture failed");
    let frames = cap.stop();
    [(a, b), (b, a)].map(|(from, to)| {
        vxlan_between(&frames, from, to)
            .iter()
            .filter_map(|p| EncryptedHeader::parse(p))
            .filter(|h| h.vni == vni)
            .map(|h| h.epoch)
            .collect()
    })
}

#[test]
fn encrypted_cluster_overlay_keys_through_the_store() {
    if !require_root_and_etcd("encrypted_cluster_overlay_keys_through_the_store") {
        return;
    }
    let mut c = ClusterHosts::builder(3).tls(false).ttl(4).underlay([10, 236, 1]).start();
    let (h1, h2) = (c.underlay().host(0).clone(), c.underlay().host(1).clone());
    let net = c.name("sec");

    // No secret file anywhere: the network is created, and appears everywhere.
    for i in 0..3 {
        let args = c.host_args(i);
        assert!(!args.iter().any(|a| a.contains("secret")), "{args:?}");
    }
    let created = c.host(0).cluster_overlay_create(&net, "10.237.1.0/24", &["--attachable", "-o", "encrypted"]);
    let mtu = created.options.get("com.docker.network.driver.mtu").map(String::as_str);
    assert_eq!(mtu, Some("1418"), "1500 - 50 - 32: {created:?}");
    c.wait_network(1, &net);
    c.wait_network(2, &net);
    let network_id = created.id.clone();
    // Each node's public key (hex) is in its node record, its keypair 0600 in its state dir.
    for i in 0..3 {
        let key = std::fs::metadata(c.host(i).state_dir().join("node.key")).expect("node.key");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(key.permissions().mode() & 0o777, 0o600, "host {i}'s node.key");
    }
    let nodes = c.etcd().etcdctl(&["get", "--prefix", &format!("{PREFIX}/nodes/"), "--print-value-only"]);
    let records = String::from_utf8_lossy(&nodes.stdout).into_owned();
    assert_eq!(records.matches("\"public_key\":\"").count(), 3, "{records}");

    let (d1, d2) = (c.host(0), c.host(1));
    let (s1, s2) = (d1.name("a"), d2.name("b"));
    d1.sandbox_create(&s1);
    d2.sandbox_create(&s2);
    let e1 = d1.connect(&net, &s1, None);
    let e2 = d2.connect(&net, &s2, None);
    let (ip1, ip2) = (ipv4(&e1), ipv4(&e2));
    let first = wait_for_ping(&s1, ip2, SETTLE);
    assert!(first.is_some(), "{s1} (host 1) cannot ping {s2} (host 2) over the encrypted overlay");
    assert!(wait_for_ping(&s2, ip1, SETTLE).is_some(), "{s2} cannot ping {s1}");
    let epoch = wait_keys_for(&c, &network_id, &[0, 1], 1);
    eprintln!("hosts 1 and 2 talk at epoch {epoch} (first ping after {first:?})");
    let vni = c
        .host(0)
        .ctl_json::<ctl::proto::ShowTree>(&["show"])
        .networks
        .iter()
        .find(|n| n.name == net)
        .and_then(|n| n.vni)
        .expect("a VNI");

    // Nothing in the clear on the underlay.
    let wire = Capture::start(&h2.ns, &h2.ifname).expect("capture on host 2's underlay");
    let inside = Capture::start(&s2, &e2.ifname).expect("capture in s2");
    let out = netns_exec(&s1, "ping", &["-c", "3", "-i", "0.2", "-W", "2", "-p", "5a17c0de5a17c0de", &ip2.to_string()]);
    assert!(out.status.success(), "encrypted ping failed: {}", String::from_utf8_lossy(&out.stdout));
    let r = tcp_transfer(&s2, ip2, &s1, 4 << 20).expect("TCP over the encrypted cluster overlay");
    assert!(r.intact, "{r:?}");
    let marker = [0x5a, 0x17, 0xc0, 0xde, 0x5a, 0x17, 0xc0, 0xde];
    assert!(inside.stop().iter().any(|f| contains_bytes(&f.bytes, &marker)), "positive control: s2 saw no marker");
    let frames = wire.stop();
    let seen: Vec<Vec<u8>> =
        vxlan_between(&frames, &h1, &h2).into_iter().chain(vxlan_between(&frames, &h2, &h1)).collect();
    assert!(seen.len() > 100, "too few datagrams on the wire: {}", seen.len());
    for payload in &seen {
        let header = EncryptedHeader::parse(payload).expect("every VXLAN datagram between the hosts is encrypted");
        assert_eq!(header.vni, vni);
        assert_eq!(header.epoch, epoch);
        assert!(!contains_bytes(payload, &marker), "the marker in the clear on the wire");
    }

    // Rotation under load: host 2 (not the publisher: host 1 is lower-named)
    // asks first, host 1 next; neither ping nor stream loses anything.
    let before: Vec<Vec<(&str, u64)>> = [d1, d2].map(crypto_drops).into();
    let interval = Duration::from_millis(10);
    let flood_time = interval * PINGS;
    let start = Instant::now();
    let flood = {
        let s1 = s1.clone();
        thread::spawn(move || ping_flood(&s1, ip2, PINGS, interval))
    };
    let stream = {
        let (s1, s2) = (s1.clone(), s2.clone());
        thread::spawn(move || tcp_transfer_paced(&s1, ip1, &s2, STREAM, flood_time.mul_f64(0.8)))
    };
    let mut rotations = Vec::new();
    let mut want = epoch;
    // When the last rotation was made (how long it then takes every host to
    // hold its key is the store's and the load's business).
    let mut asked_at = Duration::ZERO;
    for (i, (who, d)) in [("host 2", d2), ("host 1", d1)].into_iter().enumerate() {
        let due = flood_time * (i as u32 + 1) / 4;
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            thread::sleep(wait);
        }
        want += 1;
        let out = d.ctl_ok(&["network", "key", "rotate", &net]);
        asked_at = start.elapsed();
        assert!(out.contains(&format!("key epoch {want}")), "{who}: {out}");
        let current = wait_keys_for(&c, &network_id, &[0, 1], want);
        rotations.push(format!("{who} -> epoch {want}, current at {:?}", start.elapsed()));
        assert_eq!(current, want, "{rotations:?}");
    }
    let flood = flood.join().expect("ping thread");
    let stream = stream.join().expect("stream thread").expect("TCP stream across the rotations");
    eprintln!("rotations: {rotations:?}");
    eprintln!("ping flood: {} sent, {} received in {:?}", flood.transmitted, flood.received, start.elapsed());
    eprintln!("stream: {} bytes in {:?} ({:.0} Mbit/s)", stream.bytes, stream.elapsed, stream.mbit_per_s());
    assert_eq!(
        (flood.transmitted, flood.received),
        (u64::from(PINGS), u64::from(PINGS)),
        "pings lost across the rotations:\n{}",
        flood.output
    );
    assert!(stream.intact && stream.bytes == STREAM, "TCP stream across the rotations: {stream:?}");
    // Both rotations happened while the flood and the stream ran.
    assert!(asked_at < flood_time, "the last rotation was made at {asked_at:?}, after the flood: {rotations:?}");
    assert!(
        stream.elapsed > flood_time / 2,
        "the stream ended after {:?}, before the last rotation was asked for",
        stream.elapsed
    );
    let after: Vec<Vec<(&str, u64)>> = [d1, d2].map(crypto_drops).into();
    assert_eq!(before, after, "crypto drops across the rotations");
    let [one_two, two_one] = epochs_on_the_wire(&h1, &h2, &s1, ip2, vni);
    assert!(!one_two.is_empty() && one_two.iter().all(|&e| e == want), "epochs 1 -> 2: {one_two:?}");
    assert!(!two_one.is_empty() && two_one.iter().all(|&e| e == want), "epochs 2 -> 1: {two_one:?}");
    let rotated = want;

    // Host 3 joins the network: it gets a key (a new epoch, sealed to all three) and talks.
    let d3 = c.host(2);
    let s3 = d3.name("c");
    d3.sandbox_create(&s3);
    let e3 = d3.connect(&net, &s3, None);
    let ip3 = ipv4(&e3);
    let joined = wait_keys_for(&c, &network_id, &[0, 1, 2], rotated + 1);
    assert!(wait_for_ping(&s3, ip1, SETTLE).is_some(), "host 3 (joined) cannot ping host 1");
    assert!(wait_for_ping(&s3, ip2, SETTLE).is_some(), "host 3 (joined) cannot ping host 2");
    assert!(wait_for_ping(&s1, ip3, SETTLE).is_some(), "host 1 cannot ping host 3 (joined)");
    eprintln!("host 3 joined at epoch {joined}");

    // Host 3's vswitchd stops: when its lease is gone, the next epoch is sealed to hosts 1 and 2 only.
    assert!(c.host_mut(2).terminate(Duration::from_secs(20)).is_some(), "host 3's vswitchd did not stop");
    let left = wait_keys_for(&c, &network_id, &[0, 1], joined + 1);
    let keys = store_keys(&c, &network_id);
    assert!(!keys.sealed[&left].contains(&ClusterHosts::node_name(2)), "{keys:?}");
    eprintln!("host 3 left; epoch {left} sealed to {:?}", keys.sealed[&left]);
    assert!(wait_for_ping(&s1, ip2, SETTLE).is_some(), "hosts 1 and 2 after host 3 left");
    let [one_two, _] = epochs_on_the_wire(&h1, &h2, &s1, ip2, vni);
    assert!(!one_two.is_empty() && one_two.iter().all(|&e| e == left), "epochs 1 -> 2 after host 3 left: {one_two:?}");

    // Host 2 restarted after kill -9 (its datapath holds no key then): it
    // keeps its keypair, so it opens the current epoch from the store again
    // and talks at once, without a new epoch.
    c.host_mut(1).restart();
    assert!(wait_for_ping(&s1, ip2, SETTLE).is_some(), "host 1 cannot ping host 2 after host 2's kill -9 and restart");
    assert!(wait_for_ping(&s2, ip1, SETTLE).is_some(), "host 2 cannot ping host 1 after its kill -9 and restart");
    let keys = store_keys(&c, &network_id);
    assert_eq!(keys.settled().map(|(e, _)| e), Some(left), "the restart needed no new epoch: {keys:?}");
}

/// `-o key-rotation=60` on an encrypted cluster overlay is the publisher's
/// period: about a minute after an epoch was published the next one is,
/// with no membership change, and a slow ping across it loses nothing.
#[test]
fn a_rotation_period_moves_a_cluster_overlay_to_a_new_epoch_without_loss() {
    if !require_root_and_etcd("a_rotation_period_moves_a_cluster_overlay_to_a_new_epoch_without_loss") {
        return;
    }
    let c = ClusterHosts::builder(2).tls(false).underlay([10, 236, 2]).start();
    let net = c.name("rot");
    let created = c.host(0).cluster_overlay_create(
        &net,
        "10.237.2.0/24",
        &["--attachable", "-o", "encrypted", "-o", "key-rotation=60"],
    );
    c.wait_network(1, &net);
    let (d1, d2) = (c.host(0), c.host(1));
    let (s1, s2) = (d1.name("a"), d2.name("b"));
    d1.sandbox_create(&s1);
    d2.sandbox_create(&s2);
    let _e1 = d1.connect(&net, &s1, None);
    let e2 = d2.connect(&net, &s2, None);
    let ip2 = ipv4(&e2);
    assert!(wait_for_ping(&s1, ip2, SETTLE).is_some(), "{s1} cannot ping {s2}");
    let first = wait_keys_for(&c, &created.id, &[0, 1], 1);

    // A slow ping for 80 s (four runs of 20 s: one command may take at most
    // a minute): the period (60 s from the epoch's publication, checked
    // every few seconds) passes within it.
    let flood = {
        let s1 = s1.clone();
        thread::spawn(move || {
            let runs: Vec<_> = (0..4).map(|_| ping_flood(&s1, ip2, 100, Duration::from_millis(200))).collect();
            let output = runs.iter().map(|r| r.output.as_str()).collect::<Vec<_>>().join("\n");
            vswitch::encrypted::PingSummary {
                transmitted: runs.iter().map(|r| r.transmitted).sum(),
                received: runs.iter().map(|r| r.received).sum(),
                output,
            }
        })
    };
    let next = wait_keys_for_within(&c, &created.id, &[0, 1], first + 1, Duration::from_secs(75));
    let flood = flood.join().expect("ping thread");
    let keys = store_keys(&c, &created.id);
    eprintln!("epoch {first} -> {next} by the period; ping: {} sent, {} received", flood.transmitted, flood.received);
    assert_eq!(next, first + 1, "{keys:?}");
    let waited = keys.published[&next].saturating_sub(keys.published.get(&first).copied().unwrap_or(0));
    assert!((60..75).contains(&waited), "epoch {next} published {waited} s after epoch {first}: {keys:?}");
    assert_eq!((flood.transmitted, flood.received), (400, 400), "pings lost across the rotation:\n{}", flood.output);
}

/// An encrypted cluster overlay created with `-o spread` on hosts of two
/// workers each: every worker gets the store's keys (they derive nothing),
/// seals in sessions of its own and opens the sessions steered to it. Host
/// 1's connections reach both of host 2's workers, before and after a
/// `network key rotate` (with no crypto drop) and after host 2's `kill -9`
/// and restart (its workers get the current key from the store again).
#[test]
fn a_spread_cluster_overlay_is_opened_by_every_worker_with_keys_from_the_store() {
    if !require_root_and_etcd("a_spread_cluster_overlay_is_opened_by_every_worker_with_keys_from_the_store") {
        return;
    }
    let mut c = ClusterHosts::builder(2).tls(false).underlay([10, 236, 3]).args(&["--workers", "2"]).start();
    let net = c.name("spr");
    let created =
        c.host(0).cluster_overlay_create(&net, "10.237.3.0/24", &["--attachable", "-o", "encrypted", "-o", "spread"]);
    c.wait_network(1, &net);
    let spread_over = |d: &Daemon| {
        let tree: ctl::proto::ShowTree = d.ctl_json(&["show"]);
        tree.networks.iter().find(|n| n.name == net).and_then(|n| n.spread_over)
    };
    for i in 0..2 {
        assert_eq!(spread_over(c.host(i)), Some(2), "host {}: spread over both workers", i + 1);
    }
    let (s1, s2) = (c.host(0).name("a"), c.host(1).name("b"));
    c.host(0).sandbox_create(&s1);
    c.host(1).sandbox_create(&s2);
    c.host(0).connect(&net, &s1, None);
    let ip2 = ipv4(&c.host(1).connect(&net, &s2, None));
    assert!(wait_for_ping(&s1, ip2, SETTLE).is_some(), "{s1} cannot ping {s2} over the spread overlay");
    let epoch = wait_keys_for(&c, &created.id, &[0, 1], 1);
    // Packets sent before host 2 held the first epoch's key were dropped as
    // `unknown_epoch`; none is from now on.
    let before: Vec<Vec<(&str, u64)>> = [c.host(0), c.host(1)].map(crypto_drops).into();

    // Connections from host 1 until each of host 2's workers received more
    // (each connection's session has an even chance of either worker).
    let both_workers_open = |d: &Daemon, what: &str| {
        let rx = || -> Vec<u64> {
            let stats: Vec<ctl::proto::PortStats> = d.ctl_json(&["stats"]);
            let mut rows: Vec<(u32, u64)> =
                stats.iter().filter_map(|s| Some((s.worker.as_ref()?.index, s.rx_packets))).collect();
            rows.sort();
            rows.into_iter().map(|(_, rx)| rx).collect()
        };
        let before = rx();
        assert_eq!(before.len(), 2, "two workers: {before:?}");
        let n = transfers_until(
            (&s2, ip2.into()),
            &s1,
            1 << 20,
            || rx().iter().zip(&before).all(|(a, b)| a > b),
            || format!("{what}: a worker of host 2 opened nothing: {before:?} -> {:?}", rx()),
        );
        eprintln!("{what}: {n} connections; workers' underlay packets {before:?} -> {:?}", rx());
    };
    both_workers_open(c.host(1), &format!("epoch {epoch}"));

    // A rotation: the new key reaches every worker of both hosts.
    let out = c.host(1).ctl_ok(&["network", "key", "rotate", &net]);
    assert!(out.contains(&format!("key epoch {}", epoch + 1)), "{out}");
    let rotated = wait_keys_for(&c, &created.id, &[0, 1], epoch + 1);
    both_workers_open(c.host(1), &format!("epoch {rotated}"));

    let after: Vec<Vec<(&str, u64)>> = [c.host(0), c.host(1)].map(crypto_drops).into();
    assert_eq!(before, after, "crypto drops at the first epoch and across the rotation");

    // Host 2 after kill -9: its workers take the current key from the store
    // again. (Host 1's packets may arrive before they hold it: dropped as
    // `unknown_epoch` meanwhile, so crypto drops are not checked after.)
    c.host_mut(1).restart();
    assert_eq!(spread_over(c.host(1)), Some(2), "spread again after the restart");
    assert!(wait_for_ping(&s1, ip2, SETTLE).is_some(), "host 1 cannot ping host 2 after its restart");
    both_workers_open(c.host(1), "after the restart");
    for i in 0..2 {
        let misdirected = c.host(i).drops_of(VTEP_ROW, "misdirected");
        assert_eq!(misdirected, 0, "host {}: packets reached a worker other than their session's", i + 1);
    }
}
