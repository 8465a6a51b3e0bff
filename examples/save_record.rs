//! Saves a GGUF model as a Burn record (burnpack), loads it back without the GGUF file, checks
//! that both give the same logits bit for bit, and times loading either way.
//!
//! ```text
//! cargo run --release --example save_record -- --model FILE.gguf --out FILE.bpk
//! cargo run --release --example save_record -- --model FILE.gguf --out FILE.bpk --device ndarray --runs 5
//! ```
//!
//! Load times are the fastest of `--runs` runs (the files then come from the page cache):
//! `GGUF open+load` is `GgufFile::open` plus `Llama::from_gguf_with_weights`, `record load` is
//! `Llama::load_record`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use gguf_llama::cli;
use gguf_llama::device::{self, DeviceName};
use gguf_llama::generate::token_tensor;
use gguf_llama::gguf::GgufFile;
use gguf_llama::model::{Llama, Weights};

#[derive(Parser)]
#[command(about = "Save a GGUF model as a burnpack record and load it back")]
struct Args {
    /// The GGUF file.
    #[arg(long)]
    model: PathBuf,
    /// Where to write the record (used as given; replaced if it exists).
    #[arg(long)]
    out: PathBuf,
    /// flex, ndarray or wgpu.
    #[arg(long, default_value = "flex")]
    device: DeviceName,
    /// quantized (weights in their blocks) or f32 (dequantized).
    #[arg(long, default_value = "quantized")]
    weights: Weights,
    /// Timed loads of each kind (at least 1); the fastest is reported.
    #[arg(long, default_value_t = 3)]
    #[arg(value_parser = cli::positive_count, allow_negative_numbers = true)]
    runs: usize,
}

/// The fastest of `runs` calls of `f` (at least one), and the last result.
fn fastest<T>(
    runs: usize,
    mut f: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<(T, Duration)> {
    let start = Instant::now();
    let mut last = f()?;
    let mut best = start.elapsed();
    for _ in 1..runs {
        let start = Instant::now();
        last = f()?;
        best = best.min(start.elapsed());
    }
    Ok((last, best))
}

fn main() -> ExitCode {
    cli::exit_code(run())
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let device = device::device(args.device)?;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);

    let (original, gguf_load) = fastest(args.runs, || {
        let file = GgufFile::open(&args.model)
            .with_context(|| format!("reading {}", args.model.display()))?;
        Ok(Llama::from_gguf_with_weights(&file, &device, args.weights)?)
    })?;

    let start = Instant::now();
    original
        .save_record(&args.out)
        .with_context(|| format!("saving {}", args.out.display()))?;
    let save = start.elapsed();

    let (loaded, record_load) = fastest(args.runs, || Ok(Llama::load_record(&args.out, &device)?))?;

    // Same logits bit for bit on a few in-vocabulary tokens; the first pass of each model timed.
    let n_vocab = original.config().vocab_size as u32;
    let prompt: Vec<u32> = [1, 2, 3, 4].iter().map(|t| t % n_vocab).collect();
    let run = |model: &Llama| -> anyhow::Result<(Vec<u32>, Duration)> {
        let start = Instant::now();
        let mut cache = model.new_cache(1, prompt.len());
        let logits = model.forward(token_tensor(&prompt, &device), &mut cache)?;
        let bits = logits.into_data().iter::<f32>().map(f32::to_bits).collect();
        Ok((bits, start.elapsed()))
    };
    let (original_bits, original_pass) = run(&original)?;
    let (loaded_bits, loaded_pass) = run(&loaded)?;
    let identical = original_bits == loaded_bits;

    let file = GgufFile::open(&args.model)?;
    let tensor_bytes: u64 = file
        .tensors()
        .iter()
        .map(|t| file.tensor_data(t).len() as u64)
        .sum();
    let gguf_size = std::fs::metadata(&args.model)?.len();
    let record_size = std::fs::metadata(&args.out)?.len();
    println!(
        "model        {} ({} weights, {})",
        args.model.display(),
        args.weights,
        args.device
    );
    println!(
        "GGUF         {gguf_size} bytes ({:.2} MiB; tensor data {tensor_bytes} bytes)",
        mib(gguf_size)
    );
    println!(
        "record       {record_size} bytes ({:.2} MiB; {:+} bytes vs the GGUF tensor data)",
        mib(record_size),
        record_size as i64 - tensor_bytes as i64
    );
    println!("save         {:.1} ms", save.as_secs_f64() * 1e3);
    println!(
        "load         GGUF open+load {:.1} ms, record load {:.1} ms (fastest of {})",
        gguf_load.as_secs_f64() * 1e3,
        record_load.as_secs_f64() * 1e3,
        args.runs
    );
    println!(
        "first pass   {} tokens: GGUF model {:.1} ms, record model {:.1} ms",
        prompt.len(),
        original_pass.as_secs_f64() * 1e3,
        loaded_pass.as_secs_f64() * 1e3
    );
    println!(
        "logits       {}",
        if identical {
            "identical bit for bit"
        } else {
            "DIFFER"
        }
    );
    if !identical {
        anyhow::bail!("the loaded record's logits differ from the GGUF model's");
    }
    Ok(())
}
