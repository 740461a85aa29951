//! Where a training step's time goes: forward, backward, optimizer, for the 10 M-parameter Llama
//! of the throughput target (vocab 8192, d 320, 6 layers, seq 256, batch 8, f32).
//!
//!     cargo bench -p trainer --bench train_step [-- STEPS]
//!
//! Threads: RAYON_NUM_THREADS (candle's matmuls follow it).

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use trainer::hf_config::LlamaConfig;
use trainer::model::{Batch, Llama};
use trainer::optim::{AdamW, AdamWConfig};

fn main() -> anyhow::Result<()> {
    let steps: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(5);
    // MIDTRAIN_BENCH_MMAP=1 measures glibc's default (large blocks mmapped and unmapped).
    if std::env::var_os("MIDTRAIN_BENCH_MMAP").is_none() {
        trainer::keep_freed_memory();
    }
    let config = LlamaConfig {
        vocab_size: 8192,
        hidden_size: 320,
        intermediate_size: 864,
        num_hidden_layers: 6,
        num_attention_heads: 5,
        num_key_value_heads: 5,
        head_dim: 64,
        max_position_embeddings: 1024,
        ..LlamaConfig::tiny(8192)
    };
    let model = Llama::init(&config, 1, &Device::Cpu)?;
    let params: Vec<_> = model.params().iter().map(|(n, v)| (n.clone(), v.clone(), Llama::decays(n))).collect();
    let mut opt = AdamW::new(AdamWConfig::default(), params.clone());
    let (b, t) = (8usize, 256usize);
    let batch = Batch {
        batch: b,
        seq: t,
        ids: (0..b * t).map(|i| (i * 7919 % 8192) as u32).collect(),
        targets: (0..b * t).map(|i| ((i + 1) * 7919 % 8192) as u32).collect(),
        positions: (0..b * t).map(|i| (i % t) as u32).collect(),
        segments: vec![0; b * t],
        loss_mask: vec![1.0; b * t],
    };
    println!("{} parameters, batch {b}x{t}", config.num_parameters());
    // candle's CPU matmul (the gemm crate) on the step's two main shapes.
    for (name, n) in [("lm_head", 8192usize), ("mlp", 864)] {
        let x = Tensor::ones((b * t, 320), DType::F32, &Device::Cpu)?;
        let w = Tensor::ones((n, 320), DType::F32, &Device::Cpu)?;
        for _ in 0..3 {
            x.matmul(&w.t()?)?;
        }
        let t0 = Instant::now();
        for _ in 0..10 {
            x.matmul(&w.t()?)?;
        }
        let dt = t0.elapsed().as_secs_f64() / 10.0;
        println!(
            "matmul {name} [{}x320]·[320x{n}]: {:.2} ms, {:.0} GFLOP/s",
            b * t,
            dt * 1e3,
            2.0 * (b * t * 320 * n) as f64 / dt / 1e9
        );
    }
    let (mut fwd, mut bwd, mut upd) = (0.0, 0.0, 0.0);
    for step in 0..steps + 1 {
        let t0 = Instant::now();
        let loss = (model.loss_sum(&batch)? / (b * t) as f64)?;
        let t1 = Instant::now();
        let grads = loss.backward()?;
        let t2 = Instant::now();
        let g: Vec<_> = params.iter().map(|(_, v, _)| grads.get(v.as_tensor()).unwrap().clone()).collect();
        opt.step(&g, 1e-4)?;
        let t3 = Instant::now();
        if step > 0 {
            fwd += (t1 - t0).as_secs_f64();
            bwd += (t2 - t1).as_secs_f64();
            upd += (t3 - t2).as_secs_f64();
        }
    }
    let n = steps as f64;
    let total = (fwd + bwd + upd) / n;
    println!(
        "per step {:.3} s = forward {:.3} s ({:.0}%) + backward {:.3} s ({:.0}%) + AdamW {:.3} s ({:.0}%) → {:.0} tokens/s",
        total,
        fwd / n,
        100.0 * fwd / n / total,
        bwd / n,
        100.0 * bwd / n / total,
        upd / n,
        100.0 * upd / n / total,
        (b * t) as f64 / total
    );
    Ok(())
}
