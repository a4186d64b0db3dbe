//! The committed seed corpus of the `bridge` fuzz target
//! (`fuzz/corpus/bridge/`) runs through the target's own interpreter and
//! invariant checks (`fuzz/harness/bridge.rs`) and does what its file names
//! claim, so the fuzzer starts from programs that reach learning, flooding,
//! full tables, aging, refused configuration and every drop reason of the
//! forwarding decision.
//!
//! Regenerate the seeds with
//! `VSWITCH_REGENERATE_SEEDS=1 cargo test -p switch --test fuzz_corpus -- --ignored`.

#[path = "../../fuzz/harness/corpus.rs"]
mod corpus;
#[path = "../../fuzz/harness/bridge.rs"]
mod harness;

use harness::{NETWORKS, Outcome, PORTS};

fn corpus() -> corpus::Corpus {
    corpus::Corpus::new(env!("CARGO_MANIFEST_DIR"), "bridge")
}

/// The selector byte of port `id` (see [`PORTS`]), GSO when `gso`.
fn port(id: u32, gso: bool) -> u8 {
    let index = PORTS.iter().position(|&p| p == id).expect("a port of the harness") as u8;
    index | if gso { 0x80 } else { 0 }
}

fn net(id: u32) -> u8 {
    NETWORKS.iter().position(|&n| n == id).expect("a network of the harness") as u8
}

/// A seed under construction: records `[op, len, bytes...]`.
#[derive(Default)]
struct Program(Vec<u8>);

impl Program {
    fn record(mut self, op: u8, bytes: &[u8]) -> Self {
        self.0.push(op);
        self.0.push(u8::try_from(bytes.len()).expect("a record holds at most 255 bytes"));
        self.0.extend_from_slice(bytes);
        self
    }

    /// A frame built from the harness's MAC alphabet, with `payload` bytes.
    fn built(self, from: u32, dst: u8, src: u8, tag: bool, payload: usize) -> Self {
        let mut bytes = vec![port(from, false), dst, src, if tag { 0x51 } else { 0 }];
        bytes.resize(4 + payload, 0x45);
        self.record(3, &bytes)
    }

    /// A raw frame, as given.
    fn raw(self, from: u32, gso: bool, frame: &[u8]) -> Self {
        let mut bytes = vec![port(from, gso)];
        bytes.extend_from_slice(frame);
        self.record(0, &bytes)
    }

    fn forward(self) -> Self {
        self.record(6, &[])
    }

    fn advance(self, base: u8, shift: u8) -> Self {
        self.record(7, &[base, shift])
    }

    fn age(self) -> Self {
        self.record(8, &[])
    }

    fn set_up(self, id: u32, up: bool) -> Self {
        self.record(9, &[port(id, false), u8::from(!up)])
    }

    fn add_static(self, id: u32, network: u32, mac: u8) -> Self {
        self.record(10, &[port(id, false), net(network), mac])
    }

    fn flush(self, network: u32) -> Self {
        self.record(12, &[0, net(network)])
    }

    /// Unplugs port `id`, or plugs it into `network` as `kind` (0 access,
    /// 1 tunnel, 2 gateway) with MTU `mtu8 * 8` and learning limit `limit`.
    fn replug(self, id: u32, network: u32, kind: u8, mtu8: u8, limit: u8) -> Self {
        self.record(13, &[port(id, false), net(network), kind, mtu8, limit])
    }

    fn aging_ms(self, ms: u32) -> Self {
        let b = ms.to_be_bytes();
        self.record(14, &[0, b[0], b[1], b[2], b[3]])
    }

    /// Adds `network` when it is absent (FDB limit `limit`), else removes it.
    fn toggle_network(self, network: u32, limit: u8) -> Self {
        self.record(15, &[0, net(network), limit])
    }
}

/// An Ethernet frame from raw parts: destination, source, ethertype, payload length.
fn frame(dst: [u8; 6], src: [u8; 6], ethertype: [u8; 2], payload: usize) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype);
    f.resize(14 + payload, 0);
    f
}

const STATION_A: [u8; 6] = [0x02, 0x42, 0, 0, 0, 0xa];
const STATION_B: [u8; 6] = [0x02, 0x42, 0, 0, 0, 0xb];

/// The seeds, by name.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut flood = Program::default();
    for src in 0..40 {
        flood = flood.built(1, 0, 100 + src, false, 0).built(4, 0, 150 + src, false, 0);
    }
    vec![
        (
            "learn_then_unicast",
            Program::default().built(1, 10, 11, false, 0).built(2, 11, 10, false, 0).built(1, 10, 11, true, 0).0,
        ),
        (
            "broadcast_every_network",
            Program::default()
                .raw(1, false, &frame([0xff; 6], STATION_A, [0x08, 0x06], 28))
                .raw(6, false, &frame([0xff; 6], STATION_B, [0x08, 0x06], 28))
                .built(8, 1, 12, false, 0)
                .built(4, 0, 13, false, 0)
                .built(3, 0, 14, false, 0)
                .0,
        ),
        ("mac_flood", flood.0),
        (
            "aging",
            Program::default()
                .built(1, 0, 20, false, 0)
                .built(6, 0, 21, false, 0)
                .forward()
                .advance(255, 11)
                .built(6, 0, 21, false, 0)
                .age()
                .built(2, 20, 22, false, 0)
                .0,
        ),
        (
            "static_entries_and_moves",
            Program::default()
                .add_static(2, 0, 30)
                .built(1, 30, 31, false, 0)
                .built(1, 0, 30, false, 0)
                .built(4, 0, 31, false, 0)
                .built(2, 31, 32, false, 0)
                .flush(0)
                .built(5, 32, 33, false, 0)
                .0,
        ),
        (
            "bad_frames",
            Program::default()
                .raw(1, false, &[0xff; 10])
                .raw(1, false, &frame([0xff; 6], STATION_A, [0x81, 0x00], 2))
                .raw(2, false, &frame(STATION_B, STATION_A, [0x08, 0x00], 150))
                .raw(2, true, &frame(STATION_B, STATION_A, [0x08, 0x00], 150))
                .raw(1, false, &frame(STATION_B, [0xff; 6], [0x08, 0x00], 46))
                .raw(1, false, &frame(STATION_B, [0; 6], [0x08, 0x00], 46))
                .raw(1, false, &frame([0x01, 0x80, 0xc2, 0, 0, 0], STATION_A, [0x88, 0xcc], 46))
                .raw(9, false, &frame(STATION_B, STATION_A, [0x08, 0x00], 46))
                .raw(70_000, false, &frame(STATION_B, STATION_A, [0x08, 0x00], 46))
                .0,
        ),
        (
            "replug_and_configure",
            Program::default()
                .set_up(7, false)
                .built(7, 0, 40, false, 0)
                .set_up(7, true)
                .replug(7, 1, 0, 0, 0)
                .replug(7, 7, 1, 187, 4)
                .built(8, 41, 42, false, 0)
                .built(7, 42, 41, false, 0)
                .toggle_network(9, 2)
                .replug(9, 9, 0, 187, 1)
                .built(9, 0, 43, false, 0)
                .toggle_network(9, 2)
                .aging_ms(5_000)
                .aging_ms(60_000)
                .replug(4095, 0, 2, 187, 2)
                .replug(70_000, 0, 0, 187, 2)
                .0,
        ),
        (
            "tunnels_and_gateway",
            Program::default()
                .built(5, 0, 50, false, 0)
                .built(3, 0, 51, false, 0)
                .built(1, 0, 52, false, 0)
                .forward()
                .built(4, 50, 53, false, 0)
                .built(4, 51, 53, false, 0)
                .built(4, 52, 53, false, 0)
                .built(3, 50, 51, false, 0)
                .0,
        ),
    ]
}

fn drops(o: &Outcome, reason: &str) -> u64 {
    o.drops.get(reason).copied().unwrap_or(0)
}

#[test]
fn the_corpus_holds_exactly_the_seeds() {
    corpus().assert_holds_exactly(&seeds());
}

#[test]
fn seeds_do_what_their_names_say() {
    let run = |name: &str| harness::run(&corpus().read(name));

    let o = run("learn_then_unicast");
    assert_eq!((o.frames, o.flooded, o.unicast, o.learned), (3, 1, 2, 2), "{o:?}");

    let o = run("broadcast_every_network");
    // ARP on network 0 (4 other ports) and 1 (its tunnel only: the other
    // access port is isolated, as its sender), the lone port of 7, a
    // tunnel's broadcast (the two access ports: not the other tunnel, not
    // the gateway), the gateway's (the two access ports: no tunnel).
    assert_eq!((o.flooded, o.sends, drops(&o, "no_egress")), (5, 4 + 1 + 2 + 2, 1), "{o:?}");

    let o = run("mac_flood");
    assert_eq!(o.max_fdb.get(&0), Some(&8), "network 0's table stays at its limit: {o:?}");
    assert!(o.table_full > 0 && o.port_limit > 0, "{o:?}");
    assert_eq!(o.flooded, 80, "every frame still floods: {o:?}");

    let o = run("aging");
    assert_eq!(o.aged, 1, "only the entry not refreshed ages out: {o:?}");
    assert_eq!(o.unicast, 0, "the aged destination is flooded: {o:?}");

    let o = run("static_entries_and_moves");
    assert_eq!((o.unicast, o.moves), (2, 1), "{o:?}");

    let o = run("bad_frames");
    for (reason, n) in
        [("truncated", 2), ("oversize", 1), ("invalid_source_mac", 2), ("reserved_group", 1), ("no_egress", 0)]
    {
        assert_eq!(drops(&o, reason), n, "{reason}: {o:?}");
    }
    assert_eq!((o.unknown_port, o.flooded), (2, 1), "the GSO frame floods: {o:?}");

    let o = run("replug_and_configure");
    assert_eq!(drops(&o, "port_down"), 1, "{o:?}");
    assert_eq!(o.unicast, 1, "port 7, moved to network 7, reaches port 8: {o:?}");
    // Network 9 in use, aging 5 s, port 70000 beyond the id range.
    assert_eq!(o.refused, 3, "{o:?}");

    let o = run("tunnels_and_gateway");
    assert_eq!(drops(&o, "gateway_across_tunnel"), 2, "{o:?}");
    assert_eq!(drops(&o, "split_horizon"), 1, "tunnel to tunnel: {o:?}");
    assert_eq!(o.unicast, 1, "tunnel to a local sandbox: {o:?}");
}

#[test]
#[ignore = "writes the seed corpus; run with VSWITCH_REGENERATE_SEEDS=1"]
fn regenerate_seeds() {
    corpus().regenerate(seeds);
}
