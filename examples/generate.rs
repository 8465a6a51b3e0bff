//! Generate text with a GGUF Llama model.
//!
//! ```text
//! cargo run --release --example generate                       # a story from the embedded stories260K
//! cargo run --release --example generate -- --model SmolLM2-135M-Instruct.Q4_1.gguf \
//!     --chat --prompt "What is the capital of France?" --temp 0
//! ```
//!
//! Streams the text as it is generated and ends with load time, prompt tok/s and generation
//! tok/s; `--json` prints one JSON line instead.

mod common;

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{ArgGroup, Parser};
use common::ModelArgs;
use gguf_llama::chat::ChatTemplate;
use gguf_llama::cli;
use gguf_llama::generate::{generate, GenerateConfig};
use gguf_llama::model::Llama;
use gguf_llama::sampling::SamplerConfig;
use gguf_llama::tokenizer::Tokenizer;

#[derive(Parser)]
#[command(about = "Generate text with a GGUF model (default: the embedded stories260K)")]
#[command(group(ArgGroup::new("chat_mode").args(["chat", "chat_template_file"]).multiple(true)))]
struct Args {
    #[command(flatten)]
    run: ModelArgs,
    /// The prompt.
    #[arg(long, default_value = "Once upon a time")]
    prompt: String,
    /// Render the prompt as a user message with the model's chat template.
    #[arg(long)]
    chat: bool,
    /// A Jinja chat template file to render the prompt with instead of the model's (implies
    /// --chat; llama.cpp's flag of the same name), e.g. for a file without a template.
    #[arg(long)]
    chat_template_file: Option<std::path::PathBuf>,
    /// A system message (with --chat or --chat-template-file).
    #[arg(long, requires = "chat_mode")]
    system: Option<String>,
    // Numeric flags take negative numbers as values, so that `--top-p -1` is reported as an
    // invalid value of --top-p rather than as an unknown flag `-1`.
    /// Tokens to generate at most (at least 1).
    #[arg(long, default_value_t = 128)]
    #[arg(value_parser = cli::positive_count, allow_negative_numbers = true)]
    max_tokens: usize,
    /// Temperature; 0 (or below) = greedy.
    #[arg(long, default_value_t = 0.8, allow_negative_numbers = true)]
    temp: f32,
    /// Top-k (0 = off).
    #[arg(long, default_value_t = 40, allow_negative_numbers = true)]
    top_k: usize,
    /// Top-p (1 = off).
    #[arg(long, default_value_t = 0.95, allow_negative_numbers = true)]
    top_p: f32,
    /// Min-p (0 = off).
    #[arg(long, default_value_t = 0.05, allow_negative_numbers = true)]
    min_p: f32,
    /// Repetition penalty (1 = off), over the last 64 tokens.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    repeat_penalty: f32,
    /// Random seed (default: from the clock).
    #[arg(long, allow_negative_numbers = true)]
    seed: Option<u64>,
    /// Print one JSON line {"prompt_tokens","tokens","text","timings"} instead of streaming.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    cli::exit_code(run())
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let sampler = SamplerConfig {
        temperature: args.temp,
        top_k: args.top_k,
        top_p: args.top_p,
        min_p: args.min_p,
        repeat_penalty: args.repeat_penalty,
        seed: args.seed,
        ..SamplerConfig::default()
    };
    // Out-of-range sampler flags fail before the model is loaded.
    sampler.validate()?;
    let device = args.run.device()?;

    let load = Instant::now();
    let file = cli::open_model(args.run.model.as_deref())?;
    let tokenizer = Tokenizer::from_gguf(file.metadata())?;
    let model = Llama::from_gguf_with_weights(&file, &device, args.run.weights)?;
    let load_s = load.elapsed().as_secs_f64();

    let chat = args.chat || args.chat_template_file.is_some();
    let template = match &args.chat_template_file {
        Some(path) => {
            let source = std::fs::read_to_string(path)
                .with_context(|| format!("reading chat template file {}", path.display()))?;
            Some(ChatTemplate::with_gguf_tokens(&source, file.metadata())?)
        }
        None if chat => Some(ChatTemplate::from_gguf_or_chatml(file.metadata())?),
        None => None,
    };
    let prompt = cli::prompt_tokens_with(
        &tokenizer,
        &args.prompt,
        template.as_ref(),
        args.system.as_deref(),
    )?;
    // The weights are copied out of the file and the chat template is applied: the parsed
    // metadata (the vocabulary again, ~5 MB for SmolLM2) is not needed while generating.
    drop(file);
    let config = GenerateConfig {
        max_tokens: args.max_tokens,
        sampler,
        stop_at_eog: true,
        cache: args.run.cache(),
    };

    let stdout = std::io::stdout();
    if args.json {
        let g = generate(&model, &tokenizer, &prompt, &config, &mut |_| {})?;
        let line = serde_json::json!({
            "prompt_tokens": g.prompt_tokens,
            "tokens": g.tokens,
            "text": g.text,
            "stop": g.stop,
            "timings": {
                "load_s": load_s,
                "prompt_tokens": g.timings.prompt_tokens,
                "prompt_s": g.timings.prompt_s,
                "prompt_tok_s": g.timings.prompt_tok_s(),
                "generated_tokens": g.timings.generated_tokens,
                "generation_s": g.timings.generation_s,
                "generation_tok_s": g.timings.generation_tok_s(),
            },
        });
        writeln!(stdout.lock(), "{line}")?;
        return Ok(());
    }

    // Echo the prompt as llama.cpp does (without the special tokens), then stream.
    if !chat {
        print!("{}", args.prompt);
    }
    let g = generate(&model, &tokenizer, &prompt, &config, &mut |piece| {
        let mut out = stdout.lock();
        let _ = out.write_all(piece.as_bytes());
        let _ = out.flush();
    })?;
    println!();
    let t = &g.timings;
    eprintln!(
        "\nload {load_s:.2} s | prompt {} tokens, {:.1} tok/s | generated {} tokens, {:.1} tok/s | device {} | stop: {:?}",
        t.prompt_tokens,
        t.prompt_tok_s(),
        t.generated_tokens,
        t.generation_tok_s(),
        args.run.device,
        g.stop
    );
    Ok(())
}
