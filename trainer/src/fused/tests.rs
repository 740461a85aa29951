//! Each fused op against the composed candle ops it replaces: forward values and the gradient of
//! every input (through candle's autograd of the composed op), on odd shapes.

use std::sync::Arc;

use candle_core::{D, Device, Tensor, Var};

use super::*;

/// Deterministic values in about [-1, 1].
fn var(dims: &[usize], seed: f32) -> Var {
    let n: usize = dims.iter().product();
    let data: Vec<f32> =
        (0..n).map(|i| ((i as f32) * 0.731 + seed).sin() * ((i as f32) * 0.137 + 2.0 * seed).cos()).collect();
    Var::from_tensor(&Tensor::from_vec(data, dims, &Device::Cpu).unwrap()).unwrap()
}

/// max |a − b| / max |b|.
fn relative_error(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let diff = (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
    let scale = b.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
    diff / scale.max(1e-12)
}

/// Forward output and the gradients of `inputs` under the loss Σ out ∘ probe, for a fused and a
/// composed version of one op; asserts they agree to 1e-4.
fn agree(what: &str, inputs: &[&Var], fused: impl Fn() -> Tensor, composed: impl Fn() -> Tensor) {
    let (a, b) = (fused(), composed());
    let error = relative_error(&a, &b);
    assert!(error <= 1e-4, "{what}: forward differs by {error:e}");
    let probe = var(b.dims(), 0.5);
    let grads_a = (a * probe.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
    let grads_b = (b * probe.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
    for (n, input) in inputs.iter().enumerate() {
        let (ga, gb) = (grads_a.get(input.as_tensor()).unwrap(), grads_b.get(input.as_tensor()).unwrap());
        let error = relative_error(ga, gb);
        assert!(error <= 1e-4, "{what}: gradient of input {n} differs by {error:e}");
    }
}

fn softmax(x: &Tensor) -> Tensor {
    let max = x.max_keepdim(D::Minus1).unwrap().detach();
    let e = x.broadcast_sub(&max).unwrap().exp().unwrap();
    e.broadcast_div(&e.sum_keepdim(D::Minus1).unwrap()).unwrap()
}

/// Attention with the full score matrix and an additive mask, as `model` composes it.
fn composed_attention(q: &Tensor, k: &Tensor, v: &Tensor, segments: &[u32], scale: f32) -> Tensor {
    let (b, t, h, hd) = q.dims4().unwrap();
    let kvh = k.dim(2).unwrap();
    let heads = |x: &Tensor| x.transpose(1, 2).unwrap().contiguous().unwrap();
    let repeat = |x: Tensor| {
        x.unsqueeze(2).unwrap().broadcast_as((b, kvh, h / kvh, t, hd)).unwrap().reshape((b, h, t, hd)).unwrap()
    };
    let (q, k, v) = (heads(q), repeat(heads(k)), repeat(heads(v)));
    let starts = segment_starts(segments, t);
    let mut mask = vec![f32::NEG_INFINITY; b * t * t];
    for r in 0..b {
        for i in 0..t {
            for j in starts[r * t + i] as usize..=i {
                mask[(r * t + i) * t + j] = 0.0;
            }
        }
    }
    let mask = Tensor::from_vec(mask, (b, 1, t, t), &Device::Cpu).unwrap();
    let scores = (q.matmul(&k.t().unwrap()).unwrap() * scale as f64).unwrap().broadcast_add(&mask).unwrap();
    softmax(&scores).matmul(&v).unwrap().transpose(1, 2).unwrap().contiguous().unwrap()
}

fn check_attention(what: &str, (b, t, h, kvh, hd): (usize, usize, usize, usize, usize), segments: Vec<u32>) {
    let (q, k, v) = (var(&[b, t, h, hd], 0.1), var(&[b, t, kvh, hd], 0.2), var(&[b, t, kvh, hd], 0.3));
    let starts = Arc::new(segment_starts(&segments, t));
    let scale = 1.0 / (hd as f32).sqrt();
    agree(
        what,
        &[&q, &k, &v],
        || {
            FlashAttention::new((b, t, h, kvh, hd), starts.clone(), scale)
                .apply(q.as_tensor(), k.as_tensor(), v.as_tensor())
                .unwrap()
        },
        || composed_attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), &segments, scale),
    );
}

#[test]
fn segment_starts_restart_at_each_document_and_each_row() {
    assert_eq!(segment_starts(&[0, 0, 1, 1, 1, 2, 5, 5, 5, 5], 5), [0, 0, 2, 2, 2, 0, 1, 1, 1, 1]);
}

#[test]
fn flash_attention_equals_the_composed_attention_and_its_gradients() {
    // One head; a sequence that is not a multiple of the 64-row tiles.
    check_attention("one head, seq 70", (1, 70, 1, 1, 8), vec![0; 70]);
    // GQA 3:1, two rows, three tiles.
    check_attention("GQA 3:1", (2, 150, 6, 2, 16), vec![0; 300]);
    // Document boundaries inside tiles, a one-token document, and a tile of keys that some
    // rows of a query tile cannot see at all.
    let mut segments = Vec::new();
    for (doc, len) in [(0u32, 37usize), (1, 1), (2, 60), (3, 32)] {
        segments.extend(std::iter::repeat_n(doc, len));
    }
    segments.extend(std::iter::repeat_n(7, 130));
    check_attention("document-masked", (2, 130, 4, 4, 8), segments);
}

#[test]
fn linear_equals_the_composed_matmul_and_its_gradients() {
    let (x, w) = (var(&[67, 40], 0.4), var(&[23, 40], 0.9));
    agree(
        "linear",
        &[&x, &w],
        || Linear::apply(x.as_tensor(), w.as_tensor()).unwrap(),
        || x.as_tensor().matmul(&w.as_tensor().t().unwrap()).unwrap(),
    );
}

#[test]
fn rms_norm_equals_the_composed_norm_and_its_gradients() {
    let (x, gain) = (var(&[3, 67, 40], 0.4), var(&[40], 0.9));
    let eps = 1e-5;
    agree(
        "rms-norm",
        &[&x, &gain],
        || RmsNorm { eps }.apply(x.as_tensor(), gain.as_tensor()).unwrap(),
        || {
            let x = x.as_tensor();
            let scale =
                (x.sqr().unwrap().mean_keepdim(D::Minus1).unwrap() + eps).unwrap().sqrt().unwrap().recip().unwrap();
            x.broadcast_mul(&scale).unwrap().broadcast_mul(gain.as_tensor()).unwrap()
        },
    );
}

#[test]
fn rotary_equals_the_composed_rotation_and_its_gradient() {
    let (b, t, h, hd) = (2, 69, 3, 10);
    let x = var(&[b, t, h, hd], 0.7);
    let positions: Vec<u32> = (0..b * t).map(|i| (i % t) as u32 * 3 % 50).collect();
    let inv_freq: Vec<f32> = (0..hd / 2).map(|i| 1.0 / 10000f32.powf(2.0 * i as f32 / hd as f32)).collect();
    let factor = 1.13;
    let table = Arc::new(RotaryTable::new(&positions, &inv_freq, factor));
    agree(
        "rotary",
        &[&x],
        || Rotary { table: table.clone() }.apply(x.as_tensor()).unwrap(),
        || {
            let mut angles = Vec::new();
            for &p in &positions {
                let row: Vec<f32> = inv_freq.iter().map(|&f| p as f32 * f).collect();
                angles.extend_from_slice(&row);
                angles.extend_from_slice(&row);
            }
            let cos: Vec<f32> = angles.iter().map(|a| a.cos() * factor).collect();
            let sin: Vec<f32> = angles.iter().map(|a| a.sin() * factor).collect();
            let cos = Tensor::from_vec(cos, (b, t, 1, hd), &Device::Cpu).unwrap();
            let sin = Tensor::from_vec(sin, (b, t, 1, hd), &Device::Cpu).unwrap();
            let x = x.as_tensor();
            let (x1, x2) = (x.narrow(D::Minus1, 0, hd / 2).unwrap(), x.narrow(D::Minus1, hd / 2, hd / 2).unwrap());
            let rotated = Tensor::cat(&[&x2.neg().unwrap(), &x1], D::Minus1).unwrap();
            (x.broadcast_mul(&cos).unwrap() + rotated.broadcast_mul(&sin).unwrap()).unwrap()
        },
    );
}

#[test]
fn swiglu_equals_the_composed_product_and_its_gradients() {
    let (gate, up) = (var(&[5, 33, 17], 1.1), var(&[5, 33, 17], 1.7));
    let scaled = Var::from_tensor(&(gate.as_tensor() * 4.0).unwrap()).unwrap();
    agree(
        "swiglu",
        &[&scaled, &up],
        || SwiGlu::apply(scaled.as_tensor(), up.as_tensor()).unwrap(),
        || (scaled.as_tensor().silu().unwrap() * up.as_tensor()).unwrap(),
    );
}

#[test]
fn chunked_target_log_probs_equal_the_composed_log_softmax_and_its_gradients() {
    // 600 rows: three chunks, the last one partial.
    let (n, d, vocab) = (600, 24, 97);
    let (hidden, weight) = (var(&[n, d], 0.2), var(&[vocab, d], 0.6));
    let targets: Vec<u32> = (0..n as u32).map(|i| i * 31 % vocab as u32).collect();
    let targets = Arc::new(targets);
    // Backward from the kept softmax, and from logits recomputed chunk by chunk.
    for keep in [usize::MAX, 0] {
        agree(
            &format!("target log-probs keeping {keep} bytes"),
            &[&hidden, &weight],
            || {
                let op = TargetLogProbs::new(targets.clone()).keeping_at_most(keep);
                op.apply(&(hidden.as_tensor() * 3.0).unwrap(), weight.as_tensor()).unwrap()
            },
            || {
                let logits = (hidden.as_tensor() * 3.0).unwrap().matmul(&weight.as_tensor().t().unwrap()).unwrap();
                let max = logits.max_keepdim(D::Minus1).unwrap().detach();
                let shifted = logits.broadcast_sub(&max).unwrap();
                let log_z = shifted.exp().unwrap().sum_keepdim(D::Minus1).unwrap().log().unwrap();
                let t = Tensor::from_slice(targets.as_slice(), (n, 1), &Device::Cpu).unwrap();
                shifted.gather(&t, 1).unwrap().broadcast_sub(&log_z).unwrap().squeeze(1).unwrap()
            },
        );
    }
    let outside = TargetLogProbs::new(Arc::new(vec![vocab as u32; n])).apply(hidden.as_tensor(), weight.as_tensor());
    assert!(outside.unwrap_err().to_string().contains("outside the vocabulary"));
}

#[test]
fn fast_exp_matches_f64_exp_to_a_few_ulp() {
    let mut worst = 0f64;
    let mut x = -86.5f32;
    while x < 88.72 {
        let want = (x as f64).exp();
        let got = super::exp(x) as f64;
        worst = worst.max(((got - want) / want).abs());
        x += 0.001_37;
    }
    assert!(worst < 5e-7, "worst relative error {worst:e}");
    assert_eq!(super::exp(0.0), 1.0);
    assert_eq!((super::exp(f32::NEG_INFINITY), super::exp(-100.0)), (0.0, 0.0));
    assert_eq!((super::exp(f32::INFINITY), super::exp(89.0)), (f32::INFINITY, f32::INFINITY));
    assert!(super::exp(f32::NAN).is_nan());
    assert!(super::exp(88.72).is_finite() && super::exp(-86.5) > 0.0);
}
