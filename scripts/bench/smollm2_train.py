"""Continuing a real checkpoint on CPU: midtrain vs PyTorch, side by side, same model and batch.

SmolLM2-135M-Instruct (f32), AdamW (betas 0.9/0.95, weight decay 0.1), clipping 1.0, 2 threads:
PyTorch runs transformers' LlamaForCausalLM with eager attention and torch.optim.AdamW on random
token ids; midtrain runs `midtrain train` continuing the same folder on the fixture web shards
(no document masking, like the PyTorch run). Each run is its own process; its peak RSS comes
from wait4. Tokens/s: the median of the steps after the first two. Then midtrain alone at
1 x 4096 and 1 x 8192 (PyTorch's eager attention holds every seq x seq score: 9 heads x 8192^2 x
4 B = 2.4 GB per layer).

    .venv-parity/bin/python scripts/bench/smollm2_train.py --midtrain target/release/midtrain \
        --model .models/smollm2-135m
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

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from torch_train import median_rate, write_bench_config  # noqa: E402  (the same midtrain run config)


def run_measured(cmd: list, env: dict) -> tuple[str, float]:
    """Runs cmd; returns its stdout and peak RSS in GB."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        sys.exit(f"failed ({status}): {' '.join(map(str, cmd))}")
    return out, usage.ru_maxrss * 1024 / 1e9


def torch_worker(model_dir: str, threads: int, batch: int, seq: int, steps: int) -> None:
    import torch
    from transformers import LlamaForCausalLM
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.95), weight_decay=0.1)
    rates = []
    for _ in range(steps):
        ids = torch.randint(0, model.config.vocab_size, (batch, seq + 1))
        start = time.perf_counter()
        out = model(input_ids=ids[:, :-1], labels=ids[:, 1:].clone())
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        rates.append(batch * seq / (time.perf_counter() - start))
    print(json.dumps({"tokens_per_s": statistics.median(rates[2:]) if len(rates) > 2 else rates[-1]}))


def midtrain_run(binary: str, model_dir: Path, threads: int, batch: int, seq: int, steps: int, data: Path):
    with tempfile.TemporaryDirectory(prefix="smollm2_bench_") as t:
        tmp = Path(t)
        write_bench_config(tmp / "train.toml", f'checkpoint = "{model_dir}"', 1e-5, data, batch, seq, steps)
        env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
        _, rss = run_measured([binary, "train", str(tmp / "train.toml"), "--out", str(tmp / "run"), "--quiet"], env)
        return median_rate(tmp / "run"), rss


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--midtrain")
    ap.add_argument("--model", default=str(ROOT / ".models/smollm2-135m"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--data", default=str(ROOT / "fixtures/shards/web"))
    ap.add_argument("--long", default="4096,8192", help="midtrain-only sequence lengths at batch 1 ('' for none)")
    ap.add_argument("--torch-worker", nargs=3, type=int, metavar=("BATCH", "SEQ", "STEPS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_worker:
        torch_worker(args.model, args.threads, *args.torch_worker)
        return 0
    model = Path(args.model).resolve()
    binary = str(Path(args.midtrain).resolve())
    data = Path(args.data).resolve()
    mine, mine_rss = midtrain_run(binary, model, args.threads, 2, 512, args.steps, data)
    print(f"midtrain 2x512: {mine:.1f} tokens/s, peak RSS {mine_rss:.2f} GB", flush=True)
    out, ref_rss = run_measured([sys.executable, __file__, "--model", str(model), "--threads", str(args.threads),
                                 "--torch-worker", "2", "512", str(args.steps)], dict(os.environ))
    ref = json.loads(out.strip().splitlines()[-1])["tokens_per_s"]
    print(f"pytorch  2x512: {ref:.1f} tokens/s, peak RSS {ref_rss:.2f} GB", flush=True)
    print(f"ratio midtrain/pytorch: {mine / ref:.2f} tokens/s, {mine_rss / ref_rss:.2f} peak RSS "
          f"({args.threads} threads, f32)", flush=True)
    for seq in [int(s) for s in args.long.split(",") if s]:
        rate, rss = midtrain_run(binary, model, args.threads, 1, seq, 3, data)
        print(f"midtrain 1x{seq}: {rate:.1f} tokens/s, peak RSS {rss:.2f} GB "
              f"(+{rss - mine_rss:.2f} GB over 2x512)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
