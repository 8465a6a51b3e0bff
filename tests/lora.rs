//! LoRA adapters on a frozen base whose weights stay quantized (issue 5):
//!
//! - the adapters' gradient (Burn's Autodiff through the quantized matmul's backward pass)
//!   against finite differences of the loss of the dequantized model (`Weights::F32`: the
//!   importer's dequantizer, f32 math), on every device;
//! - a short run of Adam lowers the loss, and touches nothing but the adapters;
//! - merging: the merged model computes what the adapted one does; its GGUF export holds the
//!   merged weights (read back through the importer); the record keeps unmerged adapters.

mod common;

use std::path::PathBuf;

use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use common::{fixture, max_abs_diff, open, root, to_vec};
use gguf_llama::finetune::{next_token_loss, TokenWindows};
use gguf_llama::gguf::quants::{dequantize, quantize};
use gguf_llama::gguf::{GgmlType, GgufFile};
use gguf_llama::model::export::{ExportError, ExportType};
use gguf_llama::model::{
    CacheTypes, Llama, LoraAdapter, LoraConfig, LoraTarget, ModelError, Weights,
};
use gguf_llama::tokenizer::Tokenizer;

const STORIES: &str = "models/stories260k-f32.gguf";

/// splitmix64: this test's own random values (B's values, directions).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n)
            .map(|_| lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32))
            .collect()
    }
}

fn temp(name: &str) -> PathBuf {
    common::temp("lora", name)
}

fn tensor(v: &[f32], shape: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(v.to_vec(), shape), device)
}

/// `model`'s adapters with B uniform in ±0.1 on `device` (B = 0, the fresh state, would make
/// every adapter a no-op).
fn with_random_b(model: Llama, rng: &mut Rng, device: &Device) -> Llama {
    model
        .map_lora(&mut |_, _, a| {
            let [n_out, r] = a.b().dims();
            let b = tensor(&rng.vec(n_out * r, -0.1, 0.1), [n_out, r], device);
            LoraAdapter::from_tensors(a.a(), b, a.scale())
        })
        .unwrap()
}

/// One adapter's A and B on the host, with their shapes.
#[derive(Clone)]
struct Values {
    a: Vec<f32>,
    a_shape: [usize; 2],
    b: Vec<f32>,
    b_shape: [usize; 2],
}

fn adapter_values(model: &Llama) -> Vec<Values> {
    model
        .lora_adapters()
        .iter()
        .map(|(_, _, a)| Values {
            a: to_vec(a.a()),
            a_shape: a.a().dims(),
            b: to_vec(a.b()),
            b_shape: a.b().dims(),
        })
        .collect()
}

/// `model` with adapter `i` set to `values[i] + t · dirs[i]` on `device`, scale `scale`.
fn set_adapters(
    model: Llama,
    values: &[Values],
    dirs: &[(Vec<f32>, Vec<f32>)],
    t: f32,
    scale: f32,
    device: &Device,
) -> Llama {
    let mut i = 0;
    model
        .map_lora(&mut |_, _, _| {
            let (v, (da, db)) = (&values[i], &dirs[i]);
            i += 1;
            let a: Vec<f32> = v.a.iter().zip(da).map(|(x, d)| x + t * d).collect();
            let b: Vec<f32> = v.b.iter().zip(db).map(|(x, d)| x + t * d).collect();
            LoraAdapter::from_tensors(
                tensor(&a, v.a_shape, device),
                tensor(&b, v.b_shape, device),
                scale,
            )
        })
        .unwrap()
}

/// Two windows of 9 tokens of the synthetic models' vocabulary (512).
fn synthetic_tokens(device: &Device) -> Tensor<2, Int> {
    let ids: Vec<i64> = vec![
        1, 415, 250, 264, 127, 36, 403, 264, 162, //
        1, 250, 503, 8, 6, 17, 301, 99, 4,
    ];
    Tensor::from_data(TensorData::new(ids, [2, 9]), device)
}

/// The mean next-token NLL of `tokens` under `model`, from its f32 logits, summed in f64 on the
/// host (so that the finite differences see the model's rounding, not the loss's).
fn loss_f64(model: &Llama, tokens: Tensor<2, Int>) -> f64 {
    let [batch, len] = tokens.dims();
    let ids: Vec<i64> = tokens
        .clone()
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .unwrap();
    let seq = len - 1;
    // F32 as the training loss's cache (finetune::next_token_loss).
    let mut cache = model.new_cache_with(batch, seq, CacheTypes::F32);
    let logits = model.forward(tokens.narrow(1, 0, seq), &mut cache).unwrap();
    let [_, _, nv] = logits.dims();
    let lg = to_vec(logits);
    let mut nll = 0f64;
    for b in 0..batch {
        for p in 0..seq {
            let row = &lg[(b * seq + p) * nv..(b * seq + p + 1) * nv];
            let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            let lse = max
                + row
                    .iter()
                    .map(|&v| (v as f64 - max).exp())
                    .sum::<f64>()
                    .ln();
            nll += lse - row[ids[b * len + p + 1] as usize] as f64;
        }
    }
    nll / (batch * seq) as f64
}

fn dot(g: &[(Vec<f32>, Vec<f32>)], d: &[(Vec<f32>, Vec<f32>)]) -> f64 {
    g.iter()
        .zip(d)
        .map(|((ga, gb), (da, db))| {
            ga.iter()
                .zip(da)
                .chain(gb.iter().zip(db))
                .map(|(x, y)| *x as f64 * *y as f64)
                .sum::<f64>()
        })
        .sum()
}

/// `v` scaled to unit norm.
fn unit(v: Vec<(Vec<f32>, Vec<f32>)>) -> Vec<(Vec<f32>, Vec<f32>)> {
    let n = dot(&v, &v).sqrt();
    v.into_iter()
        .map(|(a, b)| {
            let s = |x: Vec<f32>| x.into_iter().map(|v| (v as f64 / n) as f32).collect();
            (s(a), s(b))
        })
        .collect()
}

/// The gradient of the loss with respect to every adapter, through the quantized base, against
/// central finite differences of the dequantized model's loss:
/// `(L(θ + εd) − L(θ − εd)) / 2ε` with `d` a unit direction and `ε = 0.03`, for the directions
/// of the whole gradient, of its A part, of its B part, and of each target's adapters alone.
///
/// Base: the synthetic models of tests/fixtures/synthetic (made by scripts/make_llama_fixtures.py
/// and quantized by llama.cpp) in F32, Q4_0, Q8_0 and Q4_K, kept quantized for the gradient and
/// dequantized (`Weights::F32`) for the finite differences. Adapters: rank 2 on every projection,
/// A from `with_lora`, B uniform in ±0.05 (B = 0, the fresh state, would zero A's gradient).
///
/// Tolerance, as a fraction of the gradient's norm |g| (≈ 0.5 here):
/// - 1e-4 where the base computes in f32 (F32 weights on every device; every format on wgpu,
///   whose kernels take f32 activations): then both sides differentiate the same function, and
///   what is left is the finite difference's own error. Measured over ε = 0.003 … 0.03 and all
///   directions it stayed ≤ 8e-5·|g| (f32 logits: ~1e-6 of rounding in L over 2ε, and the ε²
///   term), ≤ 2e-5·|g| at ε = 0.03.
/// - 4e-3 = 1/254 for the quantized formats on the CPU devices: their forward pass rounds each
///   activation to 8 bits per block (as llama.cpp does), relative error up to 1/254, so the
///   gradient is that of the dequantized model taken at activations that far off (a
///   straight-through estimate). Measured: ≤ 8e-4·|g|.
#[test]
fn gradient_matches_finite_differences_of_the_dequantized_model() {
    let config = LoraConfig {
        rank: 2,
        alpha: 2.0,
        ..LoraConfig::default()
    };
    let eps = 0.03f32;
    for ty in ["F32", "Q4_0", "Q8_0", "Q4_K"] {
        let file = open(&fixture(&format!("synthetic/synth-{ty}.gguf")));
        for (name, device) in common::devices() {
            let exact = ty == "F32" || name.to_string() == "wgpu";
            let tol = if exact { 1e-4 } else { 1.0 / 254.0 };
            let ad = device.clone().autodiff();
            let base = Llama::from_gguf_with_weights(&file, &device, Weights::Quantized).unwrap();
            let dequantized = Llama::from_gguf_with_weights(&file, &device, Weights::F32).unwrap();

            let mut rng = Rng(7);
            let model = base.with_lora(&config, &ad).unwrap();
            let mut values = adapter_values(&model);
            for v in values.iter_mut() {
                v.b = rng.vec(v.b.len(), -0.05, 0.05);
            }
            let zero: Vec<_> = values
                .iter()
                .map(|v| (vec![0.0; v.a.len()], vec![0.0; v.b.len()]))
                .collect();
            let model = set_adapters(model, &values, &zero, 0.0, 1.0, &ad);
            let loss = next_token_loss(&model, synthetic_tokens(&device)).unwrap();
            let grads = loss.backward();
            let adapters = model.lora_adapters();
            let g: Vec<(Vec<f32>, Vec<f32>)> = adapters
                .iter()
                .map(|(_, _, a)| {
                    let ga = a.a().grad(&grads).expect("A has a gradient");
                    let gb = a.b().grad(&grads).expect("B has a gradient");
                    (to_vec(ga), to_vec(gb))
                })
                .collect();
            let g_norm = dot(&g, &g).sqrt();
            assert!(g_norm > 0.1, "{ty} {name}: |g| = {g_norm}");

            let part = |keep: &dyn Fn(usize, bool) -> bool| -> Vec<(Vec<f32>, Vec<f32>)> {
                g.iter()
                    .enumerate()
                    .map(|(i, (a, b))| {
                        let pick = |v: &Vec<f32>, is_a| {
                            if keep(i, is_a) {
                                v.clone()
                            } else {
                                vec![0.0; v.len()]
                            }
                        };
                        (pick(a, true), pick(b, false))
                    })
                    .collect()
            };
            let mut directions = vec![
                ("all".to_string(), part(&|_, _| true)),
                ("A".to_string(), part(&|_, is_a| is_a)),
                ("B".to_string(), part(&|_, is_a| !is_a)),
            ];
            for target in LoraTarget::ALL {
                let on: Vec<bool> = adapters.iter().map(|(_, t, _)| *t == target).collect();
                directions.push((target.to_string(), part(&|i, _| on[i])));
            }
            for (what, d) in directions {
                let d = unit(d);
                let analytic = dot(&g, &d);
                let at = |t: f32| {
                    let m = dequantized.clone().with_lora(&config, &device).unwrap();
                    loss_f64(
                        &set_adapters(m, &values, &d, t, 1.0, &device),
                        synthetic_tokens(&device),
                    )
                };
                let fd = (at(eps) - at(-eps)) / (2.0 * eps as f64);
                assert!(
                    (fd - analytic).abs() <= tol * g_norm,
                    "{ty} on {name}, direction {what}: finite difference {fd}, gradient {analytic} \
                     (|g| {g_norm}, tolerance {tol}·|g|)"
                );
            }
        }
    }
}

/// The words of every quantized layer and the values of every base parameter, to check that
/// training touched none of them.
fn base_fingerprint(model: &Llama) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for block in model.blocks() {
        for l in block
            .attention()
            .linears()
            .into_iter()
            .chain(block.feed_forward().linears())
        {
            if let Some(q) = l.quantized_weight() {
                out.push(q.words().clone().into_data().as_bytes().to_vec());
            }
            if let Some(w) = l.dense_weight() {
                out.push(w.into_data().as_bytes().to_vec());
            }
        }
        out.push(block.attn_norm().weight().into_data().as_bytes().to_vec());
    }
    out
}

/// stories260K exported as Q8_0 (its ffn_down rows of 172 fall back to F16, as llama.cpp's
/// quantizer does), so the base is quantized.
fn stories_q8_0(test: &str) -> (GgufFile, PathBuf) {
    let src = open(&root().join(STORIES));
    let model = Llama::from_gguf(&src, &Device::flex()).unwrap();
    let path = temp(&format!("{test}-stories260k-q8_0.gguf"));
    model
        .save_gguf(src.metadata(), &path, ExportType::Q8_0)
        .unwrap();
    (open(&path), path)
}

/// 40 steps of Adam (lr 1e-2) on rank-8 adapters over stories260K quantized to Q8_0, on windows of
/// the Grimm fixture text (tests/fixtures/perplexity): the loss of a fixed batch of windows
/// (drawn with another seed) falls, the mean training loss of the last 10 steps is below that of the first 10,
/// and the base (quantized words, norms) is unchanged bit for bit. On flex and on wgpu.
#[test]
fn training_lowers_the_loss_and_leaves_the_base_alone() {
    let (file, _) = stories_q8_0("train");
    let tokenizer = Tokenizer::from_gguf(file.metadata()).unwrap();
    let text = std::fs::read_to_string(fixture("perplexity/grimm-three-tales.txt")).unwrap();
    let tokens = tokenizer.encode(&text, true, false);
    let (seq, batch, steps) = (32, 4, 40);
    for (name, device) in common::devices() {
        if name.to_string() == "ndarray" {
            continue; // the same CPU kernels as flex; the gradient test covers ndarray
        }
        let ad = device.clone().autodiff();
        let base = Llama::from_gguf(&file, &device).unwrap();
        let before = base_fingerprint(&base);
        let mut model = base
            .with_lora(
                &LoraConfig {
                    rank: 8,
                    alpha: 16.0,
                    ..LoraConfig::default()
                },
                &ad,
            )
            .unwrap();
        let mut eval = TokenWindows::new(tokens.clone(), seq + 1, 99).unwrap();
        let fixed_batch = eval.next_batch(8, &device);
        let eval_loss = |m: &Llama| loss_f64(m, fixed_batch.clone());
        let start = eval_loss(&model);

        let mut windows = TokenWindows::new(tokens.clone(), seq + 1, 1).unwrap();
        let mut optim = AdamConfig::new().init();
        let mut losses = Vec::new();
        for _ in 0..steps {
            let loss = next_token_loss(&model, windows.next_batch(batch, &device)).unwrap();
            losses.push(to_vec(loss.clone())[0]);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(1e-2, model, grads);
        }
        let end = eval_loss(&model);
        let first = losses[..10].iter().sum::<f32>() / 10.0;
        let last = losses[steps - 10..].iter().sum::<f32>() / 10.0;
        eprintln!(
            "{name}: fixed-batch loss {start:.4} -> {end:.4}; training {first:.4} -> {last:.4}"
        );
        assert!(end < start, "{name}: fixed-batch loss {start} -> {end}");
        assert!(last < first, "{name}: training loss {first} -> {last}");
        assert_eq!(
            base_fingerprint(&model),
            before,
            "{name}: training changed the base"
        );
    }
}

/// Adapters with random B on stories260K, then merged: the merged model's logits equal the
/// adapted model's within f32 rounding (checked on an f32 base, where both compute in f32:
/// `x·(W + s·B·A)ᵀ` against `x·Wᵀ + s·(x·Aᵀ)·Bᵀ`, logits O(10), 1e-4 as tests/model.rs's
/// `LOGIT_ATOL` for summation order); the merged layers are dense and the others unchanged;
/// exporting unmerged adapters is refused; the merged model exported as F32, F16 and Q8_0 reads
/// back through the importer as the merged weights (F32 bit for bit, F16/Q8_0 byte for byte the
/// importer's quantizer applied to them, itself checked against gguf-py in
/// importer/tests/quantize.rs).
#[test]
fn merged_adapters_compute_the_adapted_model_and_export() {
    let src = open(&root().join(STORIES));
    let device = Device::flex();
    let prompt: Vec<u32> = vec![1, 403, 407, 261, 378, 429, 434, 269, 431, 264];
    let config = LoraConfig {
        rank: 4,
        alpha: 8.0,
        targets: vec![LoraTarget::AttnQ, LoraTarget::AttnV, LoraTarget::FfnDown],
        seed: 3,
    };
    let adapted = Llama::from_gguf_with_weights(&src, &device, Weights::F32)
        .unwrap()
        .with_lora(&config, &device)
        .unwrap();
    let adapted = with_random_b(adapted, &mut Rng(11), &device);
    assert_eq!(adapted.lora_adapters().len(), 3 * adapted.blocks().len());
    // An F32 cache: adapted and merged models sum in other orders, and an f16 cache would round
    // their last-bit differences to whole f16 steps.
    let logits = |m: &Llama| {
        let mut cache = m.new_cache_with(1, prompt.len(), CacheTypes::F32);
        to_vec(
            m.forward(common::token_tensor(&prompt, &device), &mut cache)
                .unwrap(),
        )
    };
    let want = logits(&adapted);
    let base_logits = logits(&adapted.clone().without_lora().unwrap());
    assert!(
        max_abs_diff(&want, &base_logits) > 1e-2,
        "the adapters change nothing: the test would not see a lost adapter"
    );

    // Export refuses unmerged adapters.
    let refused = temp("unmerged.gguf");
    assert!(matches!(
        adapted.save_gguf(src.metadata(), &refused, ExportType::F32),
        Err(ExportError::UnmergedAdapters { count: 15 })
    ));
    assert!(!refused.exists());

    let merged = adapted.clone().merge_lora().unwrap();
    assert!(merged.lora_adapters().is_empty());
    let got = logits(&merged);
    let diff = max_abs_diff(&got, &want);
    assert!(diff <= 1e-4, "merged vs adapted logits differ by {diff}");

    // The merged weights: W + scale · B · A, computed here on the host in f64 from the parts.
    for (layer, target, a) in adapted.lora_adapters() {
        let block = &merged.blocks()[layer];
        let all: Vec<_> = block
            .attention()
            .linears()
            .into_iter()
            .chain(block.feed_forward().linears())
            .collect();
        let i = LoraTarget::ALL.iter().position(|t| *t == target).unwrap();
        let w = all[i].dense_weight().expect("a merged layer is dense");
        let orig = adapted.blocks()[layer]
            .attention()
            .linears()
            .into_iter()
            .chain(adapted.blocks()[layer].feed_forward().linears())
            .nth(i)
            .unwrap()
            .dense_weight()
            .unwrap();
        let (wm, w0, av, bv) = (to_vec(w), to_vec(orig), to_vec(a.a()), to_vec(a.b()));
        let ([r, n_in], [n_out, _]) = (a.a().dims(), a.b().dims());
        for o in 0..n_out {
            for k in 0..n_in {
                let d: f64 = (0..r)
                    .map(|j| bv[o * r + j] as f64 * av[j * n_in + k] as f64)
                    .sum();
                let want = w0[o * n_in + k] as f64 + a.scale() as f64 * d;
                let got = wm[o * n_in + k] as f64;
                // f32: the r-term product, its scaling and the sum: a few ulps of |terms|.
                let mag = w0[o * n_in + k].abs() as f64 + a.scale() as f64 * d.abs().max(1e-3);
                assert!(
                    (got - want).abs() <= 1e-6 * mag.max(1.0),
                    "layer {layer} {target} [{o}, {k}]: {got} vs {want}"
                );
            }
        }
    }

    // The export holds the merged weights.
    for ty in [ExportType::F32, ExportType::F16, ExportType::Q8_0] {
        let path = temp(&format!("merged-{ty}.gguf"));
        merged.save_gguf(src.metadata(), &path, ty).unwrap();
        let file = open(&path);
        for (layer, block) in merged.blocks().iter().enumerate() {
            let names = [
                "attn_q",
                "attn_k",
                "attn_v",
                "attn_output",
                "ffn_gate",
                "ffn_up",
                "ffn_down",
            ];
            let linears = block
                .attention()
                .linears()
                .into_iter()
                .chain(block.feed_forward().linears());
            for (name, l) in names.into_iter().zip(linears) {
                let tensor_name = format!("blk.{layer}.{name}.weight");
                let info = file.tensor(&tensor_name).unwrap().clone();
                let w = l.dense_weight().unwrap();
                let [n_out, n_in] = w.dims();
                let values = to_vec(w);
                let bytes = file.tensor_data(&info);
                let want = match ty {
                    ExportType::F32 => quantize(GgmlType::F32, n_in, &values).unwrap(),
                    _ => quantize(info.ty, n_in, &values).unwrap(),
                };
                assert_eq!(info.ne, vec![n_in as u64, n_out as u64], "{tensor_name}");
                assert!(
                    bytes == want.as_slice(),
                    "{tensor_name} as {ty}: other bytes"
                );
                if ty == ExportType::F32 {
                    assert_eq!(dequantize(&info, bytes).unwrap(), values, "{tensor_name}");
                }
            }
        }
        // And it loads and runs as a model: the F32 export computes the merged model's logits.
        if ty == ExportType::F32 {
            let back = Llama::from_gguf(&file, &device).unwrap();
            let diff = max_abs_diff(&logits(&back), &got);
            assert!(
                diff <= 1e-4,
                "exported merged model: logits differ by {diff}"
            );
        }
    }
}

/// A record keeps unmerged adapters: the loaded model has the same adapters, bit for bit, and the
/// same logits, bit for bit (on the quantized base).
#[test]
fn record_round_trip_keeps_adapters() {
    let file = open(&fixture("synthetic/synth-Q4_K.gguf"));
    let device = Device::flex();
    let model = Llama::from_gguf(&file, &device)
        .unwrap()
        .with_lora(&LoraConfig::default(), &device)
        .unwrap();
    let model = with_random_b(model, &mut Rng(5), &device);
    let path = temp("adapters.bpk");
    model.save_record(&path).unwrap();
    let back = Llama::load_record(&path, &device).unwrap();
    assert_eq!(back.lora_adapters().len(), model.lora_adapters().len());
    for ((l0, t0, a0), (l1, t1, a1)) in model.lora_adapters().into_iter().zip(back.lora_adapters())
    {
        assert_eq!((l0, t0), (l1, t1));
        assert_eq!(a0.scale().to_bits(), a1.scale().to_bits());
        assert_eq!(to_vec(a0.a()), to_vec(a1.a()));
        assert_eq!(to_vec(a0.b()), to_vec(a1.b()));
    }
    let tokens = synthetic_tokens(&device);
    let run = |m: &Llama| {
        let mut cache = m.new_cache(2, 9);
        let l = m.forward(tokens.clone(), &mut cache).unwrap();
        to_vec(l).into_iter().map(f32::to_bits).collect::<Vec<_>>()
    };
    assert_eq!(run(&back), run(&model));
}

/// Bad configurations and windows are typed errors.
#[test]
fn bad_lora_input_is_an_error() {
    let file = open(&root().join(STORIES));
    let device = Device::flex();
    let model = Llama::from_gguf(&file, &device).unwrap();
    for config in [
        LoraConfig {
            rank: 0,
            ..LoraConfig::default()
        },
        LoraConfig {
            targets: vec![],
            ..LoraConfig::default()
        },
        LoraConfig {
            alpha: f32::NAN,
            ..LoraConfig::default()
        },
    ] {
        assert!(matches!(
            model.clone().with_lora(&config, &device),
            Err(ModelError::InvalidInput { .. })
        ));
    }
    assert!("qq".parse::<LoraTarget>().is_err());
    assert_eq!("gate".parse::<LoraTarget>(), Ok(LoraTarget::FfnGate));
    assert!(TokenWindows::new(vec![1, 2, 3], 4, 0).is_err());
    assert!(LoraAdapter::from_tensors(
        Tensor::zeros([2, 64], &device),
        Tensor::zeros([64, 3], &device),
        1.0
    )
    .is_err());
    let wrong = model
        .with_lora(&LoraConfig::default(), &device)
        .unwrap()
        .map_lora(&mut |_, _, _| {
            LoraAdapter::from_tensors(
                Tensor::zeros([2, 7], &device),
                Tensor::zeros([7, 2], &device),
                1.0,
            )
        });
    assert!(matches!(wrong, Err(ModelError::InvalidInput { .. })));
}
