//! Byte classification for the fast path (`fast.rs`), 64 bytes at a time.
//!
//! [`classify`] turns a 64-byte block into three bit masks (bit `i` is byte `i`):
//!
//! * `structural`: the bytes that end or interrupt a token on the fast path — `,` `=` space
//!   `"` `\` and the ASCII control characters (U+0000–U+001F, U+007F; `'\n'` included);
//! * `newline`: `'\n'`;
//! * `non_ascii`: bytes `>= 0x80`.
//!
//! On x86_64 this is SSE2 (part of the x86_64 baseline): 16 bytes per compare, one
//! `pmovmskb` per mask, in one small `unsafe` block. Safe Rust cannot express `pmovmskb`:
//! the portable formulation below vectorizes its comparisons but packs the resulting flags
//! into bits with multiplies, and made the whole parse 6–10% slower on the TSBS bodies of
//! `benches/lineproto.rs`. Other architectures use the portable version; the tests check
//! both against a per-byte definition for every byte value in every position.

/// Bytes per block.
pub(super) const BLOCK: usize = 64;

/// The masks of one block; see the module docs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Masks {
    pub(super) structural: u64,
    pub(super) newline: u64,
    pub(super) non_ascii: u64,
}

/// Whether `b` ends or interrupts a token on the fast path.
#[inline(always)]
pub(super) fn is_structural(b: u8) -> bool {
    (b == b',') | (b == b'=') | (b == b' ') | (b == b'"') | (b == b'\\') | (b < 0x20) | (b == 0x7f)
}

/// Classifies one block.
#[inline(always)]
pub(super) fn classify(block: &[u8; BLOCK]) -> Masks {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        sse2::classify(block)
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        portable(block)
    }
}

/// Classifies the block of `buf` that starts at `from`, padding past the end of `buf` with
/// a byte that is in no mask. `None` when `from` is at or past the end.
#[inline(always)]
pub(super) fn classify_at(buf: &[u8], from: usize) -> Option<Masks> {
    let rest = buf.get(from..).filter(|rest| !rest.is_empty())?;
    match rest.first_chunk::<BLOCK>() {
        Some(block) => Some(classify(block)),
        None => Some(classify_tail(rest)),
    }
}

#[cold]
fn classify_tail(tail: &[u8]) -> Masks {
    let mut padded = [b'a'; BLOCK];
    for (p, &b) in padded.iter_mut().zip(tail) {
        *p = b;
    }
    classify(&padded)
}

/// Packs 64 flags (each 0 or 1) into a `u64`, eight at a time: the multiplier moves byte
/// `k`'s bit to bit `56 + k` without any two partial products overlapping.
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
#[inline(always)]
fn pack(flags: &[u8; BLOCK]) -> u64 {
    let mut mask = 0u64;
    for (i, eight) in flags.as_chunks::<8>().0.iter().enumerate() {
        let packed = u64::from_le_bytes(*eight).wrapping_mul(0x0102_0408_1020_4080) >> 56;
        mask |= packed << (8 * i);
    }
    mask
}

/// The reference classification, in plain Rust.
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
#[inline(always)]
fn portable(block: &[u8; BLOCK]) -> Masks {
    Masks {
        structural: pack(&block.map(|b| u8::from(is_structural(b)))),
        newline: pack(&block.map(|b| u8::from(b == b'\n'))),
        non_ascii: pack(&block.map(|b| b >> 7)),
    }
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
mod sse2 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8, _mm_setzero_si128,
    };

    use super::{BLOCK, Masks};

    /// SSE2 version of [`super::portable`]. Newlines and non-ASCII bytes are rare (one
    /// newline per line), so their masks are assembled only for a block that has any.
    #[inline(always)]
    pub(super) fn classify(block: &[u8; BLOCK]) -> Masks {
        let chunks = block.as_chunks::<16>().0;
        let mut masks = Masks::default();
        let mut newlines = [0i32; 4];
        let mut high = [0i32; 4];
        // SAFETY: SSE2 is enabled at compile time (cfg above), so the intrinsics are
        // available. `_mm_loadu_si128` reads 16 bytes from a `&[u8; 16]`: in bounds, and
        // the unaligned load has no alignment requirement.
        unsafe {
            let mut any_newline = _mm_setzero_si128();
            let mut any_high = _mm_setzero_si128();
            let mut loaded = [_mm_setzero_si128(); 4];
            for (i, chunk) in chunks.iter().enumerate() {
                let x = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
                let eq = |b: u8| _mm_cmpeq_epi8(x, _mm_set1_epi8(b as i8));
                // Unsigned `x <= 0x20`: control characters and space.
                let low = _mm_cmpeq_epi8(_mm_min_epu8(x, _mm_set1_epi8(0x20)), x);
                let structural = _mm_or_si128(
                    _mm_or_si128(
                        _mm_or_si128(low, eq(0x7f)),
                        _mm_or_si128(eq(b','), eq(b'=')),
                    ),
                    _mm_or_si128(eq(b'"'), eq(b'\\')),
                );
                // Each movemask fills the low 16 bits of an i32.
                masks.structural |= u64::from(_mm_movemask_epi8(structural) as u16) << (16 * i);
                any_newline = _mm_or_si128(any_newline, eq(b'\n'));
                any_high = _mm_or_si128(any_high, x);
                if let Some(slot) = loaded.get_mut(i) {
                    *slot = x;
                }
            }
            if _mm_movemask_epi8(any_newline) != 0 {
                for (slot, x) in newlines.iter_mut().zip(loaded) {
                    *slot = _mm_movemask_epi8(_mm_cmpeq_epi8(x, _mm_set1_epi8(b'\n' as i8)));
                }
            }
            if _mm_movemask_epi8(any_high) != 0 {
                for (slot, x) in high.iter_mut().zip(loaded) {
                    *slot = _mm_movemask_epi8(x);
                }
            }
        }
        for (i, (newline, high)) in newlines.into_iter().zip(high).enumerate() {
            masks.newline |= u64::from(newline as u16) << (16 * i);
            masks.non_ascii |= u64::from(high as u16) << (16 * i);
        }
        masks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte value at every position, against a direct per-byte computation (and the
    /// SSE2 version against the portable one).
    #[test]
    fn masks_match_per_byte_definition() {
        for value in 0..=255u8 {
            for background in [b'a', b' ', 0x80, b'\n'] {
                for at in 0..BLOCK {
                    let mut block = [background; BLOCK];
                    block[at] = value;
                    let mut expected = Masks::default();
                    for (i, &b) in block.iter().enumerate() {
                        expected.structural |= u64::from(is_structural(b)) << i;
                        expected.newline |= u64::from(b == b'\n') << i;
                        expected.non_ascii |= u64::from(b >= 0x80) << i;
                    }
                    assert_eq!(classify(&block), expected, "{value:#x} at {at}");
                    assert_eq!(portable(&block), expected, "{value:#x} at {at}");
                }
            }
        }
        let structural: Vec<u8> = (0..=255u8).filter(|&b| is_structural(b)).collect();
        let mut expected: Vec<u8> = (0..0x20).collect();
        expected.extend([b' ', b'"', b',', b'=', b'\\', 0x7f]);
        expected.sort_unstable();
        assert_eq!(structural, expected);
    }

    #[test]
    fn tail_blocks_are_padded_with_a_neutral_byte() {
        let buf = b"a,b\n\xff";
        let masks = classify_at(buf, 0).unwrap();
        assert_eq!(masks.structural, 0b1010);
        assert_eq!(masks.newline, 0b1000);
        assert_eq!(masks.non_ascii, 0b10000);
        assert_eq!(classify_at(buf, 5), None);
        assert_eq!(classify_at(buf, 4).unwrap().non_ascii, 1);
        let long = [b','; 70];
        assert_eq!(classify_at(&long, 0).unwrap().structural, u64::MAX);
        assert_eq!(classify_at(&long, 64).unwrap().structural, 0b11_1111);
    }
}
