//! What a VTEP drops on an encrypted overlay, counted by reason on its
//! `vtep` row while traffic keeps flowing. Real encrypted datagrams from
//! host A to host B are captured on A's underlay and re-sent from A's
//! namespace (same source address, so they pass the peer check): one with a
//! bit flipped in the ciphertext is `auth_failed`, an exact copy of one B
//! already got is `replayed`, one with its epoch moved out of B's window is
//! `unknown_epoch`, a truncated one `crypto_malformed`, one relabelled to a
//! plain overlay's VNI `unexpected_encrypted`, and plain VXLAN for the
//! encrypted VNI `unencrypted`. A third host with a different cluster secret
//! cannot reach B's sandbox, and B counts its traffic as `auth_failed`
//! without learning anything from it. Needs root.

use std::collections::BTreeMap;
use std::time::Duration;

use ctl::proto::{FdbEntry, PortStats};
use vswitch::encrypted::{
    CRYPTO_DROPS, ENCRYPTED_HEADER_LEN, EncryptedHeader, SecretFile, TAG_LEN, UdpDatagram, encrypted_vtep_daemon,
    udp_datagram,
};
use vswitch::overlay::VTEP_ROW;
use vswitch::overlay::{ip_of, sandbox_on, tunnel_port};
use vswitch::underlay::{VXLAN_PORT, ip};
use vswitch::{Capture, Daemon, Underlay, UnderlayHost, ping, require_root, udp_send, wait_for, wait_for_ping};

const VNI: u32 = 5100;
const PLAIN_VNI: u32 = 5101;
/// Every drop reason of the encrypted receive path: the crypto ones, and
/// a datagram from a VTEP that is no peer.
fn reasons() -> impl Iterator<Item = &'static str> {
    CRYPTO_DROPS.into_iter().chain(["unknown_peer"])
}

/// The crypto drop counters of `d`'s underlay endpoint, and the datagrams
/// it has received (each counted there before it is opened or refused).
fn vtep_counters(d: &Daemon) -> (BTreeMap<&'static str, u64>, u64) {
    let stats: Vec<PortStats> = d.ctl_json(&["stats"]);
    let row = stats.iter().find(|s| s.port == VTEP_ROW).unwrap_or_else(|| panic!("no {VTEP_ROW} row: {stats:#?}"));
    (reasons().map(|r| (r, row.drops.get(r).copied().unwrap_or(0))).collect(), row.rx_packets)
}

/// The crypto drop counters of `d`'s underlay endpoint.
fn drops(d: &Daemon) -> BTreeMap<&'static str, u64> {
    vtep_counters(d).0
}

/// Waits until `d`'s underlay endpoint has received the `sent` datagrams
/// sent to it since `before` was read (so each has been opened or refused,
/// and counted) and its counters are `before` plus `expected` (reason,
/// count), then asserts they are exactly that.
fn expect_drops(
    d: &Daemon,
    what: &str,
    before: &(BTreeMap<&'static str, u64>, u64),
    sent: u64,
    expected: &[(&str, u64)],
) {
    let (before, rx_before) = before;
    let mut want = before.clone();
    for (reason, n) in expected {
        *want.get_mut(reason).unwrap_or_else(|| panic!("unwatched reason {reason}")) += n;
    }
    // Counters only grow: once every datagram has been counted, they are final.
    wait_for(Duration::from_secs(10), || {
        let (now, rx) = vtep_counters(d);
        (rx >= rx_before + sent && now == want).then_some(())
    });
    let (after, rx) = vtep_counters(d);
    let moved: BTreeMap<_, _> =
        after.iter().map(|(k, v)| (*k, v.wrapping_sub(before[k]))).filter(|(_, v)| *v != 0).collect();
    eprintln!("{what}: drops moved by {moved:?} ({} datagrams received)", rx - rx_before);
    assert!(
        rx >= rx_before + sent,
        "{what}: the underlay endpoint received {} of the {sent} datagrams sent within 10 s",
        rx - rx_before
    );
    assert_eq!(after, want, "{what}: expected drops {expected:?}, counters moved by {moved:?}");
}

/// The encrypted datagrams `from` sent to `to`, in capture order, with
/// their headers, that carry exactly one inner frame of `inner_len` bytes.
fn sealed_from(
    frames: &[vswitch::Frame],
    from: &UnderlayHost,
    to: &UnderlayHost,
    inner_len: usize,
) -> Vec<UdpDatagram> {
    frames
        .iter()
        .filter_map(|f| udp_datagram(&f.bytes))
        .filter(|d| d.src == from.addr && d.dst == to.addr && d.dst_port == VXLAN_PORT)
        .filter(|d| d.payload.len() == inner_len + ENCRYPTED_HEADER_LEN + TAG_LEN)
        .filter(|d| EncryptedHeader::parse(&d.payload).is_some_and(|h| h.vni == VNI))
        .collect()
}

/// Size of the Ethernet frame of a default 56-byte ping.
const PING_FRAME: usize = 14 + 20 + 8 + 56;

#[test]
fn tampered_replayed_unencrypted_and_foreign_secret_datagrams_are_dropped_and_counted() {
    if !require_root("tampered_replayed_unencrypted_and_foreign_secret_datagrams_are_dropped_and_counted") {
        return;
    }
    let u = Underlay::new([10, 210, 32], 3);
    let (ha, hb, hc) = (u.host(0), u.host(1), u.host(2));
    let secret = SecretFile::generate(0o600);
    let other_secret = SecretFile::generate(0o600);
    assert_ne!(secret.secret(), other_secret.secret(), "secret generate repeated itself");
    let da = encrypted_vtep_daemon(ha, &secret, &[]);
    let db = encrypted_vtep_daemon(hb, &secret, &[]);
    let dc = encrypted_vtep_daemon(hc, &other_secret, &[]);
    let (net, plain) = (u.name("en"), u.name("pl"));
    for d in [&da, &db, &dc] {
        d.overlay_create(&net, "10.211.33.0/24", VNI, &["--attachable", "-o", "encrypted"]);
    }
    db.overlay_create(&plain, "10.211.34.0/24", PLAIN_VNI, &["--attachable"]);
    da.peer_add(hb.vtep(), &[]);
    db.peer_add(ha.vtep(), &[]);
    db.peer_add(hc.vtep(), &[]);
    dc.peer_add(hb.vtep(), &[]);
    let (sa, ea) = sandbox_on(&da, &net, "s", "10.211.33.11");
    let (sb, eb) = sandbox_on(&db, &net, "s", "10.211.33.12");
    let b_ip = ip_of(&eb);
    assert!(ping(&sa, b_ip, 2), "A cannot ping B over the encrypted overlay");

    // Datagrams B received: a few pings, captured leaving A.
    let cap = Capture::start(&ha.ns, &ha.ifname).expect("capture on A's underlay");
    assert!(ping(&sa, b_ip, 3), "A cannot ping B");
    let delivered = sealed_from(&cap.stop(), ha, hb, PING_FRAME);
    assert!(!delivered.is_empty(), "no sealed echo requests captured from A to B");
    // Datagrams B never received: B's underlay port on the underlay bridge
    // is down while A pings it.
    let port_b = "h2";
    ip(&["-n", u.switch_ns(), "link", "set", port_b, "down"]);
    let cap = Capture::start(&ha.ns, &ha.ifname).expect("capture on A's underlay");
    let reached = ping(&sa, b_ip, 3);
    let undelivered = sealed_from(&cap.stop(), ha, hb, PING_FRAME);
    ip(&["-n", u.switch_ns(), "link", "set", port_b, "up"]);
    assert!(!reached, "A reached B with B's underlay port down");
    assert!(undelivered.len() >= 2, "fewer than 2 sealed echo requests captured while B was cut off");
    assert!(wait_for_ping(&sa, b_ip, Duration::from_secs(10)).is_some(), "A cannot ping B after B's port came back");
    let header = |d: &UdpDatagram| EncryptedHeader::parse(&d.payload).expect("parsed before");
    eprintln!(
        "delivered {:?}\nundelivered {:?}",
        delivered.iter().map(header).collect::<Vec<_>>(),
        undelivered.iter().map(header).collect::<Vec<_>>()
    );
    let resend = |payload: Vec<u8>| udp_send(&ha.ns, ha.addr, hb.vtep(), &[payload]).expect("send from A");

    // (a) One bit flipped in the ciphertext of a datagram B has not seen.
    let before = vtep_counters(&db);
    let mut tampered = undelivered[0].payload.clone();
    tampered[ENCRYPTED_HEADER_LEN + 20] ^= 0x10;
    resend(tampered);
    expect_drops(&db, "bit flipped in the ciphertext", &before, 1, &[("auth_failed", 1)]);
    assert!(ping(&sa, b_ip, 1), "A cannot ping B after the tampered datagram");

    // (b) An exact copy of a datagram B already got.
    let before = vtep_counters(&db);
    resend(delivered[0].payload.clone());
    expect_drops(&db, "exact copy of a delivered datagram", &before, 1, &[("replayed", 1)]);
    assert!(ping(&sa, b_ip, 1), "A cannot ping B after the replay");

    // Control for (a): the untampered datagram opens late (it is still in the
    // replay window), and a second copy of it is a replay.
    let before = vtep_counters(&db);
    let from_a = (tunnel_port(ha.vtep()), net.clone());
    let entered_from_a = || db.stats_map().get(&from_a).map_or(0, |s| s.rx_packets);
    let opened_before = entered_from_a();
    resend(undelivered[0].payload.clone());
    expect_drops(&db, "late but genuine datagram", &before, 1, &[]);
    // It was opened: its frame entered B's switch from A's tunnel port.
    let opened = wait_for(Duration::from_secs(10), || (entered_from_a() > opened_before).then_some(()));
    assert!(opened.is_some(), "the late but genuine datagram was not opened: nothing entered from {}", from_a.0);
    resend(undelivered[0].payload.clone());
    expect_drops(&db, "second copy of the late datagram", &before, 2, &[("replayed", 1)]);

    // (c) Plain VXLAN for the encrypted VNI, from a peer.
    let before = vtep_counters(&db);
    let v = VNI.to_be_bytes();
    let mut plain_vxlan = vec![0x08, 0, 0, 0, v[1], v[2], v[3], 0];
    plain_vxlan.extend_from_slice(&[0xff; 6]);
    plain_vxlan.extend_from_slice(&[0x02, 0x00, 0x5e, 0x10, 0x00, 0x01, 0x88, 0xb5]);
    plain_vxlan.resize(8 + 60, 0xab);
    resend(plain_vxlan);
    expect_drops(&db, "plain VXLAN for the encrypted VNI", &before, 1, &[("unencrypted", 1)]);
    assert!(ping(&sa, b_ip, 1), "A cannot ping B after the plain VXLAN datagram");

    // The header is checked too: an epoch outside B's window (B accepts
    // epochs -1..=1 around 0), a datagram cut short of its tag, and an
    // encrypted datagram relabelled with the VNI of a plain overlay of B's.
    let before = vtep_counters(&db);
    let mut future = undelivered[1].payload.clone();
    future[4..8].copy_from_slice(&5u32.to_be_bytes());
    resend(future);
    resend(undelivered[1].payload[..ENCRYPTED_HEADER_LEN + TAG_LEN - 1].to_vec());
    let mut relabelled = undelivered[1].payload.clone();
    relabelled[1..4].copy_from_slice(&PLAIN_VNI.to_be_bytes()[1..]);
    resend(relabelled);
    expect_drops(
        &db,
        "foreign epoch, truncated, plain overlay's VNI",
        &before,
        3,
        &[("unknown_epoch", 1), ("crypto_malformed", 1), ("unexpected_encrypted", 1)],
    );
    assert!(ping(&sa, b_ip, 1), "A cannot ping B after the malformed datagrams");

    // (d) Host C has another secret: B cannot open its traffic (nor C B's).
    // C's sandbox only now comes up, so its first frames count here too.
    let before_b = drops(&db);
    let before_c = drops(&dc);
    let (sc, ec) = sandbox_on(&dc, &net, "s", "10.211.33.13");
    assert!(!ping(&sc, b_ip, 3), "C, with a different secret, reached B's sandbox");
    let after_b = drops(&db);
    let moved = |after: &BTreeMap<&str, u64>, before: &BTreeMap<&str, u64>| -> BTreeMap<&'static str, u64> {
        reasons().map(|r| (r, after[r] - before[r])).filter(|(_, n)| *n > 0).collect()
    };
    let on_b = moved(&after_b, &before_b);
    eprintln!("C pinging B: B's drops moved by {on_b:?}");
    assert!(on_b.get("auth_failed").is_some_and(|n| *n >= 1), "B did not count C's traffic as auth_failed: {on_b:?}");
    assert_eq!(on_b.keys().copied().collect::<Vec<_>>(), vec!["auth_failed"], "B's drops for C's traffic: {on_b:?}");
    assert!(!ping(&sb, ip_of(&ec), 2), "B reached C's sandbox across different secrets");
    let on_c = moved(&drops(&dc), &before_c);
    eprintln!("B pinging C: C's drops moved by {on_c:?}");
    assert!(on_c.get("auth_failed").is_some_and(|n| *n >= 1), "C did not count B's traffic as auth_failed: {on_c:?}");
    // Nothing was learned from C's unauthenticated frames.
    let fdb: Vec<FdbEntry> = db.ctl_json(&["fdb", "show", &net]);
    assert!(!fdb.iter().any(|f| f.mac == ec.mac), "B learned C's MAC from frames it could not open: {fdb:#?}");
    // A and B are unaffected.
    assert!(ping(&sa, b_ip, 2), "A cannot ping B after C's traffic");
    assert!(ping(&sb, ip_of(&ea), 2), "B cannot ping A after C's traffic");
}
