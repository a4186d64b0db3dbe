//! Sealing and opening through the public API: round trips, tampering, wrong
//! keys, replay, reordering, epochs and rotation.

use std::collections::VecDeque;

use crypto::{
    ClusterSecret, ENCRYPTED_OVERHEAD, FLAG_CSUM_PARTIAL, FLOW_SESSIONS, HEADER_LEN, Header, InnerChecksum,
    MalformedReason, NetworkCrypto, NetworkKey, OpenError, Opener, REPLAY_WINDOW, Sealer, TAG_LEN, Vni,
};

fn secret() -> ClusterSecret {
    ClusterSecret::from_bytes([0x42; 32])
}

fn vni() -> Vni {
    Vni::new(5001).unwrap()
}

/// An inner Ethernet frame of `len` bytes whose contents depend on `seed`.
fn frame(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed)).collect()
}

fn sealer(epoch: u32) -> Sealer {
    Sealer::new(NetworkKey::derive(&secret(), vni(), epoch)).unwrap()
}

fn seal(s: &mut Sealer, inner: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    s.seal(inner, &mut out).unwrap();
    out
}

#[test]
fn round_trip_both_forms() {
    let mut s = sealer(3);
    let mut o = Opener::new(&secret(), vni(), 3);
    for len in [0, 14, 60, 1400, 9000] {
        let inner = frame(len, len as u8);
        let mut packet = seal(&mut s, &inner);
        assert_eq!(packet.len(), len + ENCRYPTED_OVERHEAD);
        let opened = o.open(&mut packet).unwrap();
        assert_eq!((opened.vni, opened.epoch, opened.session_id), (vni(), 3, s.session_id()));
        assert_eq!(opened.inner, HEADER_LEN..HEADER_LEN + len);
        assert_eq!(&packet[opened.inner], &inner[..]);

        // In place, in a buffer with room to spare.
        let mut buf = vec![0u8; HEADER_LEN + len + TAG_LEN + 100];
        buf[HEADER_LEN..HEADER_LEN + len].copy_from_slice(&inner);
        let n = s.seal_in_place(&mut buf, len, InnerChecksum::AsSent).unwrap();
        assert_eq!(n, len + ENCRYPTED_OVERHEAD);
        let opened = o.open(&mut buf[..n]).unwrap();
        assert_eq!(&buf[opened.inner], &inner[..]);
    }
}

#[test]
fn batch_into_one_buffer() {
    let mut s = sealer(0);
    let mut o = Opener::new(&secret(), vni(), 0);
    let frames: Vec<Vec<u8>> = (0..16).map(|i| frame(100 + i * 50, i as u8)).collect();
    let mut out = Vec::with_capacity(frames.iter().map(|f| f.len() + ENCRYPTED_OVERHEAD).sum());
    let capacity = out.capacity();
    let ranges: Vec<_> = frames.iter().map(|f| s.seal(f, &mut out).unwrap()).collect();
    assert_eq!(out.capacity(), capacity, "sealing a reserved batch does not reallocate");
    for (f, r) in frames.iter().zip(ranges) {
        let packet = &mut out[r];
        let opened = o.open(packet).unwrap();
        assert_eq!(&packet[opened.inner], &f[..]);
    }
}

/// Every single-bit flip anywhere in a packet (header, ciphertext, tag) is
/// rejected, and rejections leave the replay window untouched.
#[test]
fn every_bit_flip_is_rejected() {
    let mut s = sealer(5);
    let mut o = Opener::new(&secret(), vni(), 5);
    // The session is known (cached) before the tampered packets arrive.
    assert!(o.open(&mut seal(&mut s, &frame(20, 0))).is_ok());
    let packet = seal(&mut s, &frame(20, 1));
    for bit in 0..packet.len() * 8 {
        let mut p = packet.clone();
        p[bit / 8] ^= 1 << (bit % 8);
        let result = o.open(&mut p);
        let byte = bit / 8;
        match byte {
            // The checksum flag is a valid type byte too, but authenticated.
            0 if 1 << (bit % 8) == FLAG_CSUM_PARTIAL => {
                assert_eq!(result, Err(OpenError::AuthenticationFailed), "{bit}")
            }
            // So is the cipher flag, refused by name.
            0 if 1 << (bit % 8) == crypto::FLAG_AES_256_GCM => assert_eq!(
                result,
                Err(OpenError::CipherMismatch {
                    expected: crypto::Cipher::ChaCha20Poly1305,
                    found: crypto::Cipher::Aes256Gcm
                }),
                "{bit}"
            ),
            0 => assert!(matches!(result, Err(OpenError::Malformed(MalformedReason::WrongType { .. }))), "{bit}"),
            1..4 => assert!(matches!(result, Err(OpenError::VniMismatch { .. })), "{bit}: {result:?}"),
            // Epoch 5 with one bit flipped: 4 is accepted (and fails
            // authentication), every other value is unknown.
            4..8 => assert!(
                matches!(result, Err(OpenError::UnknownEpoch { .. } | OpenError::AuthenticationFailed)),
                "{bit}: {result:?}"
            ),
            // Counter 1 with its lowest bit flipped is counter 0, already
            // received: refused before decrypting.
            23 if bit % 8 == 0 => assert_eq!(result, Err(OpenError::Replayed { counter: 0 }), "bit {bit}"),
            _ => assert_eq!(result, Err(OpenError::AuthenticationFailed), "bit {bit}"),
        }
    }
    let mut p = packet.clone();
    assert!(o.open(&mut p).is_ok(), "the untouched packet still opens: failures did not touch the window");
}

#[test]
fn wrong_secret_fails_authentication() {
    let mut s = sealer(0);
    let mut o = Opener::new(&ClusterSecret::from_bytes([0x43; 32]), vni(), 0);
    let mut p = seal(&mut s, &frame(100, 0));
    assert_eq!(o.open(&mut p), Err(OpenError::AuthenticationFailed));
}

/// A packet whose header VNI is rewritten to another network's fails there:
/// the VNI is both in the key derivation and the associated data.
#[test]
fn rewritten_vni_is_rejected() {
    let mut s = sealer(0);
    let other = Vni::new(5002).unwrap();
    let mut packet = seal(&mut s, &frame(100, 0));
    packet[1..4].copy_from_slice(&other.to_be_bytes());
    let mut p = packet.clone();
    assert_eq!(Opener::new(&secret(), other, 0).open(&mut p), Err(OpenError::AuthenticationFailed));
    let mut p = packet.clone();
    assert_eq!(
        Opener::new(&secret(), vni(), 0).open(&mut p),
        Err(OpenError::VniMismatch { expected: vni(), found: other })
    );
    // And a different VNI gives a different key even with the header intact.
    let mut good = seal(&mut s, &frame(100, 0));
    let mut o = Opener::new(&secret(), vni(), 0);
    assert!(o.open(&mut good.clone()).is_ok());
    let mut rekeyed = Sealer::new(NetworkKey::derive(&secret(), other, 0)).unwrap();
    let mut q = seal(&mut rekeyed, &frame(100, 0));
    q[1..4].copy_from_slice(&vni().to_be_bytes());
    assert_eq!(o.open(&mut q), Err(OpenError::AuthenticationFailed));
    good[0] = 0x08;
    assert!(matches!(o.open(&mut good), Err(OpenError::Malformed(_))));
}

#[test]
fn replay_is_rejected() {
    let mut s = sealer(0);
    let mut o = Opener::new(&secret(), vni(), 0);
    let packet = seal(&mut s, &frame(100, 0));
    assert!(o.open(&mut packet.clone()).is_ok());
    assert_eq!(o.open(&mut packet.clone()), Err(OpenError::Replayed { counter: 0 }));
    assert_eq!(o.open(&mut packet.clone()), Err(OpenError::Replayed { counter: 0 }));
}

#[test]
fn reordering_within_window_accepted_once_each() {
    let mut s = sealer(0);
    let mut o = Opener::new(&secret(), vni(), 0);
    let packets: Vec<Vec<u8>> = (0..3000).map(|i| seal(&mut s, &frame(60, i as u8))).collect();
    // Deliver in a scrambled order: blocks of 100 reversed, odd then even.
    let mut order: Vec<usize> = (0..3000).collect();
    for chunk in order.chunks_mut(100) {
        chunk.reverse();
    }
    let (odd, even): (Vec<usize>, Vec<usize>) = order.into_iter().partition(|i| i % 2 == 1);
    for &i in odd.iter().chain(&even) {
        let opened = o.open(&mut packets[i].clone()).unwrap_or_else(|e| panic!("packet {i}: {e}"));
        assert_eq!(opened.counter, i as u64);
    }
    for (i, p) in packets.iter().enumerate() {
        assert_eq!(o.open(&mut p.clone()), Err(OpenError::Replayed { counter: i as u64 }));
    }
}

#[test]
fn too_old_is_rejected() {
    let mut s = sealer(0);
    let mut o = Opener::new(&secret(), vni(), 0);
    let first = seal(&mut s, &frame(60, 0));
    let mut last = Vec::new();
    for _ in 0..REPLAY_WINDOW {
        last = seal(&mut s, &frame(60, 0));
    }
    assert!(o.open(&mut last).is_ok());
    assert_eq!(
        o.open(&mut first.clone()),
        Err(OpenError::TooOld { counter: 0, newest: REPLAY_WINDOW }),
        "a never-seen packet older than the window"
    );
}

#[test]
fn epochs_previous_current_next_only() {
    let mut o = Opener::new(&secret(), vni(), 10);
    assert_eq!(o.accepted_epochs(), 9..=11);
    for epoch in [9, 10, 11] {
        let mut p = seal(&mut sealer(epoch), &frame(60, 0));
        assert_eq!(o.open(&mut p).map(|x| x.epoch), Ok(epoch));
    }
    for epoch in [0, 8, 12, 13, u32::MAX] {
        let mut p = seal(&mut sealer(epoch), &frame(60, 0));
        assert_eq!(o.open(&mut p), Err(OpenError::UnknownEpoch { epoch, current: 10 }));
    }
    assert_eq!(Opener::new(&secret(), vni(), 0).accepted_epochs(), 0..=1);
    assert_eq!(Opener::new(&secret(), vni(), u32::MAX).accepted_epochs(), u32::MAX - 1..=u32::MAX);
}

/// Replay windows survive an epoch change for epochs still accepted.
#[test]
fn set_epoch_keeps_windows_of_retained_epochs() {
    let mut s = sealer(1);
    let mut o = Opener::new(&secret(), vni(), 1);
    let p = seal(&mut s, &frame(60, 0));
    assert!(o.open(&mut p.clone()).is_ok());
    o.set_epoch(2);
    assert_eq!(o.open(&mut p.clone()), Err(OpenError::Replayed { counter: 0 }));
    o.set_epoch(3);
    assert_eq!(o.open(&mut p.clone()), Err(OpenError::UnknownEpoch { epoch: 1, current: 3 }));
}

/// A sender restart is a new session: its counter 0 is accepted although the
/// old session's counter 0 was seen, and the old session's packets still
/// cannot be replayed.
#[test]
fn sender_restart_is_a_new_session() {
    let mut o = Opener::new(&secret(), vni(), 0);
    let mut first = sealer(0);
    let old = seal(&mut first, &frame(60, 0));
    assert!(o.open(&mut old.clone()).is_ok());
    let mut second = sealer(0);
    assert_ne!(first.session_id(), second.session_id());
    let mut new = seal(&mut second, &frame(60, 0));
    assert_eq!(o.open(&mut new).map(|x| x.counter), Ok(0));
    assert_eq!(o.open(&mut old.clone()), Err(OpenError::Replayed { counter: 0 }));
    assert_eq!(o.session_count(), 2);
}

/// Past the session bound the least recently used session is forgotten, but
/// its packets still cannot be replayed, and it can come back.
#[test]
fn session_cache_is_bounded_and_forgets_safely() {
    let mut o = Opener::new(&secret(), vni(), 0).with_max_sessions(2);
    let mut senders: Vec<Sealer> = (0..3).map(|_| sealer(0)).collect();
    let mut sent: Vec<Vec<Vec<u8>>> = vec![Vec::new(); 3];
    for (i, s) in senders.iter_mut().enumerate() {
        for _ in 0..5 {
            let p = seal(s, &frame(60, i as u8));
            assert!(o.open(&mut p.clone()).is_ok());
            sent[i].push(p);
        }
        assert!(o.session_count() <= 2);
    }
    assert_eq!(o.session_count(), 2);
    // Sender 0 was evicted: its packets are still replays.
    for (c, p) in sent[0].iter().enumerate() {
        assert_eq!(o.open(&mut p.clone()), Err(OpenError::Replayed { counter: c as u64 }));
    }
    // Its next packet is accepted (evicting sender 1, the least recent).
    let mut p = seal(&mut senders[0], &frame(60, 0));
    assert_eq!(o.open(&mut p).map(|x| x.counter), Ok(5));
    assert_eq!(o.session_count(), 2);
    for (c, p) in sent[1].iter().enumerate() {
        assert_eq!(o.open(&mut p.clone()), Err(OpenError::Replayed { counter: c as u64 }));
    }
    // Forged packets of unknown sessions never enter the cache.
    for id in 0..100u64 {
        let header = Header {
            vni: vni(),
            epoch: 0,
            session_id: id,
            counter: 0,
            checksum: InnerChecksum::AsSent,
            cipher: crypto::Cipher::ChaCha20Poly1305,
        };
        let mut forged = header.to_bytes().to_vec();
        forged.extend_from_slice(&[0u8; 80]);
        assert_eq!(o.open(&mut forged), Err(OpenError::AuthenticationFailed));
    }
    let mut p = seal(&mut senders[2], &frame(60, 2));
    assert_eq!(o.open(&mut p).map(|x| x.counter), Ok(5), "sender 2 stayed cached through the forgeries");
}

/// Two hosts exchange traffic while rotating their key epoch several times,
/// at different moments, in both orders, with packets in flight for a few
/// steps: every packet opens exactly once.
#[test]
fn rotation_in_any_order_loses_nothing() {
    for (a_rotates_at, b_rotates_at) in [(100, 160), (160, 100), (130, 130), (100, 101)] {
        let mut a = NetworkCrypto::new(&secret(), vni(), 0).unwrap();
        let mut b = NetworkCrypto::new(&secret(), vni(), 0).unwrap();
        // Packets in flight: (deliver at step, to b?, bytes, payload seed).
        let mut wire: VecDeque<(usize, bool, Vec<u8>, u8)> = VecDeque::new();
        let mut delivered = 0;
        for step in 0..1000usize {
            // Rotate every 200 steps, each host at its own offset.
            if step % 200 == a_rotates_at % 200 && step >= a_rotates_at {
                a.set_epoch(a.current_epoch() + 1).unwrap();
            }
            if step % 200 == b_rotates_at % 200 && step >= b_rotates_at {
                b.set_epoch(b.current_epoch() + 1).unwrap();
            }
            let seed = step as u8;
            let to_b = step % 3 != 0;
            let sender = if to_b { &mut a } else { &mut b };
            let mut out = Vec::new();
            sender.seal(step, &frame(200, seed), &mut out).unwrap();
            wire.push_back((step + 1 + step % 7, to_b, out, seed));
            // Deliver what is due, in arrival order (reordered by the delays).
            let (due, rest): (Vec<_>, Vec<_>) = wire.drain(..).partition(|(at, ..)| *at <= step);
            wire.extend(rest);
            for (_, to_b, mut packet, seed) in due {
                let receiver = if to_b { &mut b } else { &mut a };
                let opened = receiver
                    .open(&mut packet)
                    .unwrap_or_else(|e| panic!("rotation at {a_rotates_at}/{b_rotates_at}, step {step}: {e}"));
                assert_eq!(&packet[opened.inner], &frame(200, seed)[..]);
                delivered += 1;
            }
        }
        assert_eq!(a.current_epoch(), 5);
        assert_eq!(b.current_epoch(), 5);
        assert!(delivered > 950, "{delivered}");
    }
}

#[test]
fn set_epoch_starts_a_new_set_of_sessions() {
    let mut n = NetworkCrypto::new(&secret(), vni(), 0).unwrap();
    let ids = |n: &NetworkCrypto| -> Vec<u64> {
        (0..FLOW_SESSIONS as usize).map(|flow| n.sealer(flow).unwrap().session_id()).collect()
    };
    let before = ids(&n);
    n.set_epoch(0).unwrap();
    assert_eq!(ids(&n), before, "same epoch: nothing changes");
    n.set_epoch(1).unwrap();
    let after = ids(&n);
    assert!(after.iter().all(|id| !before.contains(id)), "{before:x?} {after:x?}");
    for flow in 0..FLOW_SESSIONS as usize {
        assert_eq!(n.sealer(flow).unwrap().epoch(), 1);
        assert_eq!(n.sealer(flow).unwrap().next_counter(), 0);
    }
}

#[test]
fn each_flow_seals_in_its_own_session_with_its_own_counter() {
    let mut a = NetworkCrypto::new(&secret(), vni(), 0).unwrap();
    let mut b = NetworkCrypto::new(&secret(), vni(), 0).unwrap();
    let mut seen = std::collections::HashMap::new();
    for round in 0..3u64 {
        // Flows 0..2F: flow f and f + F share a session.
        for flow in 0..2 * FLOW_SESSIONS as usize {
            let mut packet = Vec::new();
            a.seal(flow, &frame(80, flow as u8), &mut packet).unwrap();
            let header = Header::parse(&packet).unwrap();
            let slot = flow % FLOW_SESSIONS as usize;
            assert_eq!(*seen.entry(slot).or_insert(header.session_id), header.session_id, "flow {flow}");
            let sent_before = round * 2 + (flow / FLOW_SESSIONS as usize) as u64;
            assert_eq!(header.counter, sent_before, "flow {flow}: its session's own counter");
            assert_eq!(b.open(&mut packet.clone()).unwrap().inner.len(), 80);
            assert_eq!(a.open(&mut packet).unwrap_err(), OpenError::Reflected, "every session is refused sent back");
        }
    }
    let ids: std::collections::HashSet<u64> = seen.values().copied().collect();
    assert_eq!(ids.len(), FLOW_SESSIONS as usize);
}

#[test]
fn debug_output_has_no_secrets() {
    let hex = secret().to_hex();
    let n = NetworkCrypto::new(&secret(), vni(), 0).unwrap();
    let debug = format!("{n:?} {:?} {:?}", secret(), NetworkKey::derive(&secret(), vni(), 0));
    assert!(debug.contains("..redacted.."), "{debug}");
    assert!(!debug.contains(&hex[..16]), "{debug}");
    assert!(!debug.contains("66, 66"), "{debug}");
}

#[test]
fn a_session_run_opens_a_batch_with_one_lookup_and_refuses_each_bad_packet_alone() {
    let mut s = sealer(2);
    let mut o = Opener::new(&secret(), vni(), 2);
    let inners: Vec<Vec<u8>> = (0..5).map(|k| frame(100 + k, k as u8)).collect();
    let packets: Vec<Vec<u8>> = inners.iter().map(|f| seal(&mut s, f)).collect();
    let mut forged = packets[3].clone();
    forged[HEADER_LEN] ^= 0x80;
    // Reordered, replayed within the batch, forged, then the genuine one.
    let batch = [&packets[1], &packets[0], &packets[1], &forged, &packets[3], &packets[2], &packets[4]];
    let headers: Vec<Header> = batch.iter().map(|p| Header::parse(p).unwrap()).collect();
    let mut results = Vec::new();
    {
        let mut run = o.session(&headers[0]).expect("the session of the run");
        for (header, packet) in headers.iter().zip(batch) {
            assert!(run.matches(header));
            let mut packet = packet.clone();
            results.push(run.open(header, &mut packet).map(|opened| packet[opened.inner].to_vec()));
        }
    }
    assert_eq!(
        results,
        vec![
            Ok(inners[1].clone()),
            Ok(inners[0].clone()),
            Err(OpenError::Replayed { counter: 1 }),
            Err(OpenError::AuthenticationFailed),
            Ok(inners[3].clone()),
            Ok(inners[2].clone()),
            Ok(inners[4].clone()),
        ]
    );
    // The session was kept at its first genuine packet: a later run (and a
    // single open) sees every counter taken.
    assert_eq!(o.session_count(), 1);
    for p in &packets {
        assert!(matches!(o.open(&mut p.clone()), Err(OpenError::Replayed { .. })));
    }
}

#[test]
fn a_session_run_refuses_what_is_not_its_session_and_changes_nothing() {
    let (mut a, mut b) = (sealer(2), sealer(2));
    let mut o = Opener::new(&secret(), vni(), 2);
    let pa = seal(&mut a, &frame(60, 1));
    let pb = seal(&mut b, &frame(60, 2));
    let (ha, hb) = (Header::parse(&pa).unwrap(), Header::parse(&pb).unwrap());
    {
        let mut run = o.session(&ha).unwrap();
        assert!(!run.matches(&hb));
        assert_eq!(run.open(&hb, &mut pb.clone()), Err(OpenError::AuthenticationFailed));
        // Another packet's header with this session's id: the wrong nonce.
        let mut wrong = ha;
        wrong.counter += 1;
        assert_eq!(run.open(&wrong, &mut pa.clone()), Err(OpenError::AuthenticationFailed));
        assert!(matches!(run.open(&ha, &mut pa[..10].to_vec()), Err(OpenError::Malformed(_))));
    }
    assert_eq!(o.session_count(), 0, "nothing authenticated, nothing kept");
    o.open(&mut pa.clone()).expect("a opens");
    o.open(&mut pb.clone()).expect("b opens");
    // Epochs and VNIs are checked when the run starts.
    let mut later = sealer(5);
    let h = Header::parse(&seal(&mut later, &frame(60, 3))).unwrap();
    assert!(matches!(o.session(&h), Err(OpenError::UnknownEpoch { epoch: 5, current: 2 })));
    let other = Header { vni: Vni::new(7).unwrap(), ..ha };
    assert!(matches!(o.session(&other), Err(OpenError::VniMismatch { .. })));
}
