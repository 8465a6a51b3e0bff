//! Structure-aware inputs for the `gguf_header` target: fuzzer bytes are decoded into a
//! [`HeaderSpec`] (a version 1..=3, typed metadata with nested arrays and strings that need not be
//! UTF-8, tensor infos with arbitrary dimensions, types and offsets, counts that may lie), which is
//! serialized by hand into GGUF bytes. Random bytes rarely get past the first length field; these
//! inputs reach the tensor-info checks, the overlap check and dequantization.
//!
//! The decoder is [`Draw`], a few lines over the raw bytes, rather than the `arbitrary` crate, so
//! that `importer/tests/fuzz_corpus.rs` (which includes this file with `#[path]`, and whose crate
//! cannot depend on `arbitrary`) turns each committed corpus file into the same GGUF bytes as the
//! fuzzer did. Every decision draws from the front of the input and an exhausted input reads as
//! zeros, so any byte string decodes, short ones to small headers.

use gguf_importer::{GgmlType, ValueType};

/// Values (scalars, strings, array elements) in one header at most: nested arrays must not
/// multiply into a large input.
const VALUE_BUDGET: usize = 512;
/// Tensor data appended after the header at most.
const MAX_DATA: u64 = 1 << 20;

/// Metadata keys that the importer or a model loader treat specially.
const KEYS: &[&str] = &[
    "general.alignment",
    "general.architecture",
    "llama.block_count",
    "llama.attention.head_count_kv",
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.scores",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.merges",
    "",
];

/// Tensor names of a Llama file.
const NAMES: &[&str] = &[
    "token_embd.weight",
    "blk.0.attn_q.weight",
    "output_norm.weight",
    "",
];

/// Dimensions worth trying besides multiples of the block size.
const DIMS: &[u64] = &[
    0,
    1,
    2,
    3,
    31,
    1 << 31,
    1 << 32,
    (1 << 32) + 32,
    1 << 62,
    i64::MAX as u64,
    u64::MAX,
];

/// Raw 64-bit patterns for scalars: extremes, NaN, infinities.
const SCALARS: &[u64] = &[
    0,
    1,
    0xFF,
    0x7FFF_FFFF,
    0x8000_0000,
    0xFFFF_FFFF,
    0x7FC0_0000,
    0x7F80_0000,
    0x7FF8_0000_0000_0000,
    i64::MAX as u64,
    1 << 63,
    u64::MAX,
];

/// A reader that decodes fuzzer bytes into decisions; zeros once the input is exhausted.
pub struct Draw<'a> {
    data: &'a [u8],
    budget: usize,
}

impl<'a> Draw<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            budget: VALUE_BUDGET,
        }
    }

    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | u64::from(self.u32()) << 32
    }

    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        if n <= 256 {
            self.u8() as usize % n
        } else {
            self.u32() as usize % n
        }
    }

    /// True with probability `k`/256 (false on a zero byte, so zeros decode to the plain case).
    fn chance(&mut self, k: u8) -> bool {
        self.u8() > 255 - k
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// Up to `max` bytes, taken as they are (often not UTF-8).
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max + 1).min(self.data.len());
        let (taken, rest) = self.data.split_at(n);
        self.data = rest;
        taken.to_vec()
    }

    /// A string: a known one, printable ASCII, or raw bytes.
    fn string(&mut self, known: &[&str]) -> Vec<u8> {
        match self.below(4) {
            0 | 1 => self.pick(known).as_bytes().to_vec(),
            2 => self.bytes(24).into_iter().map(|b| b' ' + b % 95).collect(),
            _ => self.bytes(24),
        }
    }

    /// Whether another value fits in the budget (and takes it).
    fn spend(&mut self) -> bool {
        self.budget = self.budget.saturating_sub(1);
        self.budget > 0
    }
}

/// A metadata value as it will be written.
#[derive(Debug, Clone)]
pub enum ValueSpec {
    /// A fixed-size value: its type and the low bytes of `raw`.
    Scalar(ValueType, u64),
    /// A string of any bytes.
    String(Vec<u8>),
    /// An array: element type id (maybe undefined), the count written (maybe a lie), elements.
    Array {
        elem: u32,
        count: u64,
        items: Vec<ValueSpec>,
    },
}

/// A metadata entry: key bytes, the type id written (maybe not the value's) and the value.
#[derive(Debug, Clone)]
pub struct EntrySpec {
    pub key: Vec<u8>,
    pub type_id: u32,
    pub value: ValueSpec,
}

/// A tensor info as it will be written.
#[derive(Debug, Clone)]
pub struct TensorSpec {
    pub name: Vec<u8>,
    pub n_dims: u32,
    pub ne: Vec<u64>,
    pub type_id: u32,
    pub offset: u64,
}

/// A whole file: header, padding and tensor data.
#[derive(Debug, Clone)]
pub struct HeaderSpec {
    pub version: u32,
    /// Counts written in the header (equal to the lists' lengths unless they lie).
    pub n_tensors: u64,
    pub n_kv: u64,
    pub entries: Vec<EntrySpec>,
    pub tensors: Vec<TensorSpec>,
    /// Bytes of tensor data after the padded header, and the seed of their contents.
    pub data_len: u64,
    pub data_seed: u64,
    /// A last corruption of the serialized bytes: truncation at, or a byte flipped at, an offset.
    pub truncate: Option<u64>,
    pub flip: Option<(u64, u8)>,
}

fn value_type(id: u32) -> ValueType {
    ValueType::from_id(id).unwrap_or(ValueType::U8)
}

fn draw_value(d: &mut Draw, ty: ValueType, depth: usize) -> ValueSpec {
    match ty {
        ValueType::String => ValueSpec::String(d.string(KEYS)),
        ValueType::Array => {
            // Mostly a defined element type; nesting goes past the reader's limit of 8.
            let elem = if d.chance(16) {
                d.u32()
            } else {
                d.below(13) as u32
            };
            let elem_ty = ValueType::from_id(elem);
            let n = if depth >= 10 || elem_ty.is_none() {
                0
            } else {
                d.below(17)
            };
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                if !d.spend() {
                    break;
                }
                items.push(draw_value(d, value_type(elem), depth + 1));
            }
            let count = match d.below(16) {
                14 => items.len() as u64 + 1 + d.below(4) as u64,
                15 => d.u64(),
                _ => items.len() as u64,
            };
            ValueSpec::Array { elem, count, items }
        }
        _ => {
            let raw = if d.chance(64) {
                d.pick(SCALARS)
            } else {
                d.u64()
            };
            ValueSpec::Scalar(ty, raw)
        }
    }
}

fn draw_entry(d: &mut Draw, previous: &[EntrySpec]) -> EntrySpec {
    let key = match previous.last() {
        Some(e) if d.chance(8) => e.key.clone(),
        _ => d.string(KEYS),
    };
    let (type_id, value) = if key == b"general.alignment" && !d.chance(64) {
        // Mostly a valid alignment, so that the tensors behind it are reached.
        let a = if !d.chance(32) {
            1u64 << d.below(8)
        } else {
            d.u64()
        };
        (ValueType::U32 as u32, ValueSpec::Scalar(ValueType::U32, a))
    } else {
        let ty = d.below(13) as u32;
        (ty, draw_value(d, value_type(ty), 0))
    };
    let type_id = if d.chance(8) { d.u32() } else { type_id };
    EntrySpec {
        key,
        type_id,
        value,
    }
}

fn draw_tensor(d: &mut Draw, previous: &[TensorSpec]) -> TensorSpec {
    let name = match previous.last() {
        Some(t) if d.chance(8) => t.name.clone(),
        _ => d.string(NAMES),
    };
    let n_dims = if d.chance(8) {
        d.u32()
    } else {
        d.below(5) as u32
    };
    let type_id = if d.chance(16) {
        d.u32() % 48
    } else {
        let all: Vec<GgmlType> = GgmlType::all().collect();
        d.pick(&all).id()
    };
    let block = GgmlType::from_id(type_id).map_or(1, |t| t.block_size() as u64);
    let ne = (0..n_dims.min(8))
        .map(|i| match d.below(8) {
            6 => d.pick(DIMS),
            7 => d.u64(),
            // ne[0] a whole number of blocks, the rest small.
            _ if i == 0 => block * (1 + d.below(4) as u64),
            _ => 1 + d.below(3) as u64,
        })
        .collect();
    // The offset is filled in by `draw` unless it is drawn here (u64::MAX is the marker).
    let offset = match d.below(16) {
        13 => d.u64(),
        14 => 32 * d.below(64) as u64,
        15 => previous.last().map_or(0, |t| t.offset),
        _ => u64::MAX,
    };
    TensorSpec {
        name,
        n_dims,
        ne,
        type_id,
        offset,
    }
}

/// Bytes of a tensor's data, if its shape and type are valid.
fn tensor_bytes(t: &TensorSpec, v1: bool) -> Option<u64> {
    let ty = GgmlType::from_id(t.type_id)?;
    let n =
        t.ne.iter()
            .map(|&d| if v1 { d & 0xFFFF_FFFF } else { d })
            .try_fold(1u64, |acc, d| acc.checked_mul(d))?;
    // Not `GgmlType::bytes_for`, whose product may overflow for such shapes.
    let block = ty.block_size() as u64;
    (n % block == 0).then_some(())?;
    (n / block).checked_mul(ty.type_size() as u64)
}

impl HeaderSpec {
    /// Decodes any bytes into a header.
    pub fn draw(data: &[u8]) -> Self {
        let d = &mut Draw::new(data);
        let version = 1 + d.below(3) as u32;
        let mut entries = Vec::new();
        for _ in 0..d.below(9) {
            if !d.spend() {
                break;
            }
            let e = draw_entry(d, &entries);
            entries.push(e);
        }
        let alignment = entries
            .iter()
            .find_map(|e| match (&e.key[..], &e.value) {
                (b"general.alignment", ValueSpec::Scalar(ValueType::U32, a)) => {
                    Some(*a as u32 as u64)
                }
                _ => None,
            })
            .filter(|a| a.is_power_of_two())
            .unwrap_or(32);
        let mut tensors: Vec<TensorSpec> = Vec::new();
        let mut next = 0u64;
        for _ in 0..d.below(7) {
            let mut t = draw_tensor(d, &tensors);
            let bytes = tensor_bytes(&t, version == 1).unwrap_or(0);
            if t.offset == u64::MAX {
                t.offset = next;
            }
            next = t
                .offset
                .saturating_add(bytes)
                .min(MAX_DATA)
                .next_multiple_of(alignment);
            tensors.push(t);
        }
        let lie = |d: &mut Draw, n: usize| match d.below(32) {
            30 => n as u64 + 1,
            31 => d.u64(),
            _ => n as u64,
        };
        let n_tensors = lie(d, tensors.len());
        let n_kv = lie(d, entries.len());
        let data_len = match d.below(8) {
            6 => next.saturating_sub(1 + d.below(64) as u64),
            7 => d.below(4096) as u64,
            _ => next,
        }
        .min(MAX_DATA);
        let data_seed = d.u64();
        let truncate = d.chance(8).then(|| d.u64());
        let flip = d.chance(8).then(|| (d.u64(), d.u8()));
        HeaderSpec {
            version,
            n_tensors,
            n_kv,
            entries,
            tensors,
            data_len,
            data_seed,
            truncate,
            flip,
        }
    }

    /// The GGUF bytes: header, padding to the alignment the reader will use, tensor data.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer {
            out: Vec::new(),
            v1: self.version == 1,
        };
        w.out.extend_from_slice(b"GGUF");
        w.u32(self.version);
        w.size(self.n_tensors);
        w.size(self.n_kv);
        let mut alignment = 32;
        for e in &self.entries {
            w.string(&e.key);
            w.u32(e.type_id);
            w.value(&e.value);
            if let (b"general.alignment", ValueSpec::Scalar(ValueType::U32, a)) =
                (&e.key[..], &e.value)
            {
                alignment = (*a as u32).max(1) as usize;
            }
        }
        for t in &self.tensors {
            w.string(&t.name);
            w.u32(t.n_dims);
            for &d in &t.ne {
                w.size(d);
            }
            w.u32(t.type_id);
            w.out.extend_from_slice(&t.offset.to_le_bytes());
        }
        // An alignment above 64 KiB is left unpadded (the reader then finds the tensors out of
        // bounds) rather than padded to up to 2 GiB.
        if alignment.is_power_of_two() && alignment <= 1 << 16 {
            let padded = w.out.len().next_multiple_of(alignment);
            w.out.resize(padded, 0);
        }
        // Tensor data: a cheap pseudo-random stream (64-bit LCG, high bytes), so that block
        // scales are all sorts of f16 values, NaN and infinity included.
        let mut state = self.data_seed;
        w.out.extend((0..self.data_len).map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 56) as u8
        }));
        let mut out = w.out;
        if let Some((at, xor)) = self.flip {
            if !out.is_empty() {
                let i = (at % out.len() as u64) as usize;
                out[i] ^= xor.max(1);
            }
        }
        if let Some(at) = self.truncate {
            out.truncate((at % (out.len() as u64 + 1)) as usize);
        }
        out
    }
}

/// Little-endian GGUF encoding, with v1's 32-bit sizes.
struct Writer {
    out: Vec<u8>,
    v1: bool,
}

impl Writer {
    fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    /// A count, length or dimension (v1 keeps the low 32 bits).
    fn size(&mut self, v: u64) {
        if self.v1 {
            self.u32(v as u32);
        } else {
            self.out.extend_from_slice(&v.to_le_bytes());
        }
    }

    fn string(&mut self, s: &[u8]) {
        self.size(s.len() as u64);
        self.out.extend_from_slice(s);
    }

    fn value(&mut self, v: &ValueSpec) {
        match v {
            ValueSpec::Scalar(ty, raw) => {
                let n = ty.fixed_size().unwrap_or(0);
                self.out.extend_from_slice(&raw.to_le_bytes()[..n]);
            }
            ValueSpec::String(s) => self.string(s),
            ValueSpec::Array { elem, count, items } => {
                self.u32(*elem);
                self.size(*count);
                for item in items {
                    self.value(item);
                }
            }
        }
    }
}
