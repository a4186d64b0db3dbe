//! Ports whose device behaves like an AF_XDP socket (frames of at most one
//! MTU, no system call per read, writes held until the loop flushes): many
//! frames are packed into one batch buffer, and written frames are handed
//! over once per batch.

use super::super::testing::frames::{frame, mac};
use super::super::testing::{Harness, plain_network};
use crate::counters::DropReason;
use crate::daemon::datapath::device::DeviceDrops;
use crate::sys::afxdp::CHUNK_FRAME_LEN;
use crate::wire::VirtioNetHdr;

/// What one UMEM chunk holds, behind the header: the packing unit.
const MAX: usize = VirtioNetHdr::LEN + CHUNK_FRAME_LEN;

#[test]
fn small_frames_are_packed_into_one_batch_and_flushed_once() {
    let mut h = Harness::new();
    let net = h.network(plain_network(0));
    let (a, b, c) = (h.xsk_endpoint(net, MAX), h.endpoint(net), h.xsk_endpoint(net, MAX));
    // Learn b and c first, so the burst below is unicast to c.
    h.inject(b, &frame(mac(1), mac(2), 0));
    h.inject(c, &frame(mac(1), mac(3), 0));
    h.run_until_idle();
    for port in [a, b, c] {
        h.sent(port);
    }
    let flushes = h.port(c).flushes();

    // 600 frames arrive at once: without packing that is 19 batches of 32.
    for i in 0..600u32 {
        h.inject(a, &frame(mac(3), mac(1), (i % 251) as u8));
    }
    h.step();
    let got = h.sent_frames(c);
    assert_eq!(got.len(), 600, "every frame in one wake-up");
    assert!(got.iter().enumerate().all(|(i, f)| *f == frame(mac(3), mac(1), (i % 251) as u8)), "in order");
    assert_eq!(h.port(c).flushes() - flushes, 1, "600 frames, one batch, one flush");
    assert_eq!(h.port(c).unflushed(), 0);
    assert!(h.sent(b).is_empty(), "unicast to c only");
    assert_eq!(h.counters(a).rx_packets, 600);
}

#[test]
fn a_short_read_is_counted_and_the_port_keeps_being_read() {
    let mut h = Harness::new();
    let net = h.network(plain_network(0));
    let (a, b) = (h.xsk_endpoint(net, MAX), h.xsk_endpoint(net, MAX));
    h.inject_raw(a, &[0; 5]);
    h.inject(a, &frame(mac(2), mac(1), 1));
    h.run_until_idle();
    assert_eq!(h.drops(a, DropReason::Truncated), 1);
    assert_eq!(h.sent_frames(b), vec![frame(mac(2), mac(1), 1)]);
}

#[test]
fn a_gso_frame_from_a_tap_reaches_an_xsk_port_whole_for_it_to_segment() {
    let mut h = Harness::new();
    let net = h.network(plain_network(0));
    let (tap, xsk) = (h.endpoint(net), h.xsk_endpoint(net, MAX));
    let tso = VirtioNetHdr {
        flags: 1,
        gso_type: 1,
        hdr_len: 54,
        gso_size: 1448,
        csum_start: 34,
        csum_offset: 16,
        num_buffers: 0,
    };
    let big = super::super::testing::frames::Tcp::between(1, 2).frame(&vec![7; 3 * 1448]);
    h.inject_with_hdr(tap, tso, &big);
    h.run_until_idle();
    let sent = h.sent(xsk);
    assert_eq!(sent.len(), 1, "one write: the device segments it");
    assert_eq!((sent[0].hdr, &sent[0].frame), (tso, &big));
}

#[test]
fn the_kernels_drops_of_a_socket_are_counted_once_a_second_as_deltas() {
    let mut h = Harness::new();
    let net = h.network(plain_network(0));
    let a = h.xsk_endpoint(net, MAX);
    h.port(a).set_kernel_drops(5);
    h.advance(std::time::Duration::from_secs(1));
    h.step();
    assert_eq!(h.drops(a, DropReason::XskRxDropped), 5);
    h.port(a).set_kernel_drops(7);
    h.advance(std::time::Duration::from_millis(500));
    h.step();
    assert_eq!(h.drops(a, DropReason::XskRxDropped), 5, "read once a second");
    h.advance(std::time::Duration::from_millis(500));
    h.step();
    assert_eq!(h.drops(a, DropReason::XskRxDropped), 7, "the delta, not the total again");
    assert_eq!(h.counters(a).drops.total(), 7);
}

#[test]
fn jumbo_frames_between_small_ones_get_fresh_buffers_and_keep_their_order() {
    let mut h = Harness::new();
    let net = h.network(crate::daemon::datapath::handle::NetworkSpec { mtu: 9000, ..plain_network(0) });
    let (a, b) = (h.xsk_endpoint(net, MAX), h.xsk_endpoint(net, MAX));
    h.inject(b, &frame(mac(1), mac(2), 0));
    h.run_until_idle();
    h.sent(a);
    // A burst of small frames with a 9,014-byte frame (a multi-buffer chain
    // on a real socket) every 50th: it does not fit what is left of a packed
    // buffer, waits for a fresh one, and nothing is reordered or lost.
    let jumbo = |i: u32| super::super::testing::frames::ethernet(mac(2), mac(1), 0x88b5, &vec![i as u8; 9000]);
    let expected: Vec<Vec<u8>> =
        (0..300u32).map(|i| if i % 50 == 7 { jumbo(i) } else { frame(mac(2), mac(1), (i % 251) as u8) }).collect();
    for f in &expected {
        h.inject(a, f);
    }
    h.run_until_idle();
    let got = h.sent_frames(b);
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "in order, byte for byte");
    assert_eq!(h.counters(a).rx_packets, 300);
    assert_eq!(h.counters(a).drops.total(), 0);
}

#[test]
fn chains_the_device_dropped_are_counted_by_reason_once_a_second() {
    let mut h = Harness::new();
    let net = h.network(plain_network(0));
    let a = h.xsk_endpoint(net, MAX);
    h.port(a).set_device_drops(DeviceDrops { too_long: 2, broken: 3, ..DeviceDrops::default() });
    h.advance(std::time::Duration::from_secs(1));
    h.step();
    assert_eq!(h.drops(a, DropReason::Oversize), 2);
    assert_eq!(h.drops(a, DropReason::XskBadDescriptor), 3);
    h.port(a).set_device_drops(DeviceDrops { too_long: 2, broken: 4, ..DeviceDrops::default() });
    h.advance(std::time::Duration::from_secs(1));
    h.step();
    assert_eq!(h.drops(a, DropReason::XskBadDescriptor), 4, "the delta");
    assert_eq!(h.counters(a).drops.total(), 6);
    // Queued writes the kernel did not take on flush (a raw uplink's sendmmsg).
    h.port(a).set_device_drops(DeviceDrops { too_long: 2, broken: 4, tx_queue_full: 5, tx_error: 1 });
    h.advance(std::time::Duration::from_secs(1));
    h.step();
    assert_eq!((h.drops(a, DropReason::TxQueueFull), h.drops(a, DropReason::TxError)), (5, 1));
    assert_eq!(h.counters(a).drops.total(), 12);
}
