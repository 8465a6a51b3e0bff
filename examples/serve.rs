//! Serve a GGUF model over an OpenAI-compatible HTTP API.
//!
//! ```text
//! cargo run --release --example serve -- --model SmolLM2-135M-Instruct.Q8_0.gguf --port 8080
//! curl http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' \
//!     -d '{"messages": [{"role": "user", "content": "Hi"}], "temperature": 0}'
//! ```
//!
//! Routes: `POST /v1/chat/completions`, `POST /v1/completions` (`"stream": true` for server-sent
//! events), `GET /v1/models`, `GET /health`, `GET /metrics`. Requests share forward passes
//! (continuous batching over `--parallel` slots, each with `--ctx / --parallel` positions); a
//! prompt that begins like a free slot's cached tokens reuses them. Ctrl-C or SIGTERM stops
//! accepting and finishes the running requests. The line `listening on http://ADDR` on stderr
//! tells the address (with `--port 0`, the port the system chose).

mod common;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use common::ModelArgs;
use gguf_llama::chat::ChatTemplate;
use gguf_llama::cli;
use gguf_llama::model::Llama;
use gguf_llama::serve::{App, Engine, EngineConfig};
use gguf_llama::tokenizer::Tokenizer;

#[derive(Parser)]
#[command(about = "Serve a GGUF model over the OpenAI API (default: the embedded stories260K)")]
struct Args {
    #[command(flatten)]
    run: ModelArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0: any free port, printed at start).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Requests computed at once (slots).
    #[arg(long, default_value_t = 4, value_parser = cli::positive_count)]
    parallel: usize,
    /// Positions of all slots together (default: the model's context, at most 4096 per slot).
    #[arg(long, value_parser = cli::positive_count)]
    ctx: Option<usize>,
    /// Positions computed per forward pass at most (prompt pieces and decoding tokens).
    #[arg(long, default_value_t = 512, value_parser = cli::positive_count)]
    batch: usize,
    /// Requests waiting for a slot at most; more get 503.
    #[arg(long, default_value_t = 64)]
    queue: usize,
    /// Clients must send `Authorization: Bearer <KEY>` (also read from $GGUF_LLAMA_API_KEY).
    #[arg(long, env = "GGUF_LLAMA_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// The model's name in the API (default: the file name without .gguf).
    #[arg(long)]
    alias: Option<String>,
}

fn main() -> ExitCode {
    cli::exit_code(run())
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let device = args.run.device()?;
    let file = cli::open_model(args.run.model.as_deref())?;
    let tokenizer = Arc::new(Tokenizer::from_gguf(file.metadata())?);
    let template = ChatTemplate::from_gguf_or_chatml(file.metadata())?;
    let model = Llama::from_gguf_with_weights(&file, &device, args.run.weights)?;
    drop(file);
    let model_name = args.alias.clone().unwrap_or_else(|| match &args.run.model {
        Some(p) => p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into()),
        None => "stories260K".into(),
    });
    let context = args
        .ctx
        .unwrap_or_else(|| model.config().context_length.min(4096) * args.parallel);
    let config = EngineConfig {
        slots: args.parallel,
        context,
        batch_tokens: args.batch,
        queue: args.queue,
        cache: args.run.cache(),
    };
    let engine = Engine::start(model, tokenizer.clone(), config)?;
    let app = App::new(
        engine,
        tokenizer,
        template,
        model_name,
        args.api_key.clone(),
    )
    .map_err(anyhow::Error::msg)?;
    let app = Arc::new(app);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
            .await
            .with_context(|| format!("listening on {}:{}", args.host, args.port))?;
        let addr = listener.local_addr()?;
        eprintln!(
            "listening on http://{addr} ({} slots of {} positions, device {})",
            app.engine().config().slots,
            app.engine().slot_context(),
            args.run.device
        );
        gguf_llama::serve::serve(listener, app, shutdown_signal()).await?;
        eprintln!("stopped");
        anyhow::Ok(())
    })
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    eprintln!("shutting down: finishing the running requests");
}
