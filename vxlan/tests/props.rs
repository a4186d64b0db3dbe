//! Property tests: round trips, and no panics on arbitrary bytes.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use proptest::prelude::*;
use vxlan::{
    HEADER_LEN, PeerError, PeerTable, PeerTableConfig, Vni, VxlanError, decapsulate, encapsulate_into, flow_hash,
    source_port, write_header,
};

fn any_vni() -> impl Strategy<Value = Vni> {
    (0..=Vni::MAX.get()).prop_map(|v| Vni::new(v).unwrap())
}

/// Frames whose ethertype steers `flow_hash` into its IP and VLAN parsers,
/// with arbitrary bytes after it.
fn ip_like_frame() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec![0x0800u16, 0x86dd, 0x8100, 0x88a8, 0x0806]),
        prop::sample::select(vec![0x0800u16, 0x86dd, 0x8100]),
        prop::collection::vec(any::<u8>(), 0..120),
        any::<bool>(),
        0usize..140,
    )
        .prop_map(|(outer, inner, mut rest, valid_version, cut)| {
            let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
            f.extend_from_slice(&outer.to_be_bytes());
            if outer == 0x8100 || outer == 0x88a8 {
                f.extend_from_slice(&[0, 1]);
                f.extend_from_slice(&inner.to_be_bytes());
            }
            if valid_version && !rest.is_empty() {
                // Plausible version nibble so the IPv4/IPv6 paths go deep.
                let ethertype = if outer == 0x8100 || outer == 0x88a8 { inner } else { outer };
                rest[0] = if ethertype == 0x86dd { 0x60 } else { 0x45 | (rest[0] & 0x0f) };
            }
            f.extend_from_slice(&rest);
            f.truncate(cut.max(1));
            f
        })
}

proptest! {
    #[test]
    fn decapsulate_never_panics_and_agrees_with_the_bytes(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        match decapsulate(&bytes) {
            Ok((vni, inner)) => {
                prop_assert!(bytes[0] & 0x08 != 0);
                prop_assert_eq!(vni.to_be_bytes(), [bytes[4], bytes[5], bytes[6]]);
                prop_assert_eq!(inner, &bytes[HEADER_LEN..]);
                prop_assert!(inner.len() >= 14);
            }
            Err(VxlanError::Truncated { len }) => prop_assert!(len < HEADER_LEN && len == bytes.len()),
            Err(VxlanError::FlagNotSet { flags }) => prop_assert_eq!(flags & 0x08, 0),
            Err(VxlanError::InnerTruncated { len }) => prop_assert_eq!(len, bytes.len() - HEADER_LEN),
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }

    #[test]
    fn encapsulate_round_trip(vni in any_vni(), inner in prop::collection::vec(any::<u8>(), 14..1600)) {
        let mut out = vec![0u8; 1700];
        let n = encapsulate_into(vni, &inner, &mut out).unwrap();
        prop_assert_eq!(n, inner.len() + HEADER_LEN);
        let (got_vni, got) = decapsulate(&out[..n]).unwrap();
        prop_assert_eq!(got_vni, vni);
        prop_assert_eq!(got, &inner[..]);

        // The in-place path produces the same bytes.
        let mut in_place = vec![0xa5u8; n];
        in_place[HEADER_LEN..].copy_from_slice(&inner);
        let (header, _) = in_place.split_first_chunk_mut::<HEADER_LEN>().unwrap();
        write_header(vni, header);
        prop_assert_eq!(&in_place[..], &out[..n]);
    }

    #[test]
    fn flow_hash_never_panics_and_is_deterministic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        prop_assert_eq!(flow_hash(&bytes), flow_hash(&bytes));
    }

    #[test]
    fn flow_hash_survives_ip_like_garbage(frame in ip_like_frame()) {
        prop_assert_eq!(flow_hash(&frame), flow_hash(&frame.clone()));
    }

    #[test]
    fn source_port_in_range(hash in any::<u32>(), a in any::<u16>(), b in any::<u16>()) {
        let (lo, hi) = (a.min(b), a.max(b));
        let port = source_port(hash, lo..=hi);
        prop_assert!((lo..=hi).contains(&port));
    }
}

#[derive(Debug, Clone)]
enum Op {
    AddStatic(u8, u8, u8),
    Learn(u8, u8, u8),
    Packet(u8, u8),
    Remove(u8, u8),
    Advance(u16),
    Age,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3u8, 0..6u8, 0..20u8).prop_map(|(v, a, h)| Op::AddStatic(v, a, h)),
        (0..3u8, 0..6u8, 0..20u8).prop_map(|(v, a, h)| Op::Learn(v, a, h)),
        (0..3u8, 0..6u8).prop_map(|(v, a)| Op::Packet(v, a)),
        (0..3u8, 0..6u8).prop_map(|(v, a)| Op::Remove(v, a)),
        (0..600u16).prop_map(Op::Advance),
        Just(Op::Age),
    ]
}

/// What the model keeps per peer: handle, learned?, last seen.
type Model = BTreeMap<(u32, SocketAddr), (u32, bool, u64)>;

proptest! {
    /// The peer table behaves like a plain ordered map with the documented
    /// rules, and its three indexes stay consistent.
    #[test]
    fn peer_table_matches_model(ops in prop::collection::vec(op(), 1..200)) {
        const MAX: usize = 4;
        const TTL: u64 = 1000;
        let mut table = PeerTable::new(PeerTableConfig { max_learned: MAX, learned_ttl_ms: TTL });
        let mut model = Model::new();
        let mut refused = 0;
        let mut now = 0u64;
        let vni = |v: u8| Vni::new(u32::from(v) + 1).unwrap();
        let addr = |a: u8| SocketAddr::from(([198, 51, 100, a], 4789));
        for op in ops {
            match op {
                Op::AddStatic(v, a, h) | Op::Learn(v, a, h) => {
                    let learned = matches!(op, Op::Learn(..));
                    let key = (vni(v).get(), addr(a));
                    let expected = if let Some(&(handle, _, _)) = model.get(&key) {
                        Err(PeerError::Exists { vni: vni(v), addr: addr(a), handle })
                    } else if model.values().any(|e| e.0 == u32::from(h)) {
                        Err(PeerError::HandleInUse { handle: u32::from(h) })
                    } else if learned && model.values().filter(|e| e.1).count() >= MAX {
                        refused += 1;
                        Err(PeerError::Full { max: MAX })
                    } else {
                        model.insert(key, (u32::from(h), learned, now));
                        Ok(())
                    };
                    let got = if learned {
                        table.learn(vni(v), addr(a), u32::from(h), now)
                    } else {
                        table.add_static(vni(v), addr(a), u32::from(h))
                    };
                    prop_assert_eq!(got, expected);
                }
                Op::Packet(v, a) => {
                    let expected = model.get_mut(&(vni(v).get(), addr(a))).map(|e| {
                        e.2 = now;
                        e.0
                    });
                    prop_assert_eq!(table.on_packet(vni(v), addr(a), now), expected);
                }
                Op::Remove(v, a) => {
                    let expected = model.remove(&(vni(v).get(), addr(a))).map(|e| e.0);
                    prop_assert_eq!(table.remove(vni(v), addr(a)), expected);
                }
                Op::Advance(ms) => now += u64::from(ms),
                Op::Age => {
                    let mut expected: Vec<u32> =
                        model.values().filter(|e| e.1 && now - e.2 >= TTL).map(|e| e.0).collect();
                    model.retain(|_, e| !(e.1 && now - e.2 >= TTL));
                    let mut got: Vec<u32> = table.age(now).iter().map(|p| p.handle).collect();
                    expected.sort_unstable();
                    got.sort_unstable();
                    prop_assert_eq!(got, expected);
                }
            }
            prop_assert_eq!(table.len(), model.len());
            prop_assert_eq!(table.learned_len(), model.values().filter(|e| e.1).count());
            prop_assert_eq!(table.refused(), refused);
            for (&(v, a), &(handle, _, _)) in &model {
                let v = Vni::new(v).unwrap();
                prop_assert_eq!(table.lookup(v, a), Some(handle));
                prop_assert_eq!(table.peer_of(handle), Some((v, a)));
            }
            for v in 0..3 {
                let mut listed: Vec<u32> = table.peers(vni(v)).iter().map(|p| p.handle).collect();
                let mut expected: Vec<u32> =
                    model.iter().filter(|((mv, _), _)| *mv == vni(v).get()).map(|(_, e)| e.0).collect();
                listed.sort_unstable();
                expected.sort_unstable();
                prop_assert_eq!(listed, expected);
            }
        }
    }
}
