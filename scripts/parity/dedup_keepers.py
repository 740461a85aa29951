#!/usr/bin/env python3
"""How like its keeper is each document a dedup run removed?

    python scripts/parity/dedup_keepers.py OUT_DIR --corpus FILE.parquet [...] [--threshold 0.5]
        [--ngram 3] [--min-share 0.99] [--numbers zero|keep] [--show 5]

Reads OUT_DIR/removed/*.parquet (`id`, `reason`, `kept_id`, `similarity`) and the texts of the
corpus files (`id`, `text`), and computes for every `near` removal the exact Jaccard similarity of
word n-gram sets of the removed text and its keeper's, after the normalisation midtrain's default
preset uses: datatrove's own `simplify_text` (numbers -> 0 unless --numbers keep) when datatrove
is installed, else an approximation of it. Prints the distribution, the share at or above
--threshold, the worst pairs, and exits 1 when that share is below --min-share. midtrain's own
value (the `similarity` column: the exact Jaccard of its shingle hashes when it verifies, the
MinHash estimate with --preset fineweb) is shown beside it, and the count where the two differ by
more than 1e-4 (different normalisation or shingling). Needs pyarrow (and datatrove for the exact
normalisation).
"""

import argparse
import glob
import os
import re
import sys
import unicodedata

import pyarrow.parquet as pq

NUMBER = re.compile(r"\d+(?:[.,،٫⎖⎗⎘]\d+)?")


try:
    from datatrove.utils.text import TextNormConfig, simplify_text
except ImportError:
    simplify_text = None


def normalise(text: str, numbers: str) -> list[str]:
    if simplify_text is not None:
        return simplify_text(text, TextNormConfig(norm_numbers=numbers == "zero")).split()
    text = text.lower()
    if numbers == "zero":
        text = NUMBER.sub("0", text)
    text = "".join(" " if unicodedata.category(c).startswith("P") else c for c in text)
    text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
    return text.split()


def grams(words: list[str], n: int) -> set:
    if len(words) < n:
        return {tuple(words)}
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / max(1, len(a | b))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--corpus", nargs="+", required=True)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--ngram", type=int, default=3)
    ap.add_argument("--numbers", choices=["zero", "keep"], default="zero")
    ap.add_argument("--min-share", type=float, default=None)
    ap.add_argument("--show", type=int, default=5)
    args = ap.parse_args()

    texts = {}
    for path in args.corpus:
        table = pq.read_table(path, columns=["id", "text"])
        texts.update(zip(table.column("id").to_pylist(), table.column("text").to_pylist()))
    pairs = []
    for path in sorted(glob.glob(os.path.join(args.out, "removed", "*.parquet"))):
        table = pq.read_table(path)
        columns = table.column_names
        rows = zip(
            table.column("id").to_pylist(),
            table.column("reason").to_pylist(),
            table.column("kept_id").to_pylist(),
            table.column("similarity").to_pylist() if "similarity" in columns else [None] * table.num_rows,
        )
        pairs += [(i, k, s) for i, r, k, s in rows if r == "near"]
    if not pairs:
        print("no near removals")
        return 0
    cache = {}

    def shingles(doc_id):
        if doc_id not in cache:
            cache[doc_id] = grams(normalise(texts[doc_id], args.numbers), args.ngram)
        return cache[doc_id]

    scored = sorted(((jaccard(shingles(i), shingles(k)), s, i, k) for i, k, s in pairs), key=lambda t: t[0])
    values = [j for j, _, _, _ in scored]
    above = sum(j >= args.threshold for j in values) / len(values)
    print(f"{len(values)} near removals in {args.out}")
    for cut in sorted({0.3, 0.4, args.threshold, 0.6, 0.8}):
        print(f"  exact Jaccard to the keeper < {cut:.2f}: {sum(j < cut for j in values):6d}")
    print(f"  median {values[len(values) // 2]:.3f}, share >= {args.threshold}: {above:.4f}")
    recorded = [(j, s) for j, s, _, _ in scored if s is not None and s == s]
    if recorded:
        reach = sum(s >= args.threshold for _, s in recorded)
        differ = sum(abs(j - s) > 1e-4 for j, s in recorded)
        print(f"  midtrain's similarity >= {args.threshold}: {reach} of {len(recorded)}; differs from this exact J: {differ}")
    for j, s, i, k in scored[: args.show]:
        print(f"  J={j:.3f} (midtrain {s}) {i} for {k}")
        print(f"      removed: {texts[i][:100]!r}")
        print(f"      keeper:  {texts[k][:100]!r}")
    if args.min_share is not None and above < args.min_share:
        print(f"FAIL: {above:.4f} of near removals reach {args.threshold}, below {args.min_share}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
