#!/usr/bin/env python3
"""`midtrain score --text` against transformers on a real checkpoint folder, as it ships.

    python scripts/parity/score_checkpoint.py --midtrain BIN CHECKPOINT... [--text T] [--max-delta 1e-4]

For each folder (single or sharded safetensors, f32/bf16/f16, tied under either name): the ids
midtrain encodes must equal `AutoTokenizer(text)["input_ids"]` (post-processor included, so the
BOS of models trained with one), and every next-token log-probability must be within --max-delta
of `AutoModelForCausalLM` in float32 with eager attention. Exits 1 otherwise. Needs torch and
transformers (`scripts/parity/setup_venv.sh transformers`).
"""

import argparse
import json
import subprocess
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

# Words and punctuation only: tinystories-656k has no digits, and out-of-vocabulary characters
# are where transformers 5 (its rebuilt LlamaTokenizer drops <unk>) and tokenizer.json differ.
TEXT = "Once upon a time there was a little cat. She liked to play in the sun, and her friend, Tom, came too!"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--midtrain", required=True)
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--text", default=TEXT)
    ap.add_argument("--max-delta", type=float, default=1e-4)
    args = ap.parse_args()
    failed = 0
    for folder in args.checkpoints:
        out = subprocess.run([args.midtrain, "score", folder, "--text", args.text, "--json"], check=True,
                             capture_output=True, text=True).stdout
        ours = json.loads(out)
        ids = AutoTokenizer.from_pretrained(folder)(args.text)["input_ids"]
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager").eval()
        with torch.no_grad():
            log_probs = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
        reference = [log_probs[i, ids[i + 1]].item() for i in range(len(ids) - 1)]
        same_ids = ids == ours["ids"]
        delta = max(abs(a - b) for a, b in zip(reference, ours["log_probs"])) if same_ids else float("inf")
        ok = same_ids and delta <= args.max_delta
        failed += not ok
        print(f"{'PASS' if ok else 'FAIL'} {folder}: {len(ids)} ids {'equal' if same_ids else 'DIFFER'} "
              f"(first {ids[:3]}), max |delta log p| {delta:.2e}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
