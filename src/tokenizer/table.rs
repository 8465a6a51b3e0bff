//! Compact storage for the vocabulary's strings: all of them in one buffer, found by index or,
//! through a hash table of indices, by content.
//!
//! A vocabulary holds tens of thousands of short strings (SmolLM2: 49152 tokens and 48900 merges);
//! as one `String` each, plus a `HashMap<String, u32>` copy to look them up, the tokenizer took
//! ~8.4 MiB of heap for SmolLM2 (measured with a counting allocator) and many more in allocator
//! slack, on a 145 MB model. Here a string costs its bytes, a 4-byte end offset and a 4-byte
//! hash-table slot.

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

/// Byte strings, numbered from 0 in the order pushed.
#[derive(Debug, Clone, Default)]
pub(crate) struct ByteTable {
    bytes: Vec<u8>,
    /// `ends[i]`: one past the last byte of string `i` in `bytes`.
    ends: Vec<u32>,
}

impl ByteTable {
    /// Appends `s` as string `len()`. `None`, and nothing appended, once the strings would take
    /// more than `u32::MAX` bytes.
    pub fn push(&mut self, s: &[u8]) -> Option<()> {
        self.push_concat(&[s])
    }

    /// Appends the concatenation of `parts` as one string, as [`ByteTable::push`].
    fn push_concat(&mut self, parts: &[&[u8]]) -> Option<()> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let end = u32::try_from(self.bytes.len() + len).ok()?;
        for p in parts {
            self.bytes.extend_from_slice(p);
        }
        self.ends.push(end);
        Some(())
    }

    /// String `i`, `None` past the end.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let end = *self.ends.get(i)? as usize;
        let start = match i {
            0 => 0,
            _ => self.ends[i - 1] as usize,
        };
        Some(&self.bytes[start..end])
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// String `i` of an index taken from a table's hash index (so in range).
    fn at(&self, i: u32) -> &[u8] {
        self.get(i as usize)
            .expect("indices in the hash table are in the table")
    }

    /// Releases the spare capacity of a finished table.
    pub fn shrink_to_fit(&mut self) {
        self.bytes.shrink_to_fit();
        self.ends.shrink_to_fit();
    }
}

/// UTF-8 strings numbered from 0, with a lookup by content: the token texts. The hash index
/// hashes and compares bytes; only [`StrTable::get`] and [`StrTable::iter`] read them as `str`.
#[derive(Debug, Clone, Default)]
pub(crate) struct StrTable {
    strings: ByteTable,
    /// Index of each distinct string; for a string pushed twice, the later index.
    index: HashTable<u32>,
    hasher: RandomState,
}

impl StrTable {
    /// Appends `s` as string `len()`; a later duplicate takes over the lookup (as llama.cpp's
    /// `token_to_id[text] = id` does). `None`, and nothing appended, past `u32::MAX` strings or
    /// bytes.
    pub fn push(&mut self, s: &str) -> Option<()> {
        let id = u32::try_from(self.strings.len()).ok()?;
        self.strings.push(s.as_bytes())?;
        let hash = self.hasher.hash_one(s.as_bytes());
        let strings = &self.strings;
        match self
            .index
            .find_mut(hash, |&i| strings.at(i) == s.as_bytes())
        {
            Some(slot) => *slot = id,
            None => {
                let hasher = &self.hasher;
                self.index
                    .insert_unique(hash, id, |&i| hasher.hash_one(strings.at(i)));
            }
        }
        Some(())
    }

    /// String `i`, `None` past the end.
    pub fn get(&self, i: usize) -> Option<&str> {
        self.strings.get(i).map(as_str)
    }

    /// The index of `s` (the last pushed, for a duplicate).
    pub fn find(&self, s: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(s.as_bytes());
        self.index
            .find(hash, |&i| self.strings.at(i) == s.as_bytes())
            .copied()
    }

    pub fn len(&self) -> usize {
        self.strings.len()
    }

    /// The strings in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        (0..self.len()).map(|i| as_str(self.strings.at(i as u32)))
    }

    /// Releases the spare capacity of a finished table.
    pub fn shrink_to_fit(&mut self) {
        self.strings.shrink_to_fit();
        let hasher = &self.hasher;
        let strings = &self.strings;
        self.index
            .shrink_to_fit(|&i| hasher.hash_one(strings.at(i)));
    }
}

/// A table of pairs of strings with a rank each, looked up by the pair: BPE's merges (hashed and
/// compared as bytes).
#[derive(Debug, Clone, Default)]
pub(crate) struct PairTable {
    /// Each pair as `left` then `right`.
    strings: ByteTable,
    /// The length of each pair's left string.
    splits: Vec<u32>,
    /// The rank of each pair, parallel to `strings`.
    ranks: Vec<u32>,
    /// Index into `strings` of each distinct pair.
    index: HashTable<u32>,
    hasher: RandomState,
}

impl PairTable {
    /// Adds `(left, right)` with `rank` unless the pair is already there (the first rank wins).
    /// `None`, and nothing added, past `u32::MAX` pairs or bytes.
    pub fn insert(&mut self, left: &str, right: &str, rank: u32) -> Option<()> {
        let (left, right) = (left.as_bytes(), right.as_bytes());
        let hash = self.hasher.hash_one((left, right));
        if self.find_index(hash, left, right).is_some() {
            return Some(());
        }
        let i = u32::try_from(self.strings.len()).ok()?;
        let split = u32::try_from(left.len()).ok()?;
        self.strings.push_concat(&[left, right])?;
        self.splits.push(split);
        self.ranks.push(rank);
        let (hasher, strings, splits) = (&self.hasher, &self.strings, &self.splits);
        self.index
            .insert_unique(hash, i, |&i| hasher.hash_one(pair_at(strings, splits, i)));
        Some(())
    }

    /// The rank of `(left, right)`.
    pub fn rank(&self, left: &str, right: &str) -> Option<u32> {
        let (left, right) = (left.as_bytes(), right.as_bytes());
        let hash = self.hasher.hash_one((left, right));
        self.find_index(hash, left, right)
            .map(|i| self.ranks[i as usize])
    }

    fn find_index(&self, hash: u64, left: &[u8], right: &[u8]) -> Option<u32> {
        self.index
            .find(hash, |&i| {
                pair_at(&self.strings, &self.splits, i) == (left, right)
            })
            .copied()
    }

    /// The number of distinct pairs.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.strings.len()
    }

    /// Releases the spare capacity of a finished table.
    pub fn shrink_to_fit(&mut self) {
        self.strings.shrink_to_fit();
        self.splits.shrink_to_fit();
        self.ranks.shrink_to_fit();
        let (hasher, strings, splits) = (&self.hasher, &self.strings, &self.splits);
        self.index
            .shrink_to_fit(|&i| hasher.hash_one(pair_at(strings, splits, i)));
    }
}

/// The strings come from `&str`s, so they are UTF-8.
fn as_str(b: &[u8]) -> &str {
    std::str::from_utf8(b).expect("the table holds only strings pushed as &str")
}

/// Pair `i` as its left and right bytes.
fn pair_at<'t>(t: &'t ByteTable, splits: &[u32], i: u32) -> (&'t [u8], &'t [u8]) {
    t.at(i).split_at(splits[i as usize] as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip_and_later_duplicates_win() {
        let mut t = StrTable::default();
        for s in ["a", "", "héllo", "a", "bc"] {
            t.push(s).unwrap();
        }
        t.shrink_to_fit();
        assert_eq!(t.len(), 5);
        let all: Vec<&str> = t.iter().collect();
        assert_eq!(all, ["a", "", "héllo", "a", "bc"]);
        assert_eq!(t.get(2), Some("héllo"));
        assert_eq!(t.get(5), None);
        assert_eq!(t.find("a"), Some(3));
        assert_eq!(t.find(""), Some(1));
        assert_eq!(t.find("bc"), Some(4));
        assert_eq!(t.find("b"), None);
    }

    #[test]
    fn pairs_keep_their_split_and_the_first_rank() {
        let mut p = PairTable::default();
        p.insert("ab", "c", 0).unwrap();
        p.insert("a", "bc", 1).unwrap();
        p.insert("ab", "c", 2).unwrap();
        p.shrink_to_fit();
        assert_eq!(p.len(), 2);
        assert_eq!(p.rank("ab", "c"), Some(0));
        assert_eq!(p.rank("a", "bc"), Some(1));
        assert_eq!(p.rank("abc", ""), None);
    }
}
