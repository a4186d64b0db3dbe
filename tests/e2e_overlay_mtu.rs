//! MTU handling of VXLAN overlays across simulated hosts (underlay MTU
//! 1500, so a tunnel carries inner IP packets of at most 1450 bytes) on
//! overlays created with `--mtu 1500`, larger than the tunnel's capacity:
//! DF packets that do not fit get an ICMP "fragmentation needed" (mtu 1450)
//! from the overlay's gateway and count as `too_big_for_tunnel`, TCP still
//! works through path MTU discovery, and with `-o mss-clamp` the MSS of SYNs
//! is clamped to fit. Needs root.

use std::net::Ipv4Addr;
use std::time::Duration;

use vswitch::overlay::{ip_of, sandbox_on};
use vswitch::overlay::{tcp_syn_mss, tunnel_port};
use vswitch::{Capture, Daemon, Frame, Underlay, netns_exec, netns_exec_ok, require_root, tcp_transfer, vtep_daemon};

/// `ip route get DST` in `ns`: the cached path MTU, if any.
fn cached_pmtu(ns: &str, dst: Ipv4Addr) -> Option<u64> {
    let out = netns_exec_ok(ns, "ip", &["-j", "route", "get", &dst.to_string()]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    v[0]["metrics"].as_array()?.iter().find_map(|m| m["mtu"].as_u64())
}

/// The (flags, MSS) of TCP SYNs received in `frames`.
fn syns(frames: &[Frame]) -> Vec<(u8, Option<u16>)> {
    frames.iter().filter(|f| !f.outgoing).filter_map(|f| tcp_syn_mss(&f.bytes)).collect()
}

#[test]
fn overlay_mtu_too_big_icmp_pmtud_and_mss_clamp() {
    if !require_root("overlay_mtu_too_big_icmp_pmtud_and_mss_clamp") {
        return;
    }
    let u = Underlay::new([10, 210, 6], 2);
    let (h1, h2) = (u.host(0), u.host(1));
    let d1 = vtep_daemon(h1, &[]);
    let d2 = vtep_daemon(h2, &[]);
    let (na, nb) = (u.name("oa"), u.name("ob"));
    for d in [&d1, &d2] {
        d.overlay_create(&na, "10.211.7.0/24", 4100, &["--attachable", "--mtu", "1500"]);
        d.overlay_create(&nb, "10.211.8.0/24", 4101, &["--attachable", "--mtu", "1500", "-o", "mss-clamp"]);
    }
    d1.peer_add(h2.vtep(), &[]);
    d2.peer_add(h1.vtep(), &[]);
    let (a1, ea1) = sandbox_on(&d1, &na, "a", "10.211.7.11");
    let (a2, ea2) = sandbox_on(&d2, &na, "a", "10.211.7.12");
    let (b1, eb1) = sandbox_on(&d1, &nb, "b", "10.211.8.11");
    let (b2, eb2) = sandbox_on(&d2, &nb, "b", "10.211.8.12");
    let mtu = vswitch::link_info(&a1, &ea1.ifname).expect("a1 eth0")["mtu"].as_u64();
    assert_eq!(mtu, Some(1500), "endpoint MTU of an overlay created with --mtu 1500");

    // MSS: a SYN from a 1500-byte endpoint offers 1460; on the clamped
    // overlay it arrives with at most 1450 - 40 = 1410. Tiny transfers, so
    // no full-size segment sets a path MTU yet.
    let cap_a2 = Capture::start(&a2, &ea2.ifname).expect("capture in a2");
    let cap_b2 = Capture::start(&b2, &eb2.ifname).expect("capture in b2");
    let cap_b1 = Capture::start(&b1, &eb1.ifname).expect("capture in b1");
    let r = tcp_transfer(&a2, ip_of(&ea2), &a1, 100).expect("tiny TCP on overlay A");
    assert!(r.intact, "{r:?}");
    let r = tcp_transfer(&b2, ip_of(&eb2), &b1, 100).expect("tiny TCP on overlay B");
    assert!(r.intact, "{r:?}");
    // The connections were accepted, so their SYNs (and the SYN-ACK) reached
    // the captured interfaces: wait until the captures have read them.
    let has = |flags: u8| move |frames: &[Frame]| syns(frames).iter().any(|&(f, _)| f == flags);
    cap_a2.wait_for(Duration::from_secs(10), has(0x02));
    cap_b2.wait_for(Duration::from_secs(10), has(0x02));
    cap_b1.wait_for(Duration::from_secs(10), has(0x12));
    let (syn_a, syn_b) = (syns(&cap_a2.stop()), syns(&cap_b2.stop()));
    eprintln!("SYNs (flags, MSS) reaching the server: unclamped overlay {syn_a:?}, clamped overlay {syn_b:?}");
    // Control: without the option the MSS is untouched.
    assert!(syn_a.iter().any(|&(f, mss)| f == 0x02 && mss == Some(1460)), "unclamped SYN: {syn_a:?}");
    let syn = syn_b.iter().find(|&&(f, _)| f == 0x02).unwrap_or_else(|| panic!("no SYN reached b2: {syn_b:?}"));
    assert!(syn.1.is_some_and(|m| m <= 1410), "clamped overlay: SYN arrived with MSS {:?}, want <= 1410", syn.1);
    // The SYN-ACK is a SYN too: clamped on its way back.
    let syn_ack = syns(&cap_b1.stop());
    let sa = syn_ack.iter().find(|&&(f, _)| f == 0x12).unwrap_or_else(|| panic!("no SYN-ACK reached b1: {syn_ack:?}"));
    assert!(sa.1.is_some_and(|m| m <= 1410), "clamped overlay: SYN-ACK arrived with MSS {:?}, want <= 1410", sa.1);

    // too_big_for_tunnel on `d`'s tunnel port to `remote` on overlay `net`.
    let too_big_on = |net: &str, d: &Daemon, remote: &vswitch::UnderlayHost| {
        let row = (tunnel_port(remote.vtep()), net.to_owned());
        d.stats_map().get(&row).map_or(0, |s| s.drops.get("too_big_for_tunnel").copied().unwrap_or(0))
    };
    let too_big = |d: &Daemon, remote: &vswitch::UnderlayHost| too_big_on(&na, d, remote);
    // TCP from a2 (no path MTU known yet) works, by path MTU discovery:
    // the switch answers its full-size segments with ICMP.
    let before = too_big(&d2, h1);
    assert_eq!(cached_pmtu(&a2, ip_of(&ea1)), None, "a2 already had a path MTU to a1");
    let r = tcp_transfer(&a1, ip_of(&ea1), &a2, 4 << 20).expect("TCP a2 -> a1 over a too-small tunnel");
    eprintln!("tcp with PMTUD: {} bytes in {:?} ({:.0} Mbit/s)", r.bytes, r.elapsed, r.mbit_per_s());
    assert!(r.intact, "TCP with PMTUD corrupted: {r:?}");
    assert_eq!(cached_pmtu(&a2, ip_of(&ea1)), Some(1450), "a2 did not learn the path MTU from the switch");
    assert!(too_big(&d2, h1) > before, "host 2 answered no too-big segment: {:?}", d2.stats_map());

    // A DF ping that fits the tunnel exactly (1422 + 28 = 1450) goes through.
    let a2_ip = ip_of(&ea2).to_string();
    let out = netns_exec(&a1, "ping", &["-n", "-M", "do", "-s", "1422", "-c", "2", "-i", "0.2", "-W", "1", &a2_ip]);
    assert!(out.status.success(), "1450-byte DF ping failed: {}", vswitch::text(&out.stdout));
    // One that does not (1472 + 28 = 1500) gets "fragmentation needed" from the gateway.
    let before = too_big(&d1, h2);
    netns_exec(&a1, "ip", &["route", "flush", "cache"]);
    let out = netns_exec(&a1, "ping", &["-n", "-M", "do", "-s", "1472", "-c", "3", "-i", "0.2", "-W", "1", &a2_ip]);
    let printed = format!("{}{}", vswitch::text(&out.stdout), vswitch::text(&out.stderr));
    eprintln!("ping -M do -s 1472:\n{printed}");
    assert!(!out.status.success(), "a 1500-byte DF ping crossed a 1450-byte tunnel:\n{printed}");
    assert!(
        printed.contains("From 10.211.7.1 ") && printed.contains("Frag needed and DF set (mtu = 1450)"),
        "no ICMP fragmentation needed (mtu = 1450) from the gateway 10.211.7.1:\n{printed}"
    );
    assert_eq!(cached_pmtu(&a1, ip_of(&ea2)), Some(1450), "a1's path MTU to a2 after the ICMP");
    let counted = too_big(&d1, h2) - before;
    assert!(counted > 0, "too_big_for_tunnel did not move on host 1's tunnel port: {:?}", d1.stats_map());
    // On the clamped overlay TCP needs no ICMP at all.
    let r = tcp_transfer(&b2, ip_of(&eb2), &b1, 2 << 20).expect("TCP on the clamped overlay");
    assert!(r.intact, "TCP on the clamped overlay corrupted: {r:?}");
    let r = tcp_transfer(&b1, ip_of(&eb1), &b2, 2 << 20).expect("TCP back on the clamped overlay");
    assert!(r.intact, "TCP back on the clamped overlay corrupted: {r:?}");
    let (b_big1, b_big2) = (too_big_on(&nb, &d1, h2), too_big_on(&nb, &d2, h1));
    assert_eq!((b_big1, b_big2), (0, 0), "too-big segments on the clamped overlay (host 1, host 2)");
}
