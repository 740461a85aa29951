#!/usr/bin/env python3
"""Differential check: midtrain's near-dedup against datatrove 0.10.1's four MinHash stages.

Run with the parity venv (scripts/parity/setup_venv.sh datatrove):

    .venv-parity/bin/python scripts/parity/datatrove_minhash.py INPUT.parquet [INPUT...] \
        [--ngrams 5] [--buckets 14] [--rows 8] [--seed 1] [--precision 64] [--hash-fc xxhash] \
        [--text-key text] [--id-key id] [--removed-ids FILE] [--keep-workdir DIR] \
        [--midtrain target/release/midtrain] [--min-agreement 98]

What it does

1. datatrove side. In a temporary folder it runs, one after the other, four
   `LocalPipelineExecutor`s with workers=1 (so everything runs in this process):
       stage 1  ParquetReader(INPUT...) -> MinhashDedupSignature      tasks=1
       stage 2  MinhashDedupBuckets                                   tasks=--buckets (datatrove
                asserts tasks % num_buckets == 0, so one task per bucket; still one worker)
       stage 3  MinhashDedupCluster(save_cluster_id=True)             tasks=1
       stage 4  ParquetReader(INPUT...) -> MinhashDedupFilter(exclusion_writer=removed,
                load_cluster_ids=True) -> writer of the kept ids
   with MinhashConfig(n_grams, num_buckets, hashes_per_bucket, seed,
   hash_config=HashConfig(precision, hash_fc)) and the default TextNormConfig and English
   (spaCy "en") word tokenizer. The defaults (5, 14, 8, 1, 64-bit, xxhash) are what
   MinhashConfig(hash_config=HashConfig(precision=64)) gives in 0.10.1, i.e. the FineWeb recipe
   (see docs/dedup-reference.md). Several inputs are read as one task, in the order given
   (symlinked as input/000_<name>, input/001_<name>, ...), so document indices run on across files.

   It prints the removed count, the wall time of the 4 stages, MB/s of UTF-8 text, and the peak
   RSS of this process (ru_maxrss of RUSAGE_SELF; the datatrove run happens before this script
   reads the inputs itself; RUSAGE_CHILDREN is printed too: it is only datatrove's
   multiprocess Manager helper). Removed ids go to --removed-ids (one per line, sorted) and are
   always printed as a count; --print-ids prints them. torch is hidden from the import system
   during the datatrove run (thinc would import it, ~700 MiB; datatrove does not need it); pass
   --allow-torch to measure with it.

2. midtrain side (--midtrain BIN). Runs MIDTRAIN_CMD below (one list, easy to edit) under
   `/usr/bin/time -f %M` (peak RSS in KiB; falls back to RUSAGE_CHILDREN when /usr/bin/time is
   missing), then reads TMP/mt/removed/*.parquet (columns id, reason, cluster_id, kept_id) and
   prints: agreement of the removed/kept decision over all documents, Jaccard of the two removed
   sets, throughput ratio (midtrain MB/s / datatrove MB/s), peak RSS of both, the removed count by
   midtrain reason, and up to --show disagreements with their datatrove cluster. Exit status 1
   when agreement < --min-agreement (percent).

Diagnostics (not FineWeb): --tokenizer whitespace replaces spaCy with str.split() on the
simplified text, to measure how much the spaCy word splitter matters for agreement;
--dump-params FILE writes the 2 x (buckets*rows) permutation parameters a, b as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# midtrain command line: {inputs} expands to the input files, {out} to the output folder.
MIDTRAIN_CMD = ["{bin}", "dedup", "{inputs}", "--preset", "fineweb", "--out", "{out}"]


def kib(n_kib: int) -> str:
    return f"{n_kib / 1024:.1f} MiB"


class WhitespaceWords:
    """Diagnostic stand-in for the spaCy word tokenizer: str.split() on the simplified text."""

    def __new__(cls):
        from datatrove.utils.word_tokenizers import WordTokenizer

        class _WS(WordTokenizer):
            def word_tokenize(self, text):
                return text.split()

            def sent_tokenize(self, text):
                return [text]

            def span_tokenize(self, text):
                return [(0, len(text))]

        return _WS()


class _BlockTorch:
    """Meta-path finder that hides torch: thinc (spaCy) imports it when present, which costs ~700 MiB
    of RSS. torch is in .venv-parity only for the megatron group; datatrove does not need it."""

    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by datatrove_minhash.py)")
        return None


def run_datatrove(args, inputs: list[Path], work: Path) -> dict:
    if not args.allow_torch:
        sys.meta_path.insert(0, _BlockTorch())
    from loguru import logger

    logger.remove()
    if args.verbose:
        logger.add(sys.stderr, level="INFO")

    from datatrove.data import DocumentsPipeline
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.base import PipelineStep
    from datatrove.pipeline.dedup import MinhashDedupCluster, MinhashDedupFilter, MinhashDedupSignature
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupBuckets
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers.jsonl import JsonlWriter
    from datatrove.utils.hashing import HashConfig
    from datatrove.utils.typeshelper import Languages

    in_dir = work / "input"
    in_dir.mkdir(parents=True)
    for i, p in enumerate(inputs):
        os.symlink(p.resolve(), in_dir / f"{i:03d}_{p.name}")

    config = MinhashConfig(
        n_grams=args.ngrams,
        num_buckets=args.buckets,
        hashes_per_bucket=args.rows,
        seed=args.seed,
        hash_config=HashConfig(precision=args.precision, hash_fc=args.hash_fc),
    )
    language = WhitespaceWords() if args.tokenizer == "whitespace" else Languages.english

    def reader():
        return ParquetReader(
            str(in_dir), text_key=args.text_key, id_key=args.id_key, read_metadata=False, glob_pattern="*.parquet"
        )

    def id_adapter(self, doc):
        return {"id": doc.id, "cluster": doc.metadata.get("minhash_cluster_id", -1)}

    class KeptIds(PipelineStep):
        name = "kept ids"

        def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1):
            with open(work / f"kept_{rank:05d}.jsonl", "w") as f:
                for doc in data:
                    f.write(json.dumps(id_adapter(None, doc)) + "\n")
                    yield doc

    sig = work / "signatures"
    stages = [
        ("signatures", [reader(), MinhashDedupSignature(str(sig), config=config, language=language)], 1),
        ("buckets", [MinhashDedupBuckets(str(sig), str(work / "buckets"), config=config)], args.buckets),
        (
            "cluster",
            [MinhashDedupCluster(str(work / "buckets"), str(work / "remove_ids"), config=config, save_cluster_id=True)],
            1,
        ),
        (
            "filter",
            [
                reader(),
                MinhashDedupFilter(
                    str(work / "remove_ids"),
                    exclusion_writer=JsonlWriter(
                        str(work / "removed"), output_filename="${rank}.jsonl", compression=None, adapter=id_adapter
                    ),
                    load_cluster_ids=True,
                ),
                KeptIds(),
            ],
            1,
        ),
    ]
    times = {}
    # the executor adds its own stderr log sink per task; send it (and tqdm) to a file unless --verbose
    log = sys.stderr if args.verbose else open(work / "datatrove_stderr.log", "w")
    t_all = time.perf_counter()
    with contextlib.redirect_stderr(log):
        for name, pipeline, tasks in stages:
            t0 = time.perf_counter()
            LocalPipelineExecutor(
                pipeline=pipeline, tasks=tasks, workers=1, logging_dir=str(work / "logs" / name), skip_completed=False
            ).run()
            times[name] = time.perf_counter() - t0
    wall = time.perf_counter() - t_all
    if log is not sys.stderr:
        log.close()

    if args.dump_params:
        sig_step = stages[0][1][1]
        a, b = sig_step.parameters
        Path(args.dump_params).write_text(
            json.dumps({"seed": args.seed, "a": [int(x) for x in a[0]], "b": [int(x) for x in b[0]]}) + "\n"
        )

    removed = {}
    for f in sorted((work / "removed").glob("*.jsonl")):
        for line in f.read_text().splitlines():
            r = json.loads(line)
            removed[r["id"]] = r["cluster"]
    kept_cluster = {}
    for f in sorted(work.glob("kept_*.jsonl")):
        for line in f.read_text().splitlines():
            r = json.loads(line)
            if r["cluster"] != -1:
                kept_cluster[r["cluster"]] = r["id"]
    return {
        "removed": removed,  # id -> cluster
        "cluster_kept": kept_cluster,  # cluster -> kept id
        "wall": wall,
        "stage_times": times,
        "rss_self_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "rss_children_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    }


def read_ids_and_bytes(inputs: list[Path], text_key: str, id_key: str) -> tuple[list[str], int]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    ids, nbytes = [], 0
    for p in inputs:
        t = pq.read_table(p, columns=[id_key, text_key])
        ids.extend(str(x) for x in t.column(id_key).to_pylist())
        nbytes += pc.sum(pc.binary_length(t.column(text_key).cast("binary"))).as_py() or 0
    return ids, nbytes


def run_midtrain(binary: str, inputs: list[Path], out: Path) -> dict:
    cmd = []
    for part in MIDTRAIN_CMD:
        if part == "{inputs}":
            cmd.extend(str(p) for p in inputs)
        else:
            cmd.append(part.format(bin=binary, out=str(out)))
    timef = out.parent / "mt_time.txt"
    use_time = os.path.exists("/usr/bin/time")
    full = (["/usr/bin/time", "-f", "%M", "-o", str(timef)] if use_time else []) + cmd
    print("midtrain command:", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stdout[-4000:], file=sys.stderr)
        sys.exit(f"midtrain exited with status {proc.returncode}")
    if use_time:
        rss = int(timef.read_text().strip().splitlines()[-1])
    else:
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss

    import pyarrow.parquet as pq

    removed = {}
    files = sorted(glob.glob(str(out / "removed" / "*.parquet")))
    for f in files:
        t = pq.read_table(f).to_pylist()
        for r in t:
            removed[str(r["id"])] = r
    return {"removed": removed, "wall": wall, "rss_kib": rss, "files": files}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+", type=Path)
    ap.add_argument("--ngrams", type=int, default=5)
    ap.add_argument("--buckets", type=int, default=14)
    ap.add_argument("--rows", type=int, default=8, help="hashes per bucket")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--precision", type=int, choices=[32, 64], default=64)
    ap.add_argument("--hash-fc", choices=["xxhash", "sha1"], default="xxhash")
    ap.add_argument("--tokenizer", choices=["spacy", "whitespace"], default="spacy", help="diagnostic only")
    ap.add_argument("--text-key", default="text")
    ap.add_argument("--id-key", default="id")
    ap.add_argument("--removed-ids", type=Path, help="write datatrove's removed ids here, one per line")
    ap.add_argument("--clusters", type=Path, help="write datatrove's removed id -> kept id as JSONL here")
    ap.add_argument("--print-ids", action="store_true")
    ap.add_argument("--keep-workdir", type=Path, help="use this (new) folder instead of a temp dir and keep it")
    ap.add_argument("--dump-params", type=Path)
    ap.add_argument("--midtrain", metavar="BIN")
    ap.add_argument("--min-agreement", type=float, default=98.0)
    ap.add_argument("--show", type=int, default=10, help="disagreements to print")
    ap.add_argument("--verbose", action="store_true", help="show datatrove's logs")
    ap.add_argument(
        "--allow-torch", action="store_true", help="let spaCy/thinc import torch (adds ~700 MiB to datatrove's RSS)"
    )
    args = ap.parse_args()

    for p in args.inputs:
        if not p.is_file():
            sys.exit(f"no such file: {p}")
    if args.keep_workdir:
        args.keep_workdir.mkdir(parents=True, exist_ok=False)
        tmp = args.keep_workdir
    else:
        tmp = Path(tempfile.mkdtemp(prefix="dt_minhash_"))
    try:
        dt = run_datatrove(args, args.inputs, tmp / "dt")
        ids, nbytes = read_ids_and_bytes(args.inputs, args.text_key, args.id_key)
        if len(set(ids)) != len(ids):
            print(f"warning: {len(ids) - len(set(ids))} duplicate ids across inputs; comparisons use ids")
        mb = nbytes / 1e6
        dt_removed = set(dt["removed"])
        st = ", ".join(f"{k} {v:.1f}s" for k, v in dt["stage_times"].items())
        print(
            f"config: ngrams={args.ngrams} buckets={args.buckets} rows={args.rows} seed={args.seed} "
            f"precision={args.precision} hash_fc={args.hash_fc} tokenizer={args.tokenizer}"
        )
        print(f"documents: {len(ids)}  text: {mb:.2f} MB (UTF-8)")
        print(f"datatrove removed: {len(dt_removed)}  clusters: {len(dt['cluster_kept'])}")
        print(f"datatrove time: {dt['wall']:.2f}s ({st})  {mb / dt['wall']:.3f} MB/s")
        print(
            f"datatrove peak RSS: {kib(dt['rss_self_kib'])} (RUSAGE_SELF; "
            f"RUSAGE_CHILDREN {kib(dt['rss_children_kib'])})"
        )
        if args.removed_ids:
            args.removed_ids.write_text("".join(f"{i}\n" for i in sorted(dt_removed)))
        if args.clusters:
            with open(args.clusters, "w") as f:
                for i in sorted(dt_removed):
                    c = dt["removed"][i]
                    f.write(json.dumps({"id": i, "cluster": c, "kept_id": dt["cluster_kept"].get(c)}) + "\n")
        if args.print_ids:
            for i in sorted(dt_removed):
                print(i)

        if not args.midtrain:
            return 0
        mt = run_midtrain(args.midtrain, args.inputs, tmp / "mt")
        mt_removed = set(mt["removed"])
        all_ids = set(ids)
        unknown = mt_removed - all_ids
        if unknown:
            print(f"warning: midtrain removed {len(unknown)} ids not in the inputs, e.g. {sorted(unknown)[:3]}")
        differ = dt_removed ^ mt_removed
        agree = 100.0 * (len(all_ids) - len(differ & all_ids)) / max(len(all_ids), 1)
        union = dt_removed | mt_removed
        jacc = len(dt_removed & mt_removed) / len(union) if union else 1.0
        reasons = {}
        for r in mt["removed"].values():
            reasons[r.get("reason")] = reasons.get(r.get("reason"), 0) + 1
        print(f"midtrain removed: {len(mt_removed)}  by reason: {reasons}  ({len(mt['files'])} file(s))")
        print(f"midtrain time: {mt['wall']:.2f}s  {mb / mt['wall']:.3f} MB/s (process start + I/O included)")
        print(f"midtrain peak RSS: {kib(mt['rss_kib'])}")
        print(f"agreement (same removed/kept decision): {agree:.2f}% of {len(all_ids)} documents")
        print(f"Jaccard of removed sets: {jacc:.4f}  (both {len(dt_removed & mt_removed)}, "
              f"datatrove only {len(dt_removed - mt_removed)}, midtrain only {len(mt_removed - dt_removed)})")
        print(f"throughput ratio midtrain/datatrove: {dt['wall'] / mt['wall']:.2f}x")
        print(f"peak RSS datatrove / midtrain: {kib(dt['rss_self_kib'])} / {kib(mt['rss_kib'])}")
        for i in sorted(differ)[: args.show]:
            if i in dt_removed:
                c = dt["removed"][i]
                print(f"  only datatrove removed {i} (cluster {c}, datatrove kept {dt['cluster_kept'].get(c)})")
            else:
                r = mt["removed"][i]
                print(f"  only midtrain removed {i} (reason {r.get('reason')}, kept {r.get('kept_id')})")
        return 0 if agree >= args.min_agreement else 1
    finally:
        if not args.keep_workdir:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
