//! Print the token ids of a text for a model, as llama.cpp's `llama-tokenize` does.
//!
//! ```text
//! cargo run --release --example tokenize -- --prompt "Hello world"            # embedded stories260K
//! cargo run --release --example tokenize -- --model M.gguf --prompt "<|im_start|>user" --pieces
//! ```

use std::process::ExitCode;

use clap::Parser;
use gguf_llama::cli;
use gguf_llama::tokenizer::Tokenizer;

#[derive(Parser)]
#[command(about = "Print the token ids of a text")]
struct Args {
    /// GGUF model file (only its tokenizer is read); without it, the embedded stories260K.
    #[arg(long)]
    model: Option<std::path::PathBuf>,
    /// The text.
    #[arg(long)]
    prompt: String,
    /// Do not add BOS/EOS (llama.cpp's add_special = false).
    #[arg(long)]
    no_bos: bool,
    /// Do not parse special tokens in the text (parse_special = false).
    #[arg(long)]
    no_parse_special: bool,
    /// Print each id with its piece.
    #[arg(long)]
    pieces: bool,
}

fn main() -> ExitCode {
    cli::exit_code(run())
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let file = cli::open_model(args.model.as_deref())?;
    let tokenizer = Tokenizer::from_gguf(file.metadata())?;
    let ids = tokenizer.encode(&args.prompt, !args.no_bos, !args.no_parse_special);
    if args.pieces {
        for id in &ids {
            let piece = tokenizer.token_to_piece(*id, true);
            println!("{id:6} -> {:?}", String::from_utf8_lossy(&piece));
        }
    } else {
        println!("{ids:?}");
    }
    Ok(())
}
