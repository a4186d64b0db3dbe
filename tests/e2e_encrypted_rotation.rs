//! Key rotation of an encrypted overlay under load: while a ping flood and
//! a TCP stream cross the overlay, host A and then host B run `network key
//! rotate` about a second apart, then B first and A second. No ping is lost,
//! the stream arrives intact, the underlay then carries the new epoch, and
//! nothing was dropped. A host that rotates two epochs ahead of its peer is
//! outside the peer's window (`unknown_epoch`) until the peer catches up.
//! Needs root.

use std::net::Ipv4Addr;
use std::thread;
use std::time::{Duration, Instant};

use vswitch::encrypted::CRYPTO_DROPS;
use vswitch::encrypted::{EncryptedHeader, SecretFile, encrypted_vtep_daemon, ping_flood, udp_datagram};
use vswitch::overlay::VTEP_ROW;
use vswitch::overlay::{ip_of, sandbox_on};
use vswitch::underlay::VXLAN_PORT;
use vswitch::{Capture, Daemon, Underlay, UnderlayHost, ping, require_root, tcp_transfer_paced, wait_for_ping};

const VNI: u32 = 5200;
/// Pings of the flood, 10 ms apart.
const PINGS: u32 = 600;
/// Bytes of the stream, spread over the rotations.
const STREAM: u64 = 16 << 20;

fn crypto_drops(d: &Daemon) -> Vec<(&'static str, u64)> {
    CRYPTO_DROPS.iter().map(|r| (*r, d.drops_of(VTEP_ROW, r))).collect()
}

/// The epochs in the encrypted headers of the datagrams `from` sent to `to`
/// while `ns` pinged `ip` a few times.
fn epochs_on_the_wire(
    capture_on: &UnderlayHost,
    ns: &str,
    ip: Ipv4Addr,
    pairs: [(&UnderlayHost, &UnderlayHost); 2],
) -> [Vec<u32>; 2] {
    let cap = Capture::start(&capture_on.ns, &capture_on.ifname).expect("capture on the underlay");
    assert!(ping(ns, ip, 2), "ping for the epoch capture failed");
    let datagrams: Vec<_> = cap.stop().iter().filter_map(|f| udp_datagram(&f.bytes)).collect();
    pairs.map(|(from, to)| {
        datagrams
            .iter()
            .filter(|d| d.src == from.addr && d.dst == to.addr && d.dst_port == VXLAN_PORT)
            .filter_map(|d| EncryptedHeader::parse(&d.payload))
            .filter(|h| h.vni == VNI)
            .map(|h| h.epoch)
            .collect()
    })
}

#[test]
fn key_rotation_host_by_host_under_load_loses_nothing() {
    if !require_root("key_rotation_host_by_host_under_load_loses_nothing") {
        return;
    }
    let u = Underlay::new([10, 210, 34], 2);
    let (ha, hb) = (u.host(0), u.host(1));
    let secret = SecretFile::generate(0o600);
    let da = encrypted_vtep_daemon(ha, &secret, &[]);
    let db = encrypted_vtep_daemon(hb, &secret, &[]);
    let net = u.name("en");
    for d in [&da, &db] {
        d.overlay_create(&net, "10.211.35.0/24", VNI, &["--attachable", "-o", "encrypted"]);
    }
    da.peer_add(hb.vtep(), &[]);
    db.peer_add(ha.vtep(), &[]);
    let (sa, ea) = sandbox_on(&da, &net, "s", "10.211.35.11");
    let (sb, eb) = sandbox_on(&db, &net, "s", "10.211.35.12");
    let (a_ip, b_ip) = (ip_of(&ea), ip_of(&eb));
    assert!(ping(&sa, b_ip, 2), "A cannot ping B before the rotations");
    assert!(ping(&sb, a_ip, 1), "B cannot ping A before the rotations");
    assert_eq!(epochs_on_the_wire(ha, &sa, b_ip, [(ha, hb), (hb, ha)]).map(|e| e.iter().all(|&x| x == 0)), [true; 2]);

    let interval = Duration::from_millis(10);
    let flood_time = interval * PINGS;
    let start = Instant::now();
    let flood = {
        let sa = sa.clone();
        thread::spawn(move || ping_flood(&sa, b_ip, PINGS, interval))
    };
    // The stream runs B -> A (server in A), spread over the flood.
    let stream = {
        let (sa, sb) = (sa.clone(), sb.clone());
        thread::spawn(move || tcp_transfer_paced(&sa, a_ip, &sb, STREAM, flood_time.mul_f64(0.8)))
    };
    // A then B, then B then A, a second apart, all within the flood.
    let step = flood_time / 6;
    let mut rotations = Vec::new();
    for (i, (who, d, want)) in [("A", &da, 1), ("B", &db, 1), ("B", &db, 2), ("A", &da, 2)].into_iter().enumerate() {
        let due = step * (i as u32 + 1);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            thread::sleep(wait);
        }
        let epoch = d.key_rotate(&net);
        rotations.push(format!("{who} -> epoch {epoch} at {:?}", start.elapsed()));
        assert_eq!(epoch, want, "host {who}'s rotation {}: {rotations:?}", i + 1);
    }
    let flood = flood.join().expect("ping thread");
    let stream = stream.join().expect("stream thread");
    eprintln!("rotations: {rotations:?}");
    eprintln!("ping flood: {} sent, {} received in {:?}", flood.transmitted, flood.received, start.elapsed());
    let stream = stream.expect("TCP stream across the rotations");
    eprintln!("stream: {} bytes in {:?} ({:.0} Mbit/s)", stream.bytes, stream.elapsed, stream.mbit_per_s());
    assert!(
        stream.elapsed > step * 4,
        "the stream ended after {:?}, before the last rotation at {:?}",
        stream.elapsed,
        step * 4
    );
    assert_eq!(
        (flood.transmitted, flood.received),
        (u64::from(PINGS), u64::from(PINGS)),
        "pings lost across the rotations:\n{}",
        flood.output
    );
    assert!(stream.intact, "TCP stream across the rotations corrupted: {stream:?}");
    for (who, d) in [("A", &da), ("B", &db)] {
        let drops = crypto_drops(d);
        assert!(drops.iter().all(|(_, n)| *n == 0), "host {who} dropped traffic across the rotations: {drops:?}");
    }
    // Both directions now seal under epoch 2.
    let [a_to_b, b_to_a] = epochs_on_the_wire(ha, &sa, b_ip, [(ha, hb), (hb, ha)]);
    assert!(!a_to_b.is_empty() && a_to_b.iter().all(|&e| e == 2), "epochs A -> B after the rotations: {a_to_b:?}");
    assert!(!b_to_a.is_empty() && b_to_a.iter().all(|&e| e == 2), "epochs B -> A after the rotations: {b_to_a:?}");

    // Two epochs ahead is outside the peer's window: A at 4 while B is at 2
    // (B accepts 1..=3) cannot reach B; B counts unknown_epoch.
    assert_eq!(da.key_rotate(&net), 3);
    assert_eq!(da.key_rotate(&net), 4);
    let before = db.drops_of(VTEP_ROW, "unknown_epoch");
    assert!(!ping(&sa, b_ip, 2), "A, two epochs ahead, still reached B");
    let refused = db.drops_of(VTEP_ROW, "unknown_epoch") - before;
    assert!(refused >= 1, "B did not count A's epoch-4 traffic as unknown_epoch");
    // B catches up; traffic flows again.
    assert_eq!(db.key_rotate(&net), 3);
    assert!(wait_for_ping(&sa, b_ip, Duration::from_secs(5)).is_some(), "A (epoch 4) cannot ping B (epoch 3)");
    assert_eq!(db.key_rotate(&net), 4);
    assert!(ping(&sa, b_ip, 2) && ping(&sb, a_ip, 2), "A and B at epoch 4 cannot ping each other");
}
