//! Byte ranges of objects fetched ahead of the partial reads that need them (no I/O).
//!
//! A sharded array is read one inner chunk at a time, each a ranged GET of a few hundred KiB
//! that waits a round trip; zarrs issues them from the compute threads, so only a couple are
//! in flight. The reader knows the shard index, so it asks for the inner chunks ahead of its
//! reads as a few larger pieces (adjacent inner chunks coalesced), fetched concurrently; a
//! partial read that falls inside a held piece is answered from it. [`HeldRanges`] is that
//! bookkeeping: which pieces are held, which request each serves, and when a piece can go.
//! A piece is released once as many bytes have been read from it as it holds (each inner
//! chunk is read once per pass), or when the reader's window no longer covers it; pieces that are
//! [kept](HeldRanges::keep) (a shard's index, asked for on every read) stay.

use std::collections::HashMap;
use std::ops::Range;

use zarrs::storage::byte_range::ByteRange;

/// Bytes held at most in pieces that are not kept: a bound whatever the reader asks for
/// (twice the reader's window of 32 MiB).
pub(super) const HELD_MAX_BYTES: u64 = 64 << 20;

/// The bytes `range` names in an object of `size` bytes; `None` when they are not all in it.
/// (zarrs' own `ByteRange::start` underflows on a suffix longer than the object.)
pub(super) fn absolute(range: &ByteRange, size: u64) -> Option<Range<u64>> {
    let (start, end) = match *range {
        ByteRange::FromStart(offset, Some(len)) => (offset, offset.checked_add(len)?),
        ByteRange::FromStart(offset, None) => (offset, size),
        ByteRange::Suffix(len) => (size.checked_sub(len)?, size),
    };
    (start <= end && end <= size).then_some(start..end)
}

/// One object's held pieces.
struct Object<S> {
    /// The object's size in bytes (suffix ranges are resolved against it).
    size: u64,
    pieces: Vec<Piece<S>>,
}

struct Piece<S> {
    /// Bytes of the object the piece holds.
    bytes: Range<u64>,
    /// The reader's units (inner chunks) in it; empty for a kept piece.
    units: Range<u64>,
    slot: S,
    /// Bytes not yet read from it.
    unread: u64,
    kept: bool,
}

/// The pieces held, by object key; `S` is what holds a piece's bytes (a fetch in flight or
/// done).
pub(super) struct HeldRanges<S> {
    objects: HashMap<String, Object<S>>,
    /// Bytes of the pieces that are not kept.
    held: u64,
}

impl<S: Clone> Default for HeldRanges<S> {
    fn default() -> Self {
        HeldRanges {
            objects: HashMap::new(),
            held: 0,
        }
    }
}

impl<S: Clone> HeldRanges<S> {
    /// Drops the pieces of `key` (not kept) with no unit in `window`: the reader has passed
    /// them, or its reads went elsewhere.
    pub fn forget_outside(&mut self, key: &str, window: &Range<u64>) {
        let Some(object) = self.objects.get_mut(key) else {
            return;
        };
        let held = &mut self.held;
        object.pieces.retain(|p| {
            let passed = !p.kept && (p.units.end <= window.start || p.units.start >= window.end);
            if passed {
                *held -= p.bytes.end - p.bytes.start;
            }
            !passed
        });
    }

    /// Whether a piece of `bytes` may be added: inside the object, overlapping no held
    /// piece, and within [`HELD_MAX_BYTES`].
    pub fn can_add(&self, key: &str, size: u64, bytes: &Range<u64>) -> bool {
        let len = bytes.end.saturating_sub(bytes.start);
        if len == 0 || bytes.end > size || self.held + len > HELD_MAX_BYTES {
            return false;
        }
        match self.objects.get(key) {
            Some(object) => {
                object.size == size
                    && !object
                        .pieces
                        .iter()
                        .any(|p| p.bytes.start < bytes.end && bytes.start < p.bytes.end)
            }
            None => true,
        }
    }

    /// Holds `slot` as bytes `bytes` of `key` (`size` bytes), covering the reader's `units`.
    /// The caller has checked [`HeldRanges::can_add`].
    pub fn add(&mut self, key: &str, size: u64, bytes: Range<u64>, units: Range<u64>, slot: S) {
        self.insert(key, size, bytes, units, slot, false);
    }

    /// Holds `slot` as bytes `bytes` of `key` for as long as this lives (a shard's index).
    pub fn keep(&mut self, key: &str, size: u64, bytes: Range<u64>, slot: S) {
        let known = self
            .objects
            .get(key)
            .is_some_and(|o| o.size == size && o.pieces.iter().any(|p| p.kept && p.bytes == bytes));
        if !known && bytes.start < bytes.end && bytes.end <= size {
            self.insert(key, size, bytes, 0..0, slot, true);
        }
    }

    fn insert(
        &mut self,
        key: &str,
        size: u64,
        bytes: Range<u64>,
        units: Range<u64>,
        slot: S,
        kept: bool,
    ) {
        let object = self
            .objects
            .entry(key.to_string())
            .or_insert_with(|| Object {
                size,
                pieces: Vec::new(),
            });
        if object.size != size {
            // The object changed under us: what was held of it is stale.
            let dropped: u64 = object
                .pieces
                .iter()
                .filter(|p| !p.kept)
                .map(|p| p.bytes.end - p.bytes.start)
                .sum();
            self.held -= dropped;
            object.pieces.clear();
            object.size = size;
        }
        let len = bytes.end - bytes.start;
        if !kept {
            self.held += len;
        }
        object.pieces.push(Piece {
            bytes,
            units,
            slot,
            unread: len,
            kept,
        });
    }

    /// Where each of `ranges` of `key` lies in the held pieces: per range, the piece's slot
    /// and the range's bytes within the piece, when every range lies inside one piece
    /// (`None` otherwise: the caller reads from the object itself). The bytes served count
    /// as read; a piece (not kept) from which all its bytes have been read is released.
    pub fn serve(&mut self, key: &str, ranges: &[ByteRange]) -> Option<Vec<(S, Range<usize>)>> {
        let object = self.objects.get_mut(key)?;
        let size = object.size;
        let mut found = Vec::with_capacity(ranges.len());
        for range in ranges {
            let Range { start, end } = absolute(range, size)?;
            let at = object
                .pieces
                .iter()
                .position(|p| p.bytes.start <= start && end <= p.bytes.end)?;
            found.push((at, start, end));
        }
        let served = found
            .iter()
            .map(|&(at, start, end)| {
                let piece = &object.pieces[at];
                let base = piece.bytes.start;
                (
                    piece.slot.clone(),
                    (start - base) as usize..(end - base) as usize,
                )
            })
            .collect();
        for &(at, start, end) in &found {
            let piece = &mut object.pieces[at];
            if !piece.kept {
                piece.unread = piece.unread.saturating_sub(end - start);
            }
        }
        let held = &mut self.held;
        object.pieces.retain(|p| {
            let done = !p.kept && p.unread == 0;
            if done {
                *held -= p.bytes.end - p.bytes.start;
            }
            !done
        });
        Some(served)
    }

    /// Bytes held in pieces that are not kept.
    #[cfg(test)]
    fn held(&self) -> u64 {
        self.held
    }

    #[cfg(test)]
    fn pieces(&self, key: &str) -> usize {
        self.objects.get(key).map_or(0, |o| o.pieces.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A piece's slot in these tests: the object's bytes it holds, as a tag.
    type Tag = (u64, u64);

    fn add(h: &mut HeldRanges<Tag>, key: &str, size: u64, bytes: Range<u64>, units: Range<u64>) {
        assert!(h.can_add(key, size, &bytes));
        let tag = (bytes.start, bytes.end);
        h.add(key, size, bytes, units, tag);
    }

    #[test]
    fn requests_inside_a_piece_are_served_from_it_and_release_it_when_all_read() {
        let mut h = HeldRanges::default();
        add(&mut h, "X/data/c/0", 1000, 100..400, 0..3);
        assert_eq!(h.held(), 300);
        let got = h
            .serve("X/data/c/0", &[ByteRange::FromStart(100, Some(100))])
            .unwrap();
        assert_eq!(got, vec![((100, 400), 0..100)]);
        // Two ranges in one request, from the same piece.
        let got = h
            .serve(
                "X/data/c/0",
                &[
                    ByteRange::FromStart(200, Some(100)),
                    ByteRange::FromStart(300, Some(100)),
                ],
            )
            .unwrap();
        assert_eq!(got, vec![((100, 400), 100..200), ((100, 400), 200..300)]);
        // All 300 bytes read: released.
        assert_eq!(h.pieces("X/data/c/0"), 0);
        assert_eq!(h.held(), 0);
        assert!(h
            .serve("X/data/c/0", &[ByteRange::FromStart(100, Some(100))])
            .is_none());
    }

    #[test]
    fn a_request_not_wholly_inside_held_pieces_is_not_served() {
        let mut h = HeldRanges::default();
        add(&mut h, "k", 1000, 0..100, 0..1);
        add(&mut h, "k", 1000, 100..200, 1..2);
        // Spans two pieces.
        assert!(h
            .serve("k", &[ByteRange::FromStart(50, Some(100))])
            .is_none());
        // One range held, the other not: nothing is served or counted.
        assert!(h
            .serve(
                "k",
                &[
                    ByteRange::FromStart(0, Some(10)),
                    ByteRange::FromStart(500, Some(10))
                ]
            )
            .is_none());
        assert!(h
            .serve("other", &[ByteRange::FromStart(0, Some(10))])
            .is_none());
        assert!(h
            .serve("k", &[ByteRange::FromStart(990, Some(20))])
            .is_none());
        assert_eq!(h.held(), 200);
    }

    #[test]
    fn byte_ranges_resolve_inside_the_object_or_not_at_all() {
        assert_eq!(
            absolute(&ByteRange::FromStart(10, Some(5)), 100),
            Some(10..15)
        );
        assert_eq!(
            absolute(&ByteRange::FromStart(90, None), 100),
            Some(90..100)
        );
        assert_eq!(absolute(&ByteRange::Suffix(4), 100), Some(96..100));
        assert_eq!(absolute(&ByteRange::Suffix(101), 100), None);
        assert_eq!(absolute(&ByteRange::FromStart(99, Some(2)), 100), None);
        assert_eq!(absolute(&ByteRange::FromStart(101, None), 100), None);
        assert_eq!(
            absolute(&ByteRange::FromStart(u64::MAX, Some(2)), 100),
            None
        );
    }

    #[test]
    fn kept_pieces_answer_suffix_reads_every_time() {
        let mut h = HeldRanges::default();
        h.keep("shard", 1000, 932..1000, (932, 1000));
        h.keep("shard", 1000, 932..1000, (0, 0)); // once only
        assert_eq!(h.pieces("shard"), 1);
        for _ in 0..3 {
            let got = h.serve("shard", &[ByteRange::Suffix(68)]).unwrap();
            assert_eq!(got, vec![((932, 1000), 0..68)]);
        }
        let got = h.serve("shard", &[ByteRange::Suffix(4)]).unwrap();
        assert_eq!(got, vec![((932, 1000), 64..68)]);
        assert_eq!(h.held(), 0);
        // The read to the end of the object.
        let got = h
            .serve("shard", &[ByteRange::FromStart(940, None)])
            .unwrap();
        assert_eq!(got, vec![((932, 1000), 8..68)]);
    }

    #[test]
    fn pieces_overlapping_held_ones_or_past_the_bound_are_refused() {
        let mut h = HeldRanges::default();
        add(&mut h, "k", 1000, 100..200, 1..2);
        assert!(!h.can_add("k", 1000, &(150..250)));
        assert!(!h.can_add("k", 1000, &(50..101)));
        assert!(h.can_add("k", 1000, &(200..300)));
        assert!(!h.can_add("k", 1000, &(900..1001)), "past the object's end");
        assert!(!h.can_add("k", 1000, &(300..300)), "empty");
        assert!(!h.can_add("k", 999, &(300..400)), "another size: stale");
        assert!(!h.can_add("big", u64::MAX, &(0..HELD_MAX_BYTES)));
        assert!(h.can_add("big", u64::MAX, &(0..HELD_MAX_BYTES - 100)));
    }

    #[test]
    fn pieces_outside_the_readers_window_are_dropped() {
        let mut h = HeldRanges::default();
        add(&mut h, "k", 1000, 0..100, 0..2);
        add(&mut h, "k", 1000, 100..200, 2..4);
        add(&mut h, "k", 1000, 200..300, 4..6);
        h.keep("k", 1000, 990..1000, (990, 1000));
        h.forget_outside("k", &(3..6));
        assert_eq!(
            h.pieces("k"),
            3,
            "the second and third pieces and the kept one"
        );
        assert_eq!(h.held(), 200);
        // Reads elsewhere (out of order): what lies ahead of them goes too.
        h.forget_outside("k", &(0..3));
        assert_eq!(h.pieces("k"), 2, "the second piece and the kept one");
        h.forget_outside("k", &(4..9));
        assert_eq!(h.pieces("k"), 1);
        assert_eq!(h.held(), 0);
        assert!(h.serve("k", &[ByteRange::Suffix(10)]).is_some());
    }

    #[test]
    fn an_object_of_another_size_replaces_what_was_held() {
        let mut h = HeldRanges::default();
        add(&mut h, "k", 1000, 0..100, 0..1);
        h.keep("k", 1200, 1100..1200, (1100, 1200));
        assert_eq!(h.held(), 0);
        assert_eq!(h.pieces("k"), 1);
        assert!(h.serve("k", &[ByteRange::FromStart(0, Some(10))]).is_none());
    }
}
