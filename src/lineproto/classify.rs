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
//! `pmovmskb` per mask, in one small `unsafe` block. When the CPU has AVX2 (detected at run
//! time), [`classify_prefix`] uses an AVX2 version instead: 32 bytes per instruction, and
//! the structural set is one `vpshufb` nibble lookup rather than seven compares (7–9%
//! faster overall on the TSBS bodies). Safe Rust cannot express `pmovmskb`: the portable
//! formulation below vectorizes its comparisons but packs the resulting flags into bits with
//! multiplies, and made the whole parse 6–10% slower on the TSBS bodies of
//! `benches/lineproto.rs`. Other architectures use the portable version; the tests check
//! all of them against a per-byte definition for every byte value in every position.

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

/// Classifies `buf` block by block from its start into `out`, stopping after the first block
/// that contains a `'\n'`, at the end of `buf` or when `out` is full. Returns the number of
/// blocks classified and the position of the first `'\n'` if one was found. Stores the
/// `structural` mask of each block (the same as [`classify_at`]'s).
#[inline(always)]
pub(super) fn classify_prefix(buf: &[u8], out: &mut [u64]) -> (usize, Option<usize>) {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above), the only requirement of
            // calling a function compiled with `#[target_feature(enable = "avx2")]`.
            return unsafe { avx2::classify_prefix(buf, out) };
        }
    }
    classify_prefix_with(buf, out, classify)
}

/// [`classify_prefix`] with the given block classifier.
#[inline(always)]
fn classify_prefix_with(
    buf: &[u8],
    out: &mut [u64],
    classify: impl Fn(&[u8; BLOCK]) -> Masks,
) -> (usize, Option<usize>) {
    let mut blocks = 0;
    for slot in out.iter_mut() {
        let Some(rest) = buf.get(blocks * BLOCK..).filter(|rest| !rest.is_empty()) else {
            break;
        };
        let masks = match rest.first_chunk::<BLOCK>() {
            Some(block) => classify(block),
            None => classify_tail(rest),
        };
        *slot = masks.structural;
        blocks += 1;
        if masks.newline != 0 {
            let at = masks.newline.trailing_zeros() as usize;
            return (blocks, Some((blocks - 1) * BLOCK + at));
        }
    }
    (blocks, None)
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

/// AVX2 classification, for CPUs that have it (detected at run time by the caller).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
mod avx2 {
    use std::arch::x86_64::{
        __m256i, _mm256_and_si256, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8,
        _mm256_set1_epi8, _mm256_setr_epi8, _mm256_setzero_si256, _mm256_shuffle_epi8,
        _mm256_srli_epi16,
    };

    use super::{BLOCK, Masks};

    /// [`super::classify_prefix`] with [`classify`].
    #[target_feature(enable = "avx2")]
    pub(super) fn classify_prefix(buf: &[u8], out: &mut [u64]) -> (usize, Option<usize>) {
        super::classify_prefix_with(buf, out, |block| classify(block))
    }

    /// AVX2 version of [`super::portable`]. A byte is structural when the table entries
    /// picked by its low and its high nibble share a bit, one bit per group of structural
    /// bytes:
    ///
    /// | bit | high nibble | low nibbles   | bytes               |
    /// |-----|-------------|---------------|---------------------|
    /// | 1   | 0, 1        | all           | 0x00–0x1F (control) |
    /// | 2   | 2           | 0, 2, C       | space `"` `,`       |
    /// | 4   | 3           | D             | `=`                 |
    /// | 8   | 5           | C             | `\`                 |
    /// | 16  | 7           | F             | 0x7F                |
    ///
    /// `vpshufb` with the byte itself as the index of the low-nibble table gives 0 for bytes
    /// `>= 0x80` (index bit 7 set), which are never structural.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(super) fn classify(block: &[u8; BLOCK]) -> Masks {
        let [lo, hi] = block.as_chunks::<32>().0 else {
            return super::portable(block);
        };
        // SAFETY: `_mm256_loadu_si256` reads 32 bytes from a `&[u8; 32]`: in bounds, and the
        // unaligned load has no alignment requirement. AVX2 is enabled for this function.
        let (lo, hi) = unsafe {
            (
                _mm256_loadu_si256(lo.as_ptr().cast::<__m256i>()),
                _mm256_loadu_si256(hi.as_ptr().cast::<__m256i>()),
            )
        };
        #[rustfmt::skip]
        let low_table = _mm256_setr_epi8(
            3, 1, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 11, 5, 1, 17,
            3, 1, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 11, 5, 1, 17,
        );
        #[rustfmt::skip]
        let high_table = _mm256_setr_epi8(
            1, 1, 2, 4, 0, 8, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0,
            1, 1, 2, 4, 0, 8, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0,
        );
        let nibble = _mm256_set1_epi8(0x0f);
        let zero = _mm256_setzero_si256();
        let newline = _mm256_set1_epi8(b'\n' as i8);
        // Bit i of the result: byte i of `x` is *not* structural.
        let plain = |x: __m256i| {
            let low = _mm256_shuffle_epi8(low_table, x);
            let high = _mm256_shuffle_epi8(
                high_table,
                _mm256_and_si256(_mm256_srli_epi16(x, 4), nibble),
            );
            u64::from(
                _mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_and_si256(low, high), zero)) as u32,
            )
        };
        let bits = |x: __m256i| u64::from(_mm256_movemask_epi8(x) as u32);
        Masks {
            structural: !(plain(lo) | plain(hi) << 32),
            newline: bits(_mm256_cmpeq_epi8(lo, newline))
                | bits(_mm256_cmpeq_epi8(hi, newline)) << 32,
            non_ascii: bits(lo) | bits(hi) << 32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX2 classification of `block`, when the CPU has AVX2.
    fn avx2_classify(block: &[u8; BLOCK]) -> Option<Masks> {
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return Some(unsafe { avx2::classify(block) });
        }
        // Said once, so that a run on such a CPU shows the AVX2 comparisons were skipped.
        static SKIPPED: std::sync::Once = std::sync::Once::new();
        SKIPPED.call_once(|| eprintln!("no AVX2 on this CPU: the AVX2 classifier is not tested"));
        None
    }

    /// Deterministic xorshift.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// Random bytes, half of them from the bytes classification cares about (and their
    /// neighbours) so that every mask is dense.
    fn random_bytes(state: &mut u64, len: usize) -> Vec<u8> {
        const INTERESTING: &[u8] =
            b",=\" \\\n\r\t\x00\x1f\x20\x21\x7e\x7f\x80\xbf\xc3\xff+-/<>[]{|}aZ09";
        (0..len)
            .map(|_| {
                let r = next(state);
                if r & 1 == 0 {
                    (r >> 8) as u8
                } else {
                    INTERESTING[(r >> 8) as usize % INTERESTING.len()]
                }
            })
            .collect()
    }

    /// The AVX2 and SSE2 classifications agree with the portable one on random blocks.
    #[test]
    fn classifiers_agree_on_random_blocks() {
        let mut state = 0x2545_F491_4F6C_DD1D;
        for _ in 0..20_000 {
            let bytes = random_bytes(&mut state, BLOCK);
            let block: &[u8; BLOCK] = bytes.as_slice().try_into().unwrap();
            let expected = portable(block);
            assert_eq!(classify(block), expected, "{bytes:?}");
            if let Some(avx2) = avx2_classify(block) {
                assert_eq!(avx2, expected, "AVX2: {bytes:?}");
            }
        }
    }

    /// [`classify_prefix`] (AVX2 when available) against [`classify_at`] block by block, on
    /// random buffers of every length up to a few blocks, with and without newlines.
    #[test]
    fn prefix_matches_block_by_block_classification() {
        let mut state = 0x9E37_79B9_7F4A_7C15;
        for len in 0..=5 * BLOCK {
            for newlines in [false, true] {
                let mut buf = random_bytes(&mut state, len);
                if !newlines {
                    buf.retain(|&b| b != b'\n');
                } else if let Some(at) = (len > 0).then(|| next(&mut state) as usize % len) {
                    buf[at] = b'\n';
                }
                let mut expected = Vec::new();
                let mut newline = None;
                let mut from = 0;
                while let Some(masks) = classify_at(&buf, from) {
                    expected.push(masks.structural);
                    if masks.newline != 0 {
                        newline = Some(from + masks.newline.trailing_zeros() as usize);
                        break;
                    }
                    from += BLOCK;
                }
                assert_eq!(newline, buf.iter().position(|&b| b == b'\n'));
                for room in [1, 2, 8] {
                    // The dispatching entry point (AVX2 where the CPU has it) and the
                    // fallback every other CPU runs, whatever this machine has.
                    let mut out = vec![0u64; room];
                    let mut fallback = vec![0u64; room];
                    for (blocks, found, out) in [
                        {
                            let (b, f) = classify_prefix(&buf, &mut out);
                            (b, f, &out)
                        },
                        {
                            let (b, f) = classify_prefix_with(&buf, &mut fallback, classify);
                            (b, f, &fallback)
                        },
                    ] {
                        let n = expected.len().min(room);
                        assert_eq!(blocks, n, "{buf:?}");
                        assert_eq!(out[..n], expected[..n], "{buf:?}");
                        let complete = n == expected.len();
                        assert_eq!(found, newline.filter(|_| complete), "{buf:?}");
                    }
                }
            }
        }
    }

    /// Every byte value at every position, against a direct per-byte computation (and the
    /// SSE2 and AVX2 versions against the portable one).
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
                    if let Some(avx2) = avx2_classify(&block) {
                        assert_eq!(avx2, expected, "AVX2: {value:#x} at {at}");
                    }
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
