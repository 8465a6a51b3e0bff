//! The `inspect` example as a user runs it: the tensor table, `--dequantize` output equal to
//! gguf-py's dequantization (tests/fixtures/quants, made by scripts/make_quant_fixtures.py), and a
//! non-zero exit with the error on stderr for a bad file.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use gguf_llama::gguf::npy;

use common::compare;
use compare::{assert_close, max_abs};

fn root() -> PathBuf {
    common::root()
}

/// `cargo test` builds the examples next to the test binaries: target/<profile>/examples/.
fn inspect() -> Command {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let path = profile_dir
        .join("examples")
        .join(format!("inspect{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} not built (run through `cargo test`)",
        path.display()
    );
    Command::new(path)
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gguf-llama-inspect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    npy::read_f32(&mut std::fs::File::open(path).unwrap()).unwrap()
}

#[test]
fn lists_metadata_and_tensors() {
    let out = inspect()
        .arg(root().join("models/stories260k-f32.gguf"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("GGUF v3"), "{text}");
    assert!(text.contains("general.architecture = \"llama\""), "{text}");
    // The 512-token vocabulary is summarized, not printed whole.
    assert!(
        text.contains("tokenizer.ggml.tokens = [STRING; 512] [\"<unk>\", \"<s>\", \"</s>\""),
        "{text}"
    );
    assert!(text.contains(", ...]"), "{text}");
    // token_embd: ggml ne = [64, 512] is shown row-major.
    let line = text
        .lines()
        .find(|l| l.contains("token_embd.weight"))
        .unwrap();
    assert!(
        line.contains("F32") && line.contains("[512, 64]") && line.contains("131072"),
        "{line}"
    );
    // The formats of the file, with what each is: every tensor of stories260K is F32.
    let types = text.split("\nTypes:\n").nth(1).expect("a Types section");
    let n_tensors = text
        .lines()
        .filter(|l| l.contains(".weight") && l.contains(" F32 "))
        .count();
    assert!(
        types.contains(&format!("F32     {n_tensors:>4} tensors"))
            && types.contains("32.00 bits/weight")
            && types.contains("IEEE single precision"),
        "{types}"
    );
}

#[test]
fn dequantize_equals_gguf_py_for_every_format() {
    for ty in [
        "F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K",
        "Q5_K", "Q6_K",
    ] {
        let model = root().join(format!("tests/fixtures/synthetic/synth-{ty}.gguf"));
        let out_path = tmp(&format!("attn_k-{ty}.npy"));
        let out = inspect()
            .arg(&model)
            .args(["--dequantize", "blk.0.attn_k.weight", "--out"])
            .arg(&out_path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{ty}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (shape, ours) = read_npy(&out_path);
        let (ref_shape, reference) =
            read_npy(&root().join(format!("tests/fixtures/quants/{ty}/attn_k.npy")));
        assert_eq!(shape, ref_shape, "{ty}");
        let scale = max_abs(&reference);
        assert_close(&format!("{ty} vs gguf-py"), &ours, &reference, 1e-6 * scale);
    }
}

#[test]
fn bad_file_exits_nonzero_with_the_error_on_stderr() {
    let bad = tmp("bad.gguf");
    let mut bytes = std::fs::read(root().join("models/stories260k-f32.gguf")).unwrap();
    bytes.truncate(20);
    std::fs::write(&bad, &bytes).unwrap();
    let out = inspect().arg(&bad).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("truncated at byte 16 while reading metadata count"),
        "{err}"
    );

    let out = inspect()
        .arg(root().join("models/stories260k-f32.gguf"))
        .args(["--dequantize", "nope", "--out"])
        .arg(tmp("x.npy"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no tensor named \"nope\""));
}
