#!/usr/bin/env python3
"""`midtrain eval` against the same computation in transformers, on a real checkpoint.

    python scripts/parity/eval_tasks.py --midtrain BIN --model FOLDER [--tasks DIR] [--limit N]

Multiple choice (DIR/math_mc.jsonl, prompt "Question: {question}\\nAnswer:", each choice
scored after a space) and perplexity (DIR/heldout_wiki.jsonl). The reference is written here
from the task files, not from midtrain's output: lm-eval's split (the continuation's tokens
are those tokenizer(context + continuation) adds after tokenizer(context), trailing whitespace
of the context moved to the continuation), the tokens the tokenizer's post-processor puts
before a text as a prefix (an empty context starts from the EOS token), and
AutoModelForCausalLM in float32 with eager attention. Every item's log-probability per choice
must be within --max-delta, and every predicted choice equal. Exits 1 otherwise.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def read_jsonl(path, limit):
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return rows[:limit]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--midtrain", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--tasks", default="fixtures/tasks")
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--max-delta", type=float, default=1e-3)
    args = ap.parse_args()

    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32, attn_implementation="eager").eval()
    plain, with_special = tok("a", add_special_tokens=False)["input_ids"], tok("a")["input_ids"]
    at = next(i for i in range(len(with_special) - len(plain) + 1) if with_special[i:i + len(plain)] == plain)
    prefix = with_special[:at]
    empty = prefix or [model.config.eos_token_id]

    def encode(text):
        return prefix + tok(text, add_special_tokens=False)["input_ids"]

    def loglikelihood(context, continuation):
        kept = context.rstrip()
        continuation = context[len(kept):] + continuation
        if kept:
            ctx, whole = encode(kept), encode(kept + continuation)
        else:
            ctx = empty
            whole = empty + tok(continuation, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            lp = torch.log_softmax(model(torch.tensor([whole])).logits[0].double(), -1)
        return sum(lp[i - 1, whole[i]].item() for i in range(len(ctx), len(whole))), len(whole) - len(ctx)

    mc_path = os.path.join(args.tasks, "math_mc.jsonl")
    ppl_path = os.path.join(args.tasks, "heldout_wiki.jsonl")
    with tempfile.TemporaryDirectory() as tmp:
        # The same prompt as fixtures/tasks/math_mc.toml, spelled out here.
        spec = os.path.join(tmp, "math_mc.toml")
        with open(spec, "w") as f:
            f.write(f'data = {json.dumps(os.path.abspath(mc_path))}\ncontext = "Question: {{question}}\\nAnswer:"\n')
        samples = os.path.join(tmp, "samples.jsonl")
        cmd = [args.midtrain, "eval", args.model, "--tasks", spec, ppl_path, "--limit", str(args.limit),
               "--samples", samples, "--json", "--quiet"]
        ours = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        lines = [json.loads(line) for line in open(samples, encoding="utf-8")]
    by_task = {}
    for line in lines:
        by_task.setdefault(line["task"], []).append(line)

    failed, worst, correct = 0, 0.0, 0
    for item, got in zip(read_jsonl(mc_path, args.limit), by_task["math_mc"]):
        context = f"Question: {item['question']}\nAnswer:"
        ref = [loglikelihood(context, " " + c) for c in item["choices"]]
        lls = [r[0] for r in ref]
        pred = max(range(len(lls)), key=lambda i: (lls[i], -i))
        delta = max(abs(a - b) for a, b in zip(lls, got["log_probs"]))
        worst = max(worst, delta)
        same = pred == got["pred"] and [r[1] for r in ref] == got["tokens"]
        correct += pred == item["gold"]
        if delta > args.max_delta or not same:
            failed += 1
            print(f"FAIL math_mc row {got['row']}: delta {delta:.2e}, pred {got['pred']} vs {pred}, "
                  f"tokens {got['tokens']} vs {[r[1] for r in ref]}")
    n = len(by_task["math_mc"])
    acc_ok = abs(ours["tasks"]["math_mc"]["acc"] - correct / n) < 1e-12
    failed += not acc_ok
    print(f"{'PASS' if not failed else 'FAIL'} math_mc: {n} items, max |delta log p| per choice {worst:.2e}, "
          f"acc {ours['tasks']['math_mc']['acc']:.3f} (transformers {correct / n:.3f})")

    ppl_failed, worst, nll, tokens = 0, 0.0, 0.0, 0
    for item, got in zip(read_jsonl(ppl_path, args.limit), by_task["heldout_wiki"]):
        ll, count = loglikelihood("", item["text"])
        delta = abs(ll - got["log_probs"][0])
        worst = max(worst, delta / max(count, 1))
        nll -= ll
        tokens += count
        if count != got["tokens"][0] or delta > args.max_delta * max(count, 1):
            ppl_failed += 1
            print(f"FAIL heldout_wiki row {got['row']}: {count} vs {got['tokens'][0]} tokens, delta {delta:.2e}")
    loss = ours["tasks"]["heldout_wiki"]["loss"]
    ppl_failed += abs(loss - nll / tokens) > args.max_delta
    print(f"{'PASS' if not ppl_failed else 'FAIL'} heldout_wiki: {tokens} tokens, loss {loss:.5f} "
          f"(transformers {nll / tokens:.5f}), perplexity {math.exp(loss):.2f}, max |delta| per token {worst:.2e}")
    return 1 if failed or ppl_failed else 0


if __name__ == "__main__":
    sys.exit(main())
