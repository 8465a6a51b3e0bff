//! LoRA fine-tuning of a GGUF Llama model with Burn's Autodiff and Adam, on top of the frozen base,
//! whose weights stay quantized in their GGUF blocks.
//!
//! ```text
//! cargo run --release --example finetune                       # stories260K on the Grimm fixture
//! cargo run --release --example finetune -- --model SmolLM2-135M-Instruct.Q8_0.gguf \
//!     --text my.txt --steps 200 --seq 128 --batch 4 --lr 1e-3 --out-dir out/
//! ```
//!
//! Prints a greedy sample of `--prompt` before training, the loss every `--log-every` steps (the
//! step's batch, and a fixed batch of windows of the same text), and a sample after. With `--out-dir`, merges
//! the adapters into the weights (`W + alpha/rank · B · A`) and saves the merged model there as a
//! Burn record (`merged.bpk`) and as GGUF (`merged-<type>.gguf`, `--export-types f32,f16,q8_0`),
//! which llama.cpp loads (scripts/check_export.py --lora checks that).

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use burn::optim::{AdamConfig, GradientsParams};
use clap::Parser;
use common::ModelArgs;
use gguf_llama::cli;
use gguf_llama::finetune::{next_token_loss, TokenWindows};
use gguf_llama::generate::{generate, GenerateConfig};
use gguf_llama::model::{ExportType, Llama, LoraConfig, LoraTarget};
use gguf_llama::sampling::SamplerConfig;
use gguf_llama::tokenizer::Tokenizer;

/// The default text: three of Grimm's tales (public domain), the perplexity fixture.
const DEFAULT_TEXT: &str = include_str!("../tests/fixtures/perplexity/grimm-three-tales.txt");

#[derive(Parser)]
#[command(about = "LoRA fine-tuning on a frozen (quantized) GGUF Llama model")]
struct Args {
    #[command(flatten)]
    run: ModelArgs,
    /// The training text (UTF-8); default: three Grimm tales (tests/fixtures/perplexity).
    #[arg(long)]
    text: Option<PathBuf>,
    /// Optimizer steps (at least 1).
    #[arg(long, default_value_t = 300)]
    #[arg(value_parser = cli::positive_count, allow_negative_numbers = true)]
    steps: usize,
    /// Windows per step (at least 1).
    #[arg(long, default_value_t = 8)]
    #[arg(value_parser = cli::positive_count, allow_negative_numbers = true)]
    batch: usize,
    /// Tokens per window (the loss predicts tokens 1..=seq from 0..seq; at least 1, at most the
    /// context length).
    #[arg(long, default_value_t = 64)]
    #[arg(value_parser = cli::positive_count, allow_negative_numbers = true)]
    seq: usize,
    /// Adam's learning rate (above 0).
    #[arg(long, default_value_t = 3e-3)]
    #[arg(value_parser = cli::positive_number, allow_negative_numbers = true)]
    lr: f64,
    /// LoRA rank (at least 1).
    #[arg(long, default_value_t = 8)]
    #[arg(value_parser = cli::positive_count, allow_negative_numbers = true)]
    rank: usize,
    /// LoRA alpha (the adapters' output is scaled by alpha / rank).
    #[arg(long, default_value_t = 16.0, allow_negative_numbers = true)]
    alpha: f32,
    /// Projections that get adapters, comma-separated: q, k, v, o, gate, up, down.
    #[arg(long, value_delimiter = ',', default_value = "q,k,v,o,gate,up,down")]
    targets: Vec<LoraTarget>,
    /// Seed of the adapters' initial values and of the windows drawn.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    seed: u64,
    /// Print the losses every N steps (at least 1).
    #[arg(long, default_value_t = 25)]
    #[arg(value_parser = cli::positive_count, allow_negative_numbers = true)]
    log_every: usize,
    /// The prompt of the samples before and after.
    #[arg(long, default_value = "Once upon a time")]
    prompt: String,
    /// Tokens per sample (0: no samples).
    #[arg(long, default_value_t = 48, allow_negative_numbers = true)]
    sample_tokens: usize,
    /// Save the merged model here (merged.bpk, merged-<type>.gguf).
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// The GGUF exports' matrix types, comma-separated (f32, f16, q8_0): one file each.
    #[arg(long, value_delimiter = ',', default_value = "q8_0")]
    export_types: Vec<ExportType>,
}

fn sample(
    model: &Llama,
    tokenizer: &Tokenizer,
    text: &str,
    prompt: &[u32],
    n: usize,
) -> anyhow::Result<()> {
    let config = GenerateConfig {
        max_tokens: n,
        sampler: SamplerConfig::greedy(),
        stop_at_eog: true,
        ..GenerateConfig::default()
    };
    let mut out = std::io::stdout().lock();
    write!(out, "{text}")?;
    generate(model, tokenizer, prompt, &config, &mut |piece| {
        let _ = write!(out, "{piece}");
        let _ = out.flush();
    })?;
    writeln!(out)?;
    Ok(())
}

fn main() -> ExitCode {
    cli::exit_code(run())
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let device = args.run.device()?;
    let file = cli::open_model(args.run.model.as_deref())?;
    let tokenizer = Tokenizer::from_gguf(file.metadata())?;
    let base = Llama::from_gguf_with_weights(&file, &device, args.run.weights)?;

    let text = match &args.text {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
        }
        None => DEFAULT_TEXT.to_string(),
    };
    let tokens = tokenizer.encode(&text, true, false);
    let prompt = cli::prompt_tokens(&file, &tokenizer, &args.prompt, false, None)?;

    println!("--- before ---");
    sample(&base, &tokenizer, &args.prompt, &prompt, args.sample_tokens)?;

    // Adapters on the autodiff twin of the device: the base stays a constant of the graph.
    let lora = LoraConfig {
        rank: args.rank,
        alpha: args.alpha,
        targets: args.targets.clone(),
        seed: args.seed,
    };
    let mut model = base.with_lora(&lora, &device.clone().autodiff())?;
    println!(
        "--- training {} adapter values ({} adapters, rank {}) for {} steps of {} x {} tokens, {} text tokens ---",
        model.lora_num_params(),
        model.lora_adapters().len(),
        args.rank,
        args.steps,
        args.batch,
        args.seq,
        tokens.len()
    );
    let mut windows = TokenWindows::new(tokens.clone(), args.seq + 1, args.seed)?;
    // A fixed batch of windows of the same text, to follow the loss without the noise of
    // drawing a new batch every step (not held out: the text is small).
    let eval_batch = TokenWindows::new(tokens, args.seq + 1, args.seed ^ 0x5EED)?
        .next_batch(args.batch, &device);
    // The model as it trains (quantized base, adapters): its graph is dropped unused.
    let eval_batch_loss =
        |m: &Llama| -> anyhow::Result<f32> { Ok(scalar(next_token_loss(m, eval_batch.clone())?)) };
    println!("step     0  eval loss {:.4}", eval_batch_loss(&model)?);

    let mut optim = AdamConfig::new().init();
    let start = Instant::now();
    for step in 1..=args.steps {
        let loss = next_token_loss(&model, windows.next_batch(args.batch, &device))?;
        let train_loss = scalar(loss.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(args.lr, model, grads);
        if step % args.log_every == 0 || step == args.steps {
            println!(
                "step {step:5}  loss {train_loss:.4}  eval loss {:.4}  ({:.2} s/step)",
                eval_batch_loss(&model)?,
                start.elapsed().as_secs_f64() / step as f64
            );
        }
    }

    let merged = model.merge_lora()?;
    println!("--- after ---");
    sample(
        &merged,
        &tokenizer,
        &args.prompt,
        &prompt,
        args.sample_tokens,
    )?;

    if let Some(dir) = &args.out_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let record = dir.join("merged.bpk");
        merged.save_record(&record)?;
        println!("saved {}", record.display());
        for ty in &args.export_types {
            let gguf = dir.join(format!("merged-{ty}.gguf"));
            merged.save_gguf(file.metadata(), &gguf, *ty)?;
            println!("saved {}", gguf.display());
        }
    }
    Ok(())
}

fn scalar(t: burn::tensor::Tensor<1>) -> f32 {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map(|v| v[0])
        .unwrap_or(f32::NAN)
}
