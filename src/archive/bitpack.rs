//! Parquet's bit-packing, shared by the two encodings that use it: the
//! miniblocks of `DELTA_BINARY_PACKED` (times, offsets, id lengths) and
//! the bit-packed runs of the RLE/bit-packed hybrid (dictionary indices,
//! definition levels).
//!
//! Both lay values out the same way: least significant bit first, each
//! group of 8 values filling exactly `width` bytes. Packing one value at
//! a time with the width in a register (a shift of a 128-bit accumulator,
//! a test for a full word, a byte pushed per 8 bits) cost 20–30
//! instructions a value, a sixth of the archive thread (callgrind,
//! 2026-12-03). Here the width is a constant: [`pack`] dispatches once per
//! call to a copy of the packing loop compiled for that width, in which
//! every shift, word index and straddle test is known, so a group of 8 is
//! a handful of shifts and ors and one store of `width` bytes.

/// Values packed per group: 8 values of `width` bits are `width` bytes.
pub const GROUP: usize = 8;

/// Appends `values` packed at `width` bits (at most 64; each value must
/// be below `2^width`, bits above it would spill into the next value).
/// `values.len()` must be a multiple of [`GROUP`]; the callers pad.
/// Width 0 writes nothing.
pub fn pack<T: Copy + Into<u64>>(values: &[T], width: u32, out: &mut Vec<u8>) {
    debug_assert_eq!(values.len() % GROUP, 0, "callers pad to whole groups");
    macro_rules! dispatch {
        ($($w:literal)*) => {
            match width {
                0 => {}
                $($w => groups::<T, $w>(values, out),)*
                // Callers compute widths from `leading_zeros` of a u64
                // (delta) or a u32 (hybrid): never above 64.
                _ => unreachable!("bit width {width} above 64"),
            }
        };
    }
    dispatch!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32
              33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61 62 63 64);
}

/// [`pack`] for one width `W`.
fn groups<T: Copy + Into<u64>, const W: usize>(values: &[T], out: &mut Vec<u8>) {
    let start = out.len();
    let groups = values.len() / GROUP;
    out.resize(start + groups * W, 0);
    for (group, dst) in values.chunks_exact(GROUP).zip(out[start..].chunks_exact_mut(W)) {
        pack_group::<T, W>(group, dst);
    }
}

/// One group of 8 values into its `W` bytes. With `W` constant and the
/// loop unrolled, the word and shift of every value are constants.
#[inline(always)]
fn pack_group<T: Copy + Into<u64>, const W: usize>(group: &[T], dst: &mut [u8]) {
    // 8 × W bits: at most 8 words.
    let mut words = [0u64; GROUP];
    for (i, &v) in group.iter().enumerate().take(GROUP) {
        let v: u64 = v.into();
        let (word, shift) = (i * W / 64, i * W % 64);
        words[word] |= v << shift;
        // The value straddles two words: its high bits start the next.
        if shift + W > 64 {
            words[word + 1] |= v >> (64 - shift);
        }
    }
    let mut bytes = [0u8; GROUP * 8];
    for (b, w) in bytes.chunks_exact_mut(8).zip(words) {
        b.copy_from_slice(&w.to_le_bytes());
    }
    dst.copy_from_slice(&bytes[..W]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Value `i` of a packed buffer, read bit by bit (the oracle: the
    /// format's definition, not the packer's arithmetic).
    fn unpack(bytes: &[u8], width: usize, i: usize) -> u64 {
        (0..width).fold(0, |v, b| {
            let bit = i * width + b;
            v | u64::from((bytes[bit / 8] >> (bit % 8)) & 1) << b
        })
    }

    #[test]
    fn every_width_round_trips_for_both_value_types() {
        for width in 0..=64u32 {
            let mask = if width == 64 { u64::MAX } else { (1u64 << width) - 1 };
            // Values mixing all-ones, zeros and scrambled bits.
            let values: Vec<u64> = (0..64u64)
                .map(|i| match i % 4 {
                    0 => mask,
                    1 => 0,
                    _ => i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(i as u32) & mask,
                })
                .collect();
            let mut out = vec![0xAA]; // what was there before stays
            pack(&values, width, &mut out);
            assert_eq!(out[0], 0xAA);
            assert_eq!(out.len(), 1 + 64 * width as usize / 8, "width {width}");
            for (i, &v) in values.iter().enumerate() {
                assert_eq!(unpack(&out[1..], width as usize, i), v, "width {width}, value {i}");
            }
            if width <= 32 {
                let narrow: Vec<u32> = values.iter().map(|&v| v as u32).collect();
                let mut again = vec![0xAA];
                pack(&narrow, width, &mut again);
                assert_eq!(again, out, "u32 values pack as u64 ones, width {width}");
            }
        }
    }
}
