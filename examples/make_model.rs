//! Writes a `llama` GGUF model of a known shape with random weights, every matrix in one type
//! (quantized by this project's quantizer, byte for byte llama.cpp's), for throughput
//! measurements where no model file can be brought (a lent GPU machine without network:
//! `scripts/gpu_check.sh`). Random weights generate gibberish; a model's speed depends only on
//! its shapes and tensor types.
//!
//! ```text
//! cargo run --release --example make_model -- --shape tinyllama --type q4_k --out tinyllama-Q4_K.gguf
//! cargo run --release --example make_model -- --shape small --type q8_0 --out small-Q8_0.gguf
//! ```
//!
//! Shapes: `tinyllama` (TinyLlama 1.1B: hidden 2048, 22 layers, 32 heads / 4 KV heads of 64,
//! FFN 5632), `llama7b` (hidden 4096, 32 layers, 32 heads, FFN 11008), `small` (hidden 256,
//! 4 layers, 8 heads / 4 KV heads, FFN 768: for lavapipe). Vocabulary 32000 (`small`: 512),
//! context 2048, RoPE base 10000, RMS epsilon 1e-5, an `output.weight` of its own. Weights are
//! normal with standard deviation 0.02 (a fixed generator, `--seed`), norms 1, so activations stay
//! finite. The tokenizer is a synthetic SentencePiece vocabulary that llama.cpp loads (`<unk>`,
//! `<s>`, `</s>`, the 256 byte tokens, then `▁t<i>` pieces).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use gguf_llama::cli;
use gguf_llama::gguf::quants::quantize;
use gguf_llama::gguf::value::{Value, ValueType};
use gguf_llama::gguf::{GgmlType, GgufWriter};

#[derive(Clone, Copy, ValueEnum)]
enum ShapeName {
    Tinyllama,
    Llama7b,
    Small,
}

#[derive(Parser)]
#[command(about = "Write a random-weight llama GGUF model of a known shape")]
struct Args {
    /// The model's shape.
    #[arg(long, value_enum, default_value = "tinyllama")]
    shape: ShapeName,
    /// The type of every matrix (a ggml type name: f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0,
    /// q2_k, q3_k, q4_k, q5_k, q6_k, iq4_nl, iq4_xs); norms stay F32.
    #[arg(long = "type", default_value = "q4_k")]
    ty: String,
    /// Where to write the file.
    #[arg(long)]
    out: PathBuf,
    /// Seed of the weights' generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// A model's shape.
struct Shape {
    hidden: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    ffn: usize,
    vocab: usize,
}

impl ShapeName {
    fn shape(self) -> Shape {
        match self {
            ShapeName::Tinyllama => Shape {
                hidden: 2048,
                layers: 22,
                heads: 32,
                kv_heads: 4,
                ffn: 5632,
                vocab: 32000,
            },
            ShapeName::Llama7b => Shape {
                hidden: 4096,
                layers: 32,
                heads: 32,
                kv_heads: 32,
                ffn: 11008,
                vocab: 32000,
            },
            ShapeName::Small => Shape {
                hidden: 256,
                layers: 4,
                heads: 8,
                kv_heads: 4,
                ffn: 768,
                vocab: 512,
            },
        }
    }
}

/// Normal values (Box-Muller over a 64-bit LCG), standard deviation `std`.
struct Normal(u64);

impl Normal {
    fn uniform(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 + 0.5) / (1u64 << 24) as f32
    }

    fn vec(&mut self, n: usize, std: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let (u, v) = (self.uniform(), self.uniform());
                std * (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
            })
            .collect()
    }
}

fn main() -> ExitCode {
    cli::exit_code(run())
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let ty = GgmlType::from_name(&args.ty.to_uppercase())
        .ok_or_else(|| anyhow::anyhow!("unknown type {:?}", args.ty))?;
    let s = args.shape.shape();
    let head_dim = s.hidden / s.heads;
    let mut w = GgufWriter::new();
    let u32v = |v: usize| Value::U32(v as u32);
    let meta: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("llama".into())),
        ("general.name", Value::String("random llama".into())),
        ("llama.context_length", u32v(2048)),
        ("llama.embedding_length", u32v(s.hidden)),
        ("llama.block_count", u32v(s.layers)),
        ("llama.feed_forward_length", u32v(s.ffn)),
        ("llama.rope.dimension_count", u32v(head_dim)),
        ("llama.attention.head_count", u32v(s.heads)),
        ("llama.attention.head_count_kv", u32v(s.kv_heads)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("llama.rope.freq_base", Value::F32(10000.0)),
        ("tokenizer.ggml.model", Value::String("llama".into())),
        ("tokenizer.ggml.bos_token_id", u32v(1)),
        ("tokenizer.ggml.eos_token_id", u32v(2)),
        ("tokenizer.ggml.unknown_token_id", u32v(0)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(true)),
    ];
    for (k, v) in meta {
        w.add_metadata(k, v)?;
    }
    // The vocabulary: SentencePiece's specials, the byte tokens, then plain pieces.
    let mut tokens = vec!["<unk>".to_string(), "<s>".into(), "</s>".into()];
    let mut types = vec![2i32, 3, 3];
    for b in 0..256 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
    }
    while tokens.len() < s.vocab {
        tokens.push(format!("\u{2581}t{}", tokens.len()));
        types.push(1);
    }
    let scores: Vec<Value> = (0..s.vocab).map(|i| Value::F32(-(i as f32))).collect();
    w.add_metadata(
        "tokenizer.ggml.tokens",
        Value::Array(
            ValueType::String,
            tokens.into_iter().map(Value::String).collect(),
        ),
    )?;
    w.add_metadata(
        "tokenizer.ggml.scores",
        Value::Array(ValueType::F32, scores),
    )?;
    w.add_metadata(
        "tokenizer.ggml.token_type",
        Value::Array(ValueType::I32, types.into_iter().map(Value::I32).collect()),
    )?;

    let mut rng = Normal(args.seed);
    let mut matrix = |w: &mut GgufWriter, name: String, rows: usize, cols: usize| {
        let values = rng.vec(rows * cols, 0.02);
        let data = quantize(ty, cols, &values)?;
        w.add_tensor(name, &[rows, cols], ty, data)?;
        anyhow::Ok(())
    };
    let ones = vec![1.0; s.hidden];
    let norm = |w: &mut GgufWriter, name: String| w.add_f32(name, &[s.hidden], &ones).map(|_| ());
    let kv = s.kv_heads * head_dim;
    matrix(&mut w, "token_embd.weight".into(), s.vocab, s.hidden)?;
    for l in 0..s.layers {
        let p = format!("blk.{l}");
        norm(&mut w, format!("{p}.attn_norm.weight"))?;
        matrix(&mut w, format!("{p}.attn_q.weight"), s.hidden, s.hidden)?;
        matrix(&mut w, format!("{p}.attn_k.weight"), kv, s.hidden)?;
        matrix(&mut w, format!("{p}.attn_v.weight"), kv, s.hidden)?;
        matrix(
            &mut w,
            format!("{p}.attn_output.weight"),
            s.hidden,
            s.hidden,
        )?;
        norm(&mut w, format!("{p}.ffn_norm.weight"))?;
        matrix(&mut w, format!("{p}.ffn_gate.weight"), s.ffn, s.hidden)?;
        matrix(&mut w, format!("{p}.ffn_up.weight"), s.ffn, s.hidden)?;
        matrix(&mut w, format!("{p}.ffn_down.weight"), s.hidden, s.ffn)?;
    }
    norm(&mut w, "output_norm.weight".into())?;
    matrix(&mut w, "output.weight".into(), s.vocab, s.hidden)?;
    w.write_file(&args.out)?;
    println!(
        "wrote {} ({} MB, {ty})",
        args.out.display(),
        std::fs::metadata(&args.out)?.len() / 1_000_000
    );
    Ok(())
}
