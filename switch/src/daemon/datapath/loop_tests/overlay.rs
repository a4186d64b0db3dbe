//! Overlay networks over the in-memory underlay: replication and split
//! horizon, underlay drops and errors, software GRO toward TAPs and UDP GRO
//! trains from the underlay, segmentation into GSO sends, MSS clamping,
//! ICMP "fragmentation needed" from the gateway, and encryption between
//! two datapaths.

use std::net::SocketAddr;

use etherparse::Icmpv4Type;
use etherparse::icmpv4::DestUnreachableHeader;

use super::super::handle::NetworkSpec;
use super::super::testing::frames::{
    BROADCAST, Tcp, ethernet, frame, gw_mac, icmp, ip, mac, pattern, tcp_mss, tcp4_checksums_ok, tso_hdr, udp, vtep,
    vxlan, with_partial_tcp4_checksum,
};
use super::super::testing::memory::Fault;
use super::super::testing::{Harness, Setup, overlay_network};
use crate::counters::DropReason;

const VNI: u32 = 4242;

#[test]
fn floods_go_to_every_peer_known_unicast_to_one_and_nothing_returns_into_a_tunnel() {
    let mut h = Harness::with(Setup::host(1));
    let net = h.network(overlay_network(0, VNI));
    let (p2, p3) = (h.peer(net, vtep(2)), h.peer(net, vtep(3)));
    let a = h.endpoint(net);

    h.inject(a, &frame(BROADCAST, mac(2), 1));
    h.run_until_idle();
    let mut sent = h.sent_datagrams();
    sent.sort_by_key(|d| d.to);
    assert_eq!(sent.iter().map(|d| d.to).collect::<Vec<_>>(), vec![vtep(2), vtep(3)], "head-end replication");
    for d in &sent {
        assert_eq!(d.bytes, vxlan(VNI, &frame(BROADCAST, mac(2), 1)));
    }

    // Station 7 behind host 2 broadcasts: a gets it, host 3 does not
    // (split horizon), and 7 is learned on host 2's tunnel port.
    h.inject_datagram(SocketAddr::new(vtep(2).ip(), 51_000), &vxlan(VNI, &frame(BROADCAST, mac(7), 2)));
    h.run_until_idle();
    assert_eq!(h.sent_frames(a), vec![frame(BROADCAST, mac(7), 2)]);
    assert!(h.sent_datagrams().is_empty(), "nothing from a tunnel goes back into one");
    assert_eq!(h.lookup(net, mac(7)), Some(p2));

    h.inject(a, &frame(mac(7), mac(2), 3));
    h.run_until_idle();
    let sent = h.sent_datagrams();
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].to, &sent[0].bytes), (vtep(2), &vxlan(VNI, &frame(mac(7), mac(2), 3))));
    assert_eq!(h.counters(p2).rx_packets, 1);
    assert_eq!(h.counters(p3).rx_packets, 0);
    assert_eq!(h.vtep_counters().tx_packets, 3);
    assert_eq!(h.vtep_counters().rx_packets, 1);
}

#[test]
fn underlay_datagrams_the_switch_cannot_use_are_counted_on_the_vtep() {
    let mut h = Harness::with(Setup::host(1));
    let net = h.network(overlay_network(0, VNI));
    h.peer(net, vtep(2));
    let a = h.endpoint(net);
    let inner = frame(BROADCAST, mac(7), 1);
    h.inject_datagram(SocketAddr::from(([192, 0, 2, 9], 4789)), &vxlan(VNI, &inner));
    h.inject_datagram(vtep(2), &vxlan(VNI + 1, &inner));
    h.inject_datagram(vtep(2), &[0x08, 0, 0]);
    let mut no_flag = vxlan(VNI, &inner);
    no_flag[0] = 0;
    h.inject_datagram(vtep(2), &no_flag);
    h.inject_datagram(vtep(2), &[0xe1; 30]); // an encrypted header on a plain network
    h.inject_datagram(vtep(2), &vxlan(VNI, &inner));
    h.run_until_idle();
    let drops = h.vtep_counters().drops;
    assert_eq!(drops.get(DropReason::UnknownPeer), 1);
    assert_eq!(drops.get(DropReason::UnknownVni), 1);
    assert_eq!(drops.get(DropReason::VxlanMalformed), 1);
    assert_eq!(drops.get(DropReason::VxlanBadFlags), 1);
    assert_eq!(drops.get(DropReason::CryptoMalformed), 1);
    assert_eq!(drops.total(), 5);
    assert_eq!(h.sent_frames(a), vec![inner], "the good one after them arrives");
}

#[test]
fn tcp_segments_from_a_tunnel_reach_the_tap_as_one_gso_frame() {
    let mut h = Harness::with(Setup::host(1));
    let net = h.network(overlay_network(0, VNI));
    h.peer(net, vtep(2));
    let a = h.endpoint(net);
    h.inject(a, &frame(BROADCAST, mac(3), 0));
    h.run_until_idle();
    h.sent_datagrams();

    // Station 7 (host 2) streams to station 3 (on a): four full segments.
    let mut tcp = Tcp::between(7, 3);
    let payload = pattern(4 * 1400, 9);
    for (k, chunk) in payload.chunks(1400).enumerate() {
        tcp.seq = 1_000 + (k * 1400) as u32;
        tcp.psh = k == 3;
        h.inject_datagram(vtep(2), &vxlan(VNI, &tcp.frame(chunk)));
    }
    h.run_until_idle();
    let sent = h.sent(a);
    assert_eq!(sent.len(), 1, "one write into the TAP");
    assert_eq!(sent[0].hdr, tso_hdr(1400));
    let merged = etherparse::SlicedPacket::from_ethernet(&sent[0].frame).expect("a TCP/IPv4 frame");
    let (Some(etherparse::NetSlice::Ipv4(ip4)), Some(etherparse::TransportSlice::Tcp(seg))) =
        (&merged.net, &merged.transport)
    else {
        panic!("not TCP/IPv4");
    };
    assert_eq!(ip4.header().total_len(), 40 + 4 * 1400);
    let header = ip4.header().to_header();
    assert_eq!(header.calc_header_checksum(), header.header_checksum);
    assert_eq!((seg.sequence_number(), seg.psh(), seg.ack()), (1_000, true, true));
    assert_eq!(seg.payload(), &payload[..]);
    assert_eq!(h.counters(a).tx_packets, 4, "counted per segment the bridge sent");
    let c = h.vtep_counters();
    assert_eq!((c.gro_frames, c.gro_segments), (1, 4), "one merge of four segments");
}

#[test]
fn syns_are_clamped_to_the_tunnel_on_mss_clamp_networks_only() {
    let mut h = Harness::with(Setup::host(1));
    let clamped = h.network(NetworkSpec { mss_clamp: true, ..overlay_network(0, VNI) });
    let plain = h.network(overlay_network(1, VNI + 1));
    h.peer(clamped, vtep(2));
    h.peer(plain, vtep(2));
    let (a, b) = (h.endpoint(clamped), h.endpoint(clamped));
    let (c, d) = (h.endpoint(plain), h.endpoint(plain));
    let syn = Tcp { syn_mss: Some(1460), ..Tcp::between(2, 3) }.frame(&[]);

    h.inject(a, &syn);
    h.inject(c, &syn);
    h.run_until_idle();
    let to_b = h.sent_frames(b);
    assert_eq!(to_b.len(), 1);
    assert_eq!(tcp_mss(&to_b[0]), Some(1450 - 40), "the network's 1450-byte MTU, less IP and TCP headers");
    assert!(tcp4_checksums_ok(&to_b[0]), "the checksum follows the rewrite");
    assert_eq!(h.sent_frames(d), vec![syn.clone()], "no clamping without -o mss-clamp");
    let datagrams = h.sent_datagrams();
    assert_eq!(datagrams.len(), 2);
    let clamped_out = datagrams.iter().find(|dg| dg.bytes[4..7] == VNI.to_be_bytes()[1..]).expect("one per network");
    assert_eq!(clamped_out.bytes[8..], to_b[0][..], "the tunnel carries the clamped SYN");
}

#[test]
fn a_packet_too_big_for_the_tunnel_is_answered_by_the_gateway() {
    let mut h = Harness::with(Setup::host(1));
    // A network MTU above what the tunnel carries (1450).
    let net = h.network(NetworkSpec { mtu: 1500, ..overlay_network(0, VNI) });
    let p2 = h.peer(net, vtep(2));
    let a = h.endpoint(net);
    h.inject_datagram(vtep(2), &vxlan(VNI, &frame(BROADCAST, mac(7), 0)));
    h.run_until_idle();
    h.sent(a);

    // 1500 bytes of IP with DF from station 2 to station 7 behind the tunnel.
    let big = udp((mac(2), ip(2), 5000), (mac(7), ip(7), 6000), &[0x33; 1472]);
    h.inject(a, &big);
    h.run_until_idle();
    assert!(h.sent_datagrams().is_empty(), "never fragmented");
    assert_eq!(h.drops(p2, DropReason::TooBigForTunnel), 1);
    let answers = h.sent_frames(a);
    assert_eq!(answers.len(), 1);
    let answer = icmp(&answers[0]).expect("an ICMP message");
    assert_eq!((answer.src_mac, answer.dst_mac), (gw_mac(), mac(2)));
    assert_eq!((answer.src, answer.dst), (ip(1), ip(2)), "from the network's gateway");
    assert_eq!(
        answer.kind,
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1450 })
    );
    assert_eq!(answer.payload[..28], big[14..14 + 28], "it quotes the IP header and 8 bytes");

    // A packet that fits goes through.
    let fits = udp((mac(2), ip(2), 5000), (mac(7), ip(7), 6000), &[0x33; 1422]);
    h.inject(a, &fits);
    h.run_until_idle();
    assert_eq!(h.sent_datagrams().len(), 1);
    assert_eq!(h.drops(p2, DropReason::TooBigForTunnel), 1);
}

#[test]
fn an_encrypted_overlay_carries_frames_sealed_by_one_datapath_and_opened_by_the_other() {
    let (mut one, mut two) = (Harness::with(Setup::host(1)), Harness::with(Setup::host(2)));
    let spec = NetworkSpec { key_epoch: Some(3), mtu: 1418, ..overlay_network(0, 4300) };
    let net = one.network(spec);
    two.network(spec);
    one.peer(net, vtep(2));
    let p1 = two.peer(net, vtep(1));
    let (a, b) = (one.endpoint(net), two.endpoint(net));

    let secret = b"sealed by one, opened by the other";
    let there = udp((mac(2), ip(2), 5000), (mac(3), ip(3), 6000), secret);
    one.inject(a, &there);
    one.run_until_idle();
    let sent = one.sent_datagrams();
    assert_eq!(sent.len(), 1);
    let sealed = sent[0].bytes.clone();
    assert_eq!(sealed[0], 0xe1, "the encrypted type, VXLAN's I flag clear");
    assert_eq!(sealed[1..4], 4300u32.to_be_bytes()[1..]);
    assert_eq!(sealed[4..8], 3u32.to_be_bytes(), "the key epoch");
    assert_eq!(sealed.len(), 24 + there.len() + 16, "header, frame, tag");
    assert!(!sealed.windows(secret.len()).any(|w| w == secret), "no plaintext on the wire");

    let from = SocketAddr::new(vtep(1).ip(), 49_152);
    two.inject_datagram(from, &sealed);
    two.run_until_idle();
    assert_eq!(two.sent_frames(b), vec![there.clone()]);
    assert_eq!(two.lookup(net, mac(2)), Some(p1));

    // The same datagram again is a replay; a flipped bit in the next one
    // fails the tag.
    one.inject(a, &there);
    one.run_until_idle();
    let mut tampered = one.sent_datagrams().remove(0).bytes;
    tampered[30] ^= 1;
    two.inject_datagram(from, &sealed);
    two.inject_datagram(from, &tampered);
    two.run_until_idle();
    assert!(two.sent(b).is_empty());
    let drops = two.vtep_counters().drops;
    assert_eq!((drops.get(DropReason::Replayed), drops.get(DropReason::AuthFailed)), (1, 1));

    // And back, as known unicast, carried by the harness's wire.
    let back = udp((mac(3), ip(3), 6000), (mac(2), ip(2), 5000), b"and back");
    two.inject(b, &back);
    two.run_until_idle();
    assert!(two.carry(&mut one).is_empty(), "all of it to host 1");
    one.run_until_idle();
    assert_eq!(one.sent_frames(a), vec![back]);
    assert_eq!(one.vtep_counters().drops.total(), 0);
}

#[test]
fn an_aes_256_gcm_overlay_carries_frames_between_its_hosts_and_drops_the_other_ciphers_by_name() {
    let (mut one, mut two) = (Harness::with(Setup::host(1)), Harness::with(Setup::host(2)));
    let aes =
        NetworkSpec { key_epoch: Some(3), mtu: 1418, cipher: crypto::Cipher::Aes256Gcm, ..overlay_network(0, 4300) };
    let net = one.network(aes);
    two.network(aes);
    one.peer(net, vtep(2));
    two.peer(net, vtep(1));
    let (a, b) = (one.endpoint(net), two.endpoint(net));

    let secret = b"sealed with AES-256-GCM";
    let there = udp((mac(2), ip(2), 5000), (mac(3), ip(3), 6000), secret);
    one.inject(a, &there);
    one.run_until_idle();
    let sealed = one.sent_datagrams().remove(0).bytes;
    assert_eq!(sealed[0], 0xe5, "the AES-256-GCM type byte");
    assert_eq!(sealed.len(), 24 + there.len() + 16, "the same overhead as ChaCha20-Poly1305");
    assert!(!sealed.windows(secret.len()).any(|w| w == secret), "no plaintext on the wire");
    let from = SocketAddr::new(vtep(1).ip(), 49_152);
    two.inject_datagram(from, &sealed);
    two.run_until_idle();
    assert_eq!(two.sent_frames(b), vec![there.clone()]);

    // A host whose network has the default cipher: each side refuses the
    // other's packets by name, and nothing is delivered.
    let mut three = Harness::with(Setup::host(3));
    let chacha = three.network(NetworkSpec { cipher: crypto::Cipher::ChaCha20Poly1305, ..aes });
    three.peer(chacha, vtep(1));
    three.peer(chacha, vtep(2));
    two.peer(net, vtep(3));
    let c = three.endpoint(chacha);
    three.inject(c, &udp((mac(4), ip(4), 5000), (mac(3), ip(3), 6000), b"chacha"));
    three.run_until_idle();
    let chacha_sealed = three.sent_datagrams().remove(0).bytes;
    assert_eq!(chacha_sealed[0], 0xe1);
    two.inject_datagram(SocketAddr::new(vtep(3).ip(), 49_152), &chacha_sealed);
    two.run_until_idle();
    assert!(two.sent(b).is_empty());
    assert_eq!(two.vtep_counters().drops.get(DropReason::CipherMismatch), 1);
    three.inject_datagram(from, &sealed);
    three.run_until_idle();
    assert!(three.sent(c).is_empty());
    assert_eq!(three.vtep_counters().drops.get(DropReason::CipherMismatch), 1);
}

#[test]
fn a_tso_frame_leaves_as_checksummed_segments_in_gso_sends() {
    let mut h = Harness::with(Setup::host(1));
    let net = h.network(overlay_network(0, VNI));
    let p2 = h.peer(net, vtep(2));
    let a = h.endpoint(net);
    h.inject_datagram(vtep(2), &vxlan(VNI, &frame(BROADCAST, mac(7), 0)));
    h.run_until_idle();
    h.sent(a);

    // Four 1410-byte segments (the most a 1450-byte MTU carries) in one frame.
    let payload = pattern(4 * 1410, 3);
    let tso = with_partial_tcp4_checksum(Tcp::between(2, 7).frame(&payload));
    h.inject_with_hdr(a, tso_hdr(1410), &tso);
    h.run_until_idle();
    let sent = h.sent_datagrams();
    assert_eq!(sent.len(), 4);
    assert_eq!(sent.iter().map(|d| d.send).collect::<Vec<_>>(), vec![0; 4], "one GSO send");
    assert!(sent.iter().all(|d| d.sender == sent[0].sender && d.to == vtep(2)), "one flow, one source port");
    let mut carried = Vec::new();
    for (k, d) in sent.iter().enumerate() {
        assert_eq!(d.bytes[..8], vxlan(VNI, &[])[..]);
        let inner = &d.bytes[8..];
        assert_eq!(inner.len(), 14 + 1450, "segment {k} fills the MTU");
        assert!(tcp4_checksums_ok(inner), "segment {k}'s checksums are complete");
        let seg = etherparse::SlicedPacket::from_ethernet(inner).expect("a TCP/IPv4 frame");
        let Some(etherparse::TransportSlice::Tcp(tcp)) = &seg.transport else { panic!("not TCP") };
        assert_eq!(tcp.sequence_number(), 1_000 + 1410 * k as u32);
        carried.extend_from_slice(tcp.payload());
    }
    assert_eq!(carried, payload);

    // A kernel that takes two segments per send gets two sends.
    h.underlay().set_gso_segments(2);
    h.inject_with_hdr(a, tso_hdr(1410), &tso);
    h.run_until_idle();
    let sends: Vec<usize> = h.sent_datagrams().iter().map(|d| d.send).collect();
    assert_eq!(sends, vec![1, 1, 2, 2]);

    // A full socket buffer drops the frame, counted on the tunnel port.
    h.underlay().fail_sends(Fault::WouldBlock, 1);
    h.inject_with_hdr(a, tso_hdr(1410), &tso);
    h.run_until_idle();
    assert!(h.sent_datagrams().is_empty());
    assert_eq!(h.drops(p2, DropReason::TxQueueFull), 1);
    assert_eq!(h.underlay().sends(), 3, "the failed send was tried once");
}

#[test]
fn a_gro_train_from_the_underlay_is_cut_into_its_datagrams() {
    let mut h = Harness::with(Setup::host(1));
    let net = h.network(overlay_network(0, VNI));
    h.peer(net, vtep(2));
    let a = h.endpoint(net);
    h.underlay().set_gro_segments(8);
    let frames: Vec<Vec<u8>> = (1..=3).map(|tag| frame(BROADCAST, mac(7), tag)).collect();
    for f in &frames {
        h.inject_datagram(vtep(2), &vxlan(VNI, f));
    }
    let short = ethernet(BROADCAST, mac(7), 0x88b5, &[4; 30]);
    h.inject_datagram(vtep(2), &vxlan(VNI, &short));
    h.run_until_idle();
    let mut expected = frames;
    expected.push(short);
    assert_eq!(h.sent_frames(a), expected);
    assert_eq!(h.vtep_counters().rx_packets, 4);
}

#[test]
fn an_underlay_read_error_waits_for_the_next_event() {
    let mut h = Harness::with(Setup::host(1));
    let net = h.network(overlay_network(0, VNI));
    h.peer(net, vtep(2));
    let a = h.endpoint(net);
    h.inject_datagram(vtep(2), &vxlan(VNI, &frame(BROADCAST, mac(7), 1)));
    h.underlay().push_rx_fault(Fault::Os(libc::EIO));
    h.inject_datagram(vtep(2), &vxlan(VNI, &frame(BROADCAST, mac(7), 2)));
    h.step();
    assert_eq!(h.sent_frames(a), vec![frame(BROADCAST, mac(7), 1)]);
    h.step();
    assert!(h.sent(a).is_empty(), "no event, no read");
    h.inject_datagram(vtep(2), &vxlan(VNI, &frame(BROADCAST, mac(7), 3)));
    h.run_until_idle();
    assert_eq!(h.sent_frames(a), vec![frame(BROADCAST, mac(7), 2), frame(BROADCAST, mac(7), 3)]);
}
