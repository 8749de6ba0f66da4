//! The tape: a value tree flattened in document order, 16 bytes a node.
//!
//! Both directions read their input into a tape and write the tape out, so
//! nothing recurses on input and nothing is allocated by a claimed length.
//! Invariants:
//! - a container's node comes before its descendants, and its `end` is the
//!   index just past the last of them, so [`Tape::after`] skips a subtree in
//!   O(1);
//! - a map's `len` counts distinct keys; when a key repeats, its pairs in
//!   Python dict order (first position, last value) are kept once in
//!   [`Tape::order`], so readers and writers never resolve repeats again.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

/// Bytes of a string, in the input or (for JSON strings with escapes) in
/// [`Tape::text`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Span {
    pub(super) start: u32,
    pub(super) len: u32,
    pub(super) unescaped: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Node {
    Null,
    Bool(bool),
    /// Below zero; `UInt` holds the rest, the split msgpack makes.
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(Span),
    Bin(Span),
    Ext(i8, Span),
    /// `end`: the index just past the last descendant.
    Array {
        len: u32,
        end: u32,
    },
    /// `len` counts distinct keys. `order` is [`WIRE_ORDER`] when the keys
    /// are distinct, else where its (key, value) pairs start in [`Tape::order`].
    Map {
        len: u32,
        end: u32,
        order: u32,
    },
    /// JSON only: values `json.loads` reads but `packb` refuses, an error
    /// only if no later repeated key drops them.
    BigInt,
    LoneSurrogate,
}

pub(super) const WIRE_ORDER: u32 = u32::MAX;

/// Maps with more keys than this find repeats by hashing rather than pairwise.
pub(super) const PAIRWISE_KEYS: usize = 8;

pub(super) struct Tape<'s> {
    pub(super) source: &'s [u8],
    pub(super) text: Vec<u8>,
    pub(super) nodes: Vec<Node>,
    /// For each map with repeated keys: its (key, value) node indices in
    /// Python dict order (first position, last value).
    pub(super) order: Vec<u32>,
}

/// A map key as a Python dict sees it: `"a"` and `b"a"` differ.
pub(super) type Key<'t> = (bool, &'t [u8]);

impl<'s> Tape<'s> {
    pub(super) fn new(source: &'s [u8]) -> Self {
        Tape {
            source,
            text: Vec::new(),
            nodes: Vec::with_capacity(16),
            order: Vec::new(),
        }
    }

    /// A tape that allocates nothing until a node is pushed (an event's
    /// `"user"`, which most events do not have).
    pub(super) fn empty(source: &'s [u8]) -> Self {
        Tape {
            source,
            text: Vec::new(),
            nodes: Vec::new(),
            order: Vec::new(),
        }
    }

    pub(super) fn bytes(&self, span: Span) -> &[u8] {
        let range = span.start as usize..span.start as usize + span.len as usize;
        if span.unescaped {
            &self.text[range]
        } else {
            &self.source[range]
        }
    }

    pub(super) fn str_at(&self, at: usize) -> Option<&[u8]> {
        match self.nodes[at] {
            Node::Str(span) => Some(self.bytes(span)),
            _ => None,
        }
    }

    pub(super) fn key(&self, at: usize) -> Key<'_> {
        match self.nodes[at] {
            Node::Str(span) => (false, self.bytes(span)),
            Node::Bin(span) => (true, self.bytes(span)),
            // The msgpack reader lets only str and bin through as keys. JSON
            // keys with unpaired surrogates all land here: whichever
            // survives fails packb anyway.
            _ => (true, &[]),
        }
    }

    /// The index just past node `at` and its descendants.
    pub(super) fn after(&self, at: usize) -> usize {
        match self.nodes[at] {
            Node::Array { end, .. } | Node::Map { end, .. } => end as usize,
            _ => at + 1,
        }
    }

    pub(super) fn push(&mut self, node: Node) {
        self.nodes.push(node);
    }

    /// Pushes a container whose size is filled in by `close`.
    pub(super) fn open(&mut self) -> usize {
        self.nodes.push(Node::Null);
        self.nodes.len() - 1
    }

    pub(super) fn close(&mut self, at: usize, map: bool, count: u32) {
        let end = self.nodes.len() as u32;
        self.nodes[at] = if !map {
            Node::Array { len: count, end }
        } else if count > 1 && self.has_repeated_keys(at, count) {
            let (len, order) = self.dict_order(at, count);
            Node::Map { len, end, order }
        } else {
            Node::Map {
                len: count,
                end,
                order: WIRE_ORDER,
            }
        };
    }

    pub(super) fn wire_entries(&self, at: usize, pairs: u32) -> WireEntries<'_, 's> {
        WireEntries {
            tape: self,
            next: at + 1,
            left: pairs,
        }
    }

    pub(super) fn has_repeated_keys(&self, at: usize, pairs: u32) -> bool {
        let pairs = pairs as usize;
        if pairs <= PAIRWISE_KEYS {
            let mut keys = [(false, &[][..]); PAIRWISE_KEYS];
            for (i, (k, _)) in self.wire_entries(at, pairs as u32).enumerate() {
                keys[i] = self.key(k);
                if keys[..i].contains(&keys[i]) {
                    return true;
                }
            }
            return false;
        }
        let mut seen = HashSet::with_capacity(pairs);
        !self
            .wire_entries(at, pairs as u32)
            .all(|(k, _)| seen.insert(self.key(k)))
    }

    /// Records the map's pairs in dict order; returns (distinct keys, start in `order`).
    pub(super) fn dict_order(&mut self, at: usize, pairs: u32) -> (u32, u32) {
        let mut slots: HashMap<Key<'_>, usize> = HashMap::with_capacity(pairs as usize);
        let mut entries: Vec<[u32; 2]> = Vec::with_capacity(pairs as usize);
        for (k, v) in self.wire_entries(at, pairs) {
            match slots.entry(self.key(k)) {
                Entry::Occupied(slot) => entries[*slot.get()][1] = v as u32,
                Entry::Vacant(slot) => {
                    slot.insert(entries.len());
                    entries.push([k as u32, v as u32]);
                }
            }
        }
        drop(slots);
        let start = self.order.len() as u32;
        self.order.extend(entries.iter().flatten());
        (entries.len() as u32, start)
    }

    /// A map's (key, value) node indices in dict order.
    pub(super) fn entries(&self, at: usize) -> Entries<'_, 's> {
        match self.nodes[at] {
            Node::Map { len, order, .. } if order != WIRE_ORDER => {
                let start = order as usize;
                Entries::Ordered(self.order[start..start + 2 * len as usize].chunks_exact(2))
            }
            Node::Map { len, .. } => Entries::Wire(self.wire_entries(at, len)),
            _ => Entries::Wire(self.wire_entries(at, 0)),
        }
    }
}

pub(super) struct WireEntries<'t, 's> {
    pub(super) tape: &'t Tape<'s>,
    pub(super) next: usize,
    pub(super) left: u32,
}

impl Iterator for WireEntries<'_, '_> {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let key = self.next;
        self.next = self.tape.after(key + 1);
        Some((key, key + 1))
    }
}

pub(super) enum Entries<'t, 's> {
    Wire(WireEntries<'t, 's>),
    Ordered(std::slice::ChunksExact<'t, u32>),
}

impl Iterator for Entries<'_, '_> {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        match self {
            Entries::Wire(wire) => wire.next(),
            Entries::Ordered(pairs) => pairs.next().map(|p| (p[0] as usize, p[1] as usize)),
        }
    }
}

/// A container being read: its node, and values (or pairs) so far.
#[derive(Clone, Copy)]
pub(super) struct Open {
    pub(super) at: usize,
    pub(super) count: u32,
    pub(super) map: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_stay_small() {
        assert_eq!(std::mem::size_of::<Node>(), 16);
    }
}
