#!/usr/bin/env python3
"""Benchmark: datatrove 0.10.1's DocumentTokenizer (and raw HF `tokenizers`) vs `midtrain tokenize`.

Run with the parity venv (scripts/parity/setup_venv.sh datatrove tokenizers):

    .venv-parity/bin/python scripts/bench/datatrove_tokenize.py \
        --tokenizer fixtures/tokenizer.json --corpus /work/shared/corpora/web.parquet \
        [--eos '<|endoftext|>'] [--midtrain target/release/midtrain] [--repeat N]

Every measurement runs in its own process under `/usr/bin/time -f %M` (peak RSS), so imports and
thread pools never leak between them:

- datatrove pipeline: LocalPipelineExecutor(tasks=1, workers=1) running
  ParquetReader(read_metadata=False) -> DocumentTokenizer(tokenizer_name_or_path=<local
  tokenizer.json>, eos_token, shuffle_documents=False, batch_size). End to end like midtrain:
  read parquet, tokenize, write `.ds` + `.ds.index`. datatrove's `load_tokenizer` uses
  `Tokenizer.from_file` when the name is an existing file, so the local JSON loads directly.
- datatrove run() only: the same DocumentTokenizer's run() over Documents already in memory
  (tokenize + write, no parquet reading).
- HF encode_batch: `Tokenizer.from_file(JSON).encode_batch(texts, add_special_tokens=False)` in
  batches of --batch-size, once with 1 thread (RAYON_RS_NUM_THREADS=1, TOKENIZERS_PARALLELISM=false)
  and once with the default pool (all cores).
- midtrain (with --midtrain): MIDTRAIN_CMD below, wall clock and peak RSS.

Reported: seconds (the timed section inside the process, and the whole process wall clock incl.
Python start-up/imports), MB/s of UTF-8 text (1 MB = 1e6 bytes), tokens/s, peak RSS. With
--midtrain: midtrain/datatrove ratios, and whether midtrain's tokens (all shards' .bin
concatenated in manifest order) equal datatrove's `.ds` tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TOKENIZER = ROOT / "fixtures" / "tokenizer.json"
TIME = "/usr/bin/time"

# The midtrain invocation, one editable list. Placeholders: {bin} {tokenizer} {out}; {inputs}
# expands to the corpus files.
MIDTRAIN_CMD = ["{bin}", "tokenize", "{inputs}", "--tokenizer", "{tokenizer}", "--out", "{out}", "-q"]


# ---------------------------------------------------------------------------------------------
# workers (run in a child process: `datatrove_tokenize.py --worker MODE ...`)


def read_texts(corpora: list[str], column: str) -> list[str]:
    import pyarrow.parquet as pq

    texts: list[str] = []
    for c in corpora:
        texts.extend(pq.read_table(c, columns=[column]).column(column).to_pylist())
    return texts


def ds_tokens(folder: Path) -> int:
    """Tokens datatrove wrote: sum of the last end offset of every .ds.index."""
    import numpy as np

    n = 0
    for idx in sorted(folder.rglob("*.ds.index")):
        ends = np.fromfile(idx, dtype="<u8")
        n += int(ends[-1]) if len(ends) else 0
    return n


def linked_corpus_dir(corpora: list[str], where: Path) -> Path:
    """A folder of symlinks, named so that datatrove reads the files in the order given."""
    d = where / "input"
    d.mkdir(parents=True, exist_ok=True)
    for i, c in enumerate(corpora):
        link = d / f"{i:03d}_{Path(c).name}"
        if not link.exists():
            link.symlink_to(Path(c).resolve())
    return d


def worker_datatrove(args, mode: str) -> dict:
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    from datatrove.data import Document
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.tokens import DocumentTokenizer
    from datatrove.utils.logging import logger

    logger.remove()  # quiet loguru; the executor re-adds file sinks under logging_dir only
    work = Path(args.workdir)
    out = work / "datatrove_out"

    def make_tokenizer() -> DocumentTokenizer:
        return DocumentTokenizer(
            output_folder=str(out),
            tokenizer_name_or_path=args.tokenizer,  # a local file: load_tokenizer -> Tokenizer.from_file
            eos_token=args.eos,
            save_filename="bench",
            batch_size=args.batch_size,
            shuffle_documents=False,
            save_final_metadata=True,
        )

    if mode == "datatrove-pipeline":
        inp = linked_corpus_dir(args.corpus, work)
        ex = LocalPipelineExecutor(
            pipeline=[
                ParquetReader(str(inp), glob_pattern="*.parquet", text_key=args.text_column,
                              id_key=args.id_column, read_metadata=False),
                make_tokenizer(),
            ],
            tasks=1,
            workers=1,
            logging_dir=str(work / "datatrove_logs"),
            skip_completed=False,
        )
        t0 = time.perf_counter()
        ex.run()
        dt = time.perf_counter() - t0
    else:  # datatrove-run: tokenizer step only, documents in memory
        texts = read_texts(args.corpus, args.text_column)
        docs = [Document(text=t, id=str(i)) for i, t in enumerate(texts)]
        step = make_tokenizer()
        _ = step.tokenizer  # load outside the timed section, as the pipeline does before its loop
        t0 = time.perf_counter()
        res = step.run(iter(docs), rank=0, world_size=1)
        if res is not None and hasattr(res, "__iter__"):
            for _x in res:
                pass
        dt = time.perf_counter() - t0
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    return {"seconds": dt, "tokens": ds_tokens(out), "files": files}


def worker_hf(args) -> dict:
    from tokenizers import Tokenizer

    texts = read_texts(args.corpus, args.text_column)
    tok = Tokenizer.from_file(args.tokenizer)
    t0 = time.perf_counter()
    n = 0
    for i in range(0, len(texts), args.batch_size):
        for e in tok.encode_batch(texts[i:i + args.batch_size], add_special_tokens=False):
            n += len(e.ids)
    dt = time.perf_counter() - t0
    return {"seconds": dt, "tokens": n + len(texts)}  # + one EOS per document, as the others count


# ---------------------------------------------------------------------------------------------
# driver


def timed(cmd: list[str], env: dict | None = None, cwd: str | None = None) -> dict:
    """Run cmd under /usr/bin/time; returns rc, wall seconds, peak RSS (KiB), CPU seconds, stdout, stderr."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        full = [TIME, "-f", "%M %e %U %S", "-o", tf.name, *cmd] if os.path.exists(TIME) else cmd
        t0 = time.perf_counter()
        p = subprocess.run(full, capture_output=True, text=True, env=env, cwd=cwd)
        wall = time.perf_counter() - t0
        rss = cpu = None
        try:
            line = [l for l in Path(tf.name).read_text().splitlines() if l.strip()][-1].split()
            rss = int(line[0])
            cpu = float(line[2]) + float(line[3])
        except Exception:  # noqa: BLE001
            pass
    return {"rc": p.returncode, "wall": wall, "rss_kib": rss, "cpu": cpu, "stdout": p.stdout,
            "stderr": "\n".join(p.stderr.splitlines()[-15:])}


def run_worker(args, mode: str, env_extra: dict, work: Path) -> dict:
    env = {**os.environ, **env_extra}
    for k, v in list(env_extra.items()):
        if v is None:
            env.pop(k, None)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", mode, "--workdir", str(work),
           "--tokenizer", args.tokenizer, "--eos", args.eos, "--batch-size", str(args.batch_size),
           "--text-column", args.text_column, "--id-column", args.id_column, "--corpus", *args.corpus]
    r = timed(cmd, env=env)
    if r["rc"] != 0:
        raise RuntimeError(f"{mode} failed (exit {r['rc']}):\n{r['stderr']}")
    res = json.loads([l for l in r["stdout"].splitlines() if l.startswith("{")][-1])
    res.update(wall=r["wall"], rss_kib=r["rss_kib"], cpu=r["cpu"])
    return res


def best(results: list[dict]) -> dict:
    b = min(results, key=lambda r: r["seconds"])
    return {**b, "all_seconds": [round(r["seconds"], 3) for r in results],
            "rss_kib": max((r["rss_kib"] or 0) for r in results) or None}


def line(name: str, r: dict, nbytes: int) -> str:
    s = r["seconds"]
    rss = f"{r['rss_kib'] / 1024:.0f} MiB" if r.get("rss_kib") else "n/a"
    cpu = f"{100 * r['cpu'] / r['wall']:.0f}%" if r.get("cpu") is not None and r["wall"] else "n/a"
    reps = f"  runs {r['all_seconds']}" if len(r.get("all_seconds", [])) > 1 else ""
    return (f"{name:<34} {s:8.3f} s  {r['wall']:8.3f} s  {nbytes / s / 1e6:9.2f}  "
            f"{r['tokens'] / s / 1e6:9.3f}  {r['tokens']:>11}  {rss:>9}  {cpu:>5}{reps}")


def midtrain_tokens(out: Path):
    import numpy as np

    m = json.loads((out / "manifest.json").read_text())
    dt = {"uint16": "<u2", "int32": "<i4", "uint32": "<u4"}.get(m.get("dtype"), "<u2")
    parts = [np.fromfile(out / (sh["prefix"] + ".bin"), dtype=dt) for sh in m["shards"]]
    return (np.concatenate(parts) if parts else np.zeros(0, dt)), m


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", default=str(DEFAULT_TOKENIZER))
    ap.add_argument("--corpus", nargs="+", required=True)
    ap.add_argument("--eos", default="<|endoftext|>")
    ap.add_argument("--midtrain", help="also time `midtrain tokenize` with this binary")
    ap.add_argument("--midtrain-arg", action="append", default=[],
                    help="extra argument appended to the midtrain command (repeatable)")
    ap.add_argument("--batch-size", type=int, default=10000, help="DocumentTokenizer / encode_batch batch")
    ap.add_argument("--repeat", type=int, default=1, help="runs per measurement; the fastest is reported")
    ap.add_argument("--text-column", default="text")
    ap.add_argument("--id-column", default="id")
    ap.add_argument("--skip", nargs="*", default=[],
                    choices=["datatrove-pipeline", "datatrove-run", "hf-1", "hf-default"])
    ap.add_argument("--keep", help="keep outputs in this folder")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.tokenizer = str(Path(args.tokenizer).resolve())
    args.corpus = [str(Path(c).resolve()) for c in args.corpus]

    if args.worker:
        res = worker_hf(args) if args.worker == "hf" else worker_datatrove(args, args.worker)
        print(json.dumps(res))
        return 0

    texts = read_texts(args.corpus, args.text_column)  # also warms the page cache
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    ndocs = len(texts)
    del texts
    in_bytes = sum(Path(c).stat().st_size for c in args.corpus)
    print(f"corpus: {', '.join(args.corpus)}")
    print(f"  {ndocs} docs, {nbytes} bytes UTF-8 text ({nbytes / 1e6:.2f} MB), {in_bytes} parquet bytes")
    print(f"tokenizer: {args.tokenizer}; eos {args.eos!r}; batch {args.batch_size}; cpus {os.cpu_count()}; "
          f"repeat {args.repeat}")
    from importlib.metadata import version

    print(f"datatrove {version('datatrove')}, tokenizers {version('tokenizers')}, "
          f"python {sys.version.split()[0]}; load average {os.getloadavg()[0]:.2f}")

    ctx = tempfile.TemporaryDirectory(prefix="bench_tok_") if not args.keep else None
    base = Path(args.keep) if args.keep else Path(ctx.name)
    base.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    try:
        plan = [
            ("datatrove-pipeline", "datatrove-pipeline", {}, "datatrove pipeline (read+tok+write)"),
            ("datatrove-run", "datatrove-run", {}, "datatrove DocumentTokenizer.run()"),
            ("hf-1", "hf", {"RAYON_RS_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"},
             "HF encode_batch, 1 thread"),
            ("hf-default", "hf", {"RAYON_RS_NUM_THREADS": None, "TOKENIZERS_PARALLELISM": None},
             "HF encode_batch, default threads"),
        ]
        labels = {}
        for key, mode, env, label in plan:
            if key in args.skip:
                continue
            runs = []
            for rep in range(args.repeat):
                work = base / f"{key}_{rep}"
                if work.exists():
                    subprocess.run(["rm", "-rf", str(work)], check=True)
                work.mkdir(parents=True)
                runs.append(run_worker(args, mode, env, work))
            results[key] = best(runs)
            labels[key] = label
            print(f"  done: {label}: {results[key]['seconds']:.3f} s", flush=True)

        mt_out = None
        if args.midtrain:
            runs = []
            for rep in range(args.repeat):
                mt_out = base / f"midtrain_{rep}"
                if mt_out.exists():
                    subprocess.run(["rm", "-rf", str(mt_out)], check=True)
                cmd: list[str] = []
                for a in MIDTRAIN_CMD:
                    if a == "{inputs}":
                        cmd.extend(args.corpus)
                    else:
                        cmd.append(a.format(bin=str(Path(args.midtrain).resolve()), tokenizer=args.tokenizer,
                                            out=str(mt_out)))
                cmd.extend(args.midtrain_arg)
                if rep == 0:
                    print("$ " + " ".join(cmd), flush=True)
                r = timed(cmd, env={**os.environ, "NO_COLOR": "1"})
                if r["rc"] != 0:
                    print(f"midtrain failed (exit {r['rc']}):\n{r['stderr']}")
                    return 1
                m = json.loads((mt_out / "manifest.json").read_text())
                runs.append({"seconds": r["wall"], "wall": r["wall"], "rss_kib": r["rss_kib"], "cpu": r["cpu"],
                             "tokens": sum(int(sh["tokens"]) for sh in m["shards"])})
            results["midtrain"] = best(runs)
            labels["midtrain"] = "midtrain tokenize (process)"

        print()
        print(f"{'measurement':<34} {'timed':>10}  {'process':>10}  {'MB/s text':>9}  {'Mtok/s':>9}  "
              f"{'tokens':>11}  {'peak RSS':>9}  {'CPU':>5}")
        for key, r in results.items():
            print(line(labels[key], r, nbytes))
        print("(MB/s and Mtok/s use the timed column; tokens include one EOS per document; the process "
              "column is the whole child process incl. Python start-up and imports; CPU = (user+sys) / process "
              "wall, 100% = one core busy)")

        dp = results.get("datatrove-pipeline")
        mt = results.get("midtrain")
        if mt and dp:
            print()
            print(f"midtrain/datatrove throughput ratio (datatrove pipeline timed / midtrain wall): "
                  f"{dp['seconds'] / mt['seconds']:.2f}x")
            print(f"midtrain/datatrove throughput ratio (process wall vs process wall):           "
                  f"{dp['wall'] / mt['wall']:.2f}x")
            if dp.get("rss_kib") and mt.get("rss_kib"):
                print(f"midtrain/datatrove peak RSS ratio: {mt['rss_kib'] / dp['rss_kib']:.2f} "
                      f"({mt['rss_kib'] / 1024:.0f} MiB vs {dp['rss_kib'] / 1024:.0f} MiB)")
            # token equality: midtrain .bin (manifest order) vs datatrove .ds (reader order)
            import numpy as np

            try:
                mtok, m = midtrain_tokens(mt_out)
                dfolder = base / "datatrove-pipeline_0" / "datatrove_out"
                dss = sorted(dfolder.rglob("*.ds"))
                dtok = np.concatenate([np.fromfile(p, dtype="<u2" if m.get("vocab_size", 0) < 65536 else "<u4")
                                       for p in dss])
                same = len(mtok) == len(dtok) and bool(np.array_equal(mtok.astype(np.int64), dtok.astype(np.int64)))
                detail = ""
                if not same:
                    n = min(len(mtok), len(dtok))
                    neq = np.nonzero(mtok[:n].astype(np.int64) != dtok[:n].astype(np.int64))[0]
                    detail = (f" (lengths {len(mtok)} vs {len(dtok)}; first differing token index "
                              f"{int(neq[0]) if len(neq) else n})")
                print(f"midtrain tokens == datatrove tokens: {same}{detail}")
            except Exception as e:  # noqa: BLE001
                print(f"midtrain tokens == datatrove tokens: not compared ({e!r})")
    finally:
        if ctx is not None:
            ctx.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
