//! Loads a GGUF model and saves it as a GGUF file of another type with `Llama::save_gguf`
//! (llama.cpp's file types F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q5_1, Q2_K, Q3_K_M, Q4_K_S, Q4_K_M,
//! Q5_K_M, Q6_K, IQ4_NL, IQ4_XS: the matrix types llama.cpp's quantizer chooses for each, byte for
//! byte its output; norms, biases and RoPE factors F32), for llama.cpp to load.
//!
//! ```text
//! cargo run --release --example export_gguf -- --model FILE.gguf --out OUT.gguf --type q8_0
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use gguf_llama::cli;
use gguf_llama::device::{self, DeviceName};
use gguf_llama::gguf::GgufFile;
use gguf_llama::model::export::ExportType;
use gguf_llama::model::{Llama, Weights};

#[derive(Parser)]
#[command(about = "Save a GGUF model as a GGUF file of a llama.cpp file type (F16, Q4_K_M, ...)")]
struct Args {
    /// The source GGUF file.
    #[arg(long)]
    model: PathBuf,
    /// Where to write the export (replaced if it exists).
    #[arg(long)]
    out: PathBuf,
    /// f32, f16, bf16, q8_0, q4_0, q5_0, q5_1, q2_k, q3_k_m, q4_k_s, q4_k_m, q5_k_m, q6_k,
    /// iq4_nl or iq4_xs (any case; q3_k, q4_k, q5_k mean the _m mixes, as in llama-quantize).
    #[arg(long = "type", default_value = "f16")]
    ty: ExportType,
    /// flex, ndarray or wgpu.
    #[arg(long, default_value = "flex")]
    device: DeviceName,
}

fn main() -> ExitCode {
    cli::exit_code(run())
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let device = device::device(args.device)?;
    let file =
        GgufFile::open(&args.model).with_context(|| format!("reading {}", args.model.display()))?;
    let model = Llama::from_gguf_with_weights(&file, &device, Weights::Quantized)?;
    model
        .save_gguf(file.metadata(), &args.out, args.ty)
        .with_context(|| format!("exporting {}", args.out.display()))?;
    let out = GgufFile::open(&args.out)?;
    println!(
        "wrote {} ({}, {} tensors, {} bytes)",
        args.out.display(),
        args.ty,
        out.tensors().len(),
        std::fs::metadata(&args.out)?.len()
    );
    Ok(())
}
