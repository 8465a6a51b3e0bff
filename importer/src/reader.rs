//! Reading a GGUF file: header, metadata and tensor infos, over a memory map.
//!
//! Layout (ggml's `docs/gguf.md`), all little-endian:
//!
//! ```text
//! magic "GGUF" | version u32 | n_tensors | n_kv          (counts: u32 in v1, u64 in v2/v3)
//! n_kv × { key: string | value_type u32 | value }         (string: length (u32 in v1, u64 after) + UTF-8 bytes)
//! n_tensors × { name: string | n_dims u32 | ne[n_dims] (u32 in v1, u64 after) | type u32 | offset u64 }
//! padding to general.alignment (default 32)
//! tensor data (each tensor at data_start + offset, offsets aligned)
//! ```
//!
//! Opening reads only the header and the tensor infos: tensor bytes are touched when a tensor
//! is asked for. Every count and length is checked against what is left of the file before
//! anything is allocated, so a corrupt header fails fast with a typed error instead of
//! allocating what it claims.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{GgufError, Result, TensorSpan};
use crate::keys;
use crate::tensor::TensorInfo;
use crate::types::GgmlType;
use crate::value::{Metadata, Value, ValueType};

/// `GGUF` as a little-endian u32.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";

/// Deepest nesting of arrays accepted in metadata.
pub const MAX_ARRAY_DEPTH: usize = 8;

/// ggml's `GGML_MAX_DIMS`.
pub const MAX_DIMS: u32 = 4;

/// The span of pages a page fault of a file mapping maps at once (Linux's default
/// `fault_around_bytes`).
const FAULT_AROUND: usize = 64 << 10;

/// The bytes behind a [`GgufFile`]: a memory map of a file, or a buffer in memory.
enum Bytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Bytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// An open GGUF file: its metadata and tensor infos, and its tensor bytes on demand.
pub struct GgufFile {
    bytes: Bytes,
    version: u32,
    metadata: Metadata,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    alignment: u64,
    data_offset: u64,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.version)
            .field("n_kv", &self.metadata.len())
            .field("n_tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_offset)
            .finish()
    }
}

impl GgufFile {
    /// Opens and maps a file, and parses its header. No tensor data is read.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let io = |source| GgufError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the map is read-only; like every reader of memory-mapped model files
        // (llama.cpp, candle), we rely on the file not being truncated while it is open.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Self::parse(Bytes::Mapped(map))
    }

    /// Parses a GGUF file held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        Self::parse(Bytes::Owned(bytes))
    }

    fn parse(bytes: Bytes) -> Result<Self> {
        let header = parse_header(bytes.as_slice())?;
        Ok(Self {
            bytes,
            version: header.version,
            metadata: header.metadata,
            tensor_index: header.tensor_index,
            tensors: header.tensors,
            alignment: header.alignment,
            data_offset: header.data_offset,
        })
    }

    /// The GGUF version of the file (1, 2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The metadata table.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The info of a tensor by name.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The info of a tensor by name, or [`GgufError::MissingTensor`].
    pub fn require_tensor(&self, name: &str) -> Result<&TensorInfo> {
        self.tensor(name).ok_or_else(|| GgufError::MissingTensor {
            name: name.to_string(),
        })
    }

    /// The tensor data alignment of the file.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Byte offset of the data section in the file.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Size of the file in bytes.
    pub fn file_len(&self) -> u64 {
        self.bytes.as_slice().len() as u64
    }

    /// The raw bytes of a tensor, in the file's block layout (bounds checked at open).
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        let start = (self.data_offset + info.offset) as usize;
        &self.bytes.as_slice()[start..start + info.n_bytes as usize]
    }

    /// Lets the OS drop this tensor's pages of the memory-mapped file from the process's resident
    /// memory (`madvise(MADV_DONTNEED)`), once they have been copied elsewhere (to a device, into a
    /// packed weight): a loader that copies every tensor then peaks at the size of its copies, not
    /// twice the file. The mapping stays valid; a later read faults the pages in again from the
    /// file. No-op for a file read into memory, and where the OS does not support the advice.
    ///
    /// The range released is widened to whole [`FAULT_AROUND`] windows: a page fault maps the
    /// cached pages around it too (Linux's fault-around), so copying a tensor also maps the
    /// neighbours' pages at its ends, and releasing only its own would leave those resident, a
    /// few tens of KiB per tensor. A neighbour still to be read faults its pages in again.
    pub fn release_tensor_pages(&self, info: &TensorInfo) {
        let start = (self.data_offset + info.offset) as usize;
        let end = start + info.n_bytes as usize;
        let start = start - start % FAULT_AROUND;
        let end = end
            .next_multiple_of(FAULT_AROUND)
            .min(self.bytes.as_slice().len());
        self.release_range(start, end - start);
    }

    /// [`GgufFile::release_tensor_pages`] for the bytes `start .. start + len` of a tensor's data
    /// (a part already copied, of a tensor copied in parts). Only whole [`FAULT_AROUND`] windows
    /// inside the range are released, so the rest of the tensor stays resident.
    pub fn release_tensor_range(&self, info: &TensorInfo, start: usize, len: usize) {
        let begin = (self.data_offset + info.offset) as usize + start;
        let end = (begin + len).min(self.bytes.as_slice().len());
        let begin = begin.next_multiple_of(FAULT_AROUND);
        let end = end - end % FAULT_AROUND;
        if end > begin {
            self.release_range(begin, end - begin);
        }
    }

    /// [`GgufFile::release_tensor_pages`] for the whole file: the header (already parsed into
    /// [`GgufFile::metadata`] and the tensor infos) and every tensor, for a loader that has copied
    /// all it needs. The pages the OS read ahead around the tensors go too.
    pub fn release_pages(&self) {
        self.release_range(0, self.bytes.as_slice().len());
    }

    fn release_range(&self, start: usize, len: usize) {
        #[cfg(unix)]
        if let Bytes::Mapped(map) = &self.bytes {
            // Safety: the map is a read-only shared mapping of a file, so MADV_DONTNEED discards
            // no data (no private or dirty pages): the pages are re-read from the file on the
            // next access, and every slice borrowed from the map stays valid. A failure only
            // leaves the pages resident, so the result is ignored.
            let _ = unsafe {
                map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, len)
            };
        }
        #[cfg(not(unix))]
        let _ = (start, len);
    }

    /// A tensor dequantized to f32, row-major (see [`TensorInfo::shape`]).
    pub fn dequantize(&self, name: &str) -> Result<Vec<f32>> {
        let info = self.require_tensor(name)?;
        crate::quants::dequantize(info, self.tensor_data(info))
    }

    /// The architecture (`general.architecture`).
    pub fn architecture(&self) -> Result<&str> {
        self.metadata.get_str(keys::GENERAL_ARCHITECTURE)
    }
}

/// Everything before the data section.
struct Header {
    version: u32,
    metadata: Metadata,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    alignment: u64,
    data_offset: u64,
}

/// A bounds-checked little-endian reader over the file's bytes.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// GGUF v1 stores counts, lengths and dimensions as u32.
    v1: bool,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                what: what(),
                offset: self.pos as u64,
                needed: n,
                available: self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N]> {
        Ok(self
            .take(N as u64, what)?
            .try_into()
            .expect("take returned N bytes"))
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A count, length or dimension: u32 in v1, u64 in v2 and v3.
    fn size(&mut self, what: &dyn Fn() -> String) -> Result<u64> {
        if self.v1 {
            self.u32(what).map(u64::from)
        } else {
            self.u64(what)
        }
    }

    fn size_width(&self) -> u64 {
        if self.v1 {
            4
        } else {
            8
        }
    }

    /// Checks that `count` items of at least `min_item` bytes each fit in what is left.
    fn check_count(
        &self,
        count: u64,
        min_item: u64,
        offset: usize,
        what: &dyn Fn() -> String,
    ) -> Result<()> {
        let fits = count
            .checked_mul(min_item)
            .is_some_and(|n| n <= self.remaining());
        if fits {
            Ok(())
        } else {
            Err(GgufError::CountTooLarge {
                what: what(),
                offset: offset as u64,
                count,
                available: self.remaining(),
            })
        }
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String> {
        let at = self.pos;
        let len = self.size(&|| format!("length of {}", what()))?;
        self.check_count(len, 1, at, &|| format!("length of {}", what()))?;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| GgufError::InvalidUtf8 {
            what: what(),
            offset: at as u64,
        })
    }

    /// Smallest encoding of one value of a type, to bound counts before allocating.
    fn min_value_size(&self, t: ValueType) -> u64 {
        match t.fixed_size() {
            Some(n) => n as u64,
            None if t == ValueType::String => self.size_width(),
            None => 4 + self.size_width(), // array: element type + count
        }
    }

    /// One value of type `t` of metadata entry `key`; `index` is its position when it is an
    /// element of an array, so that an error names the element
    /// (`element 7 of "tokenizer.ggml.tokens"`).
    fn value(
        &mut self,
        key: &str,
        t: ValueType,
        depth: usize,
        index: Option<u64>,
    ) -> Result<Value> {
        let what = || match index {
            None => format!("value of {key:?}"),
            Some(i) => format!("element {i} of {key:?}"),
        };
        Ok(match t {
            ValueType::U8 => Value::U8(self.array::<1>(&what)?[0]),
            ValueType::I8 => Value::I8(self.array::<1>(&what)?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(&what)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(&what)?)),
            ValueType::U32 => Value::U32(u32::from_le_bytes(self.array(&what)?)),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(&what)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(&what)?)),
            ValueType::U64 => Value::U64(u64::from_le_bytes(self.array(&what)?)),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(&what)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(&what)?)),
            // One byte; any non-zero byte is true, as ggml's gguf.cpp reads it
            // (`gguf_reader::read(bool &)`: `dst = tmp != 0`). A byte other than 0 and 1 is
            // therefore not an error: llama.cpp loads such a file, and so does this reader.
            ValueType::Bool => Value::Bool(self.array::<1>(&what)?[0] != 0),
            ValueType::String => Value::String(self.string(&what)?),
            ValueType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(GgufError::NestingTooDeep {
                        key: key.to_string(),
                        max_depth: MAX_ARRAY_DEPTH,
                    });
                }
                let at = self.pos;
                let type_id = self.u32(&|| format!("array element type of {key:?}"))?;
                let elem =
                    ValueType::from_id(type_id).ok_or_else(|| GgufError::UnknownValueType {
                        key: key.to_string(),
                        type_id,
                        offset: at as u64,
                    })?;
                let count_at = self.pos;
                let count = self.size(&|| format!("array length of {key:?}"))?;
                self.check_count(count, self.min_value_size(elem), count_at, &|| {
                    format!("array length of {key:?}")
                })?;
                let mut items = Vec::with_capacity(count as usize);
                for i in 0..count {
                    items.push(self.value(key, elem, depth + 1, Some(i))?);
                }
                Value::Array(elem, items)
            }
        })
    }
}

fn parse_header(buf: &[u8]) -> Result<Header> {
    let mut c = Cursor {
        buf,
        pos: 0,
        v1: false,
    };
    let magic: [u8; 4] = c.array(&|| "magic".into())?;
    if magic != GGUF_MAGIC {
        return Err(GgufError::BadMagic { found: magic });
    }
    let version = c.u32(&|| "version".into())?;
    if !(1..=3).contains(&version) {
        return Err(GgufError::UnsupportedVersion { version });
    }
    c.v1 = version == 1;

    let n_tensors_at = c.pos;
    let n_tensors = c.size(&|| "tensor count".into())?;
    let n_kv_at = c.pos;
    let n_kv = c.size(&|| "metadata count".into())?;

    // Smallest key/value: key length + empty key + type + one byte of value.
    c.check_count(n_kv, c.size_width() + 4 + 1, n_kv_at, &|| {
        "metadata count".into()
    })?;
    let mut metadata = Metadata::new();
    for i in 0..n_kv {
        let key = c.string(&|| format!("key of metadata entry {i}"))?;
        let at = c.pos;
        let type_id = c.u32(&|| format!("value type of {key:?}"))?;
        let t = ValueType::from_id(type_id).ok_or_else(|| GgufError::UnknownValueType {
            key: key.clone(),
            type_id,
            offset: at as u64,
        })?;
        let value = c.value(&key, t, 0, None)?;
        metadata.insert(key, value)?;
    }

    let alignment = match metadata.get(keys::GENERAL_ALIGNMENT) {
        None => keys::DEFAULT_ALIGNMENT,
        Some(Value::U32(a)) => u64::from(*a),
        Some(v) => {
            return Err(GgufError::WrongType {
                key: keys::GENERAL_ALIGNMENT.into(),
                expected: "UINT32",
                found: v.value_type(),
            })
        }
    };
    if alignment == 0 || !alignment.is_power_of_two() {
        return Err(GgufError::BadAlignment { alignment });
    }

    // Smallest tensor info: name length + empty name + n_dims + type + offset.
    c.check_count(n_tensors, c.size_width() + 4 + 4 + 8, n_tensors_at, &|| {
        "tensor count".into()
    })?;
    let mut raw = Vec::with_capacity(n_tensors as usize);
    let mut tensor_index = HashMap::with_capacity(n_tensors as usize);
    for i in 0..n_tensors {
        let name = c.string(&|| format!("name of tensor {i}"))?;
        let what = |field: &str| format!("{field} of tensor {name:?}");
        let n_dims = c.u32(&|| what("n_dims"))?;
        if n_dims > MAX_DIMS {
            return Err(GgufError::TooManyDims {
                tensor: name,
                n_dims,
            });
        }
        let mut ne = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            ne.push(c.size(&|| what("dimensions"))?);
        }
        let type_id = c.u32(&|| what("type"))?;
        let offset = c.u64(&|| what("data offset"))?;
        let ty = GgmlType::from_id(type_id).ok_or_else(|| GgufError::UnknownTensorType {
            tensor: name.clone(),
            type_id,
        })?;
        if tensor_index.insert(name.clone(), i as usize).is_some() {
            return Err(GgufError::DuplicateTensor { name });
        }
        raw.push((name, ne, ty, offset));
    }

    let header_end = c.pos as u64;
    let data_offset = header_end.div_ceil(alignment) * alignment;
    let file_len = buf.len() as u64;
    let tensors = raw
        .into_iter()
        .map(|(name, ne, ty, offset)| {
            TensorInfo::new(name, ne, ty, offset, alignment, data_offset, file_len)
        })
        .collect::<Result<Vec<_>>>()?;
    check_no_overlap(&tensors, data_offset)?;

    Ok(Header {
        version,
        metadata,
        tensors,
        tensor_index,
        alignment,
        data_offset,
    })
}

/// Rejects tensors whose data ranges share bytes ([`GgufError::OverlappingTensors`]): a corrupt
/// offset would otherwise hand out another tensor's bytes. ggml is stricter still (each tensor at
/// the padded end of the one before, in file order); this reader only needs the ranges to be
/// disjoint. A tensor with a dimension of 0 has no bytes and overlaps nothing.
fn check_no_overlap(tensors: &[TensorInfo], data_offset: u64) -> Result<()> {
    let mut by_start: Vec<&TensorInfo> = tensors.iter().filter(|t| t.n_bytes > 0).collect();
    by_start.sort_by_key(|t| t.offset);
    // Ends are in bounds (checked by `TensorInfo::new`), so the sums cannot overflow.
    let end = |t: &TensorInfo| t.offset + t.n_bytes;
    // The tensor reaching furthest so far: a long one may overlap several that start after it.
    let mut furthest: Option<&TensorInfo> = None;
    for t in by_start {
        if let Some(f) = furthest {
            if t.offset < end(f) {
                let span = |t: &TensorInfo| {
                    Box::new(TensorSpan {
                        name: t.name.clone(),
                        start: data_offset + t.offset,
                        end: data_offset + end(t),
                    })
                };
                return Err(GgufError::OverlappingTensors {
                    first: span(f),
                    second: span(t),
                });
            }
        }
        if furthest.is_none_or(|f| end(t) > end(f)) {
            furthest = Some(t);
        }
    }
    Ok(())
}
