//! Throughput and memory of a model on a device: prefill and decode tokens per second (best of 3),
//! load time, peak resident memory.
//!
//! ```text
//! cargo run --release --example bench -- --model FILE --device flex --threads 2 \
//!     --prompt-tokens 128 --gen-tokens 64 [--json]
//! ```
//!
//! Prefill is one forward pass over `--prompt-tokens` tokens from an empty cache, timed until its
//! last logits are on the host; decode is `--gen-tokens` single-token steps after it, each timed
//! until its logits are on the host, fed back greedily. scripts/bench_llama_cpp.py runs llama.cpp
//! the same way on the same file and writes the side-by-side table.

mod common;

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use common::ModelArgs;
use gguf_llama::cli;
use gguf_llama::generate::last_logits;
use gguf_llama::model::{Llama, Logits};
use gguf_llama::sampling::{Sampler, SamplerConfig};

#[derive(Parser)]
#[command(about = "Prefill/decode throughput, load time and peak memory of a GGUF model")]
struct Args {
    #[command(flatten)]
    run: ModelArgs,
    /// Prompt tokens of the prefill pass (at least 1).
    #[arg(long, default_value_t = 128)]
    #[arg(value_parser = cli::positive_count, allow_negative_numbers = true)]
    prompt_tokens: usize,
    /// Tokens decoded one by one after the prefill (0: prefill only).
    #[arg(long, default_value_t = 64, allow_negative_numbers = true)]
    gen_tokens: usize,
    /// Repetitions (at least 1); the best is reported.
    #[arg(long, default_value_t = 3)]
    #[arg(value_parser = cli::positive_count, allow_negative_numbers = true)]
    runs: usize,
    /// One JSON line {"pp_tok_s","tg_tok_s","load_s","peak_rss_bytes"}.
    #[arg(long)]
    json: bool,
}

/// Peak resident set size of this process (Linux: VmHWM), if known.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn main() -> ExitCode {
    cli::exit_code(run())
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let device = args.run.device()?;

    let load = Instant::now();
    let file = cli::open_model(args.run.model.as_deref())?;
    let model = Llama::from_gguf_with_weights(&file, &device, args.run.weights)?;
    let load_s = load.elapsed().as_secs_f64();
    // The weights are copied out of the file: its parsed metadata is not needed any more.
    drop(file);
    let n_vocab = model.config().vocab_size as u32;
    let needed = args.prompt_tokens.saturating_add(args.gen_tokens);
    anyhow::ensure!(
        needed <= model.config().context_length,
        "--prompt-tokens + --gen-tokens = {needed} exceeds the context length {}",
        model.config().context_length
    );

    // A fixed, varied prompt (llama-bench uses random tokens too).
    let prompt: Vec<u32> = (0..args.prompt_tokens as u32)
        .map(|i| (i * 7919 + 13) % n_vocab)
        .collect();
    let mut greedy = Sampler::new(SamplerConfig::greedy())?;
    let (mut best_pp, mut best_tg) = (0f64, 0f64);
    // One cache, emptied before each run (as llama-bench clears its KV cache).
    let mut cache = model.new_cache_with(1, needed, args.run.cache());
    for _ in 0..args.runs {
        cache.reset();
        let t = Instant::now();
        let mut logits = last_logits(model.forward_ids(&prompt, 1, &mut cache, Logits::Last)?)?;
        best_pp = best_pp.max(args.prompt_tokens as f64 / t.elapsed().as_secs_f64());

        let t = Instant::now();
        for _ in 0..args.gen_tokens {
            let next = greedy.sample(&logits, &[])?;
            logits = last_logits(model.forward_ids(&[next], 1, &mut cache, Logits::Last)?)?;
        }
        best_tg = best_tg.max(args.gen_tokens as f64 / t.elapsed().as_secs_f64());
    }
    let rss = peak_rss_bytes();
    if args.json {
        println!(
            "{}",
            serde_json::json!({"pp_tok_s": best_pp, "tg_tok_s": best_tg, "load_s": load_s, "peak_rss_bytes": rss})
        );
    } else {
        println!(
            "device {} | load {:.2} s | prefill {} tokens: {:.1} tok/s | decode {} tokens: {:.1} tok/s | peak RSS {} (best of {})",
            args.run.device,
            load_s,
            args.prompt_tokens,
            best_pp,
            args.gen_tokens,
            best_tg,
            rss.map(|b| format!("{:.1} MB", b as f64 / 1e6)).unwrap_or_else(|| "n/a".into()),
            args.runs
        );
    }
    Ok(())
}
