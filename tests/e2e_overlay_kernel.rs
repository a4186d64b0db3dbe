//! Interoperability of `vswitchd`'s VXLAN with the Linux kernel's: one
//! simulated host runs `vswitchd --vtep`, the other a kernel `vxlan` device
//! bridged to a "container" namespace. ARP, ping and TCP work both ways,
//! and tshark's VXLAN dissector, run on a capture of the underlay, finds
//! valid VXLAN with the overlay's VNI, and different inner flows leaving
//! `vswitchd` from different UDP source ports. Needs root and tshark.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use vswitch::overlay::ip_of;
use vswitch::overlay::tunnel_port;
use vswitch::{
    Capture, Underlay, netns_exec, netns_exec_ok, ping, require_root, require_tshark, tcp_transfer, tshark_fields,
    vtep_daemon, write_pcap,
};

const VNI: u32 = 5001;

fn neighbour_mac(ns: &str, ip: Ipv4Addr, dev: &str) -> Option<String> {
    let out = netns_exec_ok(ns, "ip", &["-j", "neigh", "show", "to", &ip.to_string(), "dev", dev]);
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    v[0]["lladdr"].as_str().map(str::to_owned)
}

#[test]
fn vswitchd_and_kernel_vxlan_interoperate() {
    const TEST: &str = "vswitchd_and_kernel_vxlan_interoperate";
    if !require_root(TEST) || !require_tshark(TEST) {
        return;
    }
    let mut u = Underlay::new([10, 210, 5], 2);
    let (h1, h2) = (u.host(0).clone(), u.host(1).clone());
    // vswitchd's side first: the container's first frames (IPv6 multicast
    // as its interface comes up) would count as unknown_vni otherwise.
    let d1 = vtep_daemon(&h1, &[]);
    let net = u.name("ov");
    d1.overlay_create(&net, "10.211.6.0/24", VNI, &["--attachable"]);
    d1.peer_add(h2.vtep(), &[]);
    let s1 = d1.name("s");
    d1.sandbox_create(&s1);
    let e1 = d1.connect(&net, &s1, Some("10.211.6.11"));

    let container = u.kernel_vxlan_container(1, VNI, &[h1.addr], "10.211.6.22/24");
    let c_ip = Ipv4Addr::new(10, 211, 6, 22);
    let c_mac = vswitch::link_info(&container, "eth0").expect("container eth0")["address"]
        .as_str()
        .expect("container MAC")
        .to_owned();

    let cap = Capture::start(&h1.ns, &h1.ifname).expect("capture on host 1's underlay");
    // ARP + ping, both directions, from empty neighbour caches.
    netns_exec(&s1, "ip", &["neigh", "flush", "all"]);
    netns_exec(&container, "ip", &["neigh", "flush", "all"]);
    assert!(ping(&s1, c_ip, 3), "vswitchd sandbox cannot ping the kernel-VXLAN container");
    assert_eq!(neighbour_mac(&s1, c_ip, &e1.ifname), Some(c_mac.clone()), "sandbox's ARP entry for the container");
    netns_exec(&container, "ip", &["neigh", "flush", "all"]);
    assert!(ping(&container, ip_of(&e1), 3), "kernel-VXLAN container cannot ping the vswitchd sandbox");
    assert_eq!(
        neighbour_mac(&container, ip_of(&e1), "eth0"),
        Some(e1.mac.to_string()),
        "container's ARP entry for the sandbox"
    );

    // TCP both ways (10 MB each), then a few short connections: more inner
    // flows for the source-port check.
    const LEN: u64 = 10_000_000;
    let r = tcp_transfer(&container, c_ip, &s1, LEN).expect("TCP vswitchd -> kernel");
    eprintln!("tcp vswitchd -> kernel vxlan: {} bytes in {:?} ({:.0} Mbit/s)", r.bytes, r.elapsed, r.mbit_per_s());
    assert!(r.intact, "TCP vswitchd -> kernel corrupted: {r:?}");
    let r = tcp_transfer(&s1, ip_of(&e1), &container, LEN).expect("TCP kernel -> vswitchd");
    eprintln!("tcp kernel vxlan -> vswitchd: {} bytes in {:?} ({:.0} Mbit/s)", r.bytes, r.elapsed, r.mbit_per_s());
    assert!(r.intact, "TCP kernel -> vswitchd corrupted: {r:?}");
    for _ in 0..6 {
        let r = tcp_transfer(&container, c_ip, &s1, 20_000).expect("short TCP vswitchd -> kernel");
        assert!(r.intact, "short TCP corrupted: {r:?}");
    }
    let frames = cap.stop();

    // The kernel's VXLAN MAC was learned behind the tunnel port to host 2.
    let fdb: Vec<ctl::proto::FdbEntry> = d1.ctl_json(&["fdb", "show", &net]);
    let entry = fdb.iter().find(|f| f.mac.to_string() == c_mac).unwrap_or_else(|| panic!("{c_mac} not in {fdb:#?}"));
    assert_eq!((entry.port.clone(), entry.remote), (tunnel_port(h2.vtep()), Some(h2.vtep())), "{entry:?}");

    // Decode the underlay with tshark's VXLAN dissector.
    let dir = std::env::temp_dir().join(format!("vswitch-e2e-{}", u.name("pcap")));
    std::fs::create_dir_all(&dir).expect("pcap dir");
    let pcap = dir.join("underlay.pcap");
    write_pcap(&pcap, &frames).expect("write pcap");
    let fields = [
        "ip.src",
        "ip.dst",
        "udp.srcport",
        "udp.dstport",
        "vxlan.flags",
        "vxlan.vni",
        "tcp.srcport",
        "tcp.dstport",
        "tcp.checksum.status",
    ];
    let rows = tshark_fields(&pcap, &["tcp.check_checksum:TRUE"], "vxlan", &fields);
    let (ours, theirs): (Vec<_>, Vec<_>) =
        rows.iter().partition(|r| r[0].split(',').next() == Some(h1.addr.to_string().as_str()));
    assert!(ours.len() > 100, "too few VXLAN packets from vswitchd decoded: {}", ours.len());
    assert!(!theirs.is_empty(), "no VXLAN packets from the kernel decoded");
    let mut ports_of_flow: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for r in &rows {
        let (outer_src, outer_dst) = (r[0].split(',').next().unwrap_or(""), r[1].split(',').next().unwrap_or(""));
        assert!(
            [h1.addr.to_string(), h2.addr.to_string()].iter().any(|a| a == outer_src) && outer_src != outer_dst,
            "unexpected outer addresses: {r:?}"
        );
        assert_eq!(r[3], "4789", "destination port: {r:?}");
        assert_eq!(r[5], VNI.to_string(), "VNI: {r:?}");
        // tshark shows the 16 flag bits; only I (0x0800) may be set.
        let flags = u16::from_str_radix(r[4].trim_start_matches("0x"), 16).unwrap_or(0xffff);
        assert_eq!(flags, 0x0800, "VXLAN flags: {r:?}");
        // Inner TCP checksums of vswitchd's packets are complete (it finishes
        // the partial checksums of its sandboxes' offloaded frames; 1 =
        // good), and a zero result is written as 0, as Linux's TCP
        // segmentation writes it (0xffff, the same value in ones'
        // complement, is accepted by receivers but is "bad" to tshark: one
        // segment in about 65,536 made this test fail before). The kernel's
        // are not checked: seen once in CI, a kernel packet was bad, either
        // a segment that crossed the veth underlay with its inner checksum
        // still partial (CHECKSUM_PARTIAL, valid inside one host) or a zero
        // written as 0xffff by the kernel's software completion.
        let from_vswitchd = outer_src == h1.addr.to_string();
        assert!(
            !from_vswitchd || r[6].is_empty() || r[8] == "1",
            "inner TCP checksum not good: {r:?} (capture kept in {})",
            pcap.display()
        );
        if outer_src == h1.addr.to_string() && !r[6].is_empty() {
            ports_of_flow.entry((r[6].clone(), r[7].clone())).or_default().insert(r[2].clone());
        }
    }
    eprintln!("inner TCP flows from vswitchd -> UDP source ports: {ports_of_flow:?}");
    assert!(ports_of_flow.len() >= 4, "too few inner TCP flows seen from vswitchd: {ports_of_flow:?}");
    for (flow, ports) in &ports_of_flow {
        assert_eq!(ports.len(), 1, "inner flow {flow:?} left from several UDP source ports: {ports:?}");
    }
    let distinct: BTreeSet<&String> = ports_of_flow.values().flatten().collect();
    assert!(distinct.len() >= 2, "all inner flows left from one UDP source port: {ports_of_flow:?}");
    let _ = std::fs::remove_dir_all(&dir);

    let stats = d1.stats_map();
    let vtep = stats.iter().find(|((p, _), _)| p == "vtep").map(|(_, s)| s).expect("vtep row");
    // Everything that arrived was valid VXLAN from a peer (drops for lack
    // of capacity, e.g. a full queue on a busy machine, are only reported).
    eprintln!("underlay endpoint drops: {:?}", vtep.drops);
    for reason in ["vxlan_malformed", "vxlan_bad_flags", "unknown_vni", "unknown_peer"] {
        assert_eq!(vtep.drops.get(reason).copied().unwrap_or(0), 0, "{reason} drops: {vtep:?}");
    }
}
