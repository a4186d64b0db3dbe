//! Ports whose device reads many frames per system call (raw uplinks,
//! `recvmmsg`): a burst lands in the batch's buffers with one call per
//! 32 frames, in order; a short read still idles the port until its next
//! edge; frames the device dropped itself are not counted again; the
//! kernel's drops of the socket are counted as `uplink_rx_dropped`.

use super::super::testing::frames::{frame, mac};
use super::super::testing::{Harness, plain_network};
use crate::counters::DropReason;

#[test]
fn a_burst_is_read_32_frames_per_call_in_order() {
    let mut h = Harness::new();
    let net = h.network(plain_network(0));
    let (up, b) = (h.batch_endpoint(net), h.endpoint(net));
    // Learn b first, so the burst below is unicast to it.
    h.inject(b, &frame(mac(1), mac(2), 0));
    h.run_until_idle();
    h.sent(up);
    let calls = h.port(up).batch_calls();

    for i in 0..100u32 {
        h.inject(up, &frame(mac(2), mac(1), i as u8));
    }
    h.step();
    let got = h.sent_frames(b);
    assert_eq!(got.len(), 100, "every frame in one wake-up");
    assert!(got.iter().enumerate().all(|(i, f)| *f == frame(mac(2), mac(1), i as u8)), "in order");
    // 32 + 32 + 32 + 4: the short read says the queue is empty, no fifth call.
    assert_eq!(h.port(up).batch_calls() - calls, 4);
    assert_eq!(h.counters(up).rx_packets, 100);

    // A later frame raises a new edge and is read.
    h.inject(up, &frame(mac(2), mac(1), 7));
    h.run_until_idle();
    assert_eq!(h.sent_frames(b), vec![frame(mac(2), mac(1), 7)]);
}

#[test]
fn short_and_dropped_reads_are_counted_once_and_the_rest_forwarded() {
    let mut h = Harness::new();
    let net = h.network(plain_network(0));
    let (up, b) = (h.batch_endpoint(net), h.endpoint(net));
    h.inject_raw(up, &[0; 5]);
    // Length 0: a frame the device dropped and counted itself (too long).
    h.inject_raw(up, &[]);
    h.inject(up, &frame(mac(2), mac(1), 1));
    h.run_until_idle();
    assert_eq!(h.drops(up, DropReason::Truncated), 1);
    assert_eq!(h.sent_frames(b), vec![frame(mac(2), mac(1), 1)]);
}

#[test]
fn a_device_that_goes_away_is_reported_gone() {
    let mut h = Harness::new();
    let net = h.network(plain_network(0));
    let up = h.batch_endpoint(net);
    h.inject(up, &frame(mac(2), mac(1), 1));
    h.run_until_idle();
    // The socket's error is an edge of its own (EPOLLERR).
    h.unplug(up);
    h.run_until_idle();
    assert_eq!(h.gone_ports(), vec![up]);
    assert_eq!(h.counters(up).rx_packets, 1, "the frame before the error was read");
}

#[test]
fn the_kernels_drops_of_an_uplink_socket_are_counted_as_uplink_rx_dropped() {
    let mut h = Harness::new();
    let net = h.network(plain_network(0));
    let up = h.batch_endpoint(net);
    h.port(up).set_kernel_drops(3);
    h.advance(std::time::Duration::from_secs(1));
    h.step();
    assert_eq!(h.drops(up, DropReason::UplinkRxDropped), 3);
    assert_eq!(h.drops(up, DropReason::XskRxDropped), 0, "not an AF_XDP socket's");
    h.port(up).set_kernel_drops(10);
    h.advance(std::time::Duration::from_secs(1));
    h.step();
    assert_eq!(h.drops(up, DropReason::UplinkRxDropped), 10, "the delta, not the total again");
}
