"""Load midtrain's OLMo-core export (`olmo_data.yaml` of `mix build`) with ai2-olmo-core itself.

    .venv-olmo/bin/python scripts/parity/olmo_core_mixture.py out/mixture [--max-share-error 0.01]

`SourceMixtureList.from_yaml` reads the file as it is; `SourceMixtureDatasetConfig.build` with
the dtype and token count stated in its header must then count, per token file, exactly the
tokens `mixture.json`'s `exports` say the shard holds (so the dtype is read right), and realise each
domain's target ratio within --max-share-error. Exits 1 otherwise.
"""
import argparse
import json
import os
import re
import sys

import numpy as np
from olmo_core.data.source_mixture import SourceMixtureDatasetConfig, SourceMixtureList


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mixture", help="a `midtrain mix build` output folder")
    ap.add_argument("--max-share-error", type=float, default=0.01)
    args = ap.parse_args()
    path = os.path.join(args.mixture, "olmo_data.yaml")
    header = open(path).read()
    dtype = getattr(np, re.search(r"dtype (uint\d+)", header).group(1))
    requested = int(re.search(r"requested_tokens = (\d+)", header).group(1))
    mixture = json.load(open(os.path.join(args.mixture, "mixture.json")))
    # The token files the export names: the datasets' shards, or the subsets `mix build` wrote.
    ours = {s["prefix"] + ".bin": s["tokens"] for s in mixture["exports"]}

    sources = SourceMixtureList.from_yaml(path)
    config = SourceMixtureDatasetConfig(
        source_list=sources, requested_tokens=requested, global_batch_size=256, quiet=True, render_tables=False
    )
    built = config.build(npdtype=dtype, sequence_length=256)
    failures = 0
    counted = {p: config._count_tokens_for_file(p, dtype) for p in ours}
    for p, n in ours.items():
        if counted[p] != n:
            print(f"FAIL {p}: OLMo-core counts {counted[p]} tokens as {dtype.__name__}, mixture.json {n}")
            failures += 1
    total = sum(pt.tokens for s in built.sources for pt in s.path_tokens)
    targets = {s.source_name: s.target_ratio for s in sources.sources}
    print(f"{path}: {len(sources.sources)} sources, {len(ours)} token files read as {dtype.__name__}, "
          f"{total} of {requested} requested tokens selected")
    for s in built.sources:
        share = sum(pt.tokens for pt in s.path_tokens) / total
        error = abs(share - targets[s.name])
        ok = error <= args.max_share_error
        failures += not ok
        print(f"  {'ok  ' if ok else 'FAIL'} {s.name:<10} target {targets[s.name]:.4f} realised {share:.4f} (|Δ| {error:.4f})")
    print("olmo_core_mixture:", "passed" if failures == 0 else f"{failures} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
