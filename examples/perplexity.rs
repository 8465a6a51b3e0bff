//! Perplexity of a GGUF Llama model on a text file, as llama.cpp's `llama-perplexity` computes it.
//!
//! ```text
//! cargo run --release --example perplexity -- --text tests/fixtures/perplexity/grimm-three-tales.txt --ctx 128
//! cargo run --release --example perplexity -- --model SmolLM2-135M-Instruct.Q4_1.gguf \
//!     --text tests/fixtures/perplexity/grimm-three-tales.txt --ctx 256 --batch 2 --chunks 8
//! ```
//!
//! Without `--model`, the embedded stories260K. Shows a progress line on stderr, then prints the running
//! perplexity after each window as llama.cpp does (`[1]21.7620,[2]45.0624,...`), the final
//! estimate with its standard error, and the throughput; `--json` prints one JSON line instead.

mod common;

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use common::ModelArgs;
use gguf_llama::cli;
use gguf_llama::model::Llama;
use gguf_llama::perplexity::{self, PerplexityConfig};
use gguf_llama::tokenizer::Tokenizer;

#[derive(Parser)]
#[command(
    about = "Perplexity of a GGUF Llama model on a text (default model: the embedded stories260K)"
)]
struct Args {
    #[command(flatten)]
    run: ModelArgs,
    /// The text file (UTF-8).
    #[arg(long)]
    text: std::path::PathBuf,
    // Ranges are checked by `perplexity::perplexity` (PerplexityError); negative numbers are
    // taken as values so that they are reported as invalid values of their flag.
    /// Tokens per window (llama.cpp's -c); the second half of each window is scored.
    #[arg(long, allow_negative_numbers = true)]
    ctx: usize,
    /// Windows per forward pass.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    batch: usize,
    /// Score only the first N windows (llama.cpp's --chunks).
    #[arg(long, allow_negative_numbers = true)]
    chunks: Option<usize>,
    /// Print one JSON line {"ppl","ppl_stderr","running_ppl",...,"timings"} instead.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    cli::exit_code(run())
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let device = args.run.device()?;

    let load = Instant::now();
    let file = cli::open_model(args.run.model.as_deref())?;
    let tokenizer = Tokenizer::from_gguf(file.metadata())?;
    let model = Llama::from_gguf_with_weights(&file, &device, args.run.weights)?;
    let load_s = load.elapsed().as_secs_f64();

    let text = std::fs::read_to_string(&args.text)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", args.text.display()))?;
    let tokens = perplexity::tokenize(&tokenizer, &text)?;
    let bos = if tokenizer.add_bos() {
        tokenizer.bos_id()
    } else {
        None
    };
    let config = PerplexityConfig {
        n_ctx: args.ctx,
        batch: args.batch,
        max_windows: args.chunks,
        cache: args.run.cache(),
    };

    if !args.json {
        eprintln!(
            "{} tokens, n_ctx {}, batch {}, device {}, weights {}, load {load_s:.2} s",
            tokens.len(),
            args.ctx,
            args.batch,
            args.run.device,
            args.run.weights
        );
    }
    // A one-line progress display on stderr (indicatif would do this, but its dependency on
    // portable-atomic's `fallback` feature changes the features burn is built with, which costs a
    // rebuild of burn for a progress bar).
    let result = perplexity::perplexity(&model, &tokens, bos, &config, &mut |p| {
        if args.json {
            return;
        }
        let tok_s = p.tokens_evaluated as f64 / p.elapsed_s.max(f64::MIN_POSITIVE);
        let eta = (p.n_windows - p.window) as f64 * p.elapsed_s / p.window.max(1) as f64;
        eprint!(
            "\r{}/{} windows  ppl {:.4}  {tok_s:.0} tok/s  {:.0} s < {eta:.0} s   ",
            p.window, p.n_windows, p.running_ppl, p.elapsed_s
        );
        if p.window == p.n_windows {
            eprintln!();
        }
    })?;

    let mut out = std::io::stdout().lock();
    if args.json {
        let line = serde_json::json!({
            "ppl": result.ppl,
            "ppl_stderr": result.ppl_stderr,
            "mean_nll": result.mean_nll,
            "running_ppl": result.running_ppl,
            "n_tokens": result.n_tokens,
            "n_windows": result.n_windows,
            "n_ctx": result.n_ctx,
            "batch": args.batch,
            "scored_tokens": result.scored_tokens,
            "device": args.run.device.to_string(),
            "weights": args.run.weights.to_string(),
            "timings": {
                "load_s": load_s,
                "eval_s": result.seconds,
                "tokens_per_s": result.tokens_per_s(),
            },
        });
        writeln!(out, "{line}")?;
        return Ok(());
    }

    let running: Vec<String> = result
        .running_ppl
        .iter()
        .enumerate()
        .map(|(i, p)| format!("[{}]{p:.4}", i + 1))
        .collect();
    writeln!(out, "{},", running.join(","))?;
    match result.ppl_stderr {
        Some(se) => writeln!(out, "Final estimate: PPL = {:.4} +/- {se:.5}", result.ppl)?,
        None => writeln!(out, "Final estimate: PPL = {:.4}", result.ppl)?,
    }
    eprintln!(
        "{} windows of {} tokens ({} scored) in {:.2} s: {:.1} tok/s | device {} | weights {}",
        result.n_windows,
        result.n_ctx,
        result.scored_tokens,
        result.seconds,
        result.tokens_per_s(),
        args.run.device,
        args.run.weights
    );
    Ok(())
}
