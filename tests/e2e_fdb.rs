//! MAC learning tables of a real `vswitchd`: learned entries age out after
//! `config set aging-time` (a `mac_aged` event each), static entries (`fdb add`) survive aging and
//! `fdb flush` and steer unicast to one port instead of flooding. Needs root.

use std::time::{Duration, Instant};

use ctl::MacAddr;
use ctl::proto::{FdbEntry, FdbKind, FlushResult};
use vswitch::{Capture, Daemon, Frame, inject_frame, ping, require_root, wait_for, wait_until};

/// An Ethernet frame with the local-experimental EtherType and a marker.
fn frame(dst: [u8; 6], src: [u8; 6], marker: u8) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&0x88b5u16.to_be_bytes());
    f.extend_from_slice(b"vswitch-e2e");
    f.push(marker);
    f.resize(60, 0);
    f
}

fn entry(d: &Daemon, net: &str, mac: [u8; 6]) -> Option<FdbEntry> {
    d.ctl_json::<Vec<FdbEntry>>(&["fdb", "show", net]).into_iter().find(|e| e.mac.octets() == mac)
}

/// Polls the fdb until `cond` holds for `mac`'s entry, up to `timeout`.
fn wait_entry(
    d: &Daemon,
    net: &str,
    mac: [u8; 6],
    timeout: Duration,
    cond: impl Fn(&Option<FdbEntry>) -> bool,
) -> bool {
    wait_for(timeout, || cond(&entry(d, net, mac)).then_some(())).is_some()
}

fn saw(frames: &[Frame], dst: [u8; 6], marker: u8) -> bool {
    frames.iter().any(|f| !f.outgoing && f.dst() == dst && f.ethertype() == 0x88b5 && f.bytes.get(25) == Some(&marker))
}

fn mac_str(m: [u8; 6]) -> String {
    MacAddr(m).to_string()
}

#[test]
fn learned_entries_age_out_static_entries_stay() {
    if !require_root("learned_entries_age_out_static_entries_stay") {
        return;
    }
    let d = Daemon::start();
    let net = d.name("n");
    let (a, b, c) = (d.name("a"), d.name("b"), d.name("c"));
    d.network_create(&net, "10.204.0.0/24");
    let eps = d.sandboxes_on(&net, &[&a, &b, &c]);
    let (ea, eb, ec) = (&eps[0], &eps[1], &eps[2]);
    d.ctl_ok(&["config", "set", "aging-time", "10"]);
    assert_eq!(d.ctl_ok(&["config", "show"]), "aging-time 10\n");
    assert!(ping(&a, eb.ipv4.expect("ip").addr(), 2), "a cannot ping b");

    // A MAC only ever seen as a frame source behind a's port gets learned there.
    let learned = [0x02, 0xaa, 0, 0, 0, 0x01];
    inject_frame(&a, &ea.ifname, &frame([0xff; 6], learned, 1)).expect("inject from a");
    let t_learned = Instant::now();
    assert!(
        wait_entry(&d, &net, learned, Duration::from_secs(3), |e| e.is_some()),
        "{} was not learned; fdb: {:?}",
        mac_str(learned),
        d.ctl_json::<Vec<FdbEntry>>(&["fdb", "show", &net])
    );
    let e = entry(&d, &net, learned).expect("entry");
    assert_eq!((e.port.as_str(), e.kind), (ea.port.as_str(), FdbKind::Learned), "{e:?}");

    // A static entry behind b's port.
    let pinned = [0x02, 0xaa, 0, 0, 0, 0x02];
    d.ctl_ok(&["fdb", "add", &net, &mac_str(pinned), &eb.port]);
    let s = entry(&d, &net, pinned).expect("static entry listed");
    assert_eq!((s.port.as_str(), s.kind), (eb.port.as_str(), FdbKind::Static), "{s:?}");

    // Unicast to the static MAC goes to b only; unicast to an unknown MAC floods (the control).
    let unknown = [0x02, 0xaa, 0, 0, 0, 0x03];
    let (cap_b, cap_c) = (Capture::start(&b, &eb.ifname).unwrap(), Capture::start(&c, &ec.ifname).unwrap());
    let a_mac = ea.mac.octets();
    inject_frame(&a, &ea.ifname, &frame(pinned, a_mac, 2)).unwrap();
    inject_frame(&a, &ea.ifname, &frame(unknown, a_mac, 3)).unwrap();
    // The switch handles a's frames in order: once the flooded frame 3
    // reached c, frame 2 was delivered too, to c as well if it was flooded.
    cap_b.wait_for(Duration::from_secs(10), |f| saw(f, pinned, 2));
    cap_c.wait_for(Duration::from_secs(10), |f| saw(f, unknown, 3));
    let (seen_b, seen_c) = (cap_b.stop(), cap_c.stop());
    assert!(saw(&seen_b, pinned, 2), "b did not get the frame for its static MAC");
    assert!(saw(&seen_c, unknown, 3), "unknown unicast was not flooded to c (control)");
    assert!(!saw(&seen_c, pinned, 2), "frame for b's static MAC was flooded to c");

    // Its age counts up, and the entry is still there once it is half the
    // aging time old.
    let e = wait_until(
        Duration::from_secs(15),
        || format!("the learned entry's age to reach 5 s: {:?}", entry(&d, &net, learned)),
        || match entry(&d, &net, learned) {
            None => panic!("learned entry vanished {:?} after its last frame (aging-time 10 s)", t_learned.elapsed()),
            Some(e) => (e.age_secs >= 5).then_some(e),
        },
    );
    eprintln!("learned entry {e:?} still present {:?} after its last frame", t_learned.elapsed());
    // Then it ages out; allow for the sweep interval.
    let gone = wait_entry(&d, &net, learned, Duration::from_secs(25), |e| e.is_none());
    let after = t_learned.elapsed();
    eprintln!("learned entry aged out {after:?} after its last frame (aging-time 10 s)");
    assert!(gone, "learned entry still present {after:?} after its last frame");
    assert!(after >= Duration::from_secs(9), "learned entry aged out too early ({after:?})");
    assert!(entry(&d, &net, pinned).is_some_and(|e| e.kind == FdbKind::Static), "static entry aged out");
    // Its aging was an event, naming its MAC and port.
    wait_until(
        Duration::from_secs(10),
        || format!("a mac_aged event for {} in:\n{}", mac_str(learned), d.ctl_ok(&["events"])),
        || {
            let history = d.ctl_ok(&["--json", "events"]);
            history.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).find(|e| {
                e["kind"] == "mac_aged" && e["mac"] == mac_str(learned).as_str() && e["port"] == ea.port.as_str()
            })
        },
    );

    // fdb flush removes learned entries only.
    inject_frame(&a, &ea.ifname, &frame([0xff; 6], learned, 4)).unwrap();
    assert!(wait_entry(&d, &net, learned, Duration::from_secs(3), |e| e.is_some()), "not relearned");
    let r: FlushResult = d.ctl_json(&["fdb", "flush", &net]);
    assert!(r.flushed >= 1, "{r:?}");
    assert!(entry(&d, &net, learned).is_none(), "learned entry survived fdb flush");
    assert!(entry(&d, &net, pinned).is_some_and(|e| e.kind == FdbKind::Static), "static entry did not survive flush");
}
