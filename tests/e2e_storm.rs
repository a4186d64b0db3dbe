//! Storm control on a real `vswitchd`: a network created with
//! `-o flood-limit=N` floods at most N frames a second from each port (the
//! rest are dropped as `flood_limited` on that port) while the port's known
//! unicast still passes, the limit outlives `kill -9`, and a bad limit is
//! refused without creating anything. Needs root.

use std::time::{Duration, Instant};

use ctl::proto::{EndpointInfo, NetworkInfo, PortStats};
use vswitch::{Capture, Daemon, Frame, inject_frames, ping, require_root};

/// Flooded frames a second each port of the test network may send.
const LIMIT: u64 = 50;
/// Broadcast frames one sandbox sends in a burst: ten times the limit.
const BURST: u8 = 250;

/// An Ethernet frame with the local-experimental EtherType, a run marker
/// and a sequence number.
fn frame(dst: [u8; 6], src: [u8; 6], marker: u8, seq: u8) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&0x88b5u16.to_be_bytes());
    f.extend_from_slice(&[marker, seq]);
    f.resize(60, 0);
    f
}

/// The frames of run `marker` among those a capture received.
fn received(frames: &[Frame], marker: u8) -> usize {
    frames.iter().filter(|f| !f.outgoing && f.ethertype() == 0x88b5 && f.bytes.get(14) == Some(&marker)).count()
}

fn port_stats(d: &Daemon, port: &str) -> PortStats {
    d.ctl_json::<Vec<PortStats>>(&["stats"]).into_iter().find(|s| s.port == port).expect("the port has a stats row")
}

fn flood_limited(d: &Daemon, port: &str) -> u64 {
    port_stats(d, port).drops.get("flood_limited").copied().unwrap_or(0)
}

/// Sends a burst of broadcasts (run `marker`) from `from`, then one frame
/// to `to`'s known MAC as a fence: the switch decides one port's frames in
/// order, so once the fence reached `to` every broadcast before it had been
/// flooded or dropped. Returns how many broadcasts reached `to`.
fn burst(from: (&str, &EndpointInfo), to: (&str, &EndpointInfo), marker: u8) -> usize {
    let (src, dst) = (from.1.mac.octets(), to.1.mac.octets());
    let cap = Capture::start(to.0, &to.1.ifname).expect("capture");
    let mut frames: Vec<Vec<u8>> = (0..BURST).map(|seq| frame([0xff; 6], src, marker, seq)).collect();
    frames.push(frame(dst, src, marker + 1, 0));
    assert_eq!(inject_frames(from.0, &from.1.ifname, &frames).expect("inject"), frames.len());
    assert!(
        cap.wait_for(Duration::from_secs(10), |f| received(f, marker + 1) == 1),
        "the fence frame to {}'s known MAC never arrived",
        to.0
    );
    received(&cap.stop(), marker)
}

#[test]
fn a_flood_limit_caps_each_ports_floods_and_leaves_its_unicast_alone() {
    if !require_root("a_flood_limit_caps_each_ports_floods_and_leaves_its_unicast_alone") {
        return;
    }
    let mut d = Daemon::start();
    let net = d.name("n");

    // A limit that is not a positive number of frames a second changes nothing.
    for bad in ["0", "many", "-5"] {
        let err =
            d.ctl_err(&["network", "create", "--subnet", "10.205.0.0/24", "-o", &format!("flood-limit={bad}"), &net]);
        assert!(err.contains("flood-limit") && err.contains("frames a second"), "{err}");
    }
    assert!(!d.ctl_ok(&["network", "ls"]).contains(&net), "a refused network was created");

    let info: NetworkInfo =
        d.ctl_json(&["network", "create", "--subnet", "10.205.0.0/24", "-o", &format!("flood-limit={LIMIT}"), &net]);
    assert_eq!(info.options.get("flood-limit").map(String::as_str), Some("50"), "{info:?}");
    let (a, b, c) = (d.name("a"), d.name("b"), d.name("c"));
    let started = Instant::now();
    let eps = d.sandboxes_on(&net, &[&a, &b, &c]);
    let (ea, eb, ec) = (&eps[0], &eps[1], &eps[2]);
    // Addresses resolve (ARP's broadcasts are within the limit) and every MAC is learned.
    for (from, to) in [(&a, eb), (&b, ec), (&c, ea)] {
        assert!(ping(from, to.ipv4.expect("ip").addr(), 1), "{from} cannot ping {}", to.ipv4.expect("ip"));
    }

    // a broadcasts ten times its limit in a few milliseconds: c gets at most
    // the burst allowance (one second's worth) plus what a earned since its
    // port was made; the rest are counted on a's port.
    let delivered = burst((&a, ea), (&c, ec), 1) as u64;
    let allowed = LIMIT + LIMIT * started.elapsed().as_millis() as u64 / 1000;
    let limited = flood_limited(&d, &ea.port);
    eprintln!("{delivered} of {BURST} broadcasts flooded, {limited} dropped as flood_limited, {allowed} allowed");
    assert!(delivered <= allowed, "{delivered} broadcasts flooded, more than the {allowed} the limit allows");
    assert!(delivered >= LIMIT / 2, "only {delivered} of the first second's {LIMIT} broadcasts flooded");
    assert!(
        limited >= u64::from(BURST) - delivered,
        "{limited} flood_limited drops for {delivered} of {BURST} flooded"
    );
    assert_eq!(flood_limited(&d, &eb.port), 0, "b flooded nothing beyond its share");

    // With a's share used up, its known unicast still passes, every frame.
    let cap = Capture::start(&b, &eb.ifname).expect("capture");
    let unicast: Vec<Vec<u8>> = (0..200).map(|seq| frame(eb.mac.octets(), ea.mac.octets(), 3, seq as u8)).collect();
    inject_frames(&a, &ea.ifname, &unicast).expect("inject");
    assert!(
        cap.wait_for(Duration::from_secs(10), |f| received(f, 3) == 200),
        "a's unicast to b was limited: {} of 200 arrived",
        received(&cap.frames(), 3)
    );
    drop(cap);
    // Another port's floods are its own: b's broadcasts reach c while a is limited.
    assert!(burst((&b, eb), (&c, ec), 5) as u64 >= LIMIT / 2, "b's floods were limited by a's");

    // The limit is part of the network: it holds again after kill -9.
    d.restart();
    let limited_before = flood_limited(&d, &ea.port);
    let restarted = Instant::now();
    assert!(ping(&a, eb.ipv4.expect("ip").addr(), 2), "a cannot ping b after the restart");
    let delivered = burst((&a, ea), (&c, ec), 7) as u64;
    let allowed = LIMIT + LIMIT * restarted.elapsed().as_millis() as u64 / 1000;
    assert!(delivered <= allowed, "after kill -9: {delivered} broadcasts flooded, the limit allows {allowed}");
    assert!(flood_limited(&d, &ea.port) > limited_before, "no flood_limited drop after kill -9");
}
