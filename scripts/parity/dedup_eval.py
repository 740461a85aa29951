#!/usr/bin/env python3
"""Score a dedup run against the labelled near-duplicate set web_dupes.parquet.

    python scripts/parity/dedup_eval.py OUT_DIR [--dupes /work/shared/corpora/web_dupes.parquet]
    python scripts/parity/dedup_eval.py --removed-ids FILE [--dupes ...]

Input: either a midtrain dedup output folder (OUT_DIR/removed/*.parquet with columns `id`,
`reason`, optionally `kept_id`, `cluster_id`), or --removed-ids FILE: one removed id per line, or
JSONL objects with `id` and optionally `kept_id` (what datatrove_minhash.py writes with
--removed-ids / --clusters). Needs only pyarrow.

Labels (web_dupes.parquet): every row has a `dup_group`; rows sharing it are copies of one
another. `kind` is exact (original + byte-identical copies), near (original + edited variants) or
unique (a group of one). Ids in the run that are not in web_dupes are ignored (with a warning).

Definitions (all counts are documents; a "group" is a dup_group; "kept" = not removed):

  redundant copies   sum over groups of (group size - 1): the most a perfect dedup can remove
                     without emptying a group. 333 exact + 1075 near = 1408; unique groups add 0.
  true positive (TP) a removed document with at least one other member of its dup_group kept.
  false positive     a removed document that is not a TP: a removed `unique` document, or a
                     member of a group that was emptied (every member removed; then all of that
                     group's removed members count as FP, since nothing of that content survives).
  precision          TP / removed. Per kind: over documents removed from groups of that kind;
                     "overall" also counts removed unique documents.
  recall             sum over groups of min(removed members, size - 1) / redundant copies. It
                     does not matter which member is kept (the original or a variant).
  groups emptied     groups where every member was removed. Must be 0.
  strict precision   when the run says which document each removed one was merged into
                     (`kept_id`): removed documents whose kept_id is in the same dup_group /
                     removed documents with a kept_id. This catches a copy that was merged into the
                     wrong group even though its own group kept a member.

Extra diagnostics: per `variant` and per jaccard_to_base band, the share of non-original rows
that were "caught": removed themselves, or kept while the group's original was removed (with
kept_id available: the original's kept_id must be this row). The caught share of a band can be
compared with the LSH curve P(candidate | J) = 1 - (1 - J^8)^14 (FineWeb 14x8), printed beside it;
for the variants J is measured on lower-cased whitespace words, not datatrove's normalised spaCy
words, so the comparison is approximate.

Datatrove 0.10.1 with FineWeb's settings (scripts/parity/datatrove_minhash.py defaults) gives on
web_dupes: 1211 removed, precision 1.00, recall 0.86 (exact 1.00, near 0.82), 0 groups emptied.

Exit status 1 when a group was emptied or --min-precision / --min-recall is not met.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow.parquet as pq

DEFAULT_DUPES = "/work/shared/corpora/web_dupes.parquet"


def load_run(out_dir: Path | None, removed_ids: Path | None) -> dict[str, dict]:
    """id -> {reason, kept_id} for every removed document."""
    removed: dict[str, dict] = {}
    if removed_ids:
        for line in removed_ids.read_text().splitlines():
            line = line.strip()
            if not line:
                continue
            if line.startswith("{"):
                r = json.loads(line)
                removed[str(r["id"])] = {"reason": r.get("reason"), "kept_id": r.get("kept_id")}
            else:
                removed[line] = {"reason": None, "kept_id": None}
        return removed
    files = sorted(glob.glob(str(out_dir / "removed" / "*.parquet")))
    if not files:
        sys.exit(f"no {out_dir}/removed/*.parquet")
    for f in files:
        for r in pq.read_table(f).to_pylist():
            kept = r.get("kept_id")
            removed[str(r["id"])] = {"reason": r.get("reason"), "kept_id": None if kept is None else str(kept)}
    return removed


def lsh_p(j: float, rows: int = 8, bands: int = 14) -> float:
    return 1 - (1 - j**rows) ** bands


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", nargs="?", type=Path, help="dedup output folder with removed/*.parquet")
    ap.add_argument("--removed-ids", type=Path, help="file of removed ids (plain or JSONL)")
    ap.add_argument("--dupes", type=Path, default=Path(DEFAULT_DUPES))
    ap.add_argument("--min-precision", type=float, default=0.0)
    ap.add_argument("--min-recall", type=float, default=0.0)
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args()
    if (args.out_dir is None) == (args.removed_ids is None):
        ap.error("give exactly one of OUT_DIR or --removed-ids")

    rows = pq.read_table(
        args.dupes, columns=["id", "dup_group", "kind", "variant", "is_original", "jaccard_to_base"]
    ).to_pylist()
    by_id = {r["id"]: r for r in rows}
    removed = load_run(args.out_dir, args.removed_ids)
    unknown = [i for i in removed if i not in by_id]
    if unknown:
        print(f"warning: {len(unknown)} removed ids are not in {args.dupes.name} (ignored), e.g. {unknown[:3]}")
    removed = {i: v for i, v in removed.items() if i in by_id}
    have_kept = any(v["kept_id"] is not None for v in removed.values())

    members: dict[int, list[dict]] = defaultdict(list)
    for r in rows:
        members[r["dup_group"]].append(r)
    group_kind = {g: m[0]["kind"] for g, m in members.items()}

    stats = {k: Counter() for k in ("exact", "near", "dups", "unique", "overall")}
    for g, m in members.items():
        kind = group_kind[g]
        n = len(m)
        n_rem = sum(r["id"] in removed for r in m)
        keys = [kind, "overall"] + (["dups"] if kind != "unique" else [])
        for k in keys:
            s = stats[k]
            s["groups"] += 1
            s["docs"] += n
            s["redundant"] += n - 1
            s["removed"] += n_rem
            s["redundant_removed"] += min(n_rem, n - 1)
            if n_rem == n:
                s["emptied"] += 1
            else:
                s["tp"] += n_rem

    # strict precision: removed doc's kept_id in the same group
    strict = Counter()
    wrong_merge = []
    if have_kept:
        for i, v in removed.items():
            if v["kept_id"] is None:
                continue
            strict["with_kept"] += 1
            kr = by_id.get(v["kept_id"])
            if kr is not None and kr["dup_group"] == by_id[i]["dup_group"]:
                strict["same"] += 1
            else:
                wrong_merge.append((i, v["kept_id"]))

    def fmt(x, d):
        return f"{x / d:.4f}" if d else "  n/a "

    print(f"labels: {args.dupes}  ({len(rows)} docs, {len(members)} groups)")
    print(f"removed (in labels): {len(removed)}")
    print()
    print(f"{'kind':<8} {'groups':>6} {'docs':>5} {'copies':>6} {'removed':>7} {'TP':>5} {'FP':>4} "
          f"{'precision':>9} {'recall':>7} {'emptied':>7}")
    for k, label in (("exact", "exact"), ("near", "near"), ("dups", "dup all"), ("unique", "unique"),
                     ("overall", "overall")):
        s = stats[k]
        fp = s["removed"] - s["tp"]
        rec = fmt(s["redundant_removed"], s["redundant"]) if k != "unique" else "   -   "
        print(f"{label:<8} {s['groups']:>6} {s['docs']:>5} {s['redundant']:>6} {s['removed']:>7} {s['tp']:>5} "
              f"{fp:>4} {fmt(s['tp'], s['removed']):>9} {rec:>7} {s['emptied'] if k != 'unique' else '-':>7}")
    n_emptied = stats["dups"]["emptied"]
    uniq_removed = [i for i in removed if by_id[i]["kind"] == "unique"]
    print()
    print(f"groups emptied (dup groups with every member removed): {n_emptied}  (must be 0)")
    print(f"unique docs removed: {len(uniq_removed)} of {stats['unique']['docs']} "
          f"(boilerplate_only_unique: {sum(by_id[i]['variant'] == 'boilerplate_only_unique' for i in uniq_removed)})")
    if have_kept:
        print(f"strict precision (kept_id in same group): {fmt(strict['same'], strict['with_kept'])} "
              f"of {strict['with_kept']} with kept_id; wrong-group merges: {len(wrong_merge)}")
        for i, k in wrong_merge[:5]:
            print(f"  {i} (group {by_id[i]['dup_group']}) -> {k} "
                  f"(group {by_id[k]['dup_group'] if k in by_id else '?'})")
    reasons = Counter(v["reason"] for v in removed.values() if v["reason"] is not None)
    if reasons:
        in_groups = Counter(v["reason"] for i, v in removed.items() if by_id[i]["kind"] != "unique")
        print("by reason: " + ", ".join(
            f"{r}: {c} removed, {in_groups[r]} in dup groups" for r, c in sorted(reasons.items())))

    # per-variant / per-band detection of non-original rows
    original_of = {g: next((r for r in m if r["is_original"]), None) for g, m in members.items()}

    def caught(r) -> bool:
        if r["id"] in removed:
            return True
        o = original_of[r["dup_group"]]
        if o is None or o["id"] not in removed:
            return False
        k = removed[o["id"]]["kept_id"]
        return k is None or k == r["id"]

    per_var = defaultdict(Counter)
    bands = defaultdict(Counter)
    edges = [0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0001]
    for r in rows:
        if r["is_original"] or r["kind"] == "unique":
            continue
        c = caught(r)
        per_var[(r["kind"], r["variant"])]["n"] += 1
        per_var[(r["kind"], r["variant"])]["caught"] += c
        if r["kind"] == "near":
            j = r["jaccard_to_base"]
            for lo, hi in zip(edges, edges[1:]):
                if lo <= j < hi:
                    bands[(lo, hi)]["n"] += 1
                    bands[(lo, hi)]["caught"] += c
                    bands[(lo, hi)]["p"] += lsh_p(j)
    print()
    print("non-original rows caught, by variant:")
    for (kind, var), c in sorted(per_var.items()):
        print(f"  {kind:<5} {var:<28} {c['caught']:>4}/{c['n']:<4} {c['caught'] / c['n']:.3f}")
    print("near rows caught, by jaccard_to_base (word 5-gram, lower-cased, whitespace words) "
          "vs mean 1-(1-J^8)^14:")
    for (lo, hi), c in sorted(bands.items()):
        print(f"  [{lo:.1f}, {min(hi, 1.0):.1f}{']' if hi > 1 else ')'} {c['caught']:>4}/{c['n']:<4} "
              f"{c['caught'] / c['n']:.3f}   LSH {c['p'] / c['n']:.3f}")

    if args.json:
        out = {k: dict(v) for k, v in stats.items()}
        out["groups_emptied"] = n_emptied
        out["strict"] = dict(strict)
        args.json.write_text(json.dumps(out, indent=1) + "\n")

    ok = n_emptied == 0
    ov = stats["overall"]
    prec = ov["tp"] / ov["removed"] if ov["removed"] else 1.0
    rec = ov["redundant_removed"] / ov["redundant"] if ov["redundant"] else 1.0
    ok &= prec >= args.min_precision and rec >= args.min_recall
    print()
    def r2(k):
        s = stats[k]
        return f"{s['redundant_removed'] / s['redundant']:.2f}" if s["redundant"] else "n/a"

    print(f"SUMMARY precision {prec:.2f} recall {rec:.2f} (exact {r2('exact')}, near {r2('near')}) "
          f"emptied {n_emptied} removed {ov['removed']}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
