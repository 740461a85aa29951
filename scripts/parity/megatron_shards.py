#!/usr/bin/env python3
"""Differential check: midtrain's token shards against Megatron-LM's own reader and writer.

Run with the parity venv (scripts/parity/setup_venv.sh megatron):

    .venv-parity/bin/python scripts/parity/megatron_shards.py \
        --midtrain target/debug/midtrain --fixtures fixtures/shards

Checks (one PASS/FAIL line each; exit status 1 when any fails):

a. every PREFIX.idx under the fixtures dir (written by midtrain):
   - megatron's IndexedDataset(PREFIX) reads it;
   - its documents equal `midtrain inspect PREFIX --dump N` (N = number of documents);
   - `midtrain inspect PREFIX --json` agrees on documents / tokens / dtype;
   - rebuilding the same documents with megatron's IndexedDatasetBuilder (same dtype as the
     reader reports) gives .bin and .idx files byte-identical to midtrain's.
b. megatron writes shards that midtrain must read: ~200 seeded random documents, once as
   uint16 (vocab 50000) and once as int32 (vocab 200000); `midtrain inspect --json` must report
   the document count, token count and dtype, and `--dump N` the same token lists.

`--self-test` runs everything that needs no midtrain binary: (b)'s writer side plus (a)'s
read / rebuild / byte-compare logic on shards megatron writes itself, and an independent parse
of the .idx layout in docs/megatron-format.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import struct
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")  # megatron.core warns about missing Apex / Transformer Engine
logging.disable(logging.WARNING)

import numpy  # noqa: E402
import torch  # noqa: E402
from megatron.core.datasets.indexed_dataset import (  # noqa: E402
    DType,
    IndexedDataset,
    IndexedDatasetBuilder,
)

ROOT = Path(__file__).resolve().parents[2]
SEED = 20240611
N_DOCS = 200
MAX_LEN = 600
CASES_B = [("uint16", numpy.uint16, 50_000), ("int32", numpy.int32, 200_000)]
INSPECT_TIMEOUT_S = 120


from parity_report import Report  # noqa: E402  (sibling module: scripts/parity/)


# ---------------------------------------------------------------------------------------------
# megatron side


def read_megatron(prefix: str) -> tuple[list[list[int]], type, IndexedDataset]:
    """Documents of a shard as read by megatron (the sequences of a document concatenated)."""
    ds = IndexedDataset(prefix)
    doc_idx = [int(x) for x in ds.document_indices]
    docs = []
    for d in range(len(doc_idx) - 1):
        toks: list[int] = []
        for s in range(doc_idx[d], doc_idx[d + 1]):
            toks.extend(int(t) for t in ds[s])
        docs.append(toks)
    return docs, ds.index.dtype, ds


def write_megatron(prefix: str, docs: list[list[int]], dtype: type) -> None:
    """One sequence per document: add_item(tensor), end_document(), finalize(idx)."""
    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=dtype)
    for doc in docs:
        builder.add_item(torch.tensor(doc, dtype=torch.int64))
        builder.end_document()
    builder.finalize(prefix + ".idx")


def rebuild_megatron(src: IndexedDataset, prefix: str) -> None:
    """Rebuild a shard sequence by sequence, keeping its document boundaries and dtype."""
    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=src.index.dtype)
    doc_idx = [int(x) for x in src.document_indices]
    for d in range(len(doc_idx) - 1):
        for s in range(doc_idx[d], doc_idx[d + 1]):
            builder.add_item(torch.from_numpy(numpy.array(src[s], dtype=numpy.int64)))
        builder.end_document()
    builder.finalize(prefix + ".idx")


def parse_idx_spec(path: str) -> dict:
    """Parse an .idx file by the layout in docs/megatron-format.md (independent of megatron)."""
    raw = Path(path).read_bytes()
    if raw[:9] != b"MMIDIDX\x00\x00":
        raise ValueError("bad magic")
    (version,) = struct.unpack_from("<Q", raw, 9)
    code = raw[17]
    s, d = struct.unpack_from("<QQ", raw, 18)
    off = 34
    lengths = numpy.frombuffer(raw, numpy.int32, s, off)
    pointers = numpy.frombuffer(raw, numpy.int64, s, off + 4 * s)
    doc_idx = numpy.frombuffer(raw, numpy.int64, d, off + 12 * s)
    end = off + 12 * s + 8 * d
    return dict(version=version, code=code, s=s, d=d, lengths=lengths, pointers=pointers,
                doc_idx=doc_idx, trailing=len(raw) - end)


def first_diff(a: bytes, b: bytes) -> str:
    if len(a) != len(b):
        n = min(len(a), len(b))
        i = next((k for k in range(n) if a[k] != b[k]), n)
        return f"sizes {len(a)} vs {len(b)}, first difference at byte {i}"
    i = next(k for k in range(len(a)) if a[k] != b[k])
    return f"first difference at byte {i}: {a[i]:#04x} vs {b[i]:#04x}"


def compare_files(rep: Report, name: str, ours: str, theirs: str) -> None:
    a, b = Path(ours).read_bytes(), Path(theirs).read_bytes()
    rep.check(a == b, name, f"{len(a)} bytes identical" if a == b else first_diff(a, b))


def compare_docs(rep: Report, name: str, got: list[list[int]], want: list[list[int]]) -> None:
    if got == want:
        rep.check(True, name, f"{len(want)} docs, {sum(map(len, want))} tokens")
        return
    if len(got) != len(want):
        rep.check(False, name, f"{len(got)} documents vs {len(want)} expected")
        return
    i = next(k for k in range(len(want)) if got[k] != want[k])
    g, w = got[i], want[i]
    j = next((k for k in range(min(len(g), len(w))) if g[k] != w[k]), min(len(g), len(w)))
    rep.check(False, name, f"document {i} differs (lengths {len(g)} vs {len(w)}): first at token "
                           f"{j}: {g[j:j + 4]} vs {w[j:j + 4]} expected")


def random_docs(rng: numpy.random.Generator, vocab: int) -> list[list[int]]:
    lengths = rng.integers(1, MAX_LEN + 1, size=N_DOCS)
    return [rng.integers(0, vocab, size=int(n)).tolist() for n in lengths]


# ---------------------------------------------------------------------------------------------
# midtrain side


def run_midtrain(midtrain: str, args: list[str]) -> tuple[int, str, str]:
    p = subprocess.run([midtrain, *args], capture_output=True, text=True,
                       timeout=INSPECT_TIMEOUT_S, env={**os.environ, "NO_COLOR": "1"})
    err_lines = [l.strip() for l in p.stderr.splitlines() if l.strip()]
    return p.returncode, p.stdout, " | ".join(err_lines[-2:])[-400:]


def midtrain_dump(midtrain: str, prefix: str, n: int) -> list[list[int]]:
    rc, out, err = run_midtrain(midtrain, ["inspect", prefix, "--dump", str(n)])
    if rc != 0:
        raise RuntimeError(f"exit {rc}: {err}")
    docs = []
    for k, line in enumerate(l for l in out.splitlines() if l.strip()):
        obj = json.loads(line)
        if obj.get("doc") != k:
            raise RuntimeError(f"line {k} has doc={obj.get('doc')!r}")
        docs.append([int(t) for t in obj["tokens"]])
    return docs


def midtrain_summary(midtrain: str, prefix: str) -> dict:
    rc, out, err = run_midtrain(midtrain, ["inspect", prefix, "--json"])
    if rc != 0:
        raise RuntimeError(f"exit {rc}: {err}")
    return json.loads(out)


def check_summary(rep: Report, name: str, midtrain: str, prefix: str,
                  docs: list[list[int]], dtype_name: str) -> None:
    try:
        s = midtrain_summary(midtrain, prefix)
    except Exception as e:  # noqa: BLE001
        rep.check(False, name, f"midtrain inspect --json: {e}")
        return
    want = {"documents": len(docs), "tokens": sum(map(len, docs)), "dtype": dtype_name}
    got = {k: s.get(k) for k in want}
    rep.check(got == want, name, f"{got}" if got == want else f"got {got}, want {want}")


def check_dump(rep: Report, name: str, midtrain: str, prefix: str,
               docs: list[list[int]]) -> None:
    try:
        got = midtrain_dump(midtrain, prefix, len(docs))
    except Exception as e:  # noqa: BLE001
        rep.check(False, name, f"midtrain inspect --dump: {e}")
        return
    compare_docs(rep, name, got, docs)


# ---------------------------------------------------------------------------------------------
# the checks


def part_a(rep: Report, midtrain: str | None, prefixes: list[str], tmp: Path,
           label: str = "a") -> None:
    for prefix in prefixes:
        rel = os.path.relpath(prefix, ROOT) if prefix.startswith(str(ROOT)) else prefix
        tag = f"{label} {rel}"
        try:
            docs, dtype, ds = read_megatron(prefix)
        except Exception as e:  # noqa: BLE001
            rep.check(False, f"{tag}: megatron IndexedDataset reads it", repr(e))
            continue
        rep.check(True, f"{tag}: megatron IndexedDataset reads it",
                  f"{len(docs)} docs, {len(ds)} sequences, dtype {dtype.__name__}")
        if midtrain is not None:
            check_dump(rep, f"{tag}: midtrain --dump equals megatron's documents", midtrain,
                       prefix, docs)
            check_summary(rep, f"{tag}: midtrain --json documents/tokens/dtype", midtrain,
                          prefix, docs, dtype.__name__)
        out = tmp / f"rebuild_{len(list(tmp.iterdir()))}"
        out.mkdir()
        rebuilt = str(out / Path(prefix).name)
        try:
            rebuild_megatron(ds, rebuilt)
        except Exception as e:  # noqa: BLE001
            rep.check(False, f"{tag}: megatron IndexedDatasetBuilder rebuild", repr(e))
            continue
        compare_files(rep, f"{tag}: .bin byte-identical to megatron's rebuild",
                      prefix + ".bin", rebuilt + ".bin")
        compare_files(rep, f"{tag}: .idx byte-identical to megatron's rebuild",
                      prefix + ".idx", rebuilt + ".idx")
        del ds


def part_b(rep: Report, midtrain: str | None, tmp: Path) -> list[str]:
    rng = numpy.random.default_rng(SEED)
    prefixes = []
    for name, dtype, vocab in CASES_B:
        tag = f"b {name} vocab {vocab}"
        rep.check(DType.optimal_dtype(vocab) is dtype, f"{tag}: megatron's dtype rule picks {name}",
                  f"optimal_dtype -> {DType.optimal_dtype(vocab).__name__}")
        docs = random_docs(rng, vocab)
        out = tmp / f"megatron_{name}"
        out.mkdir()
        prefix = str(out / f"megatron_{name}")
        write_megatron(prefix, docs, dtype)
        prefixes.append(prefix)
        if midtrain is None:
            # writer side only: megatron reads back what it wrote
            back, back_dtype, ds = read_megatron(prefix)
            del ds
            compare_docs(rep, f"{tag}: megatron reads back its own shard", back, docs)
            rep.check(back_dtype is dtype, f"{tag}: megatron reader reports {name}",
                      back_dtype.__name__)
            continue
        check_summary(rep, f"{tag}: midtrain --json documents/tokens/dtype", midtrain, prefix,
                      docs, name)
        check_dump(rep, f"{tag}: midtrain --dump equals megatron's documents", midtrain, prefix,
                   docs)
    return prefixes


def spec_check(rep: Report, prefix: str) -> None:
    """The .idx megatron writes matches the layout documented in docs/megatron-format.md."""
    docs, dtype, ds = read_megatron(prefix)
    del ds
    p = parse_idx_spec(prefix + ".idx")
    size = numpy.dtype(dtype).itemsize
    lens = [len(d) for d in docs]
    ptrs = numpy.concatenate([[0], numpy.cumsum(lens[:-1], dtype=numpy.int64) * size]).tolist()
    ok = (p["version"] == 1 and p["code"] == DType.code_from_dtype(dtype) and p["s"] == len(docs)
          and p["d"] == len(docs) + 1 and p["lengths"].tolist() == lens
          and p["pointers"].tolist() == ptrs and p["doc_idx"].tolist() == list(range(len(docs) + 1))
          and p["trailing"] == 0
          and Path(prefix + ".bin").stat().st_size == sum(lens) * size)
    rep.check(ok, f"self-test {Path(prefix).name}: .idx layout matches docs/megatron-format.md",
              f"code {p['code']}, S {p['s']}, D {p['d']}, trailing {p['trailing']}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--midtrain", default=str(ROOT / "target" / "debug" / "midtrain"),
                    help="path to the midtrain binary (default: target/debug/midtrain)")
    ap.add_argument("--fixtures", default="fixtures/shards",
                    help="folder searched recursively for PREFIX.idx shards written by midtrain "
                         "(relative paths: to the current directory, else the repo root)")
    ap.add_argument("--self-test", action="store_true",
                    help="check this script's megatron side only; needs no midtrain binary")
    args = ap.parse_args()

    rep = Report()
    with tempfile.TemporaryDirectory(prefix="parity-megatron-") as t:
        tmp = Path(t)
        if args.self_test:
            prefixes = part_b(rep, None, tmp)
            for p in prefixes:
                spec_check(rep, p)
            part_a(rep, None, prefixes, tmp, label="self-test rebuild")
        else:
            midtrain = args.midtrain
            if not (os.path.isfile(midtrain) and os.access(midtrain, os.X_OK)):
                rep.check(False, "midtrain binary", f"{midtrain} is missing or not executable")
                return 1
            fixtures = Path(args.fixtures)
            if not fixtures.is_absolute() and not fixtures.exists():
                fixtures = ROOT / fixtures
            prefixes = sorted(str(p.with_suffix("")) for p in fixtures.rglob("*.idx"))
            if rep.check(bool(prefixes), "a: midtrain shards found",
                         f"{len(prefixes)} under {fixtures}" if prefixes
                         else f"no *.idx under {fixtures}"):
                part_a(rep, midtrain, prefixes, tmp)
            part_b(rep, midtrain, tmp)

    print(f"{rep.passed} passed, {rep.failed} failed", flush=True)
    return 1 if rep.failed else 0


if __name__ == "__main__":
    sys.exit(main())
