//! CPU quantized matmul throughput: decode (m = 1) as GB/s of weight bytes against this
//! machine's measured memory-read bandwidth, and prefill (m = 128) as GFLOP/s, per format, on a
//! TinyLlama FFN-sized weight (5632 × 2048) and 2 threads.
//!
//! ```text
//! cargo run --release -p gguf-kernels --example cpu_matmul_bench [-- FORMAT ...]
//! cargo run --release -p gguf-kernels --example cpu_matmul_bench -- --rows 2048 Q4_0 Q8_0
//! cargo run --release -p gguf-kernels --example cpu_matmul_bench -- --isa avx2 Q4_K
//! cargo run --release -p gguf-kernels --example cpu_matmul_bench -- --bandwidth-only
//! ```
//!
//! `--rows N` and `--cols N` set the weight's output and input features (default 5632 × 2048;
//! `--rows 2048` gives an attention-sized 2048 × 2048 matrix, `--rows 1536 --cols 576` one of
//! SmolLM2-135M's). `--isa scalar|avx2|avx512vnni` forces an instruction set (default: the
//! best this CPU runs).
//!
//! `--prefill-only` skips the decode measurement (one warm copy of the weight, more prefill runs:
//! for profiling the prefill kernels).
//!
//! `--bandwidth-only` measures the memory-read bandwidth alone (best of three fresh 1 GiB arrays)
//! and prints one line, `memory_read_gb_s <GB/s>` (scripts/bench_llama_cpp.py reads it).
//!
//! Decode cycles through enough copies of the weight (≥ 256 MiB) that every call reads it from
//! memory, not from the last-level cache. Times are the best of several runs (shared machines
//! are noisy). "tok/s" is what a 1.1 B-parameter model stored entirely in the format would reach
//! at the measured decode bandwidth.

use std::time::Instant;

use gguf_importer::quants::F16;
use gguf_importer::GgmlType;
use gguf_kernels::cpu::{qmatmul_with_isa, Isa, QMatrix};

/// Output features unless `--rows` says otherwise.
const ROWS: usize = 5632;
/// Input features unless `--cols` says otherwise.
const COLS: usize = 2048;
const THREADS: usize = 2;
const COLD_BYTES: usize = 256 << 20;
const PARAMS: f64 = 1.1e9;
/// Timed runs per measurement; the best counts.
const RUNS: usize = 20;

/// Best seconds per call of `f` over `runs` runs of `iters` calls.
fn best_of(runs: usize, iters: usize, mut f: impl FnMut(usize)) -> f64 {
    f(0);
    let mut best = f64::MAX;
    for run in 0..runs {
        let t = Instant::now();
        for i in 0..iters {
            f(run * iters + i);
        }
        best = best.min(t.elapsed().as_secs_f64() / iters as f64);
    }
    best
}

/// Memory-read bandwidth the decode kernels compete with: a parallel sum over a 1 GiB u64
/// array, timed per 256 MiB slice (cold: the slices rotate), best of many, as the decode runs are.
fn memory_bandwidth() -> f64 {
    use rayon::prelude::*;
    let data: Vec<u64> = (0..(1usize << 30) / 8)
        .into_par_iter()
        .map(|i| i as u64)
        .collect();
    let slices: Vec<&[u64]> = data.chunks(COLD_BYTES / 8).collect();
    let mut sink = 0u64;
    let secs = best_of(RUNS, 1, |i| {
        let s = slices[i % slices.len()];
        let sum = s
            .par_chunks(1 << 16)
            .map(|c| c.iter().fold(0u64, |a, &v| a.wrapping_add(v)))
            .sum::<u64>();
        sink = sink.wrapping_add(sum);
    });
    std::hint::black_box(sink);
    COLD_BYTES as f64 / secs / 1e9
}

/// Random bytes with every f16 scale field small and finite, so the blocks are valid.
fn random_weight(ty: GgmlType, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
    let n = rows * cols / ty.block_size() * ty.type_size();
    let mut s = seed;
    let mut data: Vec<u8> = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 33) as u8
        })
        .collect();
    let scale = F16::from_f32(0.01).0;
    // byte offsets of the f16 fields in each block (see gguf_importer::quants)
    let fields: &[usize] = match ty {
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => &[0],
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
        GgmlType::Q2_K => &[80, 82],
        GgmlType::Q3_K => &[108],
        GgmlType::Q6_K => &[208],
        GgmlType::IQ4_NL | GgmlType::IQ4_XS => &[0],
        GgmlType::IQ2_XXS | GgmlType::IQ2_XS | GgmlType::IQ2_S => &[0],
        GgmlType::IQ3_XXS | GgmlType::IQ3_S | GgmlType::IQ1_S => &[0],
        GgmlType::TQ1_0 => &[52],
        GgmlType::TQ2_0 => &[64],
        _ => &[],
    };
    if ty.is_quantized() {
        for block in data.chunks_exact_mut(ty.type_size()) {
            for &f in fields {
                block[f..f + 2].copy_from_slice(&scale);
            }
            if ty == GgmlType::MXFP4 {
                block[0] = 120; // E8M0: half scale 2^-8
            }
        }
    } else {
        let one_ish = match ty {
            GgmlType::F32 => 4,
            _ => 2,
        };
        for v in data.chunks_exact_mut(one_ish) {
            // clear the exponent's top bits: finite values of modest size
            let last = v.len() - 1;
            v[last] &= 0xBF;
        }
    }
    data
}

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(THREADS)
        .build()?;
    let mut chosen: Vec<String> = std::env::args().skip(1).collect();
    let bandwidth_only = chosen.iter().any(|a| a == "--bandwidth-only");
    let prefill_only = chosen.iter().any(|a| a == "--prefill-only");
    chosen.retain(|a| a != "--bandwidth-only" && a != "--prefill-only");
    let mut rows = ROWS;
    if let Some(i) = chosen.iter().position(|a| a == "--rows") {
        rows = chosen
            .get(i + 1)
            .and_then(|n| n.parse().ok())
            .filter(|&n| n > 0)
            .ok_or("--rows takes a positive number")?;
        chosen.drain(i..i + 2);
    }
    let mut cols = COLS;
    if let Some(i) = chosen.iter().position(|a| a == "--cols") {
        cols = chosen
            .get(i + 1)
            .and_then(|n| n.parse().ok())
            .filter(|&n: &usize| n > 0 && n.is_multiple_of(32))
            .ok_or("--cols takes a positive multiple of 32")?;
        chosen.drain(i..i + 2);
    }
    let mut isa = Isa::detect();
    if let Some(i) = chosen.iter().position(|a| a == "--isa") {
        let name = chosen
            .get(i + 1)
            .ok_or("--isa takes scalar, avx2 or avx512vnni")?;
        isa = Isa::ALL
            .into_iter()
            .find(|isa| isa.name() == name)
            .ok_or_else(|| format!("unknown instruction set {name:?}"))?;
        if !isa.is_available() {
            return Err(format!("this CPU does not run {name}").into());
        }
        chosen.drain(i..i + 2);
    }
    let qmatmul =
        |w: &QMatrix, x: &[f32], m: usize, y: &mut [f32]| qmatmul_with_isa(w, x, m, y, isa);
    pool.install(|| -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if bandwidth_only {
            // best of three fresh arrays; on the shared VMs the result falls in one of two modes
            // (~34 or ~55 GB/s), mostly the same for a whole process, so callers repeat processes
            let best = (0..3).map(|_| memory_bandwidth()).fold(0f64, f64::max);
            println!("memory_read_gb_s {best:.2}");
            return Ok(());
        }
        println!(
            "instruction set: {}, threads: {THREADS}, weight {rows} x {cols}",
            isa.name()
        );
        let mem = if prefill_only {
            f64::NAN
        } else {
            memory_bandwidth()
        };
        println!("memory read bandwidth (parallel sum of 256 MiB slices of a 1 GiB u64 array): {mem:.1} GB/s\n");
        println!(
            "{:<6} {:>9} | {:>9} {:>7} {:>9} {:>10} | {:>11}",
            "format", "MiB", "m=1 ms", "GB/s", "% of mem", "tok/s 1.1B", "m=128 GFLOP/s"
        );
        let types = [
            GgmlType::F32,
            GgmlType::F16,
            GgmlType::BF16,
            GgmlType::Q8_0,
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q5_0,
            GgmlType::Q5_1,
            GgmlType::Q2_K,
            GgmlType::Q3_K,
            GgmlType::Q4_K,
            GgmlType::Q5_K,
            GgmlType::Q6_K,
            GgmlType::IQ4_NL,
            GgmlType::IQ4_XS,
            GgmlType::IQ3_S,
            GgmlType::IQ3_XXS,
            GgmlType::IQ2_XXS,
            GgmlType::IQ2_XS,
            GgmlType::IQ2_S,
            GgmlType::IQ1_S,
            GgmlType::IQ1_M,
            GgmlType::TQ1_0,
            GgmlType::TQ2_0,
            GgmlType::MXFP4,
        ];
        for ty in types {
            if !chosen.is_empty() && !chosen.iter().any(|c| c.eq_ignore_ascii_case(ty.name())) {
                continue;
            }
            if !cols.is_multiple_of(ty.block_size()) {
                println!("{:<6} (no whole blocks of {} in {cols} columns)", ty.name(), ty.block_size());
                continue;
            }
            let bytes = rows * cols / ty.block_size() * ty.type_size();
            let copies = if prefill_only {
                1
            } else {
                COLD_BYTES.div_ceil(bytes).max(2)
            };
            let weights: Vec<Vec<u8>> = (0..copies).map(|c| random_weight(ty, rows, cols, c as u64 + 1)).collect();
            let mats = weights
                .iter()
                .map(|d| QMatrix::new(ty, rows, cols, d))
                .collect::<Result<Vec<_>, _>>()?;

            // decode: one activation row, a different (cold) copy of the weight each call
            let x1: Vec<f32> = (0..cols).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
            let mut y1 = vec![0f32; rows];
            let iters = copies.max(8);
            let t1 = if prefill_only {
                f64::NAN
            } else {
                best_of(RUNS, iters, |i| {
                    qmatmul(&mats[i % copies], &x1, 1, &mut y1).expect("shapes checked")
                })
            };
            let gbs = bytes as f64 / t1 / 1e9;
            let tok = gbs * 1e9 / (PARAMS * ty.type_size() as f64 / ty.block_size() as f64);

            // prefill: 128 rows on one (warm) copy
            let m = 128;
            let xm: Vec<f32> = (0..m * cols)
                .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
                .collect();
            let mut ym = vec![0f32; m * rows];
            let runs = if prefill_only { 40 } else { 5 };
            let tm = best_of(runs, 1, |_| qmatmul(&mats[0], &xm, m, &mut ym).expect("shapes checked"));
            let gflops = 2.0 * (m * rows * cols) as f64 / tm / 1e9;
            println!(
                "{:<6} {:>9.1} | {:>9.3} {:>7.1} {:>8.0}% {:>10.1} | {:>11.1}",
                ty.name(),
                bytes as f64 / (1 << 20) as f64,
                t1 * 1e3,
                gbs,
                100.0 * gbs / mem,
                tok,
                gflops
            );
        }
        Ok(())
    })
}
