//! Prints a GGUF file's metadata and tensor table, like gguf-dump, and dequantizes a tensor to
//! `.npy` on request.
//!
//! ```text
//! cargo run --release --example inspect -- FILE.gguf
//! cargo run --release --example inspect -- FILE.gguf --dequantize token_embd.weight --out embd.npy
//! ```
//!
//! On a bad file it exits non-zero with the error on stderr.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use gguf_llama::cli;
use gguf_llama::gguf::{npy, GgmlType, GgufFile};

#[derive(Parser)]
#[command(about = "Print a GGUF file's metadata and tensors, or dequantize one tensor to .npy")]
struct Args {
    /// The GGUF file.
    file: std::path::PathBuf,
    /// Dequantize this tensor (to little-endian f32, row-major shape) instead of listing.
    #[arg(long, requires = "out")]
    dequantize: Option<String>,
    /// Where to write the dequantized tensor (.npy).
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    cli::exit_code(run())
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let file =
        GgufFile::open(&args.file).with_context(|| format!("reading {}", args.file.display()))?;

    if let (Some(name), Some(out)) = (&args.dequantize, &args.out) {
        let info = file.require_tensor(name)?;
        let values = file.dequantize(name)?;
        let mut w = std::io::BufWriter::new(
            std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?,
        );
        npy::write_f32(&mut w, &info.shape(), &values)?;
        w.flush()?;
        eprintln!(
            "{name}: {} {:?} -> {}",
            info.ty,
            info.shape(),
            out.display()
        );
        return Ok(());
    }

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(
        out,
        "GGUF v{}, {} metadata entries, {} tensors, alignment {}, data at byte {}",
        file.version(),
        file.metadata().len(),
        file.tensors().len(),
        file.alignment(),
        file.data_offset()
    )?;
    writeln!(out, "\nMetadata:")?;
    for (i, (key, value)) in file.metadata().iter().enumerate() {
        writeln!(
            out,
            "{:5}: {:<8} {key} = {value}",
            i + 1,
            value.value_type().to_string()
        )?;
    }
    writeln!(
        out,
        "\nTensors (shape is row-major: the last dimension is contiguous, ggml's ne[0]):"
    )?;
    writeln!(
        out,
        "{:>5}  {:<36} {:<7} {:<20} {:>12} {:>12}",
        "#", "name", "type", "shape", "bytes", "offset"
    )?;
    for (i, t) in file.tensors().iter().enumerate() {
        writeln!(
            out,
            "{:5}  {:<36} {:<7} {:<20} {:>12} {:>12}",
            i + 1,
            t.name,
            t.ty.name(),
            format!("{:?}", t.shape()),
            t.n_bytes,
            file.data_offset() + t.offset
        )?;
    }
    let total: u64 = file.tensors().iter().map(|t| t.n_bytes).sum();
    writeln!(
        out,
        "\n{} bytes of tensor data in a file of {} bytes",
        total,
        file.file_len()
    )?;
    // The formats of the file, in type-id order: how many tensors, bytes, bits per weight, and
    // what each format is.
    let mut types: Vec<GgmlType> = file.tensors().iter().map(|t| t.ty).collect();
    types.sort_by_key(|t| t.id());
    types.dedup();
    writeln!(out, "\nTypes:")?;
    for ty in types {
        let (count, bytes) = file
            .tensors()
            .iter()
            .filter(|t| t.ty == ty)
            .fold((0, 0u64), |(c, b), t| (c + 1, b + t.n_bytes));
        writeln!(
            out,
            "  {:<7} {count:>4} tensors {bytes:>12} bytes  {:>5.2} bits/weight  {}",
            ty.name(),
            ty.bits_per_weight(),
            ty.description()
        )?;
    }
    Ok(())
}
