"""Differential check of midtrain's Llama and RoPE against transformers (run by `make parity`).

1. RoPE: for many configs (every rope_type, bases, factors, head sizes, sequence lengths),
   `midtrain rope CONFIG --json` equals transformers' ROPE_INIT_FUNCTIONS (inv_freq, relative
   tolerance 1e-6; attention factor).
2. Logits, transformers -> midtrain: a random LlamaForCausalLM per configuration (GQA, tied and
   untied heads, every RoPE scaling) saved with save_pretrained; `midtrain score --logits`
   equals its logits (max abs difference <= 1e-4, f32).
3. Logits, midtrain -> transformers: a checkpoint midtrain trained (--checkpoint) loads in
   transformers with the same logits.

    .venv-parity/bin/python scripts/parity/transformers_llama.py --midtrain target/debug/midtrain \
        [--checkpoint out/run/checkpoints/step-00000040]
"""

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

sys.path.insert(0, str(Path(__file__).parent))
from parity_report import Report  # noqa: E402

BASE = dict(vocab_size=97, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-5,
            max_position_embeddings=128, tie_word_embeddings=False)


def rope_cases():
    """(name, extra config, seq_len) covering every scaling transformers has."""
    cases = []
    for theta in (10_000.0, 500_000.0):
        for head_dim in (16, 64, 128):
            base = dict(rope_theta=theta, head_dim=head_dim, hidden_size=head_dim * 4)
            cases.append((f"default b={theta:g} d={head_dim}", dict(base, rope_parameters=dict(rope_type="default", rope_theta=theta)), None))
            for s in (2.0, 4.0, 8.0):
                cases.append((f"linear s={s} d={head_dim}", dict(base, rope_parameters=dict(rope_type="linear", rope_theta=theta, factor=s)), None))
                for n in (64, 512, 4096):
                    cases.append((f"dynamic s={s} n={n} d={head_dim}", dict(base, rope_parameters=dict(rope_type="dynamic", rope_theta=theta, factor=s)), n))
                for extra in ({}, {"beta_fast": 16.0, "beta_slow": 2.0}, {"mscale": 0.707, "mscale_all_dim": 1.0},
                              {"truncate": False}, {"attention_factor": 1.3}, {"original_max_position_embeddings": 32}):
                    params = dict(rope_type="yarn", rope_theta=theta, factor=s, **extra)
                    cases.append((f"yarn s={s} {extra} d={head_dim}", dict(base, rope_parameters=params), None))
                params = dict(rope_type="llama3", rope_theta=theta, factor=s, low_freq_factor=1.0,
                              high_freq_factor=4.0, original_max_position_embeddings=32)
                cases.append((f"llama3 s={s} d={head_dim}", dict(base, rope_parameters=params), None))
            half = head_dim // 2
            short = [1.0 + 0.01 * i for i in range(half)]
            long = [1.0 + 0.5 * i for i in range(half)]
            for n in (16, 64, 1000):
                params = dict(rope_type="longrope", rope_theta=theta, short_factor=short, long_factor=long,
                              original_max_position_embeddings=32)
                cases.append((f"longrope n={n} d={head_dim}", dict(base, rope_parameters=params), n))
                params = dict(params, factor=3.0, attention_factor=None)
                params.pop("attention_factor")
                cases.append((f"longrope factor=3 n={n} d={head_dim}", dict(base, rope_parameters=params), n))
    return cases


def make_config(extra: dict) -> LlamaConfig:
    kw = dict(BASE)
    kw.update(extra)
    return LlamaConfig(**kw)


def run(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {out.stderr.strip()}")
    return out.stdout


def check_rope(rep: Report, midtrain: str, tmp: Path) -> None:
    worst = 0.0
    for name, extra, seq_len in rope_cases():
        config = make_config(extra)
        path = tmp / "rope_config.json"
        config.to_json_file(path)
        rope_type = config.rope_parameters["rope_type"]
        if rope_type == "default":  # transformers 5 keeps it on the model's rotary class
            from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding
            inv, factor = LlamaRotaryEmbedding.compute_default_rope_parameters(config)
        else:
            inv, factor = ROPE_INIT_FUNCTIONS[rope_type](config, "cpu", seq_len)
        cmd = [midtrain, "rope", str(path), "--json"] + (["--seq-len", str(seq_len)] if seq_len else [])
        try:
            got = json.loads(run(cmd))
        except Exception as e:  # noqa: BLE001
            rep.check(False, f"rope {name}", repr(e))
            continue
        ref = inv.double().tolist()
        mine = got["inv_freq"]
        rel = max(abs(a - b) / abs(b) for a, b in zip(mine, ref)) if len(mine) == len(ref) else math.inf
        worst = max(worst, rel)
        ok = rel <= 1e-6 and abs(got["attention_factor"] - factor) <= 1e-6 * max(1.0, abs(factor))
        if not ok:
            rep.check(False, f"rope {name}", f"max rel diff {rel:.2e}, factor {got['attention_factor']} vs {factor}")
        else:
            rep.passed += 1
    print(f"rope: {len(rope_cases())} configurations, worst relative inv_freq difference {worst:.2e}")


def logits_cases():
    yield "default GQA", {}
    yield "MHA tied", dict(num_key_value_heads=4, tie_word_embeddings=True)
    yield "ABF 500k", dict(rope_parameters=dict(rope_type="default", rope_theta=500_000.0))
    yield "linear 4", dict(rope_parameters=dict(rope_type="linear", rope_theta=10_000.0, factor=4.0))
    yield "dynamic 2", dict(rope_parameters=dict(rope_type="dynamic", rope_theta=10_000.0, factor=2.0))
    yield "yarn 4", dict(rope_parameters=dict(rope_type="yarn", rope_theta=10_000.0, factor=4.0,
                                              original_max_position_embeddings=32))
    yield "llama3 8", dict(rope_parameters=dict(rope_type="llama3", rope_theta=500_000.0, factor=8.0,
                                                low_freq_factor=1.0, high_freq_factor=4.0,
                                                original_max_position_embeddings=32))
    yield "longrope", dict(rope_parameters=dict(rope_type="longrope", rope_theta=10_000.0,
                                                short_factor=[1.0 + 0.02 * i for i in range(8)],
                                                long_factor=[1.0 + 0.7 * i for i in range(8)],
                                                original_max_position_embeddings=32))


def reference_logits(model_dir: Path, ids: list, default_rope: bool = False) -> torch.Tensor:
    config = LlamaConfig.from_pretrained(model_dir)
    if default_rope:
        config.rope_parameters = dict(rope_type="default", rope_theta=config.rope_parameters["rope_theta"])
    model = LlamaForCausalLM.from_pretrained(model_dir, config=config, torch_dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.tensor([ids[:-1]])).logits[0].double()


def compare_logits(rep: Report, midtrain: str, name: str, model_dir: Path, ids: list) -> None:
    ref = reference_logits(model_dir, ids)
    try:
        got = json.loads(run([midtrain, "score", str(model_dir), "--tokens", " ".join(map(str, ids)), "--json", "--logits"]))
    except Exception as e:  # noqa: BLE001
        rep.check(False, f"logits {name}", repr(e))
        return
    mine = torch.tensor(got["logits"], dtype=torch.float64)
    diff = (mine - ref).abs().max().item() if mine.shape == ref.shape else math.inf
    rep.check(diff <= 1e-4, f"logits {name} ({len(ids) - 1} positions)", f"max abs diff {diff:.2e}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--midtrain", required=True)
    ap.add_argument("--checkpoint", help="a checkpoint midtrain wrote, loaded in transformers")
    args = ap.parse_args()
    midtrain = str(Path(args.midtrain).resolve())
    rep = Report()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="tf_parity_") as t:
        tmp = Path(t)
        check_rope(rep, midtrain, tmp)
        for name, extra in logits_cases():
            config = make_config(extra)
            model = LlamaForCausalLM(config)
            # Weights large enough for sharp attention (so the rotation matters), and random norm
            # gains, so a wrong norm cannot hide behind ones.
            with torch.no_grad():
                for n, p in model.named_parameters():
                    if n.endswith("norm.weight"):
                        p.copy_(1.0 + 0.1 * torch.randn_like(p))
                    else:
                        p.copy_(0.15 * torch.randn_like(p))
            d = tmp / name.replace(" ", "_")
            model.save_pretrained(d, safe_serialization=True)
            # 200 passes max_position_embeddings (128: dynamic NTK) and the original length (32).
            for length in (20, 200):
                ids = torch.randint(0, config.vocab_size, (length,)).tolist()
                compare_logits(rep, midtrain, name, d, ids)
            if "rope_parameters" in extra and extra["rope_parameters"]["rope_type"] != "default":
                # The check can see a RoPE mistake: the default rotation gives other logits.
                ids = torch.randint(0, config.vocab_size, (200,)).tolist()
                gap = (reference_logits(d, ids) - reference_logits(d, ids, default_rope=True)).abs().max().item()
                rep.check(gap > 1e-2, f"sensitivity {name}", f"default RoPE moves logits by {gap:.2e}")
        if args.checkpoint:
            cfg = json.loads((Path(args.checkpoint) / "config.json").read_text())
            ids = torch.randint(0, cfg["vocab_size"], (120,)).tolist()
            compare_logits(rep, midtrain, f"midtrain checkpoint {args.checkpoint}", Path(args.checkpoint), ids)
    print(f"\n{rep.passed} passed, {rep.failed} failed")
    return 1 if rep.failed else 0


if __name__ == "__main__":
    sys.exit(main())
