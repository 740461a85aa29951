#!/usr/bin/env python3
"""Evaluation tasks for `midtrain eval`, made from the real corpora (../shared/corpora).

- math_mc: the lettered multiple-choice problems of math.parquet (MathQA style:
  "question\nA. 30\nB. 38\n...\nAnswer: D") as a multiple_choice task, with a .toml giving
  the prompt ("Question: ...\nAnswer:", choices scored after a space, acc_norm by characters).
  Each item keeps its source document as `text`: hold the tasks out of training with
  `midtrain decontaminate --against math_mc.jsonl heldout_math.jsonl --columns text` (or a
  prepare config's [decontaminate], as trainer/configs/experiments/smollm2/prepare.toml does).
- heldout_DOMAIN: short-context held-out perplexity per domain, the last documents by id of
  each corpus file, cut at a paragraph or line boundary to at most --max-chars characters.

Deterministic: items are taken in id order; the same corpora give the same files.

  python scripts/tasks/build_tasks.py --corpora ../shared/corpora --out out/tasks
  python scripts/tasks/build_tasks.py --corpora ../shared/corpora --out fixtures/tasks --items 20 --max-chars 600
"""

import argparse
import json
import os
import re

import pyarrow.parquet as pq

CHOICE = re.compile(r"^([A-E])[.)]\s*(.*)$")
ANSWER = re.compile(r"^Answer:\s*\(?([A-E])\)?\s*$")
DOMAINS = ["web", "wiki", "books", "code", "math", "instruct"]


def lettered_problem(text):
    """(question, choices, gold index) of a 'question / A. .. / Answer: X' text, or None."""
    lines = text.strip().split("\n")
    if len(lines) < 4:
        return None
    answer = ANSWER.match(lines[-1].strip())
    if not answer:
        return None
    choices, letters = [], []
    i = len(lines) - 2
    while i >= 0:
        m = CHOICE.match(lines[i].strip())
        if not m:
            break
        letters.insert(0, m.group(1))
        choices.insert(0, m.group(2).strip())
        i -= 1
    question = "\n".join(lines[: i + 1]).strip()
    expected = [chr(ord("A") + k) for k in range(len(letters))]
    if len(choices) < 2 or letters != expected or not question or any(not c for c in choices):
        return None
    gold = ord(answer.group(1)) - ord("A")
    if gold >= len(choices) or len(set(choices)) != len(choices):
        return None
    return question, choices, gold


def cut(text, max_chars):
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    for sep in ("\n\n", "\n", ". "):
        at = head.rfind(sep)
        if at > max_chars // 2:
            return head[: at + (1 if sep == ". " else 0)].rstrip()
    return head


def write_jsonl(path, rows):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpora", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--items", type=int, default=500, help="items per task (math_mc, each heldout_*)")
    ap.add_argument("--max-chars", type=int, default=2000, help="characters per held-out text")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    rows = pq.read_table(os.path.join(args.corpora, "math.parquet"), columns=["id", "text", "source"]).to_pylist()
    rows.sort(key=lambda r: r["id"])
    items = []
    for r in rows:
        p = lettered_problem(r["text"])
        if p:
            question, choices, gold = p
            items.append({"id": r["id"], "question": question, "choices": choices, "gold": gold,
                          "text": r["text"], "source": r["source"]})
    found = len(items)
    items = items[: args.items]
    write_jsonl(os.path.join(args.out, "math_mc.jsonl"), items)
    with open(os.path.join(args.out, "math_mc.toml"), "w", encoding="utf-8") as f:
        f.write(
            "# Lettered multiple-choice math problems from the corpora's math.parquet (MathQA style),\n"
            "# built by scripts/tasks/build_tasks.py. Each choice is scored after \"Answer:\".\n"
            'data = "math_mc.jsonl"\n'
            'format = "multiple_choice"\n'
            'context = "Question: {question}\\nAnswer:"\n'
        )
    print(f"math_mc: {len(items)} of {found} lettered problems in {len(rows)} math documents")

    for domain in DOMAINS:
        path = os.path.join(args.corpora, f"{domain}.parquet")
        rows = pq.read_table(path, columns=["id", "text"]).to_pylist()
        rows.sort(key=lambda r: r["id"])
        held = [{"id": r["id"], "text": cut(r["text"], args.max_chars)} for r in rows[-args.items :]]
        write_jsonl(os.path.join(args.out, f"heldout_{domain}.jsonl"), held)
        print(f"heldout_{domain}: the last {len(held)} of {len(rows)} documents by id")


if __name__ == "__main__":
    main()
