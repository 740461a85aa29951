#!/usr/bin/env python3
"""Recall, false positives and throughput of `midtrain decontaminate` on real text.

    python scripts/bench/decontamination.py --midtrain target/release/midtrain \
        [--corpora ../shared/corpora] [--items 10000] [--inject 1000] [--seed 1] \
        [--min-verbatim 0.98] [--min-edited 0.90] [--max-fp 0.001]

The eval set: the first --items math problems of math.parquet (question = the text's first line,
answer = `final_answer`), written as jsonl. Clean documents: every web and wiki document. Injected
documents: --inject web documents, each with one eval question inserted at a paragraph boundary,
half verbatim and half lightly edited (case, punctuation and spacing changed; in questions of 26
words or more one word in the middle replaced). Recall is reported for questions under 13 words
and from 13 words separately. Throughput: the clean web text alone, one thread, whole command
(index build included).

Boilerplate (--boilerplate-items N): the N last eval items get a footer: one of the 13-word
phrases found in the most web documents (cookie notices, share buttons, licence lines), as a
benchmark whose passages were scraped with their page furniture would have. No question is
injected from those items, so every clean document they flag is a false positive; the run is
repeated with --boilerplate-documents 0 (no corpus sample) to show what the cut-off removes.
Exits 1 when a --min/--max target is missed. Needs pyarrow.
"""

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time

import pyarrow as pa
import pyarrow.parquet as pq


def edit(question: str, rng: random.Random) -> str:
    words = question.split()
    if len(words) >= 26:
        words[len(words) // 2] = "something"
    text = " ".join(words)
    text = text.upper() if rng.random() < 0.3 else text.lower()
    text = re.sub(r"[,.?!;:]", lambda m: rng.choice([" ", m.group(0) * 2, " " + m.group(0)]), text)
    return re.sub(r" ", lambda _: rng.choice([" ", "  ", "\n"]), text)


def insert(text: str, question: str, rng: random.Random) -> str:
    paragraphs = text.split("\n\n")
    at = rng.randrange(len(paragraphs) + 1)
    return "\n\n".join(paragraphs[:at] + [question] + paragraphs[at:])


def run(cmd, env=None):
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def removed_ids(out: str) -> dict:
    ids = {}
    folder = os.path.join(out, "removed")
    for name in sorted(os.listdir(folder)):
        t = pq.read_table(os.path.join(folder, name), columns=["id", "step", "reason"])
        for i, step, reason in zip(*(t.column(c).to_pylist() for c in ("id", "step", "reason"))):
            if step == "decontaminate":
                ids[i] = reason
    return ids


def common_phrases(texts, n, min_docs):
    """Raw n-word phrases in at least `min_docs` texts (compared lower-cased, letters and digits
    only), most documents first."""
    counts, raw = {}, {}
    for text in texts:
        words = text.split()
        seen = set()
        for k in range(len(words) - n + 1):
            key = " ".join(re.sub(r"[^\w]", "", w.lower()) for w in words[k : k + n])
            if key not in seen:
                seen.add(key)
                counts[key] = counts.get(key, 0) + 1
                raw.setdefault(key, " ".join(words[k : k + n]))
    common = sorted((c, k) for k, c in counts.items() if c >= min_docs)
    common.reverse()
    # One phrase per run of overlapping windows: skip those sharing 8+ words with a kept one.
    kept = []
    for _, k in common:
        words = set(k.split())
        if all(len(words & set(o.split())) < 8 for o in kept):
            kept.append(k)
    return [raw[k] for k in kept]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--midtrain", required=True)
    ap.add_argument("--corpora", default="../shared/corpora")
    ap.add_argument("--items", type=int, default=10000)
    ap.add_argument("--inject", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--min-verbatim", type=float)
    ap.add_argument("--min-edited", type=float)
    ap.add_argument("--max-fp", type=float)
    ap.add_argument("--boilerplate-items", type=int, default=200)
    args = ap.parse_args()
    rng = random.Random(args.seed)

    math = pq.read_table(os.path.join(args.corpora, "math.parquet"), columns=["id", "text", "final_answer"])
    items = [
        (i, t.split("\n", 1)[0], a)
        for i, t, a in zip(*(math.column(c).to_pylist() for c in ("id", "text", "final_answer")))
    ][: args.items]
    web = pq.read_table(os.path.join(args.corpora, "web.parquet"), columns=["id", "text"])
    wiki = pq.read_table(os.path.join(args.corpora, "wiki.parquet"), columns=["id", "text"])
    clean = list(zip(web.column("id").to_pylist(), web.column("text").to_pylist()))
    clean += list(zip(wiki.column("id").to_pylist(), wiki.column("text").to_pylist()))
    footers = common_phrases(web.column("text").to_pylist(), 13, 20)[:50]
    framed = args.boilerplate_items if footers else 0
    for n in range(len(items) - framed, len(items)):
        i, q, a = items[n]
        items[n] = (i, f"{q}\n{footers[n % len(footers)]}", a)
    hosts = rng.sample(clean[: web.num_rows], min(args.inject, web.num_rows))
    injected = []  # (id, text, kind, short)
    for n, (host_id, host_text) in enumerate(hosts):
        item_id, question, _ = rng.choice(items[: len(items) - framed])
        kind = "verbatim" if n % 2 == 0 else "edited"
        shown = question if kind == "verbatim" else edit(question, rng)
        short = len(question.split()) < 13
        injected.append((f"inj-{kind}-{n}-{item_id}", insert(host_text, shown, rng), kind, short))
    question_of = {i: q for i, q, _ in items}

    with tempfile.TemporaryDirectory() as tmp:
        evals = os.path.join(tmp, "math_eval.jsonl")
        with open(evals, "w") as f:
            for i, q, a in items:
                f.write(json.dumps({"id": i, "question": q, "answer": a}) + "\n")
        docs = clean + [(i, t) for i, t, _, _ in injected]
        corpus = os.path.join(tmp, "docs.parquet")
        pq.write_table(pa.table({"id": [d[0] for d in docs], "text": [d[1] for d in docs]}), corpus)
        out = os.path.join(tmp, "out")
        base = [args.midtrain, "decontaminate", "--against", evals, "--columns", "question", "-q", "--force"]
        seconds = run(base + [corpus, "--out", out])
        flagged = removed_ids(out)
        run(base + [corpus, "--out", out + "-nosample", "--boilerplate-documents", "0"])
        flagged_without_sample = removed_ids(out + "-nosample")
        web_only = os.path.join(tmp, "web.parquet")
        pq.write_table(web, web_only)
        env = dict(os.environ, RAYON_NUM_THREADS="1")
        one_thread = run(base + [web_only, "--out", os.path.join(tmp, "web-out")], env)

    short_items = sum(len(q.split()) < 13 for _, q, _ in items)
    print(f"eval set: {len(items)} math questions ({short_items} under 13 words); {len(clean)} clean documents "
          f"(web + wiki), {len(injected)} with an injected question; {seconds:.2f} s with 2 threads")
    results = {}
    for kind in ("verbatim", "edited"):
        for short in (True, False):
            group = [i for i, _, k, s in injected if k == kind and s == short]
            found = sum(i in flagged for i in group)
            label = f"{kind}, {'under 13 words' if short else '13 words or more'}"
            print(f"  recall {label:32s} {found}/{len(group)} = {found / max(1, len(group)):.3f}")
        group = [i for i, _, k, _ in injected if k == kind]
        results[kind] = sum(i in flagged for i in group) / max(1, len(group))
        print(f"  recall {kind + ', all':32s} {results[kind]:.3f}")
    for i, _, kind, _ in injected:
        if i not in flagged:
            print(f"    missed ({kind}): {question_of[i.split('-', 3)[3]]!r}")
    fp = [(i, flagged[i]) for i, _ in clean if i in flagged]
    fp_rate = len(fp) / len(clean)
    print(f"  {framed} items end with one of {len(footers)} common web phrases (each in 20+ web documents)")
    print(f"  clean documents flagged: {len(fp)} of {len(clean)} = {100 * fp_rate:.3f}%")
    fp_plain = sum(i in flagged_without_sample for i, _ in clean)
    print(f"  clean documents flagged without the boilerplate sample: {fp_plain} = {100 * fp_plain / len(clean):.3f}%")
    lost = sum(i in flagged and i not in flagged_without_sample for i, _, _, _ in injected)
    gained = sum(i in flagged_without_sample and i not in flagged for i, _, _, _ in injected)
    print(f"  injected documents found only with the sample: {lost}; only without it: {gained}")
    for i, reason in fp[:5]:
        print(f"    {i}: {reason[:160]}")
    megabytes = sum(len(t.encode()) for t in web.column("text").to_pylist()) / 1e6
    print(f"  throughput, clean web text, 1 thread: {megabytes:.1f} MB in {one_thread:.2f} s = {megabytes / one_thread:.1f} MB/s")
    failed = []
    if args.min_verbatim is not None and results["verbatim"] < args.min_verbatim:
        failed.append(f"verbatim recall {results['verbatim']:.3f} < {args.min_verbatim}")
    if args.min_edited is not None and results["edited"] < args.min_edited:
        failed.append(f"edited recall {results['edited']:.3f} < {args.min_edited}")
    if args.max_fp is not None and fp_rate > args.max_fp:
        failed.append(f"false positives {fp_rate:.4f} > {args.max_fp}")
    for f in failed:
        print("FAIL:", f)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
