//! [`QWeight`]: a GGUF weight matrix on a device, its blocks byte for byte.
//!
//! The file's bytes are stored as `u32` words (a `Tensor<1, Int>` of [`DType::U32`]), four bytes
//! to a word, little-endian, the last word padded with zeros:
//!
//! ```text
//! bytes:  b0 b1 b2 b3 | b4 b5 b6 b7 | … | b(n-1) 0 0          (n = rows · row bytes)
//! words:  w0 = b0 | b1<<8 | b2<<16 | b3<<24,  w1, …, w(⌈n/4⌉-1)
//! ```
//!
//! Blocks keep the file's layout and so start mid-word (18, 20, 22, 34, 84, 110, 210 bytes are not
//! multiples of 4); the GPU kernels read bytes at any offset ([`crate::cube::bits`]), the CPU
//! kernels take the words as bytes again. Repacking to a word-aligned layout would either pad
//! every block (Q4_0: 18 → 20 bytes, +11%) or split the f16 scales from the quants into separate
//! arrays (no padding, but a second layout to keep in sync with every decoder, and no gain for the
//! byte-wise reads the formats need anyway); the file's own layout costs at most 3 bytes.
//!
//! The grid i-quants (IQ1_*, IQ2_*, IQ3_*) carry their grid table after the block words
//! ([`table_words`]), which the GPU kernels read (WGSL has no constant arrays).
//!
//! Device memory: `4·⌈n/4⌉ ≤ n + 3` bytes (plus the grid table), no host copy kept (the word vector built for the
//! upload is handed to the device: on the CPU backends it becomes the tensor's storage).
//!
//! A [`QWeight`] is a Burn module: the words are an int parameter, so a model holding quantized
//! weights saves them in its record (`…/words`, u32) and moves them with `to_device`. The type
//! and shape are constants of the module, not in the record: a loader builds the skeleton with
//! [`QWeight::uninitialized`] from its own description of the weights, then loads the words.
//!
//! # Row bands
//!
//! A device buffer has a size limit (WebGPU's default storage binding is 128 MiB, and wgpu on
//! lavapipe allocates no more), which a large matrix exceeds: Gemma 3's token embedding, 262144
//! rows of 640 in Q8_0, is 178 MB. A matrix of more than [`MAX_BAND_BYTES`] is kept in row bands
//! of at most that many bytes, each its own buffer (`…/words` the first, `…/bands.{i}.words`
//! the others), on every device, so a record reads back on any device; each kernel call runs
//! per band and the results are concatenated, which gives every row what the whole matrix gives
//! it (a row's dot products never depend on other rows; bands are whole multiples of 256 rows).

use burn::module::{Module, Param, ParamId};
use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use gguf_importer::GgmlType;

use crate::cpu::QMatrix;
use crate::error::KernelError;

/// A GGUF quantized (or float) weight matrix `[rows, cols]` on a device, in its file layout.
///
/// `rows` output features × `cols` input features, each row `cols / block_size` blocks (ggml's
/// `ne = [cols, rows]`), as [`QMatrix`] describes the same bytes on the host.
#[derive(Module, Debug)]
pub struct QWeight {
    #[module(skip)]
    ty: GgmlType,
    rows: usize,
    cols: usize,
    n_bytes: usize,
    /// `[⌈first band's bytes / 4⌉]` u32: the rows `0 .. band_rows` (all of them unless banded).
    words: Param<Tensor<1, Int>>,
    /// Rows of the first band.
    band_rows: usize,
    /// The further row bands, in order (empty unless the matrix exceeds [`MAX_BAND_BYTES`]).
    bands: Vec<QWeight>,
}

/// One row band of a [`QWeight`]: whole rows in one buffer.
#[derive(Debug, Clone, Copy)]
pub struct Band<'a> {
    /// `[⌈n_bytes / 4⌉]` u32.
    pub words: &'a Tensor<1, Int>,
    /// Rows of the band.
    pub rows: usize,
    /// Bytes of the band's rows in the file.
    pub n_bytes: usize,
}

/// The most bytes of one device buffer of a [`QWeight`]: larger matrices are kept in row bands
/// (see the [module documentation](self)).
pub const MAX_BAND_BYTES: usize = 1 << 27;

/// Rows per band of a matrix of `rows` rows of `row_bytes` bytes: all of them when they fit
/// [`MAX_BAND_BYTES`], else the most that fit, in multiples of 256 rows (of 8, or single rows,
/// for rows too long for that).
pub fn band_rows(rows: usize, row_bytes: usize) -> usize {
    band_rows_within(rows, row_bytes, MAX_BAND_BYTES)
}

/// [`band_rows`] for bands of at most `max_bytes`.
fn band_rows_within(rows: usize, row_bytes: usize, max_bytes: usize) -> usize {
    if rows.saturating_mul(row_bytes) <= max_bytes {
        return rows;
    }
    let fit = (max_bytes / row_bytes.max(1)).max(1);
    [256, 8, 1]
        .into_iter()
        .find(|&m| fit >= m)
        .map_or(1, |m| fit / m * m)
}

impl QWeight {
    /// Uploads the GGUF bytes of a `[rows, cols]` matrix of type `ty` to `device`.
    ///
    /// Checks (as [`QMatrix::new`]) that the format has a kernel, that `cols` is whole blocks and
    /// that `data` holds exactly `rows × cols` elements; and that the matrix is under 4 GiB (the
    /// GPU kernels address it with u32 byte offsets).
    pub fn new(
        ty: GgmlType,
        rows: usize,
        cols: usize,
        data: &[u8],
        device: &Device,
    ) -> Result<Self, KernelError> {
        Self::with_band_bytes(ty, rows, cols, data, device, MAX_BAND_BYTES)
    }

    /// [`QWeight::new`] with bands of at most `max_band_bytes` (for tests of the banded kernels
    /// on small matrices; a record of such a weight reads back only as [`MAX_BAND_BYTES`] bands).
    pub fn with_band_bytes(
        ty: GgmlType,
        rows: usize,
        cols: usize,
        data: &[u8],
        device: &Device,
        max_band_bytes: usize,
    ) -> Result<Self, KernelError> {
        QMatrix::new(ty, rows, cols, data)?;
        let row_bytes = data.len() / rows;
        let band = band_rows_within(rows, row_bytes, max_band_bytes);
        if band < rows {
            let mut parts = (0..rows).step_by(band).map(|start| {
                let n = band.min(rows - start);
                let bytes = &data[start * row_bytes..(start + n) * row_bytes];
                QWeight::with_band_bytes(ty, n, cols, bytes, device, max_band_bytes)
            });
            let first = parts.next().expect("rows > 0")?;
            let bands = parts.collect::<Result<Vec<_>, _>>()?;
            return Ok(QWeight {
                rows,
                n_bytes: data.len(),
                bands,
                ..first
            });
        }
        if data.len() > u32::MAX as usize - 4 {
            return Err(KernelError::BadShape { rows, cols });
        }
        let mut words = pack_words(data);
        words.extend_from_slice(table_words(ty));
        let len = words.len();
        let words =
            Tensor::<1, Int>::from_data(TensorData::new(words, [len]), (device, DType::U32));
        Ok(QWeight {
            ty,
            rows,
            cols,
            n_bytes: data.len(),
            words: Param::initialized(ParamId::new(), words),
            band_rows: rows,
            bands: Vec::new(),
        })
    }

    /// The matrix whose row bands are `bands`, in order (each a single-band matrix of the same
    /// type and columns, every band but the last of the rows [`band_rows`] gives): what
    /// [`QWeight::new`] builds, for a loader that uploads a large matrix band by band (and can
    /// drop each band's source pages before reading the next).
    pub fn from_bands(mut bands: Vec<QWeight>) -> Result<Self, KernelError> {
        let first = bands
            .first()
            .ok_or(KernelError::BadShape { rows: 0, cols: 0 })?;
        let (ty, cols) = (first.ty, first.cols);
        let rows: usize = bands.iter().map(|b| b.rows).sum();
        let n_bytes: usize = bands.iter().map(|b| b.n_bytes).sum();
        let row_bytes = n_bytes / rows.max(1);
        let band = band_rows(rows, row_bytes);
        let fits = bands.iter().enumerate().all(|(i, b)| {
            b.ty == ty
                && b.cols == cols
                && b.bands.is_empty()
                && (b.rows == band || (i + 1 == bands.len() && b.rows <= band))
        });
        if !fits {
            return Err(KernelError::BadShape { rows, cols });
        }
        let rest = bands.split_off(1);
        let first = bands.pop().expect("one band");
        Ok(QWeight {
            rows,
            n_bytes,
            bands: rest,
            ..first
        })
    }

    /// A `[rows, cols]` matrix of type `ty` on `device` whose words are not allocated yet: the
    /// skeleton a record is loaded into (`ModuleSnapshot::apply` / `load_from` replaces the
    /// words; read before that, they are zeros).
    ///
    /// Checks the type, shape and size as [`QWeight::new`] does; the word count
    /// `⌈rows · row bytes / 4⌉` is what the record must hold.
    pub fn uninitialized(
        ty: GgmlType,
        rows: usize,
        cols: usize,
        device: &Device,
    ) -> Result<Self, KernelError> {
        if rows == 0 || cols == 0 || rows.checked_mul(cols).is_none() {
            return Err(KernelError::BadShape { rows, cols });
        }
        let row_bytes = (cols / ty.block_size())
            .checked_mul(ty.type_size())
            .ok_or(KernelError::BadShape { rows, cols })?;
        // That the type has a kernel and a row is whole blocks: QMatrix's checks on one row.
        QMatrix::new(ty, 1, cols, &vec![0u8; row_bytes])?;
        let band = band_rows(rows, row_bytes);
        if band < rows {
            let mut parts = (0..rows)
                .step_by(band)
                .map(|start| QWeight::uninitialized(ty, band.min(rows - start), cols, device));
            let first = parts.next().expect("rows > 0")?;
            let bands = parts.collect::<Result<Vec<_>, _>>()?;
            return Ok(QWeight {
                rows,
                n_bytes: row_bytes * rows,
                bands,
                ..first
            });
        }
        let n_bytes = row_bytes
            .checked_mul(rows)
            .filter(|&n| n <= u32::MAX as usize - 4)
            .ok_or(KernelError::BadShape { rows, cols })?;
        let len = n_bytes.div_ceil(4) + table_words(ty).len();
        let words = Param::uninitialized(
            ParamId::new(),
            move |device: &Device, _| Tensor::<1, Int>::zeros([len], (device, DType::U32)),
            device.clone(),
            false,
            [len].into(),
        );
        Ok(QWeight {
            ty,
            rows,
            cols,
            n_bytes,
            words,
            band_rows: rows,
            bands: Vec::new(),
        })
    }

    /// The ggml type of the blocks.
    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    /// Output features (rows of `W`).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input features (columns of `W`).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes of the matrix in the file.
    pub fn file_bytes(&self) -> usize {
        self.n_bytes
    }

    /// Bytes the matrix takes on its device: the words of each band, `4·⌈band bytes / 4⌉`, and
    /// the grid table of the grid i-quants once per band ([`table_words`]).
    pub fn device_bytes(&self) -> usize {
        let table = 4 * table_words(self.ty).len();
        self.bands()
            .iter()
            .map(|b| b.n_bytes.div_ceil(4) * 4 + table)
            .sum()
    }

    /// The packed words of the first band `[⌈its bytes / 4⌉]` (of the whole matrix unless it is
    /// banded), dtype [`DType::U32`].
    pub fn words(&self) -> &Tensor<1, Int> {
        &self.words
    }

    /// Whether the matrix is kept in several row bands.
    pub fn is_banded(&self) -> bool {
        !self.bands.is_empty()
    }

    /// The row bands in order, each whole rows in one buffer (one band, the whole matrix, unless
    /// it is banded).
    pub fn bands(&self) -> Vec<Band<'_>> {
        let row_bytes = self.n_bytes / self.rows.max(1);
        let first = Band {
            words: &self.words,
            rows: self.band_rows,
            n_bytes: self.band_rows * row_bytes,
        };
        std::iter::once(first)
            .chain(self.bands.iter().map(|b| Band {
                words: &b.words,
                rows: b.rows,
                n_bytes: b.n_bytes,
            }))
            .collect()
    }

    /// The device the words live on.
    pub fn device(&self) -> Device {
        self.words.lazy_device()
    }
}

/// The grid table the GPU kernels of a grid i-quant read, as little-endian `u32` words appended
/// to every band's words (after the block words): IQ2_XXS, IQ2_XS, IQ2_S (`u64` grid rows of
/// eight bytes, two words each), IQ1_S, IQ1_M (`iq1s_grid`, two words per row), IQ3_XXS, IQ3_S
/// (`u32` rows of four bytes). WGSL has no constant arrays, so the table travels with the
/// weights (at most 16 KiB: IQ1's 2048 rows); the kernels find it at the end of the buffer. Empty
/// for every other type.
pub fn table_words(ty: GgmlType) -> &'static [u32] {
    use gguf_importer::quants::iquant_tables as t;
    use std::sync::OnceLock;
    fn rows64(grid: &[u64]) -> Vec<u32> {
        grid.iter()
            .flat_map(|&g| [g as u32, (g >> 32) as u32])
            .collect()
    }
    static TABLES: OnceLock<[Vec<u32>; 6]> = OnceLock::new();
    let tables = TABLES.get_or_init(|| {
        [
            rows64(&t::IQ2XXS_GRID),
            rows64(&t::IQ2XS_GRID),
            rows64(&t::IQ2S_GRID),
            t::IQ3XXS_GRID.to_vec(),
            t::IQ3S_GRID.to_vec(),
            rows64(&t::IQ1S_GRID),
        ]
    });
    match ty {
        GgmlType::IQ2_XXS => &tables[0],
        GgmlType::IQ2_XS => &tables[1],
        GgmlType::IQ2_S => &tables[2],
        GgmlType::IQ3_XXS => &tables[3],
        GgmlType::IQ3_S => &tables[4],
        GgmlType::IQ1_S | GgmlType::IQ1_M => &tables[5],
        _ => &[],
    }
}

/// The bytes as little-endian u32 words, the last one zero-padded.
pub fn pack_words(data: &[u8]) -> Vec<u32> {
    let mut words = Vec::with_capacity(data.len().div_ceil(4));
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        words.push(u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; 4];
        last[..rest.len()].copy_from_slice(rest);
        words.push(u32::from_le_bytes(last));
    }
    words
}

/// The first `n_bytes` bytes of little-endian words (the inverse of [`pack_words`]); borrowed
/// on little-endian hosts.
pub fn words_as_bytes(words: &[u32], n_bytes: usize) -> std::borrow::Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        std::borrow::Cow::Borrowed(&bytemuck::cast_slice::<u32, u8>(words)[..n_bytes])
    } else {
        let mut bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        bytes.truncate(n_bytes);
        std::borrow::Cow::Owned(bytes)
    }
}
