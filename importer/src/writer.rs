//! Writing GGUF files: metadata and tensors, with tensor data aligned to `general.alignment`.
//!
//! The writer takes row-major shapes (as [`crate::TensorInfo::shape`] returns them) and stores them
//! in ggml order (`ne` = shape reversed). Versions 1, 2 and 3 can be written; version 1 only for
//! tests of the reader (llama.cpp writes version 3).

use std::io::Write;
use std::path::Path;

use crate::error::{GgufError, Result};
use crate::keys;
use crate::reader::{GGUF_MAGIC, MAX_DIMS};
use crate::types::GgmlType;
use crate::value::{Metadata, Value};

struct PendingTensor {
    name: String,
    ne: Vec<u64>,
    ty: GgmlType,
    data: Vec<u8>,
}

/// Builds a GGUF file in memory, then writes it out.
pub struct GgufWriter {
    version: u32,
    metadata: Metadata,
    tensors: Vec<PendingTensor>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    /// A writer for a GGUF version 3 file.
    pub fn new() -> Self {
        Self {
            version: 3,
            metadata: Metadata::new(),
            tensors: Vec::new(),
        }
    }

    /// Sets the GGUF version to write (1, 2 or 3).
    pub fn with_version(mut self, version: u32) -> Result<Self> {
        if !(1..=3).contains(&version) {
            return Err(GgufError::UnsupportedVersion { version });
        }
        self.version = version;
        Ok(self)
    }

    /// Adds a metadata entry; a key that is already there is an error.
    pub fn add_metadata(&mut self, key: impl Into<String>, value: Value) -> Result<&mut Self> {
        let key = key.into();
        if key == keys::GENERAL_ALIGNMENT {
            match value {
                Value::U32(a) if a != 0 && a.is_power_of_two() => {}
                Value::U32(a) => {
                    return Err(GgufError::BadAlignment {
                        alignment: a as u64,
                    })
                }
                ref v => {
                    return Err(GgufError::WrongType {
                        key,
                        expected: "UINT32",
                        found: v.value_type(),
                    })
                }
            }
        }
        self.metadata.insert(key, value)?;
        Ok(self)
    }

    /// Copies every metadata entry of `metadata` (e.g. from a file being rewritten).
    pub fn add_all_metadata(&mut self, metadata: &Metadata) -> Result<&mut Self> {
        for (k, v) in metadata.iter() {
            self.add_metadata(k, v.clone())?;
        }
        Ok(self)
    }

    /// Adds a tensor of type `ty` with a row-major `shape`; `data` is in the type's block layout.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        shape: &[usize],
        ty: GgmlType,
        data: Vec<u8>,
    ) -> Result<&mut Self> {
        let name = name.into();
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(GgufError::DuplicateTensor { name });
        }
        if shape.len() > MAX_DIMS as usize {
            return Err(GgufError::TooManyDims {
                tensor: name,
                n_dims: shape.len() as u32,
            });
        }
        let ne: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
        let bad_shape = |name: String, ne: Vec<u64>| GgufError::BadShape { tensor: name, ne };
        let Some(n) = ne.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d)) else {
            return Err(bad_shape(name, ne));
        };
        let ne0 = ne.first().copied().unwrap_or(1);
        if ne0 % ty.block_size() as u64 != 0 {
            return Err(GgufError::RowNotBlockAligned {
                tensor: name,
                type_name: ty.name(),
                ne0,
                block_size: ty.block_size() as u64,
            });
        }
        // Rows are whole blocks, so only a byte count over u64 fails.
        let Some(expected) = ty.bytes_for(n) else {
            return Err(bad_shape(name, ne));
        };
        if expected != data.len() as u64 {
            return Err(GgufError::SizeMismatch {
                tensor: name,
                what: format!(
                    "{} bytes given, {ty} data of shape {shape:?} takes {expected}",
                    data.len()
                ),
            });
        }
        self.tensors.push(PendingTensor { name, ne, ty, data });
        Ok(self)
    }

    /// Adds an F32 tensor from values.
    pub fn add_f32(
        &mut self,
        name: impl Into<String>,
        shape: &[usize],
        values: &[f32],
    ) -> Result<&mut Self> {
        let data = values.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.add_tensor(name, shape, GgmlType::F32, data)
    }

    fn alignment(&self) -> u64 {
        match self.metadata.get(keys::GENERAL_ALIGNMENT) {
            Some(Value::U32(a)) => *a as u64,
            _ => keys::DEFAULT_ALIGNMENT,
        }
    }

    /// The whole file as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out)
            .expect("writing to a Vec cannot fail");
        out
    }

    /// Writes the file to a path.
    pub fn write_file(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let io = |source| GgufError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = std::fs::File::create(path).map_err(io)?;
        let mut w = std::io::BufWriter::new(file);
        self.write_to(&mut w).map_err(io)?;
        w.flush().map_err(io)
    }

    /// Writes the file to any writer.
    pub fn write_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        let mut e = Encoder {
            w,
            v1: self.version == 1,
            written: 0,
        };
        e.bytes(&GGUF_MAGIC)?;
        e.u32(self.version)?;
        e.size(self.tensors.len() as u64)?;
        e.size(self.metadata.len() as u64)?;
        for (key, value) in self.metadata.iter() {
            e.string(key)?;
            e.u32(value.value_type() as u32)?;
            e.value(value)?;
        }
        let alignment = self.alignment();
        let mut offset = 0u64;
        let mut offsets = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            e.string(&t.name)?;
            e.u32(t.ne.len() as u32)?;
            for &d in &t.ne {
                e.size(d)?;
            }
            e.u32(t.ty.id())?;
            e.u64(offset)?;
            offsets.push(offset);
            offset = (offset + t.data.len() as u64).div_ceil(alignment) * alignment;
        }
        e.pad(alignment)?;
        let data_start = e.written;
        for (t, &off) in self.tensors.iter().zip(&offsets) {
            let pad = data_start + off - e.written;
            e.bytes(&vec![0u8; pad as usize])?;
            e.bytes(&t.data)?;
        }
        if !self.tensors.is_empty() {
            e.pad(alignment)?;
        }
        Ok(())
    }
}

struct Encoder<'a, W: Write> {
    w: &'a mut W,
    v1: bool,
    written: u64,
}

impl<W: Write> Encoder<'_, W> {
    fn bytes(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.written += b.len() as u64;
        self.w.write_all(b)
    }
    fn u32(&mut self, v: u32) -> std::io::Result<()> {
        self.bytes(&v.to_le_bytes())
    }
    fn u64(&mut self, v: u64) -> std::io::Result<()> {
        self.bytes(&v.to_le_bytes())
    }
    fn size(&mut self, v: u64) -> std::io::Result<()> {
        if self.v1 {
            let v = u32::try_from(v)
                .map_err(|_| std::io::Error::other("count too large for GGUF v1"))?;
            self.u32(v)
        } else {
            self.u64(v)
        }
    }
    fn string(&mut self, s: &str) -> std::io::Result<()> {
        self.size(s.len() as u64)?;
        self.bytes(s.as_bytes())
    }
    fn pad(&mut self, alignment: u64) -> std::io::Result<()> {
        let pad = self.written.div_ceil(alignment) * alignment - self.written;
        self.bytes(&vec![0u8; pad as usize])
    }
    fn value(&mut self, v: &Value) -> std::io::Result<()> {
        match v {
            Value::U8(x) => self.bytes(&[*x]),
            Value::I8(x) => self.bytes(&x.to_le_bytes()),
            Value::U16(x) => self.bytes(&x.to_le_bytes()),
            Value::I16(x) => self.bytes(&x.to_le_bytes()),
            Value::U32(x) => self.bytes(&x.to_le_bytes()),
            Value::I32(x) => self.bytes(&x.to_le_bytes()),
            Value::F32(x) => self.bytes(&x.to_le_bytes()),
            Value::Bool(x) => self.bytes(&[*x as u8]),
            Value::String(s) => self.string(s),
            Value::Array(t, items) => {
                self.u32(*t as u32)?;
                self.size(items.len() as u64)?;
                for item in items {
                    if item.value_type() != *t {
                        return Err(std::io::Error::other(format!(
                            "array of {t} holds a {}",
                            item.value_type()
                        )));
                    }
                    self.value(item)?;
                }
                Ok(())
            }
            Value::U64(x) => self.bytes(&x.to_le_bytes()),
            Value::I64(x) => self.bytes(&x.to_le_bytes()),
            Value::F64(x) => self.bytes(&x.to_le_bytes()),
        }
    }
}
