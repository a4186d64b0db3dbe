//! The Internet checksum (RFC 1071): ones'-complement sums of 16-bit
//! big-endian words, accumulated wide and folded at the end.

/// Adds the big-endian 16-bit words of `data` to `acc`; an odd final byte is
/// padded with a zero byte. `data` must start at an even offset of the
/// checksummed stream.
pub(crate) fn add(mut acc: u64, data: &[u8]) -> u64 {
    // 32-bit words: their sum folds to the same 16-bit result, since
    // 2^16 ≡ 1 (mod 2^16 − 1). Each addition is < 2^32, so a u64 cannot
    // overflow for any realistic input (> 2^32 words).
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let mut rest = words.remainder().chunks_exact(2);
    for w in &mut rest {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = rest.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
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

    #[test]
    fn incremental_update_matches_recompute() {
        let mut data = [0x45u8, 0x00, 0x05, 0xdc, 0x12, 0x34, 0x40, 0x00, 0xff, 0xff];
        let check = finish(add(0, &data));
        data[2..4].copy_from_slice(&0x0576u16.to_be_bytes());
        assert_eq!(update(check, 0x05dc, 0x0576), finish(add(0, &data)));
    }
}
