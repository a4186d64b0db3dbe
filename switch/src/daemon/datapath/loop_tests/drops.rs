//! Frames the switch cannot use, devices that refuse or vanish: each is
//! counted under its reason, and the loop carries on.

use super::super::handle::Command;
use super::super::testing::frames::{BROADCAST, frame, mac};
use super::super::testing::memory::Fault;
use super::super::testing::{Harness, plain_network};
use crate::counters::DropReason;
use crate::wire::MacAddr;

#[test]
fn short_reads_and_runt_frames_are_counted_as_truncated() {
    let mut h = Harness::new();
    let net = h.network(plain_network(0));
    let (a, b) = (h.endpoint(net), h.endpoint(net));
    h.inject_raw(a, &[0; 5]); // shorter than the virtio-net header
    h.inject_raw(a, &[0; 12 + 8]); // a header and 8 bytes: no Ethernet header
    h.inject(a, &frame(BROADCAST, mac(1), 1));
    h.run_until_idle();
    assert_eq!(h.drops(a, DropReason::Truncated), 2);
    assert_eq!(h.sent_frames(b), vec![frame(BROADCAST, mac(1), 1)], "the frame after them goes through");
}

#[test]
fn oversize_frames_and_bad_source_macs_are_dropped_by_reason() {
    let mut h = Harness::new();
    let net = h.network(plain_network(0));
    let (a, b) = (h.endpoint(net), h.endpoint(net));
    let mut big = frame(BROADCAST, mac(1), 1);
    big.resize(14 + 1501, 0);
    h.inject(a, &big);
    h.inject(a, &frame(BROADCAST, BROADCAST, 2));
    h.inject(a, &frame(BROADCAST, MacAddr([0; 6]), 3));
    h.inject(a, &frame(MacAddr([0x01, 0x80, 0xc2, 0, 0, 0]), mac(5), 4));
    h.run_until_idle();
    let drops = h.counters(a).drops;
    assert_eq!(drops.get(DropReason::Oversize), 1);
    assert_eq!(drops.get(DropReason::InvalidSourceMac), 2);
    assert_eq!(drops.get(DropReason::ReservedGroup), 1);
    assert_eq!(drops.total(), 4);
    assert!(h.sent(b).is_empty());
    assert_eq!(h.lookup(net, mac(1)), None, "nothing is learned from an oversize frame");
    assert_eq!(h.lookup(net, mac(5)), Some(a), "a reserved group's sender is learned, as 802.1D does");
}

#[test]
fn a_full_tx_queue_drops_the_frame_on_the_egress_port_only() {
    let mut h = Harness::new();
    let net = h.network(plain_network(0));
    let (a, b, c) = (h.endpoint(net), h.endpoint(net), h.endpoint(net));
    h.fail_writes(b, Fault::WouldBlock, 1);
    h.inject(a, &frame(BROADCAST, mac(1), 1));
    h.inject(a, &frame(BROADCAST, mac(1), 2));
    h.run_until_idle();
    assert_eq!(h.sent_frames(b), vec![frame(BROADCAST, mac(1), 2)], "the first was lost, the second not");
    assert_eq!(h.sent_frames(c).len(), 2, "the other copies of the flood are unaffected");
    assert_eq!(h.drops(b, DropReason::TxQueueFull), 1);
    assert_eq!(h.counters(a).drops.total(), 0);
    assert_eq!(h.counters(c).drops.total(), 0);

    // Any other write error is a tx_error.
    h.fail_writes(c, Fault::Os(libc::EIO), 1);
    h.inject(a, &frame(BROADCAST, mac(1), 3));
    h.run_until_idle();
    assert_eq!(h.drops(c, DropReason::TxError), 1);
    assert_eq!(h.sent_frames(b), vec![frame(BROADCAST, mac(1), 3)]);
}

#[test]
fn a_device_that_is_gone_is_reported_and_writes_to_it_are_counted() {
    let mut h = Harness::new();
    let net = h.network(plain_network(0));
    let (a, b) = (h.endpoint(net), h.endpoint(net));
    h.inject(b, &frame(BROADCAST, mac(2), 0));
    h.run_until_idle();
    h.sent(a);

    h.unplug(b);
    h.run_until_idle();
    assert_eq!(h.gone_ports(), vec![b], "the control plane is told, once");
    h.step();
    assert_eq!(h.gone_ports(), vec![]);

    // Until the control plane removes it, frames to it fail to write.
    h.inject(a, &frame(mac(2), mac(1), 1));
    h.run_until_idle();
    assert_eq!(h.drops(b, DropReason::TxError), 1);
    assert!(h.gone_ports().is_empty(), "a failed write does not report the port again");

    // The control plane checks a report before it acts on it: this one
    // holds until the port is removed. After that it is stale (the id may
    // be another endpoint's by the time the report is read).
    let reported = |h: &mut Harness, id| h.call(|reply| Command::PortReportedGone { id, reply });
    assert!(reported(&mut h, b) && !reported(&mut h, a));
    h.remove_port(b);
    assert!(!reported(&mut h, b), "a removed port's report is stale");
    h.inject(a, &frame(mac(2), mac(1), 2));
    h.run_until_idle();
    assert_eq!(h.lookup(net, mac(2)), None, "its entries went with it");
    assert_eq!(h.drops(a, DropReason::NoEgress), 1, "nowhere left to flood to");
}

#[test]
fn read_errors_wait_for_the_next_event_and_interrupted_reads_are_retried() {
    let mut h = Harness::new();
    let net = h.network(plain_network(0));
    let (a, b) = (h.endpoint(net), h.endpoint(net));
    h.inject(a, &frame(BROADCAST, mac(1), 1));
    h.inject_fault(a, Fault::Interrupted);
    h.inject(a, &frame(BROADCAST, mac(1), 2));
    h.inject_fault(a, Fault::Os(libc::EIO));
    h.inject(a, &frame(BROADCAST, mac(1), 3));
    h.step();
    let tags: Vec<u8> = h.sent_frames(b).iter().map(|f| f[14]).collect();
    assert_eq!(tags, vec![1, 2], "EINTR is retried; EIO stops reading until the next readiness event");
    assert_eq!(h.port(a).rx_pending(), 1);
    h.step();
    assert!(h.sent(b).is_empty(), "no event, no read");
    h.inject(a, &frame(BROADCAST, mac(1), 4));
    h.run_until_idle();
    let tags: Vec<u8> = h.sent_frames(b).iter().map(|f| f[14]).collect();
    assert_eq!(tags, vec![3, 4]);
    assert!(h.gone_ports().is_empty());
    assert_eq!(h.port(a).rx_pending(), 0);
}
