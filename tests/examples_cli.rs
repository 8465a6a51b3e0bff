//! Bad flags and bad inputs to every example: each must exit with a non-zero status and say what
//! is wrong in one line on stderr, `error: ...` (clap's own `error: invalid value ...` for a flag
//! value that does not parse, status 2; the example's error, status 1), with no panic and no
//! backtrace even with `RUST_BACKTRACE=1`.
//!
//! The examples run are the binaries that `cargo test` builds next to the test binaries
//! (`target/<profile>/examples/`); `cargo test --release` (the workspace, or this crate) builds
//! them, `cargo test --release --test examples_cli` alone does not. Only stories260K is used (the
//! embedded default, or its file), and no example gets as far as generating or training, so every
//! run takes a fraction of a second.

mod common;

use std::path::PathBuf;

use common::example;
use std::process::Command;
use std::sync::LazyLock;

/// `rel` under this package (`common::root`: `CARGO_MANIFEST_DIR` at run time).
fn in_package(rel: &str) -> String {
    common::root().join(rel).display().to_string()
}

static MODEL: LazyLock<String> = LazyLock::new(|| in_package("models/stories260k-f32.gguf"));
static TEXT: LazyLock<String> =
    LazyLock::new(|| in_package("tests/fixtures/perplexity/grimm-three-tales.txt"));
const MISSING: &str = "/nonexistent/gguf-llama/model.gguf";

/// Every example, by name.
const EXAMPLES: [&str; 10] = [
    "generate",
    "serve",
    "bench",
    "perplexity",
    "tokenize",
    "inspect",
    "export_gguf",
    "save_record",
    "activations",
    "finetune",
];

/// The examples that read no model: `make_model` writes one.
const WITHOUT_MODEL: [&str; 1] = ["make_model"];

/// The examples that take `--device`, `--weights` and the KV cache flags.
const WITH_DEVICE: [&str; 8] = [
    "generate",
    "serve",
    "bench",
    "perplexity",
    "export_gguf",
    "save_record",
    "activations",
    "finetune",
];

/// A path in a scratch directory of this test process.
fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gguf-llama-examples-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// The arguments an example needs besides the one under test: `--model` (or the file) and its
/// required flags, so that the run fails only for the bad input.
fn required(name: &str, model: &str) -> Vec<String> {
    let out = temp(&format!("{name}-out")).display().to_string();
    let args: Vec<&str> = match name {
        "inspect" => vec![model],
        "tokenize" => vec!["--model", model, "--prompt", "Once upon a time"],
        "perplexity" => vec!["--model", model, "--text", TEXT.as_str(), "--ctx", "64"],
        "export_gguf" | "save_record" | "activations" => vec!["--model", model, "--out", &out],
        _ => vec!["--model", model],
    };
    args.into_iter().map(String::from).collect()
}

/// How a run failed.
struct Failure {
    status: i32,
    /// The one line of stderr that starts with `error:`.
    error: String,
}

/// Runs example `name` with `args`, expecting it to fail cleanly: a non-zero status, exactly one
/// `error:` line on stderr, no panic, no backtrace. `RUST_BACKTRACE=1` is set, so that an error
/// that would print a backtrace does.
fn fails(name: &str, args: &[String]) -> Failure {
    let out = Command::new(example(name))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LIB_BACKTRACE", "1")
        .output()
        .expect("the example runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let what = format!("{name} {args:?}\n--- stderr ---\n{stderr}");
    assert!(!out.status.success(), "succeeded: {what}");
    let status = out
        .status
        .code()
        .unwrap_or_else(|| panic!("killed by a signal: {what}"));
    let lower = stderr.to_lowercase();
    assert!(!lower.contains("panicked"), "panicked: {what}");
    assert!(!lower.contains("backtrace"), "printed a backtrace: {what}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "expected one error line: {what}");
    Failure {
        status,
        error: errors[0].to_string(),
    }
}

/// Asserts a failure of the example itself (status 1) whose error line contains every one of
/// `parts`.
fn assert_error(name: &str, args: &[String], parts: &[&str]) {
    let f = fails(name, args);
    assert_eq!(f.status, 1, "{name} {args:?}: {}", f.error);
    for p in parts {
        assert!(
            f.error.contains(p),
            "{name} {args:?}: {:?} lacks {p:?}",
            f.error
        );
    }
}

/// Asserts that clap refused the value of `flag` (status 2) with a reason containing `reason`.
fn assert_invalid_value(name: &str, args: &[String], flag: &str, value: &str, reason: &str) {
    let f = fails(name, args);
    assert_eq!(f.status, 2, "{name} {args:?}: {}", f.error);
    let prefix = format!("error: invalid value '{value}' for '{flag} <");
    assert!(
        f.error.starts_with(&prefix) && f.error.contains(reason),
        "{name} {args:?}: {:?} is not {prefix}...{reason}",
        f.error
    );
}

fn with(mut args: Vec<String>, more: &[&str]) -> Vec<String> {
    args.extend(more.iter().map(|s| s.to_string()));
    args
}

#[test]
fn a_missing_model_file_is_an_io_error_naming_the_path() {
    for name in EXAMPLES {
        assert_error(
            name,
            &required(name, MISSING),
            &[&format!("I/O error on {MISSING}: ")],
        );
    }
}

#[test]
fn a_corrupt_model_file_is_a_gguf_error() {
    let garbage = temp("garbage.gguf");
    std::fs::write(&garbage, b"this is not a model, just some text").unwrap();
    let truncated = temp("truncated.gguf");
    std::fs::write(&truncated, &std::fs::read(MODEL.as_str()).unwrap()[..20]).unwrap();
    for name in EXAMPLES {
        assert_error(
            name,
            &required(name, &garbage.display().to_string()),
            &["not a GGUF file: magic bytes are [74, 68, 69, 73], expected \"GGUF\""],
        );
        assert_error(
            name,
            &required(name, &truncated.display().to_string()),
            &["file truncated at byte 16 while reading metadata count: needed 8 bytes, 4 left"],
        );
    }
}

#[test]
fn a_device_that_does_not_exist() {
    for name in WITH_DEVICE {
        assert_invalid_value(
            name,
            &with(required(name, MODEL.as_str()), &["--device", "tpu"]),
            "--device",
            "tpu",
            "unknown device \"tpu\": expected one of wgpu, vulkan, metal, flex, ndarray, cpu",
        );
        // A device this build does not have.
        assert_error(
            name,
            &with(required(name, MODEL.as_str()), &["--device", "cpu"]),
            &["device cpu is not in this build (enable the `burn/cpu` feature)"],
        );
        // A graphics API this machine does not have.
        #[cfg(not(target_os = "macos"))]
        assert_error(
            name,
            &with(required(name, MODEL.as_str()), &["--device", "metal"]),
            &["device metal is unavailable: "],
        );
    }
}

#[test]
fn an_unsupported_kv_cache_type() {
    for name in ["generate", "bench", "perplexity", "activations", "finetune"] {
        for flag in ["--cache-type-k", "--cache-type-v"] {
            assert_invalid_value(
                name,
                &with(required(name, MODEL.as_str()), &[flag, "q4_0"]),
                flag,
                "q4_0",
                "unsupported KV cache type \"q4_0\" (supported: f32, f16, q8_0 (keys only))",
            );
        }
    }
    // q8_0 values (llama.cpp takes them only with flash attention), and q8_0 keys for
    // stories260K's heads of 8 elements (not whole q8_0 blocks): an error before any work.
    for name in ["generate", "perplexity"] {
        assert_error(
            name,
            &with(required(name, MODEL.as_str()), &["--cache-type-v", "q8_0"]),
            &["flash attention"],
        );
        assert_error(
            name,
            &with(required(name, MODEL.as_str()), &["--cache-type-k", "q8_0"]),
            &["keys of 8 elements per head", "multiple of 32"],
        );
    }
}

/// Counts that must be at least 1, given 0 or a negative number.
#[test]
fn counts_that_must_be_positive() {
    let cases: [(&str, &[&str]); 4] = [
        ("generate", &["--max-tokens"]),
        ("bench", &["--prompt-tokens", "--runs"]),
        ("save_record", &["--runs"]),
        (
            "finetune",
            &["--steps", "--batch", "--seq", "--rank", "--log-every"],
        ),
    ];
    for (name, flags) in cases {
        for flag in flags {
            for value in ["0", "-3"] {
                assert_invalid_value(
                    name,
                    &with(required(name, MODEL.as_str()), &[flag, value]),
                    flag,
                    value,
                    &format!("\"{value}\" is not a whole number of at least 1"),
                );
            }
        }
    }
    // A learning rate must be above 0.
    for value in ["0", "-0.01"] {
        assert_invalid_value(
            "finetune",
            &with(required("finetune", MODEL.as_str()), &["--lr", value]),
            "--lr",
            value,
            &format!("\"{value}\" is not a finite number above 0"),
        );
    }
}

/// Numbers that may be 0 but not negative are refused as values of their flag (not taken for an
/// unknown flag `-1`); ranges that only the library knows are checked before any work.
#[test]
fn negative_and_out_of_range_numbers() {
    for (name, flag) in [
        ("generate", "--top-k"),
        ("generate", "--seed"),
        ("bench", "--gen-tokens"),
        ("perplexity", "--batch"),
        ("perplexity", "--chunks"),
        ("finetune", "--sample-tokens"),
    ] {
        assert_invalid_value(
            name,
            &with(required(name, MODEL.as_str()), &[flag, "-1"]),
            flag,
            "-1",
            "invalid digit found in string",
        );
    }
    // Sampler ranges (checked before the model is loaded).
    assert_error(
        "generate",
        &with(required("generate", MODEL.as_str()), &["--top-p", "-0.5"]),
        &["sampler parameter top_p = -0.5 is invalid: expected a number in (0, 1] (1 = off)"],
    );
    assert_error(
        "generate",
        &with(required("generate", MODEL.as_str()), &["--min-p", "2"]),
        &["sampler parameter min_p = 2 is invalid"],
    );
    // Perplexity windows.
    let ppl = |ctx: &str, more: &[&str]| {
        let mut args = vec![
            "--model",
            MODEL.as_str(),
            "--text",
            TEXT.as_str(),
            "--ctx",
            ctx,
        ];
        args.extend(more);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    assert_error(
        "perplexity",
        &ppl("2", &[]),
        &["a context of 2 tokens scores no token; it must be at least 3"],
    );
    assert_error(
        "perplexity",
        &ppl("1024", &[]),
        &["a context of 1024 tokens is larger than the model's context length 512"],
    );
    assert_error(
        "perplexity",
        &ppl("64", &["--batch", "0"]),
        &["batch must be at least 1"],
    );
    assert_invalid_value(
        "perplexity",
        &ppl("-64", &[]),
        "--ctx",
        "-64",
        "invalid digit",
    );
}

/// A prompt of about 800 tokens for a context of 512.
fn long_prompt() -> String {
    "Once upon a time, there was a little girl who loved to play. ".repeat(60)
}

/// `generate --chat-template-file` renders the prompt with that template (the file's BOS and EOS
/// texts), as Jinja2 renders it (tests/fixtures/chat/expected.json, Gemma 2's template: the
/// leading BOS text dropped, since the tokenizer adds BOS); a template file that is not there is
/// an error naming it.
#[test]
fn a_chat_template_file_renders_the_prompt() {
    let template = in_package("tests/fixtures/chat/google-gemma-2-2b-it.jinja");
    let expected_json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(in_package("tests/fixtures/chat/expected.json")).unwrap(),
    )
    .unwrap();
    let case = expected_json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "google-gemma-2-2b-it/user_only/gen")
        .expect("the Gemma 2 single-message case");
    let user = case["messages"][0]["content"].as_str().unwrap();
    let rendered = case["expected"].as_str().unwrap();
    let rendered = rendered
        .strip_prefix("<bos>")
        .expect("Gemma's BOS text first");

    let out = Command::new(example("generate"))
        .args([
            "--model",
            MODEL.as_str(),
            "--chat-template-file",
            template.as_str(),
            "--prompt",
            user,
        ])
        .args(["--max-tokens", "1", "--temp", "0", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let file = gguf_llama::gguf::GgufFile::open(MODEL.as_str()).unwrap();
    let tokenizer = gguf_llama::tokenizer::Tokenizer::from_gguf(file.metadata()).unwrap();
    let want: Vec<u64> = tokenizer
        .encode(rendered, true, true)
        .into_iter()
        .map(u64::from)
        .collect();
    let got: Vec<u64> = line["prompt_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect();
    assert_eq!(got, want);

    let missing = temp("no-such-template.jinja").display().to_string();
    let args = with(
        required("generate", MODEL.as_str()),
        &["--chat-template-file", &missing],
    );
    assert_error("generate", &args, &["no-such-template.jinja"]);
}

#[test]
fn a_prompt_longer_than_the_context() {
    let prompt = long_prompt();
    for name in ["generate", "activations", "finetune"] {
        assert_error(
            name,
            &with(required(name, MODEL.as_str()), &["--prompt", &prompt]),
            &["positions needed, but the context length is 512"],
        );
    }
    assert_error(
        "bench",
        &with(
            required("bench", MODEL.as_str()),
            &["--prompt-tokens", "600"],
        ),
        &["--prompt-tokens + --gen-tokens = 664 exceeds the context length 512"],
    );
    // Training windows longer than the context (600 input positions, predicting 1..=600).
    assert_error(
        "finetune",
        &with(
            required("finetune", MODEL.as_str()),
            &["--seq", "600", "--sample-tokens", "0"],
        ),
        &["600 positions needed, but the context length is 512"],
    );
}

#[test]
fn bad_values_of_other_flags() {
    assert_error(
        "inspect",
        &with(
            required("inspect", MODEL.as_str()),
            &["--dequantize", "nope", "--out", "/tmp/x.npy"],
        ),
        &["no tensor named \"nope\" in the file"],
    );
    assert_invalid_value(
        "export_gguf",
        &with(required("export_gguf", MODEL.as_str()), &["--type", "q4_1"]),
        "--type",
        "q4_1",
        "unknown export type \"q4_1\": f32, f16, bf16, q8_0, q4_0, q5_0, q5_1, q2_k, q3_k_m, q4_k_s, q4_k_m, q5_k_m, q6_k, iq4_nl or iq4_xs",
    );
    let unwritable = format!("{}/out.gguf", MISSING);
    assert_error(
        "export_gguf",
        &["--model", MODEL.as_str(), "--out", &unwritable].map(String::from),
        &[&format!("exporting {unwritable}: ")],
    );
    assert_error(
        "perplexity",
        &["--model", MODEL.as_str(), "--text", MISSING, "--ctx", "64"].map(String::from),
        &[&format!("reading {MISSING}: ")],
    );
    assert_error(
        "finetune",
        &with(required("finetune", MODEL.as_str()), &["--text", MISSING]),
        &[&format!("reading {MISSING}: ")],
    );
    assert_invalid_value(
        "finetune",
        &with(required("finetune", MODEL.as_str()), &["--targets", "q,x"]),
        "--targets",
        "x",
        "unknown LoRA target \"x\"",
    );
}

/// The lists above name every example of `examples/`, so that a new one is tried too.
#[test]
fn every_example_is_tried() {
    let dir = common::root().join("examples");
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".rs").map(String::from)
        })
        .collect();
    found.sort();
    let mut listed: Vec<String> = EXAMPLES
        .iter()
        .chain(&WITHOUT_MODEL)
        .map(|s| s.to_string())
        .collect();
    listed.sort();
    assert_eq!(found, listed);
}

/// `make_model` (the GPU check's model writer): a bad type or shape is a one-line error; the
/// `small` shape in Q8_0 is a model this crate loads and runs, its logits finite.
#[test]
fn make_model_writes_a_model_that_runs() {
    let out = temp("made-small-q8_0.gguf").display().to_string();
    assert_error(
        "make_model",
        &["--type", "q9_9", "--out", &out].map(String::from),
        &["unknown type", "q9_9"],
    );
    assert_invalid_value(
        "make_model",
        &["--out", &out, "--shape", "gpt5"].map(String::from),
        "--shape",
        "gpt5",
        "'gpt5'",
    );
    let status = Command::new(example("make_model"))
        .args(["--shape", "small", "--type", "q8_0", "--out", &out])
        .status()
        .unwrap();
    assert!(status.success(), "make_model failed: {status}");
    let file = gguf_llama::gguf::GgufFile::open(&out).unwrap();
    let device = burn::tensor::Device::flex();
    let model = gguf_llama::model::Llama::from_gguf(&file, &device).unwrap();
    assert_eq!(model.config().vocab_size, 512);
    assert_eq!(model.config().block_count, 4);
    let mut cache = model.new_cache(1, 8);
    let logits = model
        .forward_ids(
            &[1, 300, 301],
            1,
            &mut cache,
            gguf_llama::model::Logits::Last,
        )
        .unwrap();
    let logits: Vec<f32> = logits.into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(logits.len(), 512);
    assert!(logits.iter().all(|v| v.is_finite()), "{logits:?}");
    // random weights: the logits differ from token to token
    assert!(logits.iter().any(|&v| v != logits[0]));
}
