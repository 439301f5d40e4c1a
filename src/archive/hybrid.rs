//! The Parquet RLE/bit-packed hybrid encoding, as far as the archive's
//! dictionary pages use it: dictionary indices bit-packed, definition
//! levels as one run of ones (no nulls) or bit-packed from the rows'
//! validity flags.
//!
//! Runs: a bit-packed run is the varint `groups << 1 | 1` then `groups`
//! groups of 8 values, each `width` bytes, least significant bit first; an
//! RLE run is the varint `count << 1` then the value in `ceil(width / 8)`
//! bytes. Bit-packed runs here hold at most 63 groups, so their header is
//! one byte: what arrow-rs and parquet-mr write, and so what every reader
//! has met.

use super::bitpack;

/// Values per bit-packed run (63 groups of 8).
const RUN: usize = 63 * 8;

/// Bits needed for values up to `max`.
pub fn width(max: u32) -> u8 {
    (32 - max.leading_zeros()) as u8
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// `count` copies of `value` (of `width` bits) as one RLE run.
pub fn repeat(value: u32, width: u8, count: usize, out: &mut Vec<u8>) {
    if count == 0 {
        return;
    }
    varint((count as u64) << 1, out);
    out.extend_from_slice(&value.to_le_bytes()[..usize::from(width).div_ceil(8)]);
}

/// `values`, each below `2^width`, bit-packed: dictionary indices, or
/// validity flags at width 1 (definition levels, the first row in the
/// lowest bit). Width 0 (a dictionary of one value) is written as an RLE
/// run, which readers decode without reading any bits.
pub fn pack<T: Copy + Default + Into<u64>>(values: &[T], width: u8, out: &mut Vec<u8>) {
    if width == 0 {
        return repeat(0, 0, values.len(), out);
    }
    let width = u32::from(width);
    for run in values.chunks(RUN) {
        let groups = run.len().div_ceil(bitpack::GROUP);
        out.push(((groups as u8) << 1) | 1);
        let whole = run.len() / bitpack::GROUP * bitpack::GROUP;
        bitpack::pack(&run[..whole], width, out);
        // A short last group is padded with zeros to 8 values.
        if whole < run.len() {
            let mut last = [T::default(); bitpack::GROUP];
            last[..run.len() - whole].copy_from_slice(&run[whole..]);
            bitpack::pack(&last, width, out);
        }
    }
}

/// A v1 data page's definition levels for `len` rows, `valid` their
/// validity (empty: all present): the levels' byte length, then their
/// hybrid runs.
pub fn levels(valid: &[bool], len: usize, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    match valid {
        [] => repeat(1, 1, len, out),
        valid => pack(valid, 1, out),
    }
    // The levels of one page of rows, far below 4 GiB.
    let bytes = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&bytes.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes hybrid runs back into `n` values (test oracle, written from
    /// the format's definition rather than from the encoder above).
    fn decode(mut data: &[u8], width: u8, n: usize) -> Vec<u32> {
        let mut out = Vec::new();
        while out.len() < n {
            let (mut header, mut shift) = (0u64, 0);
            loop {
                let b = data[0];
                data = &data[1..];
                header |= u64::from(b & 0x7f) << shift;
                shift += 7;
                if b < 0x80 {
                    break;
                }
            }
            if header & 1 == 1 {
                let count = (header >> 1) as usize * 8;
                let bytes = count * usize::from(width) / 8;
                for i in 0..count {
                    let mut v = 0u32;
                    for b in 0..usize::from(width) {
                        let bit = i * usize::from(width) + b;
                        v |= u32::from((data[bit / 8] >> (bit % 8)) & 1) << b;
                    }
                    out.push(v);
                }
                data = &data[bytes..];
            } else {
                let count = (header >> 1) as usize;
                let nbytes = usize::from(width).div_ceil(8);
                let mut v = [0u8; 4];
                v[..nbytes].copy_from_slice(&data[..nbytes]);
                data = &data[nbytes..];
                out.extend(std::iter::repeat_n(u32::from_le_bytes(v), count));
            }
        }
        out.truncate(n);
        out
    }

    #[test]
    fn widths() {
        assert_eq!(width(0), 0);
        assert_eq!(width(1), 1);
        assert_eq!(width(2), 2);
        assert_eq!(width(255), 8);
        assert_eq!(width(256), 9);
        assert_eq!(width(u32::MAX), 32);
    }

    #[test]
    fn pack_round_trips_every_width_and_length() {
        for w in 0..=32u8 {
            for n in [0, 1, 7, 8, 9, 503, 504, 505, 1500] {
                let max = if w == 32 { u32::MAX } else { (1u32 << w) - 1 };
                let values: Vec<u32> = (0..n as u32).map(|i| i.wrapping_mul(2_654_435_761) & max).collect();
                let mut out = Vec::new();
                pack(&values, w, &mut out);
                assert_eq!(decode(&out, w, n), values, "width {w}, {n} values");
            }
        }
    }

    #[test]
    fn validity_levels_round_trip() {
        for n in [1, 8, 13, 504, 505, 2000] {
            let valid: Vec<bool> = (0..n).map(|i| i % 3 != 1).collect();
            let mut out = Vec::new();
            pack(&valid, 1, &mut out);
            let expect: Vec<u32> = valid.iter().map(|&v| u32::from(v)).collect();
            assert_eq!(decode(&out, 1, n), expect, "{n} levels");
        }
    }

    #[test]
    fn repeat_is_one_run() {
        let mut out = Vec::new();
        repeat(1, 1, 65_536, &mut out);
        assert_eq!(decode(&out, 1, 65_536), vec![1; 65_536]);
        assert_eq!(out.len(), 4, "varint header of 3 bytes and one value byte");
    }
}
