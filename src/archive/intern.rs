//! The dictionary columns' interner: distinct values and their indices,
//! in first-seen order, in a hash table made for short values.
//!
//! Through arrow-rs, every value of a dictionary column went through a
//! general interner (ahash of the bytes, a hash table of indices into a
//! value store, `memcmp` through that store), a gather, and a `u64` index
//! per value: about half of the archive thread's encoding time. The values
//! here are short (`u2927`, `view`, a price), so [`Dictionary`] keys each
//! by its first and last 8 bytes inline and finds it with one multiply
//! and, almost always, one probe, with no call for the comparison. What
//! the values become in Parquet is [`super::dictionary`]'s to decide.

use super::column::Span;

/// Distinct values and their indices, in first-seen order.
#[derive(Default)]
pub(super) struct Dictionary {
    /// Open addressing, linear probing, at most half full. A slot holds
    /// what a lookup compares, so a hit costs one (likely cache-missing)
    /// load rather than one for the slot and one for the key.
    slots: Vec<Slot>,
    /// Values in the dictionary.
    count: u32,
    /// Per value, where its bytes end in `bytes`.
    ends: Vec<u32>,
    bytes: Vec<u8>,
}

#[derive(Clone, Copy, Default)]
struct Slot {
    /// The value's first and last 8 bytes (zero-padded): the whole value
    /// when it is at most 16 bytes long.
    a: u64,
    b: u64,
    len: u32,
    /// Index + 1; 0 for an empty slot.
    index: u32,
}

/// How far ahead of its lookup [`Dictionary::intern_all`] hashes a value:
/// enough lookups in flight to cover a load from L3 (measured: 8).
const AHEAD: usize = 8;

/// Tables of at most this many slots (96 KiB) are looked up without
/// prefetching.
const CACHED_SLOTS: usize = 4096;

/// A value's words and where its search starts.
#[derive(Clone, Copy, Default)]
pub(super) struct Probe {
    a: u64,
    b: u64,
    hash: u64,
}

impl Probe {
    #[inline]
    pub(super) fn of(v: &[u8]) -> Probe {
        let (a, b) = words(v);
        Probe { a, b, hash: hash_of(v, a, b) }
    }

    /// The probe of `v`, which starts at `at` in `buffer` (a piece's
    /// string bytes): when 16 bytes from `at` lie in `buffer`, its words
    /// are two fixed loads masked to its length, with no branch on that
    /// length. In a column like `category` (4 to 11 bytes, in no order)
    /// the branches of [`words`] were mispredicted about every other value.
    #[inline]
    pub(super) fn at(buffer: &[u8], at: usize, v: &[u8]) -> Probe {
        let n = v.len();
        match buffer.get(at..).and_then(<[u8]>::first_chunk::<16>) {
            Some(w) if n <= 16 => {
                let x = u128::from_le_bytes(*w);
                let (a, b) = (low_bytes(x as u64, n), low_bytes((x >> 64) as u64, n.saturating_sub(8)));
                Probe { a, b, hash: hash(a, b, n) }
            }
            _ => Probe::of(v),
        }
    }
}

/// The low `n` bytes of `w` (all of it from 8 on), the rest zero: one
/// load from a table, where computing the mask (a 128-bit shift, so that
/// 8 bytes do not overflow it) took seven instructions, twice per value.
#[inline]
fn low_bytes(w: u64, n: usize) -> u64 {
    w & LOW_BYTES[n.min(8)]
}

/// `LOW_BYTES[n]` keeps the low `n` bytes of a word.
const LOW_BYTES: [u64; 9] = {
    let mut masks = [u64::MAX; 9];
    let mut n = 0;
    while n < 8 {
        masks[n] = (1 << (8 * n)) - 1;
        n += 1;
    }
    masks
};

/// Asks for the cache line of `at` (a dictionary slot, a value's bytes)
/// ahead of its use (a hint; no effect on what is computed).
#[inline]
pub(super) fn prefetch<T>(at: &T) {
    // SAFETY: a prefetch reads nothing and cannot fault, whatever the
    // address; SSE, its target feature, is part of every x86-64 CPU.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(std::ptr::from_ref(at).cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// The words a slot keeps of `v`: for up to 16 bytes the value itself,
/// zero-padded (bytes 0–7, then 8–15); for longer values its first and
/// last 8 bytes. Loads of fixed width only: copying a short value through
/// `copy_from_slice` called `memcpy` and stalled the load that followed.
#[inline]
fn words(v: &[u8]) -> (u64, u64) {
    let n = v.len();
    let word = |c: Option<&[u8; 8]>| c.map_or(0, |c| u64::from_le_bytes(*c));
    let half = |c: Option<&[u8; 4]>| c.map_or(0, |c| u64::from(u32::from_le_bytes(*c)));
    match n {
        17.. => (word(v.first_chunk()), word(v.last_chunk())),
        // The last 8 bytes shifted down to what follows the first 8.
        9..=16 => (word(v.first_chunk()), word(v.last_chunk()) >> (8 * (16 - n))),
        8 => (word(v.first_chunk()), 0),
        // Two overlapping halves; the bytes they share are the same.
        4..=7 => (half(v.first_chunk()) | half(v.last_chunk()) << (8 * (n - 4)), 0),
        1..=3 => {
            let byte = |i: usize| u64::from(v[i]) << (8 * i);
            (byte(0) | byte(n / 2) | byte(n - 1), 0)
        }
        0 => (0, 0),
    }
}

/// Where a value's search starts: for values of at most 16 bytes, a mix
/// of the two words (they are the whole value); longer ones are hashed
/// whole, so that ids differing only in the middle (`user-000123@shop`)
/// do not all share one probe chain.
#[inline]
fn hash_of(v: &[u8], a: u64, b: u64) -> u64 {
    if v.len() <= 16 {
        hash(a, b, v.len())
    } else {
        xxhash_rust::xxh3::xxh3_64(v)
    }
}

#[inline]
fn hash(a: u64, b: u64, len: usize) -> u64 {
    // Two multiply-xorshift rounds: enough to spread ids that differ only
    // in their last digits over the table.
    let h = (a ^ (len as u64).rotate_left(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let h = (h ^ b ^ (h >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^ (h >> 32)
}

impl Dictionary {
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Empties the dictionary; its memory is kept (the table its size).
    pub fn clear(&mut self) {
        self.slots.fill(Slot::default());
        self.count = 0;
        self.ends.clear();
        self.bytes.clear();
    }

    /// Bytes of the values, end to end.
    pub fn value_bytes(&self) -> usize {
        self.bytes.len()
    }

    pub(super) fn value(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.bytes[start..self.ends[i] as usize]
    }

    /// The index of `v`, added if new; and whether it was new. The
    /// encoders intern whole columns (`intern_strings`, `intern_words`).
    #[cfg(test)]
    pub fn intern(&mut self, v: &[u8]) -> (u32, bool) {
        self.intern_probe(v, Probe::of(v))
    }

    /// Interns each of `values` (with its [`Probe`]) in order: its index
    /// goes to `indices`, and a value seen for the first time also to
    /// `new`.
    ///
    /// Values are probed `AHEAD` ahead of their lookup and their slot's
    /// cache line prefetched: a table of 20 k users is larger than a core's
    /// L2, and waiting for the slot's load was 40 % of interning.
    pub(super) fn intern_all<'v>(
        &mut self,
        values: impl Iterator<Item = (&'v [u8], Probe)>,
        indices: &mut Vec<u32>,
        mut new: impl FnMut(&[u8]),
    ) {
        let mut record = |v, (i, is_new)| {
            indices.push(i);
            if is_new {
                new(v);
            }
        };
        if self.slots.len() <= CACHED_SLOTS {
            // The table is in L1/L2 anyway (event types, categories,
            // quantities, prices): a prefetch would only cost.
            values.for_each(|(v, probe)| record(v, self.intern_probe(v, probe)));
            return;
        }
        let mut ring: [(&[u8], Probe); AHEAD] = [(&[], Probe::default()); AHEAD];
        let mut values = values.fuse();
        let mut queued = 0;
        for (n, (v, probe)) in values.by_ref().take(AHEAD).enumerate() {
            ring[n] = (v, self.prefetched(probe));
            queued += 1;
        }
        let mut at = 0;
        while queued > 0 {
            let (v, probe) = ring[at];
            record(v, self.intern_probe(v, probe));
            match values.next() {
                Some((next, probe)) => ring[at] = (next, self.prefetched(probe)),
                None => queued -= 1,
            }
            at = (at + 1) % AHEAD;
        }
    }

    /// Interns every value of a string column without nulls (`spans` of
    /// `bytes`, as `ColumnData::Strings` holds them), in order, their
    /// indices to `indices`. A table in L1/L2 (the common case) is looked
    /// up in one loop over the spans: through
    /// [`Dictionary::intern_all`]'s iterator of `(value, probe)` pairs each
    /// probe went through the stack, and interning a value took ~25 cycles
    /// (now ~18; ~20 through those pairs still, paired bench runs). Larger
    /// tables take `intern_all`'s prefetching loop (as fast as a copy of it
    /// over the spans).
    pub(super) fn intern_strings(&mut self, bytes: &[u8], spans: &[Span], indices: &mut Vec<u32>) {
        indices.reserve(spans.len());
        let value = |s: &Span| (s.start as usize, bytes.get(s.range()).unwrap_or_default());
        if self.slots.len() <= CACHED_SLOTS {
            for s in spans {
                let (at, v) = value(s);
                indices.push(self.intern_probe(v, Probe::at(bytes, at, v)).0);
            }
        } else {
            let values = spans.iter().map(value).map(|(at, v)| (v, Probe::at(bytes, at, v)));
            self.intern_all(values, indices, |_| {});
        }
    }

    /// Interns 8-byte numbers (`word` of each of `values`: its
    /// little-endian bytes as a `u64`), in order, as
    /// [`Dictionary::intern_strings`] does strings; `new` sees each value
    /// seen for the first time. Number columns are small tables (prices,
    /// quantities), looked up without prefetching.
    pub(super) fn intern_words<T: Copy>(
        &mut self,
        column: (&[T], &[bool]),
        word: impl Fn(T) -> u64,
        indices: &mut Vec<u32>,
        mut new: impl FnMut(&[u8]),
    ) {
        let (values, valid) = column;
        indices.reserve(values.len());
        let mut intern = |x: T| {
            let v = word(x).to_le_bytes();
            let (i, is_new) = self.intern_probe(&v, Probe::of(&v));
            indices.push(i);
            if is_new {
                new(&v);
            }
        };
        match valid {
            [] => values.iter().for_each(|&x| intern(x)),
            valid => values.iter().zip(valid).filter(|(_, &ok)| ok).for_each(|(&x, _)| intern(x)),
        }
    }

    /// `probe`, its slot's cache line prefetched.
    #[inline]
    fn prefetched(&self, probe: Probe) -> Probe {
        if let Some(slot) = self.slots.get(probe.hash as usize & self.slots.len().wrapping_sub(1)) {
            prefetch(slot);
        }
        probe
    }

    /// Looks `v` up; a value not yet in the dictionary is added (out of
    /// line: after the first pages of a chunk almost every lookup hits,
    /// and the hit path inlined into the loop over a piece is most of
    /// interning).
    #[inline(always)]
    fn intern_probe(&mut self, v: &[u8], Probe { a, b, hash }: Probe) -> (u32, bool) {
        // Values are single fields of one event, far below 4 GiB.
        let len = v.len() as u32;
        let mask = self.slots.len().wrapping_sub(1);
        let mut at = hash as usize & mask;
        while let Some(slot) = self.slots.get(at) {
            if slot.index == 0 {
                break;
            }
            if slot.a == a && slot.b == b && slot.len == len {
                let i = slot.index - 1;
                if v.len() <= 16 || self.value(i as usize) == v {
                    return (i, false);
                }
            }
            at = (at + 1) & mask;
        }
        (self.insert(v, Probe { a, b, hash }), true)
    }

    /// Adds `v`, which is not in the dictionary; returns its index.
    #[cold]
    #[inline(never)]
    fn insert(&mut self, v: &[u8], Probe { a, b, hash }: Probe) -> u32 {
        if self.slots.len() <= 2 * self.len() + 2 {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut at = hash as usize & mask;
        while self.slots[at].index != 0 {
            at = (at + 1) & mask;
        }
        // Dictionaries stay below `MAX_DICTIONARY_BYTES` plus one page
        // of values, far from 4 G entries.
        let i = self.count;
        self.count += 1;
        self.slots[at] = Slot { a, b, len: v.len() as u32, index: i + 1 };
        self.bytes.extend_from_slice(v);
        self.ends.push(self.bytes.len() as u32);
        i
    }

    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(256);
        let old = std::mem::replace(&mut self.slots, vec![Slot::default(); size]);
        let mask = size - 1;
        for slot in old.into_iter().filter(|s| s.index != 0) {
            let value = self.value(slot.index as usize - 1);
            let mut at = hash_of(value, slot.a, slot.b) as usize & mask;
            while self.slots[at].index != 0 {
                at = (at + 1) & mask;
            }
            self.slots[at] = slot;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interner_finds_what_it_added_long_short_and_alike() {
        let mut d = Dictionary::default();
        let values: Vec<String> = (0..20_000)
            .map(|i| match i % 4 {
                0 => format!("u{i}"),
                1 => format!("a-rather-long-identifier-{i}-with-a-common-suffix"),
                2 => format!("{i:0>16}"),
                _ => format!("x{}", "é".repeat(i % 40)),
            })
            .collect();
        let first: Vec<u32> = values.iter().map(|v| d.intern(v.as_bytes()).0).collect();
        // Every distinct value got its own index, in first-seen order...
        let distinct: std::collections::HashSet<&String> = values.iter().collect();
        assert_eq!(d.len(), distinct.len());
        // ...and is found again (through table growth), never added twice.
        for (v, &i) in values.iter().zip(&first) {
            assert_eq!(d.intern(v.as_bytes()), (i, false), "{v}");
            assert_eq!(d.value(i as usize), v.as_bytes());
        }
        // Values equal in their first and last 8 bytes and length, but not in
        // the middle, are told apart.
        let (a, b) =
            (d.intern(b"0123456789abcdefXYZ-0123456789abcdef"), d.intern(b"0123456789abcdefXYW-0123456789abcdef"));
        assert!(a.1 && b.1 && a.0 != b.0);
        // Long values that differ only in the middle do not share one probe
        // chain (hashed by their ends alone, 50 k of them made one chain of
        // 50 k slots, and interning quadratic).
        let mut m = Dictionary::default();
        let ids: Vec<String> = (0..50_000).map(|i| format!("user:00{i:06}@example.com")).collect();
        ids.iter().for_each(|v| _ = m.intern(v.as_bytes()));
        assert_eq!(m.len(), 50_000);
        let mask = m.slots.len() - 1;
        let longest = ids
            .iter()
            .map(|v| {
                let (a, b) = words(v.as_bytes());
                let home = hash_of(v.as_bytes(), a, b) as usize & mask;
                let mut at = home;
                while m.value(m.slots[at].index as usize - 1) != v.as_bytes() {
                    at = (at + 1) & mask;
                }
                (at + m.slots.len() - home) & mask
            })
            .max();
        assert!(longest < Some(64), "longest probe {longest:?}");
        // The empty string is a value like any other.
        let e = d.intern(b"");
        assert!(e.1);
        assert_eq!(d.intern(b""), (e.0, false));
    }

    #[test]
    fn words_are_the_value_zero_padded_or_its_first_and_last_eight_bytes() {
        let bytes: Vec<u8> = (1..=24).collect();
        let pad = |s: &[u8]| {
            let mut w = [0u8; 8];
            w[..s.len()].copy_from_slice(s);
            u64::from_le_bytes(w)
        };
        for n in 0..=24 {
            let v = &bytes[..n];
            let expect = match n {
                17.. => (pad(&v[..8]), pad(&v[n - 8..])),
                9..=16 => (pad(&v[..8]), pad(&v[8..])),
                _ => (pad(v), 0),
            };
            assert_eq!(words(v), expect, "{n} bytes");
        }
    }

    #[test]
    fn a_probe_from_the_buffer_is_the_probe_of_the_value() {
        // Every length at every start, near the buffer's end too (where the
        // two fixed loads would not fit), bytes with the high bit set.
        let buffer: Vec<u8> = (0..64u32).map(|i| (i * 37 + 200) as u8).collect();
        for at in 0..buffer.len() {
            for n in 0..=24.min(buffer.len() - at) {
                let v = &buffer[at..at + n];
                let (p, q) = (Probe::at(&buffer, at, v), Probe::of(v));
                assert_eq!((p.a, p.b, p.hash), (q.a, q.b, q.hash), "{n} bytes at {at}");
            }
        }
    }
}
