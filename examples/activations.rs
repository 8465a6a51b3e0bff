//! Dumps the model's intermediate tensors for one prompt, under llama.cpp's tensor names, for the
//! divergence finder (`scripts/find_divergence.py`, which captures llama.cpp's tensors of the same
//! positions with its eval callback and prints where the two first diverge).
//!
//! ```text
//! cargo run --release --example activations -- --model M.gguf --prompt "Once upon a time" --out DIR
//! ```
//!
//! Writes `DIR/{name}.npy` (f32, `[n_tokens, dim]`, in forward order: `embd`, `attn_norm-0`,
//! `Qcur-0`, ..., `l_out-{n-1}`, `result_norm`, `result_output`), `DIR/order.txt` (the names in that
//! order) and `DIR/tokens.txt` (the prompt's token ids, tokenized as `generate` does).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use gguf_llama::cli;
use gguf_llama::device::{self, DeviceName};
use gguf_llama::generate::token_tensor;
use gguf_llama::gguf::npy;
use gguf_llama::model::{CacheTypes, KvType, Llama, Logits, Weights};
use gguf_llama::tokenizer::Tokenizer;

#[derive(Parser)]
#[command(about = "Dump per-layer activations of a prompt under llama.cpp's tensor names")]
struct Args {
    /// GGUF model; without it, the embedded stories260K.
    #[arg(long)]
    model: Option<std::path::PathBuf>,
    #[arg(long, default_value = "Once upon a time")]
    prompt: String,
    /// Render the prompt with the chat template first.
    #[arg(long)]
    chat: bool,
    #[arg(long, default_value = "flex")]
    device: DeviceName,
    /// `quantized` (weights in their GGUF blocks, as `generate` runs them) or `f32`.
    #[arg(long, default_value = "quantized")]
    weights: Weights,
    /// KV cache type of the keys: f16 (llama.cpp's default) or f32.
    #[arg(long, default_value = "f16")]
    cache_type_k: KvType,
    /// KV cache type of the values: f16 (llama.cpp's default) or f32.
    #[arg(long, default_value = "f16")]
    cache_type_v: KvType,
    /// Output directory.
    #[arg(long)]
    out: std::path::PathBuf,
}

fn main() -> ExitCode {
    cli::exit_code(run())
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let device = device::device(args.device)?;
    let file = cli::open_model(args.model.as_deref())?;
    let tokenizer = Tokenizer::from_gguf(file.metadata())?;
    let model = Llama::from_gguf_with_weights(&file, &device, args.weights)?;
    let prompt = cli::prompt_tokens(&file, &tokenizer, &args.prompt, args.chat, None)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;

    let tokens = token_tensor(&prompt, &device);
    let types = CacheTypes {
        k: args.cache_type_k,
        v: args.cache_type_v,
    };
    let mut cache = model.new_cache_with(1, prompt.len(), types);
    let mut order = Vec::new();
    let mut failure = None;
    model.forward_traced(tokens, &mut cache, Logits::All, &mut |name, t| {
        if failure.is_some() {
            return;
        }
        let [_, seq, dim] = t.dims();
        let result = t
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("reading {name} back: {e:?}"))
            .and_then(|values| {
                let path = args.out.join(format!("{name}.npy"));
                let mut w = std::io::BufWriter::new(std::fs::File::create(&path)?);
                npy::write_f32(&mut w, &[seq, dim], &values)?;
                w.flush()?;
                Ok(())
            });
        match result {
            Ok(()) => order.push(name.to_string()),
            Err(e) => failure = Some(e),
        }
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    std::fs::write(args.out.join("order.txt"), order.join("\n") + "\n")?;
    let ids: Vec<String> = prompt.iter().map(u32::to_string).collect();
    std::fs::write(args.out.join("tokens.txt"), ids.join(" ") + "\n")?;
    eprintln!(
        "{} tensors of {} tokens written to {}",
        order.len(),
        prompt.len(),
        args.out.display()
    );
    Ok(())
}
