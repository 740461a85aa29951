"""Training throughput on CPU: midtrain vs PyTorch on the same Llama, batch and threads.

The model of issue 7's target: vocab 8192, d 320, 6 layers (5 heads of 64), SwiGLU 864, untied,
seq 256, batch 8 sequences, f32, AdamW, clipping 1.0. PyTorch runs transformers'
LlamaForCausalLM (eager attention); midtrain runs `midtrain train` on the fixture web dataset
(no document masking, like the PyTorch run). Both report the median tokens/s of the steps after
the first two.

    .venv-parity/bin/python scripts/bench/torch_train.py --midtrain target/release/midtrain --threads 2
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG = dict(vocab_size=8192, hidden_size=320, intermediate_size=864, num_hidden_layers=6,
              num_attention_heads=5, num_key_value_heads=5, head_dim=64, rms_norm_eps=1e-5,
              max_position_embeddings=1024, tie_word_embeddings=False, hidden_act="silu",
              model_type="llama", architectures=["LlamaForCausalLM"], rope_theta=10000.0)
SEQ, BATCH = 256, 8


def torch_run(threads: int, steps: int) -> float:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = {k: v for k, v in CONFIG.items() if k not in ("model_type", "architectures")}
    model = LlamaForCausalLM(LlamaConfig(**cfg, attn_implementation="eager"))
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    rates = []
    for _ in range(steps):
        ids = torch.randint(0, CONFIG["vocab_size"], (BATCH, SEQ + 1))
        start = time.perf_counter()
        out = model(input_ids=ids[:, :-1], labels=ids[:, 1:].clone())
        # (transformers shifts the labels again: the work is the same, the loss is not used)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        rates.append(BATCH * SEQ / (time.perf_counter() - start))
    return statistics.median(rates[2:])


def write_bench_config(path: Path, model: str, final_lr: float, data: Path, batch: int, seq: int, steps: int) -> None:
    """A `midtrain train` config of `steps` constant-LR steps of batch x seq, no masking, no
    evaluation; `model` is its [model] source line (config = ... or checkpoint = ...)."""
    path.write_text(f"""
seed = 1
checkpoint_every = 1000000
[model]
{model}
final_lr = {final_lr}
[data]
path = "{data}"
document_masking = false
mask_loss_across_documents = false
heldout_docs = 0
[batch]
micro_batch_size = {batch}
batch_tokens = {batch * seq}
[[stage]]
name = "bench"
tokens = {steps * batch * seq}
seq_len = {seq}
schedule = {{ decay = {{ style = "constant" }} }}
""")


def median_rate(run: Path) -> float:
    """Median tokens/s of a run's steps after the first two (warm-up)."""
    rates = [json.loads(line)["tokens_per_s"] for line in (run / "metrics.jsonl").read_text().splitlines()
             if "tokens_per_s" in line]
    return statistics.median(rates[2:]) if len(rates) > 2 else rates[-1]


def midtrain_run(binary: str, threads: int, steps: int, data: Path) -> float:
    with tempfile.TemporaryDirectory(prefix="train_bench_") as t:
        tmp = Path(t)
        (tmp / "config.json").write_text(json.dumps(CONFIG))
        write_bench_config(tmp / "train.toml", 'config = "config.json"', 1e-4, data, BATCH, SEQ, steps)
        env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
        subprocess.run([binary, "train", str(tmp / "train.toml"), "--out", str(tmp / "run"), "--quiet"],
                       check=True, env=env)
        return median_rate(tmp / "run")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--midtrain", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "fixtures/shards/web"))
    args = ap.parse_args()
    mine = midtrain_run(str(Path(args.midtrain).resolve()), args.threads, args.steps, Path(args.data).resolve())
    print(f"midtrain: {mine:.0f} tokens/s", flush=True)
    ref = torch_run(args.threads, args.steps)
    print(f"pytorch:  {ref:.0f} tokens/s")
    print(f"ratio midtrain/pytorch: {mine / ref:.2f} ({args.threads} threads, batch {BATCH}x{SEQ}, f32)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
