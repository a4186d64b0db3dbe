//! What a VTEP drops and refuses: crafted UDP datagrams sent to
//! `vswitchd`'s VXLAN port from the underlay are counted by reason
//! (`vxlan_malformed`, `vxlan_bad_flags`, `unknown_vni`, `unknown_peer`,
//! and `oversize` for an inner frame over the overlay's MTU), each by
//! exactly the number sent, and normal overlay traffic keeps flowing; ctl
//! refuses to attach a sandbox to a non-attachable overlay, to make a
//! `bridge` network served by a peer, and to add peers without `--vtep`.
//! Needs root.

use std::collections::BTreeMap;
use std::time::Duration;

use vswitch::overlay::ip_of;
use vswitch::overlay::{VTEP_ROW, tunnel_port};
use vswitch::{Daemon, Underlay, UnderlayHost, ping, require_root, tcp_transfer, udp_send, vtep_daemon, wait_for};

const VNI: u32 = 4200;

/// A VXLAN header (flags byte `flags`, VNI `vni`) followed by `inner`.
fn vxlan(flags: u8, vni: u32, inner: &[u8]) -> Vec<u8> {
    let v = vni.to_be_bytes();
    let mut p = vec![flags, 0, 0, 0, v[1], v[2], v[3], 0];
    p.extend_from_slice(inner);
    p
}

/// A broadcast Ethernet frame from `src` with EtherType 0x88b5 (local
/// experimental) and `payload_len` bytes of payload.
fn inner_frame(src: [u8; 6], payload_len: usize) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.resize(14 + payload_len, 0xab);
    f
}

/// The counters this test watches: (row, reason).
type Watched = BTreeMap<(String, &'static str), u64>;

fn read(d: &Daemon, watched: &[(String, &'static str)]) -> Watched {
    watched.iter().map(|(port, reason)| ((port.clone(), *reason), d.drops_of(port, reason))).collect()
}

/// Datagrams `d`'s underlay endpoint has received.
fn vtep_rx(d: &Daemon) -> u64 {
    let stats = d.stats_map();
    stats
        .iter()
        .find(|((port, _), _)| port == VTEP_ROW)
        .map(|(_, s)| s.rx_packets)
        .unwrap_or_else(|| panic!("no {VTEP_ROW} row: {stats:#?}"))
}

#[test]
fn crafted_underlay_datagrams_are_dropped_and_counted_by_reason() {
    if !require_root("crafted_underlay_datagrams_are_dropped_and_counted_by_reason") {
        return;
    }
    // Host 3 runs no switch and is nobody's peer.
    let u = Underlay::new([10, 210, 7], 3);
    let (h1, h2, h3) = (u.host(0), u.host(1), u.host(2));
    let d1 = vtep_daemon(h1, &[]);
    let d2 = vtep_daemon(h2, &[]);
    let net = u.name("ov");
    for d in [&d1, &d2] {
        d.overlay_create(&net, "10.211.9.0/24", VNI, &["--attachable"]);
    }
    d1.peer_add(h2.vtep(), &[]);
    d2.peer_add(h1.vtep(), &[]);
    let (s1, s2) = (d1.name("s"), d2.name("s"));
    d1.sandbox_create(&s1);
    d2.sandbox_create(&s2);
    let e1 = d1.connect(&net, &s1, Some("10.211.9.11"));
    let e2 = d2.connect(&net, &s2, Some("10.211.9.12"));
    assert!(ping(&s1, ip_of(&e2), 2), "no overlay connectivity before the crafted datagrams");

    let tunnel = tunnel_port(h2.vtep());
    let watched: Vec<(String, &'static str)> = vec![
        (VTEP_ROW.into(), "vxlan_malformed"),
        (VTEP_ROW.into(), "vxlan_bad_flags"),
        (VTEP_ROW.into(), "unknown_vni"),
        (VTEP_ROW.into(), "unknown_peer"),
        (tunnel.clone(), "oversize"),
    ];
    let before = read(&d1, &watched);
    let rx_before = vtep_rx(&d1);
    let src = [0x02, 0x00, 0x5e, 0x10, 0x00, 0x01];
    let small = inner_frame(src, 46);
    // (what, sender, datagram, copies, index of the counter in `watched`)
    let sends: [(&str, &UnderlayHost, Vec<u8>, usize, usize); 5] = [
        // 4 bytes: shorter than a VXLAN header.
        ("vxlan_malformed", h2, vec![0x08, 0, 0, 0], 3, 0),
        // A header and an inner Ethernet header, but the I flag is clear.
        ("vxlan_bad_flags", h2, vxlan(0x00, VNI, &small[..14]), 4, 1),
        // A valid packet for a VNI nobody uses.
        ("unknown_vni", h2, vxlan(0x08, VNI + 1, &small), 5, 2),
        // A valid packet for the right VNI from an address that is not a peer.
        ("unknown_peer", h3, vxlan(0x08, VNI, &small), 6, 3),
        // From the peer, an inner frame over the overlay's 1450-byte MTU
        // (the sender's kernel fragments the datagram on the underlay).
        ("oversize", h2, vxlan(0x08, VNI, &inner_frame(src, 1600)), 2, 4),
    ];
    for (what, from, payload, count, _) in &sends {
        let copies = vec![payload.clone(); *count];
        udp_send(&from.ns, from.addr, h1.vtep(), &copies).unwrap_or_else(|e| panic!("sending {what}: {e}"));
    }
    let expected: Watched = sends
        .iter()
        .map(|(_, _, _, count, row)| (watched[*row].clone(), before[&watched[*row]] + *count as u64))
        .collect();
    // Wait until host 1's underlay endpoint has received every datagram sent
    // (each is counted there before it is classified, and refused or
    // forwarded in the same pass, so its drop is counted by then) and every
    // counter got there; counters only grow, so they are final then.
    let sent: u64 = sends.iter().map(|(_, _, _, count, _)| *count as u64).sum();
    wait_for(Duration::from_secs(10), || {
        (vtep_rx(&d1) >= rx_before + sent && read(&d1, &watched) == expected).then_some(())
    });
    let received = vtep_rx(&d1) - rx_before;
    let after = read(&d1, &watched);
    let delta: BTreeMap<_, _> = after.iter().map(|(k, v)| (format!("{}/{}", k.0, k.1), v - before[k])).collect();
    eprintln!("drop counters moved by {delta:?} ({received} datagrams received)");
    assert!(received >= sent, "host 1's underlay endpoint received {received} of the {sent} datagrams within 10 s");
    assert_eq!(after, expected, "drop counters (before {before:?}); all stats: {:#?}", d1.stats_map());

    // Normal traffic still flows, both ways.
    assert!(ping(&s1, ip_of(&e2), 2), "overlay ping failed after the crafted datagrams");
    let r = tcp_transfer(&s1, ip_of(&e1), &s2, 1 << 20).expect("TCP after the crafted datagrams");
    assert!(r.intact, "TCP after the crafted datagrams corrupted: {r:?}");
}

#[test]
fn ctl_refuses_non_attachable_overlays_bridge_peers_and_peers_without_vtep() {
    if !require_root("ctl_refuses_non_attachable_overlays_bridge_peers_and_peers_without_vtep") {
        return;
    }
    let u = Underlay::new([10, 210, 8], 2);
    let d = vtep_daemon(u.host(0), &[]);
    let (overlay, bridge) = (u.name("ov"), u.name("br"));
    let info = d.overlay_create(&overlay, "10.211.10.0/24", 4300, &[]);
    assert!(!info.attachable, "overlay created without --attachable is attachable: {info:?}");
    d.network_create(&bridge, "10.211.11.0/24");
    let s = d.name("s");
    d.sandbox_create(&s);

    let err = d.ctl_err(&["network", "connect", &overlay, &s]);
    assert!(
        err.contains("--attachable"),
        "connect to a non-attachable overlay: error should mention --attachable: {err}"
    );
    let sandboxes: Vec<ctl::proto::SandboxInfo> = d.ctl_json(&["sandbox", "ls"]);
    let mine = sandboxes.iter().find(|x| x.name == s).expect("sandbox listed");
    assert!(mine.endpoints.is_empty(), "refused connect left an endpoint: {mine:?}");

    let peer = u.host(1).vtep().to_string();
    let err = d.ctl_err(&["peer", "add", &peer, "--network", &bridge]);
    eprintln!("peer add --network <bridge>: {err}");
    assert!(err.contains(&bridge), "peer add on a bridge network: error should name the network: {err}");
    assert!(d.peers().is_empty(), "refused peer add left a peer: {:?}", d.peers());
    // The same peer on the overlay is fine.
    d.peer_add(u.host(1).vtep(), &[&overlay]);
    assert_eq!(d.peers().len(), 1);

    // A daemon without --vtep has no underlay: peers make no sense.
    let plain = Daemon::start();
    let err = plain.ctl_err(&["peer", "add", &peer]);
    assert!(err.contains("--vtep"), "peer add without --vtep: error should mention --vtep: {err}");
    assert!(plain.peers().is_empty(), "{:?}", plain.peers());
}
