//! Importer speed: time to open a ~1 GB GGUF file and list its tensors, and dequantization
//! throughput per format.
//!
//! ```text
//! cargo run --release -p gguf-importer --example dequant_bench -- [--file-mb 1024] [--elements 33554432]
//! ```
//!
//! The file is written once to the temp directory (random blocks with finite f16 scales in a
//! TinyLlama-like tensor layout) and opened cold and warm; dequantization runs on all cores
//! (rayon), best of 3, reported as GB/s of f32 output and of quantized input.

use std::time::Instant;

use gguf_importer::quants::dequantize_into;
use gguf_importer::{GgmlType, GgufFile, GgufWriter, Value};

/// A small xorshift generator: the bench needs bytes, not statistics.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let r = self.next().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }
}

/// Random bytes of `n` elements of `ty`; every 2-byte-aligned u16 that could be an f16 scale is
/// made finite by clearing its exponent's top bit, so no NaN/Inf path is timed.
fn random_data(ty: GgmlType, n: usize, rng: &mut Rng) -> Vec<u8> {
    let mut data = vec![0u8; ty.bytes_for(n as u64).expect("whole blocks") as usize];
    rng.fill(&mut data);
    if ty != GgmlType::F32 {
        for pair in data.chunks_exact_mut(2) {
            pair[1] &= 0b1011_1111;
        }
    } else {
        for x in data.chunks_exact_mut(4) {
            x[3] &= 0b1011_1111;
        }
    }
    data
}

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut best = f64::INFINITY;
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let r = f();
        best = best.min(t.elapsed().as_secs_f64());
        last = Some(r);
    }
    (best, last.expect("runs > 0"))
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let file_mb = arg("--file-mb", 1024);
    let elements = arg("--elements", 32 << 20);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);

    // A TinyLlama-1.1B-like layout in Q4_K: 22 blocks of 9 tensors, sized to reach file_mb.
    let path = std::env::temp_dir().join(format!("gguf-importer-bench-{file_mb}mb.gguf"));
    if !path.exists() {
        let hidden = 2048;
        let per_layer = [
            ("attn_q", 2048),
            ("attn_k", 256),
            ("attn_v", 256),
            ("attn_output", 2048),
            ("ffn_gate", 5632),
            ("ffn_up", 5632),
        ];
        let mut w = GgufWriter::new();
        w.add_metadata("general.architecture", Value::String("llama".into()))?;
        let row_bytes = GgmlType::Q4_K.bytes_for(hidden as u64).unwrap() as usize;
        let mut total = 0usize;
        let mut layer = 0;
        while total < file_mb << 20 {
            for (name, rows) in per_layer {
                let mut data = vec![0u8; rows * row_bytes];
                rng.fill(&mut data);
                total += data.len();
                w.add_tensor(
                    format!("blk.{layer}.{name}.weight"),
                    &[rows, hidden],
                    GgmlType::Q4_K,
                    data,
                )?;
            }
            w.add_f32(
                format!("blk.{layer}.attn_norm.weight"),
                &[hidden],
                &vec![1.0; hidden],
            )?;
            layer += 1;
        }
        w.write_file(&path)?;
    }
    let size = std::fs::metadata(&path)?.len();
    let (open_s, n) = best_of(5, || {
        let f = GgufFile::open(&path).expect("bench file opens");
        f.tensors().iter().map(|t| t.n_bytes).sum::<u64>()
    });
    println!(
        "open + list: {:.2} ms for a {:.2} GB file ({} tensor bytes, none read), best of 5",
        open_s * 1e3,
        size as f64 / 1e9,
        n
    );

    println!(
        "\ndequantization to f32, {elements} elements, {} threads, best of 3",
        rayon::current_num_threads()
    );
    println!("| format | input GB/s | output f32 GB/s | ms |");
    println!("|---|---|---|---|");
    let mut out = vec![0f32; elements];
    // Every format the importer dequantizes (the 13 classic ones, the i-quants, TQ1_0/TQ2_0,
    // MXFP4, whose random e8m0 scales may overflow to inf: timed all the same).
    for ty in GgmlType::all().filter(|t| t.is_supported()) {
        let data = random_data(ty, elements, &mut rng);
        let (s, r) = best_of(3, || dequantize_into("bench", ty, &data, &mut out));
        r?;
        println!(
            "| {} | {:.2} | {:.2} | {:.1} |",
            ty,
            data.len() as f64 / s / 1e9,
            (elements * 4) as f64 / s / 1e9,
            s * 1e3
        );
    }
    Ok(())
}
