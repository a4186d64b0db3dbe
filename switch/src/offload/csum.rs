//! The Internet checksum (RFC 1071): ones'-complement sums of 16-bit
//! big-endian words, accumulated wide and folded at the end.

/// Adds the big-endian 16-bit words of `data` to `acc`; an odd final byte is
/// padded with a zero byte. `data` must start at an even offset of the
/// checksummed stream.
///
/// The words are summed in native little-endian order and the folded result
/// is byte-swapped once at the end (RFC 1071 §2(B): the ones'-complement sum
/// is byte-order independent), so the loop needs no per-word swap and the
/// compiler vectorises it: about 1.5× the speed of summing big-endian words.
pub(crate) fn add(acc: u64, data: &[u8]) -> u64 {
    // 32-bit words: their sum folds to the same 16-bit result, since
    // 2^16 ≡ 1 (mod 2^16 − 1). Each addition is < 2^32, so a u64 cannot
    // overflow for any realistic input (> 2^32 words).
    let mut sum: u64 = 0;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        sum += u64::from(u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    let mut padded = [0u8; 4];
    padded[..rest.len()].copy_from_slice(rest);
    sum += u64::from(u32::from_le_bytes(padded));
    // Zero stays zero (all-zero data); any other sum folds to a value in
    // 1..=0xffff that is congruent, after the swap, to the big-endian sum.
    if sum == 0 { acc } else { acc + u64::from(fold(sum).swap_bytes()) }
}

/// Folds a wide sum to 16 bits (end-around carry), not complemented.
pub(crate) fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The checksum field value for a stream whose wide sum is `acc`.
pub(crate) fn finish(acc: u64) -> u16 {
    !fold(acc)
}

/// What a UDP checksum field holds for the computed checksum `check`: a zero
/// result is sent as `0xffff`, the same value in ones' complement, since 0
/// means "no checksum" (RFC 768). TCP has no such rule and keeps 0.
pub(crate) fn udp_field(check: u16) -> u16 {
    if check == 0 { 0xffff } else { check }
}

/// Sum of the IPv4 pseudo-header (RFC 793 / 768).
pub(crate) fn pseudo_v4(src: &[u8], dst: &[u8], proto: u8, len: usize) -> u64 {
    add(add(u64::from(proto) + len as u64, src), dst)
}

/// Sum of the IPv6 pseudo-header (RFC 8200 §8.1).
pub(crate) fn pseudo_v6(src: &[u8], dst: &[u8], next_header: u8, len: usize) -> u64 {
    pseudo_v4(src, dst, next_header, len)
}

/// RFC 1624 eqn. 3: the checksum after a 16-bit word of the covered data
/// changed from `old` to `new`: `HC' = ~(~HC + ~m + m')`.
pub(crate) fn update(check: u16, old: u16, new: u16) -> u16 {
    finish(u64::from(!check) + u64::from(!old) + u64::from(new))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(add(0, &data)), 0xddf2);
        // Any split at even offsets gives the same sum, odd tails are padded.
        assert_eq!(fold(add(add(0, &data[..2]), &data[2..])), 0xddf2);
        assert_eq!(fold(add(0, &[0xab])), 0xab00);
        assert_eq!(fold(add(0, &[0x12, 0x34, 0x56])), 0x1234 + 0x5600);
    }

    /// The word-by-word big-endian sum RFC 1071 describes.
    fn reference(data: &[u8]) -> u16 {
        let mut acc = 0u64;
        for pair in data.chunks(2) {
            acc += u64::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
        }
        fold(acc)
    }

    #[test]
    fn native_order_sum_matches_the_big_endian_reference() {
        let mut x: u32 = 0x1234_5678;
        let data: Vec<u8> = (0..3000)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (x >> 16) as u8
            })
            .collect();
        for len in (0..70).chain([1499, 1500, 1501, 2999, 3000]) {
            for start in [0, 2, 6] {
                let slice = &data[start..start + len.min(data.len() - start)];
                assert_eq!(fold(add(0, slice)), reference(slice), "len {len} at {start}");
                // Sums split at even offsets and on top of another sum agree.
                let half = (slice.len() / 2) & !1;
                let split = add(add(0x1_2345, &slice[..half]), &slice[half..]);
                assert_eq!(fold(split), fold(0x1_2345 + u64::from(reference(slice))), "split {len}");
            }
        }
        // Sums that are multiples of 0xffff and all-ones data.
        assert_eq!(fold(add(0, &[0xff; 10])), reference(&[0xff; 10]));
        assert_eq!(fold(add(0, &[0; 10])), 0);
    }

    #[test]
    fn incremental_update_matches_recompute() {
        let mut data = [0x45u8, 0x00, 0x05, 0xdc, 0x12, 0x34, 0x40, 0x00, 0xff, 0xff];
        let check = finish(add(0, &data));
        data[2..4].copy_from_slice(&0x0576u16.to_be_bytes());
        assert_eq!(update(check, 0x05dc, 0x0576), finish(add(0, &data)));
    }
}
