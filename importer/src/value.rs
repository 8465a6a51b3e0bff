//! GGUF metadata values and the key/value table with typed accessors.
//!
//! The 13 value types of the format (`gguf_type` in ggml's `gguf.h`), including arrays, which may
//! nest. Accessors name the key in every error, so a wrong file says what it lacks.

use std::fmt;

use crate::error::{GgufError, Result};

/// The type tag of a metadata value, as stored in the file (`GGUF_TYPE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    /// The value type for a type id, or `None` for an id the format does not define.
    pub fn from_id(id: u32) -> Option<Self> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// Size in bytes of one value of a fixed-size type; `None` for strings and arrays.
    pub fn fixed_size(self) -> Option<usize> {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            String | Array => None,
        }
    }

    /// The name used in gguf-py and in error messages.
    pub fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "UINT8",
            I8 => "INT8",
            U16 => "UINT16",
            I16 => "INT16",
            U32 => "UINT32",
            I32 => "INT32",
            F32 => "FLOAT32",
            Bool => "BOOL",
            String => "STRING",
            Array => "ARRAY",
            U64 => "UINT64",
            I64 => "INT64",
            F64 => "FLOAT64",
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    /// An array: the element type (all elements share it) and the elements.
    Array(ValueType, Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    /// The type tag of this value.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(..) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// Any integer type as i128 (wide enough for every GGUF integer), else `None`.
    pub fn as_integer(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(v) => v as i128,
            Value::I8(v) => v as i128,
            Value::U16(v) => v as i128,
            Value::I16(v) => v as i128,
            Value::U32(v) => v as i128,
            Value::I32(v) => v as i128,
            Value::U64(v) => v as i128,
            Value::I64(v) => v as i128,
            _ => return None,
        })
    }

    /// A float or integer value as f64, else `None`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => self.as_integer().map(|v| v as f64),
        }
    }

    /// The string, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

/// Arrays longer than this are shown by their first elements and their length.
const DISPLAY_ARRAY_ITEMS: usize = 8;

/// Shows a value as gguf-dump does, long arrays summarized: `[STRING; 32000] ["<unk>", "<s>", ...]`.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::U8(v) => write!(f, "{v}"),
            Value::I8(v) => write!(f, "{v}"),
            Value::U16(v) => write!(f, "{v}"),
            Value::I16(v) => write!(f, "{v}"),
            Value::U32(v) => write!(f, "{v}"),
            Value::I32(v) => write!(f, "{v}"),
            Value::U64(v) => write!(f, "{v}"),
            Value::I64(v) => write!(f, "{v}"),
            Value::F32(v) => write!(f, "{v}"),
            Value::F64(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::String(s) if s.chars().count() > 120 => {
                let head: String = s.chars().take(120).collect();
                write!(f, "{head:?}... ({} bytes)", s.len())
            }
            Value::String(s) => write!(f, "{s:?}"),
            Value::Array(t, items) => {
                write!(f, "[{t}; {}] [", items.len())?;
                for (i, item) in items.iter().take(DISPLAY_ARRAY_ITEMS).enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                if items.len() > DISPLAY_ARRAY_ITEMS {
                    f.write_str(", ...")?;
                }
                f.write_str("]")
            }
        }
    }
}

/// The metadata table of a GGUF file: keys in file order, unique.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    entries: Vec<(String, Value)>,
    index: std::collections::HashMap<String, usize>,
}

impl Metadata {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key; fails with [`GgufError::DuplicateKey`] if it is already there.
    pub fn insert(&mut self, key: impl Into<String>, value: Value) -> Result<()> {
        let key = key.into();
        if self.index.contains_key(&key) {
            return Err(GgufError::DuplicateKey { key });
        }
        self.index.insert(key.clone(), self.entries.len());
        self.entries.push((key, value));
        Ok(())
    }

    /// Sets a key, replacing any value it had.
    pub fn set(&mut self, key: impl Into<String>, value: Value) {
        let key = key.into();
        match self.index.get(&key) {
            Some(&i) => self.entries[i].1 = value,
            None => {
                self.index.insert(key.clone(), self.entries.len());
                self.entries.push((key, value));
            }
        }
    }

    /// The value of a key, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }

    /// Whether the key is present.
    pub fn contains(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// Entries in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn require(&self, key: &str) -> Result<&Value> {
        self.get(key).ok_or_else(|| GgufError::MissingKey {
            key: key.to_string(),
        })
    }

    fn wrong(key: &str, expected: &'static str, v: &Value) -> GgufError {
        GgufError::WrongType {
            key: key.to_string(),
            expected,
            found: v.value_type(),
        }
    }

    /// A string value.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| Self::wrong(key, "STRING", v))
    }

    /// A boolean value.
    pub fn get_bool(&self, key: &str) -> Result<bool> {
        match self.require(key)? {
            Value::Bool(b) => Ok(*b),
            v => Err(Self::wrong(key, "BOOL", v)),
        }
    }

    /// Any integer type, converted to `u64`; negative values are an error.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        let v = self.require(key)?;
        let i = v
            .as_integer()
            .ok_or_else(|| Self::wrong(key, "an integer", v))?;
        u64::try_from(i).map_err(|_| GgufError::BadValue {
            key: key.to_string(),
            reason: format!("{i} is negative"),
        })
    }

    /// Any integer type, converted to `usize` (range-checked).
    pub fn get_usize(&self, key: &str) -> Result<usize> {
        let v = self.get_u64(key)?;
        usize::try_from(v).map_err(|_| GgufError::BadValue {
            key: key.to_string(),
            reason: format!("{v} does not fit in usize"),
        })
    }

    /// Any integer type, converted to `i64` (range-checked).
    pub fn get_i64(&self, key: &str) -> Result<i64> {
        let v = self.require(key)?;
        let i = v
            .as_integer()
            .ok_or_else(|| Self::wrong(key, "an integer", v))?;
        i64::try_from(i).map_err(|_| GgufError::BadValue {
            key: key.to_string(),
            reason: format!("{i} does not fit in i64"),
        })
    }

    /// A float value (F32, F64, or an integer) as `f32`.
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        let v = self.require(key)?;
        v.as_f64()
            .map(|x| x as f32)
            .ok_or_else(|| Self::wrong(key, "a number", v))
    }

    /// The elements of an array value, with their element type.
    pub fn get_array(&self, key: &str) -> Result<(ValueType, &[Value])> {
        match self.require(key)? {
            Value::Array(t, items) => Ok((*t, items)),
            v => Err(Self::wrong(key, "ARRAY", v)),
        }
    }

    /// An array of strings.
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        let (t, items) = self.get_array(key)?;
        if t != ValueType::String {
            return Err(GgufError::WrongType {
                key: key.to_string(),
                expected: "ARRAY of STRING",
                found: t,
            });
        }
        Ok(items.iter().filter_map(Value::as_str).collect())
    }

    /// An array of numbers, converted to `f32`.
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>> {
        let (t, items) = self.get_array(key)?;
        items
            .iter()
            .map(|v| v.as_f64().map(|x| x as f32))
            .collect::<Option<Vec<_>>>()
            .ok_or(GgufError::WrongType {
                key: key.to_string(),
                expected: "ARRAY of numbers",
                found: t,
            })
    }

    /// An array of integers, converted to `i64`.
    pub fn get_i64_array(&self, key: &str) -> Result<Vec<i64>> {
        let (t, items) = self.get_array(key)?;
        items
            .iter()
            .map(|v| v.as_integer().and_then(|i| i64::try_from(i).ok()))
            .collect::<Option<Vec<_>>>()
            .ok_or(GgufError::WrongType {
                key: key.to_string(),
                expected: "ARRAY of integers",
                found: t,
            })
    }

    /// A per-layer integer: either a scalar (same for every layer) or an array of `n_layers`.
    /// `{arch}.attention.head_count_kv` is stored either way.
    pub fn get_per_layer_usize(&self, key: &str, n_layers: usize) -> Result<Vec<usize>> {
        match self.require(key)? {
            Value::Array(..) => {
                let vals = self.get_i64_array(key)?;
                if vals.len() != n_layers {
                    return Err(GgufError::BadValue {
                        key: key.to_string(),
                        reason: format!(
                            "array has {} entries, expected {n_layers} (one per layer)",
                            vals.len()
                        ),
                    });
                }
                vals.into_iter()
                    .map(|v| {
                        usize::try_from(v).map_err(|_| GgufError::BadValue {
                            key: key.to_string(),
                            reason: format!("{v} is negative"),
                        })
                    })
                    .collect()
            }
            _ => Ok(vec![self.get_usize(key)?; n_layers]),
        }
    }
}
