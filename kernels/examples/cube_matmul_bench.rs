//! Throughput of the CubeCL quantized matmul kernels on the wgpu device (a GPU, or lavapipe
//! where there is none), beside the device's own copy bandwidth:
//!
//! ```text
//! cargo run --release -p gguf-kernels --example cube_matmul_bench [-- FORMAT ...]
//! cargo run --release -p gguf-kernels --example cube_matmul_bench -- --rows 4096 --cols 4096 --m 512 Q4_K
//! ```
//!
//! For each format (default Q4_0 Q4_K Q6_K Q8_0, llama.cpp's file types of most models) a
//! `--rows × --cols` weight (default 11008 × 4096, Llama 7B's feed-forward) is quantized from
//! random normal values by the importer's quantizer and uploaded once. Reported, each the best of
//! `--runs` timed batches (shared machines are noisy; the batch ends with a device sync):
//! - mat-vec (one activation row, decoding): milliseconds and GB/s of weight bytes read, for each
//!   mat-vec variant the device runs (plane reductions where cubecl offers plane operations; the
//!   shared-memory one always; `--plane` runs the plane one anyway), and that as a share of the
//!   copy bandwidth;
//! - tiled (`--m` activation rows, default 512, prefill): TFLOP/s (2 · m · rows · cols per call).
//!
//! The copy bandwidth is that of a plain copy kernel over a 128 MiB f32 buffer (one float per
//! unit; checked to have copied), counted as bytes read plus bytes written per second: what a kernel that only streams
//! memory reaches on this device.

use std::time::Instant;

use burn::backend::DispatchDevice;
use burn::tensor::{DType, Device, Shape};
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeDevice;
use cubecl::features::Plane;
use cubecl::prelude::*;
use gguf_importer::GgmlType;
use gguf_kernels::cube::launch::{q_matmul_with, Kernel};
use gguf_kernels::packed::{pack_words, table_words};

/// Parsed command line.
struct Args {
    rows: usize,
    cols: usize,
    m: usize,
    runs: usize,
    /// Also the plane variant where cubecl does not offer plane operations (lavapipe has
    /// subgroups: see tests/cube_kernels.rs).
    plane: bool,
    formats: Vec<GgmlType>,
}

fn usage() -> ! {
    eprintln!(
        "usage: cube_matmul_bench [--rows N] [--cols N] [--m N] [--runs N] [--plane] [FORMAT ...]\n\
         formats the importer quantizes: F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K \
         Q5_K Q6_K IQ4_NL IQ4_XS"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut args = Args {
        rows: 11008,
        cols: 4096,
        m: 512,
        runs: 5,
        plane: false,
        formats: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut number = || -> usize {
            match it.next().and_then(|v| v.parse().ok()) {
                Some(n) if n > 0 => n,
                _ => usage(),
            }
        };
        match a.as_str() {
            "--rows" => args.rows = number(),
            "--cols" => args.cols = number(),
            "--m" => args.m = number(),
            "--runs" => args.runs = number(),
            "--plane" => args.plane = true,
            "-h" | "--help" => usage(),
            name => match GgmlType::from_name(name) {
                Some(ty) => args.formats.push(ty),
                None => {
                    eprintln!("unknown format {name:?}");
                    usage()
                }
            },
        }
    }
    if args.formats.is_empty() {
        args.formats = vec![
            GgmlType::Q4_0,
            GgmlType::Q4_K,
            GgmlType::Q6_K,
            GgmlType::Q8_0,
        ];
    }
    args
}

/// `out[i] = inp[i]`, one float per unit.
#[cube(launch_unchecked)]
fn copy_kernel(inp: &[f32], out: &mut [f32]) {
    let i = ABSOLUTE_POS;
    if i < inp.len() {
        out[i] = inp[i];
    }
}

/// Waits for everything queued on the device.
fn sync(client: &cubecl::client::Client) {
    cubecl::future::block_on(client.sync()).expect("device sync");
}

/// Best seconds per call of `f` over `runs` batches of `per_batch` calls, after one warm-up batch.
fn best_of(runs: usize, per_batch: usize, mut f: impl FnMut(), mut sync: impl FnMut()) -> f64 {
    for _ in 0..per_batch {
        f();
    }
    sync();
    let mut best = f64::INFINITY;
    for _ in 0..runs {
        let t = Instant::now();
        for _ in 0..per_batch {
            f();
        }
        sync();
        best = best.min(t.elapsed().as_secs_f64() / per_batch as f64);
    }
    best
}

fn main() {
    let args = parse_args();
    let device = match Device::wgpu_options().init() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("no wgpu adapter: {e}");
            std::process::exit(1)
        }
    };
    let device: CubeDevice = match device.as_dispatch() {
        DispatchDevice::Cube(c) => c.clone(),
        other => panic!("wgpu device is not a cube device: {other:?}"),
    };
    let client = device.client();
    let info = client.properties();
    println!("device: {:?}", info.identity.name);

    // Copy bandwidth: 128 MiB in, 128 MiB out (wgpu's default limit of one storage binding;
    // far beyond any cache).
    let n = (128usize << 20) / 4;
    let data: Vec<f32> = (0..n).map(|i| (i % 4099) as f32).collect();
    let inp = client.create_from_slice(bytemuck::cast_slice(&data));
    let out = client.empty(n * 4);
    let units = 256u32;
    let groups = (n as u32).div_ceil(units);
    let (gx, gy) = (groups.min(65_535), groups.div_ceil(65_535));
    let copy_s = best_of(
        args.runs,
        5,
        || {
            // SAFETY: both buffers hold `n` f32; the kernel checks its index.
            unsafe {
                copy_kernel::launch_unchecked(
                    &client,
                    CubeCount::Static(gx, gy, 1),
                    CubeDim::new_1d(units),
                    BufferArg::from_raw_parts(inp.clone(), n),
                    BufferArg::from_raw_parts(out.clone(), n),
                );
            }
        },
        || sync(&client),
    );
    let copied = client.read_one_unchecked(out);
    assert!(
        copied[..] == *bytemuck::cast_slice::<f32, u8>(&data),
        "the copy kernel did not copy"
    );
    let copy_gb_s = 2.0 * (n * 4) as f64 / copy_s / 1e9;
    println!("copy bandwidth: {copy_gb_s:.1} GB/s (read + written, 128 MiB f32 copy)");
    drop((inp, data));

    let mut variants = vec![Kernel::MatVecShared];
    if args.plane || client.features().plane.contains(Plane::Ops) {
        variants.insert(0, Kernel::MatVecPlane);
    }
    println!(
        "weight {} x {}, tiled m = {}; best of {} batches",
        args.rows, args.cols, args.m, args.runs
    );
    println!(
        "format  MiB | variant       m=1 ms    GB/s  % of copy | m={} TFLOP/s",
        args.m
    );
    let (rows, cols) = (args.rows, args.cols);
    for ty in args.formats {
        // Random normal weights (Box-Muller over a fixed LCG), quantized as llama.cpp would.
        let mut state = 0x5EED_u64 ^ ty.id() as u64;
        let mut uniform = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 + 0.5) / (1u64 << 24) as f32
        };
        let values: Vec<f32> = (0..rows * cols)
            .map(|_| {
                let (u, v) = (uniform(), uniform());
                0.02 * (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
            })
            .collect();
        let bytes = match gguf_importer::quants::quantize(ty, cols, &values) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{ty}: {e}");
                continue;
            }
        };
        drop(values);
        let mut words = pack_words(&bytes);
        words.extend_from_slice(table_words(ty));
        let w = CubeTensor::new_contiguous(
            client.clone(),
            device.clone(),
            Shape::new([words.len()]),
            client.create_from_slice(bytemuck::cast_slice(&words)),
            DType::U32,
        );
        let x_of = |m: usize| {
            let x: Vec<f32> = (0..m * cols)
                .map(|i| ((i % 97) as f32 - 48.0) / 64.0)
                .collect();
            CubeTensor::new_contiguous(
                client.clone(),
                device.clone(),
                Shape::new([m, cols]),
                client.create_from_slice(bytemuck::cast_slice(&x)),
                DType::F32,
            )
        };
        let mib = bytes.len() as f64 / (1 << 20) as f64;
        let (x1, xm) = (x_of(1), x_of(args.m));
        let tiled_s = best_of(
            args.runs,
            3,
            || {
                q_matmul_with(xm.clone(), w.clone(), ty, rows, cols, Some(Kernel::Tiled));
            },
            || sync(&client),
        );
        let tflops = 2.0 * (args.m * rows * cols) as f64 / tiled_s / 1e12;
        for (i, &kernel) in variants.iter().enumerate() {
            let s = best_of(
                args.runs,
                20,
                || {
                    q_matmul_with(x1.clone(), w.clone(), ty, rows, cols, Some(kernel));
                },
                || sync(&client),
            );
            let gb_s = bytes.len() as f64 / s / 1e9;
            let tail = match i {
                0 => format!("{tflops:.3}"),
                _ => String::new(),
            };
            println!(
                "{:<7}{:>5.1} | {:<12}{:>8.3} {:>7.1} {:>9.0}% | {tail}",
                ty.to_string(),
                mib,
                format!("{kernel:?}"),
                s * 1e3,
                gb_s,
                100.0 * gb_s / copy_gb_s
            );
        }
    }
}
