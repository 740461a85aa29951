//! Where a training step's time goes: forward, backward, optimizer, and the fused ops' share, for
//! the 12.7 M-parameter Llama of the throughput target (vocab 8192, d 320, 6 layers, seq 256,
//! batch 8, f32), or for a checkpoint folder at a batch and sequence length of your choice.
//!
//!     cargo bench -p trainer --bench train_step [-- STEPS [CHECKPOINT BATCH SEQ]]
//!     cargo bench -p trainer --bench train_step -- 4 .models/smollm2-135m 2 512
//!
//! Threads: RAYON_NUM_THREADS (candle's matmuls follow it).

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use trainer::hf_config::LlamaConfig;
use trainer::model::{Batch, Llama};
use trainer::optim::{AdamW, AdamWConfig};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let steps: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(5);
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
    let (model, b, t) = match args.as_slice() {
        [_, dir, b, t] => (Llama::load(std::path::Path::new(dir), &Device::Cpu)?, b.parse()?, t.parse()?),
        _ => (Llama::init(&config, 1, &Device::Cpu)?, 8usize, 256usize),
    };
    let config = model.config.clone();
    let vocab = config.vocab_size;
    let params: Vec<_> = model.params().iter().map(|(n, v)| (n.clone(), v.clone(), Llama::decays(n))).collect();
    let mut opt = AdamW::new(AdamWConfig::default(), params.clone());
    let batch = Batch {
        batch: b,
        seq: t,
        ids: (0..b * t).map(|i| (i * 7919 % vocab) as u32).collect(),
        targets: (0..b * t).map(|i| ((i + 1) * 7919 % vocab) as u32).collect(),
        positions: (0..b * t).map(|i| (i % t) as u32).collect(),
        segments: vec![0; b * t],
        loss_mask: vec![1.0; b * t],
    };
    println!("{} parameters, batch {b}x{t}", config.num_parameters());
    // candle's CPU matmul (the gemm crate) on the step's two main shapes.
    let d = config.hidden_size;
    for (name, n) in [("lm_head", vocab), ("mlp", config.intermediate_size)] {
        let x = Tensor::ones((b * t, d), DType::F32, &Device::Cpu)?;
        let w = Tensor::ones((n, d), DType::F32, &Device::Cpu)?;
        for _ in 0..3 {
            x.matmul(&w.t()?)?;
        }
        let t0 = Instant::now();
        for _ in 0..10 {
            x.matmul(&w.t()?)?;
        }
        let dt = t0.elapsed().as_secs_f64() / 10.0;
        println!(
            "matmul {name} [{}x{d}]·[{d}x{n}]: {:.2} ms, {:.0} GFLOP/s",
            b * t,
            dt * 1e3,
            2.0 * (b * t * d * n) as f64 / dt / 1e9
        );
    }
    let (mut fwd, mut bwd, mut upd) = (0.0, 0.0, 0.0);
    let mut ops_before = trainer::op_times();
    for step in 0..steps + 1 {
        if step == 1 {
            ops_before = trainer::op_times();
        }
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
    for (after, before) in trainer::op_times().iter().zip(&ops_before) {
        let f = (after.forward - before.forward).as_secs_f64() / n;
        let g = (after.backward - before.backward).as_secs_f64() / n;
        println!(
            "  fused {:<10} forward {:.3} s ({:.0}% of forward), backward {:.3} s ({:.0}% of backward)",
            after.op,
            f,
            100.0 * f / (fwd / n),
            g,
            100.0 * g / (bwd / n)
        );
    }
    Ok(())
}
