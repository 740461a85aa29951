#!/usr/bin/env python3
"""Differential check: `midtrain tokenize` against HF `tokenizers` (Python) and megatron-core's reader.

Run with the parity venv (scripts/parity/setup_venv.sh megatron datatrove tokenizers):

    .venv-parity/bin/python scripts/parity/tokenize_check.py \
        --midtrain target/release/midtrain [--tokenizer fixtures/tokenizer.json] \
        [--corpus A.parquet ...] [--limit N] [--edge-cases] [--keep DIR]

For each corpus file, runs MIDTRAIN_CMD (below) into TMP/<stem>, then for every shard listed
in TMP/<stem>/manifest.json:

- reads the shard with megatron.core's IndexedDataset(prefix) (one sequence per document);
- reads the shard's sidecar parquet (`id`, `row`, `tokens`, `bytes`, ...), looks each document's
  text up by id in the input parquet, and encodes it with
  `Tokenizer.from_file(JSON).encode_batch(texts, add_special_tokens=False)` (with
  `encode_special_tokens = True` when the manifest says special tokens in text were split, midtrain's
  default); expected tokens are
  `[bos_id]? + ids + [eos_id]` (eos/bos from the manifest), compared with megatron's tokens;
- checks the manifest's per-shard `documents` / `tokens` against megatron, the sidecar's
  `tokens` / `bytes` / `row` columns against the expected tokens / UTF-8 length / input row,
  the dtype (uint16 when vocab < 65500, else int32 per docs/megatron-format.md);
- if `<prefix>.ds` / `<prefix>.ds.index` exist (datatrove/nanotron layout), checks them too:
  raw tokens (uint16 when vocab < 65500, else uint32) and u64 cumulative document end offsets.

Across all shards of a file, every input document must appear exactly once (midtrain tokenize
does no filtering). Prints per file: docs, tokens, mismatching docs (first differing position
for up to 3), then a final `N passed, N failed` line; exit status 1 when anything failed.

`--limit N` writes the first N rows of each corpus (all columns) to a temporary parquet and
tokenizes that. `--edge-cases` adds a small synthetic corpus (literal special tokens, CRLF, NUL,
emoji/ZWJ, combining marks, long whitespace runs, non-BMP, RTL, ...).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")  # megatron.core warns about missing Apex / Transformer Engine
logging.disable(logging.WARNING)

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from megatron.core.datasets.indexed_dataset import IndexedDataset  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TOKENIZER = ROOT / "fixtures" / "tokenizer.json"
DEFAULT_CORPORA = [f"/work/shared/corpora/{d}.parquet"
                   for d in ("web", "wiki", "books", "code", "math", "instruct")]
TEXT_COLUMN = "text"
ID_COLUMN = "id"

# The midtrain invocation, one editable list. Placeholders: {bin} {input} {tokenizer} {out}.
MIDTRAIN_CMD = ["{bin}", "tokenize", "{input}", "--tokenizer", "{tokenizer}", "--out", "{out}", "-q"]
VERIFY_CMD = ["{bin}", "verify", "{out}", "-q"]
MIDTRAIN_TIMEOUT_S = 1800
MAX_REPORTED_MISMATCHES = 3
ENCODE_CHUNK = 2000  # documents per encode_batch call

EDGE_CASES = [
    "hello world",
    " leading space",
    "trailing space ",
    "  two leading spaces",
    "tabs\tand\ttabs\t\t\t",
    "CRLF line\r\nnext line\r\n",
    "lone CR\rhere",
    "many newlines\n\n\n\n\n\nend",
    "spaces" + " " * 500 + "end",
    "\n" * 300,
    " ",
    "x",
    "NUL \x00 inside",
    "control \x01\x02\x1b[0m chars \x7f",
    "literal special <|endoftext|> in the middle",
    "<|endoftext|>",
    "<|endoftext|><|endoftext|>",
    "pad <|pad|> token",
    "almost special <|endoftext| and <|endoftext|>> and <|ENDOFTEXT|>",
    "emoji 😀👍🏽 family 👨‍👩‍👧‍👦 flags 🇩🇪🇯🇵",
    "combining e\u0301 vs \u00e9, Å vs A\u030a",
    "non-BMP 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𠜎𠜱𠝹 and 🀄",
    "RTL עברית العربية mixed ltr",
    "CJK 日本語のテキストと中文文本 한국어",
    "zero width \u200b\u200c\u200d\ufeff BOM-ish",
    "contractions it's I'm we'll they've don't 'S 'LL",
    "numbers 1234567890 3.14159 1e-10 0x1F",
    "code: def f(x):\n    return x**2  # comment\n\tif x != y: pass",
    "url https://example.com/a?b=c&d=e#frag and email a.b@c.de",
    "unicode spaces\u00a0nbsp\u2003em\u3000ideographic",
    "a" * 5000,
    "ab" * 3000,
    "The quick brown fox jumps over the lazy dog. " * 200,
    "mixed\u2028line\u2029separators\u0085nel",
]


def xxh3_128(data: bytes) -> str | None:
    """midtrain's checksum (`checksum_algorithm` xxh3-128, 32 lowercase hex digits)."""
    try:
        import xxhash
    except ImportError:
        return None
    return xxhash.xxh3_128_hexdigest(data)


from parity_report import Report  # noqa: E402  (sibling module: scripts/parity/)


def midtrain_command(binary: str, inp: str, tokenizer: str, out: str) -> list[str]:
    return [a.format(bin=binary, input=inp, tokenizer=tokenizer, out=out) for a in MIDTRAIN_CMD]


def run_midtrain(cmd: list[str]) -> tuple[int, str, float]:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=MIDTRAIN_TIMEOUT_S,
                       env={**os.environ, "NO_COLOR": "1"})
    dt = time.perf_counter() - t0
    err = " | ".join(l.strip() for l in p.stderr.splitlines() if l.strip())
    return p.returncode, err[-1500:], dt


def token_repr(tok: Tokenizer, ids) -> str:
    return "[" + ", ".join(f"{int(i)}:{tok.id_to_token(int(i))!r}" for i in ids) + "]"


def first_diff(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    neq = np.nonzero(a[:n] != b[:n])[0]
    return int(neq[0]) if len(neq) else n


def describe_mismatch(tok: Tokenizer, doc_id: str, shard_pos: int, got: np.ndarray,
                      want: np.ndarray, text: str | None, what: str) -> str:
    j = first_diff(got, want)
    lo = max(0, j - 2)
    s = (f"  {what} doc {doc_id!r} (shard position {shard_pos}): lengths midtrain {len(got)} vs "
         f"HF {len(want)}; first difference at token {j}\n"
         f"    midtrain[{lo}:{j + 4}] = {token_repr(tok, got[lo:j + 4])}\n"
         f"    HF      [{lo}:{j + 4}] = {token_repr(tok, want[lo:j + 4])}")
    if text is not None and j < len(want):
        # character offset of the first differing HF token (offsets of the plain encoding)
        enc = tok.encode(text, add_special_tokens=False)
        k = j - (len(want) - len(enc.ids) - 1)  # skip a BOS if present
        if 0 <= k < len(enc.offsets):
            c0, c1 = enc.offsets[k]
            s += (f"\n    text around char {c0}: {text[max(0, c0 - 30):c1 + 30]!r} "
                  f"(HF token covers {text[c0:c1]!r})")
    return s


def limited_copy(src: str, n: int, dst: Path) -> Path:
    t = pq.read_table(src)
    pq.write_table(t.slice(0, n), dst)
    return dst


def read_ds(prefix: Path, dtype) -> tuple[np.ndarray, np.ndarray]:
    tokens = np.fromfile(str(prefix) + ".ds", dtype=np.dtype(dtype).newbyteorder("<"))
    ends = np.fromfile(str(prefix) + ".ds.index", dtype=np.dtype("<u8"))
    return tokens, ends


def check_file(rep: Report, tok: Tokenizer, args, corpus: str, tmp: Path) -> None:
    stem = Path(corpus).stem
    print(f"\n=== {stem}: {corpus}", flush=True)
    inp = corpus
    if args.limit:
        inp = str(limited_copy(corpus, args.limit, tmp / f"{stem}.limit{args.limit}.parquet"))
    out = tmp / stem
    cmd = midtrain_command(args.midtrain, inp, args.tokenizer, str(out)) + list(args.midtrain_arg)
    print("$ " + " ".join(cmd), flush=True)
    rc, err, dt = run_midtrain(cmd)
    if not rep.check(rc == 0, f"{stem}: midtrain tokenize exits 0",
                     f"{dt:.2f}s" if rc == 0 else f"exit {rc}: {err}"):
        return

    vcmd = [a.format(bin=args.midtrain, out=str(out)) for a in VERIFY_CMD]
    vrc, verr, _ = run_midtrain(vcmd)
    rep.check(vrc == 0, f"{stem}: midtrain verify exits 0", "" if vrc == 0 else f"exit {vrc}: {verr}")

    # ---- input
    table = pq.read_table(inp, columns=[ID_COLUMN, TEXT_COLUMN])
    in_ids = table.column(ID_COLUMN).to_pylist()
    in_texts = table.column(TEXT_COLUMN).to_pylist()
    row_of = {}
    dup_ids = 0
    for r, i in enumerate(in_ids):
        if i in row_of:
            dup_ids += 1
        row_of.setdefault(i, r)
    rep.check(dup_ids == 0, f"{stem}: input ids unique", f"{len(in_ids)} docs"
              if dup_ids == 0 else f"{dup_ids} duplicate ids in the input")

    # ---- manifest
    try:
        manifest = json.loads((out / "manifest.json").read_text())
    except Exception as e:  # noqa: BLE001
        rep.check(False, f"{stem}: manifest.json readable", str(e))
        return
    mt = manifest.get("tokenizer", {}) or {}
    eos_id = mt.get("eos_id")
    bos_id = mt.get("bos_id") if args.bos == "manifest" else None
    # midtrain's vocab_size is the largest id + 1 (ids may have holes)
    hf_vocab = max(tok.get_vocab(with_added_tokens=True).values()) + 1
    want_eos = tok.token_to_id(args.eos)
    rep.check(eos_id is not None and eos_id == want_eos, f"{stem}: manifest eos_id",
              f"manifest {eos_id}, HF token_to_id({args.eos!r}) = {want_eos}")
    rep.check(mt.get("vocab_size") == hf_vocab, f"{stem}: manifest vocab_size",
              f"manifest {mt.get('vocab_size')}, HF max id + 1 = {hf_vocab} "
              f"(get_vocab_size(with_added_tokens=True) = {tok.get_vocab_size(with_added_tokens=True)})")
    want_dtype_name = "uint16" if hf_vocab < 65500 else "int32"
    rep.check(manifest.get("dtype") == want_dtype_name, f"{stem}: manifest dtype",
              f"manifest {manifest.get('dtype')!r}, expected {want_dtype_name!r}")
    ch = str(mt.get("content_hash", ""))
    file_hash = xxh3_128(Path(args.tokenizer).read_bytes())
    if file_hash is not None:
        rep.check(ch == file_hash, f"{stem}: manifest tokenizer content_hash",
                  f"manifest {ch!r}, xxh3-128 of the tokenizer file {file_hash}")
    # A special token's literal string in a document: "split" (midtrain's default) encodes it as
    # text, which is Python's `encode_special_tokens = True`; "keep" is Python's default.
    tok.encode_special_tokens = mt.get("special_tokens_in_text", "keep") != "keep"
    print(f"info: bos_id {mt.get('bos_id')!r}; dtype {manifest.get('dtype')!r}; checksum_algorithm "
          f"{manifest.get('checksum_algorithm')!r}; encoder {mt.get('encoder')!r}; special tokens in text "
          f"{mt.get('special_tokens_in_text')!r}", flush=True)
    if eos_id is None:
        return
    want_dtype = np.uint16 if hf_vocab < 65500 else np.int32
    ds_dtype = np.uint16 if hf_vocab < 65500 else np.uint32

    seen: dict[str, int] = {}
    dup_seen: list[str] = []
    unknown: list[str] = []
    total_docs = total_tokens = 0
    mismatches: list[str] = []
    n_mismatch = 0
    ds_mismatch = 0
    ds_present = 0
    shards = manifest.get("shards", [])
    rep.check(len(shards) > 0, f"{stem}: manifest lists shards", f"{len(shards)} shard(s)")

    for si, sh in enumerate(shards):
        name = f"{stem}: shard {si} ({sh.get('prefix')})"
        prefix = out / sh["prefix"]
        try:
            ds = IndexedDataset(str(prefix))
        except Exception as e:  # noqa: BLE001
            rep.check(False, f"{name}: megatron IndexedDataset reads it", repr(e))
            continue
        n_seq = len(ds)
        doc_idx = np.asarray(ds.document_indices, dtype=np.int64)
        rep.check(np.array_equal(doc_idx, np.arange(n_seq + 1)),
                  f"{name}: one sequence per document", f"{n_seq} sequences")
        rep.check(ds.index.dtype == want_dtype, f"{name}: dtype",
                  f"megatron reads {np.dtype(ds.index.dtype).name}, expected {np.dtype(want_dtype).name}")
        lengths = np.asarray(ds.sequence_lengths, dtype=np.int64)
        rep.check(sh.get("documents") == n_seq and sh.get("tokens") == int(lengths.sum()),
                  f"{name}: manifest counts",
                  f"manifest documents {sh.get('documents')} tokens {sh.get('tokens')}; megatron "
                  f"{n_seq} / {int(lengths.sum())}")
        # checksums: xxh3-128 (manifest `checksum_algorithm`) of the .bin / .idx bytes
        for key, ext in (("bin_checksum", ".bin"), ("idx_checksum", ".idx")):
            v = str(sh.get(key, ""))
            got_sum = xxh3_128(Path(str(prefix) + ext).read_bytes())
            if got_sum is None:
                print(f"info: {key} {v!r} not verified (python module xxhash missing)")
            else:
                rep.check(v == got_sum, f"{name}: {key}", f"manifest {v!r}, xxh3-128 of {ext} {got_sum}")
        # ---- sidecar
        try:
            side = pq.read_table(out / sh["sidecar"])
        except Exception as e:  # noqa: BLE001
            rep.check(False, f"{name}: sidecar readable", repr(e))
            continue
        cols = set(side.column_names)
        need = {"id", "source", "row", "tokens", "bytes"}
        rep.check(need <= cols, f"{name}: sidecar columns", f"{sorted(cols)}"
                  if need <= cols else f"missing {sorted(need - cols)}; has {sorted(cols)}")
        rep.check(side.num_rows == n_seq, f"{name}: sidecar rows = documents",
                  f"{side.num_rows} vs {n_seq}")
        if "id" not in cols or side.num_rows != n_seq:
            continue
        sids = [str(x) for x in side.column("id").to_pylist()]
        texts: list[str | None] = []
        for k, i in enumerate(sids):
            if i in seen:
                dup_seen.append(i)
            seen[i] = seen.get(i, 0) + 1
            r = row_of.get(i)
            if r is None:
                unknown.append(i)
                texts.append(None)
            else:
                texts.append(in_texts[r])

        # sidecar row / tokens / bytes columns
        if "row" in cols:
            rows = side.column("row").to_pylist()
            bad = [(sids[k], rows[k], row_of.get(sids[k])) for k in range(n_seq)
                   if row_of.get(sids[k]) is not None and rows[k] != row_of.get(sids[k])]
            rep.check(not bad, f"{name}: sidecar row = input row of id",
                      "" if not bad else f"{len(bad)} differ, e.g. {bad[:3]} (id, sidecar, input)")
        if "tokens" in cols:
            st = np.asarray(side.column("tokens").to_pylist(), dtype=np.int64)
            bad = np.nonzero(st != lengths)[0]
            rep.check(len(bad) == 0, f"{name}: sidecar tokens = megatron lengths",
                      "" if len(bad) == 0 else f"{len(bad)} differ, first at {int(bad[0])}: "
                      f"{int(st[bad[0]])} vs {int(lengths[bad[0]])}")
        if "bytes" in cols:
            sb = side.column("bytes").to_pylist()
            bad = [k for k in range(n_seq) if texts[k] is not None
                   and sb[k] != len(texts[k].encode("utf-8"))]
            rep.check(not bad, f"{name}: sidecar bytes = UTF-8 length",
                      "" if not bad else f"{len(bad)} differ, e.g. doc {sids[bad[0]]!r}: "
                      f"{sb[bad[0]]} vs {len(texts[bad[0]].encode('utf-8'))}")

        # ---- encode with HF and compare with megatron's tokens
        expected: list[np.ndarray | None] = [None] * n_seq
        todo = [k for k in range(n_seq) if texts[k] is not None]
        for c in range(0, len(todo), ENCODE_CHUNK):
            chunk = todo[c:c + ENCODE_CHUNK]
            encs = tok.encode_batch([texts[k] for k in chunk], add_special_tokens=False)
            for k, e in zip(chunk, encs):
                ids = ([bos_id] if bos_id is not None else []) + e.ids + [eos_id]
                expected[k] = np.asarray(ids, dtype=np.int64)

        ds_tokens = ds_ends = None
        has_ds = Path(str(prefix) + ".ds").exists()
        if has_ds:
            ds_present += 1
            try:
                ds_tokens, ds_ends = read_ds(prefix, ds_dtype)
                want_ends = np.cumsum(lengths).astype(np.uint64)
                rep.check(np.array_equal(ds_ends, want_ends), f"{name}: .ds.index = cumulative ends",
                          f"{len(ds_ends)} entries" if np.array_equal(ds_ends, want_ends) else
                          f"{len(ds_ends)} entries vs {len(want_ends)}; first values "
                          f"{ds_ends[:4].tolist()} vs {want_ends[:4].tolist()}")
                rep.check(len(ds_tokens) == int(lengths.sum()), f"{name}: .ds token count",
                          f"{len(ds_tokens)} {np.dtype(ds_dtype).name} tokens vs {int(lengths.sum())}")
            except Exception as e:  # noqa: BLE001
                rep.check(False, f"{name}: .ds readable", repr(e))
                ds_tokens = None

        shard_bad = 0
        shard_ds_bad = 0
        for k in range(n_seq):
            got = np.asarray(ds[k], dtype=np.int64)
            want = expected[k]
            if want is None:
                continue
            if not np.array_equal(got, want):
                shard_bad += 1
                if len(mismatches) < MAX_REPORTED_MISMATCHES:
                    mismatches.append(describe_mismatch(tok, sids[k], k, got, want, texts[k], ".bin"))
            if ds_tokens is not None and ds_ends is not None and len(ds_ends) == n_seq:
                a = 0 if k == 0 else int(ds_ends[k - 1])
                dgot = ds_tokens[a:int(ds_ends[k])].astype(np.int64)
                if not np.array_equal(dgot, want):
                    shard_ds_bad += 1
                    if len(mismatches) < MAX_REPORTED_MISMATCHES:
                        mismatches.append(describe_mismatch(tok, sids[k], k, dgot, want, texts[k], ".ds"))
        n_mismatch += shard_bad
        ds_mismatch += shard_ds_bad
        total_docs += n_seq
        total_tokens += int(lengths.sum())
        rep.check(shard_bad == 0, f"{name}: tokens equal HF encode + EOS",
                  f"{n_seq} docs" if shard_bad == 0 else f"{shard_bad} of {n_seq} docs differ")
        if has_ds:
            rep.check(shard_ds_bad == 0 and ds_tokens is not None, f"{name}: .ds tokens equal HF",
                      f"{n_seq} docs" if shard_ds_bad == 0 else f"{shard_ds_bad} of {n_seq} docs differ")

    # ---- coverage
    missing = [i for i in in_ids if i not in seen]
    rep.check(not missing and not dup_seen and not unknown, f"{stem}: every input doc exactly once",
              f"{len(seen)} of {len(in_ids)} ids" if not (missing or dup_seen or unknown) else
              f"missing {len(missing)} (e.g. {missing[:3]}), duplicated {len(dup_seen)} "
              f"(e.g. {dup_seen[:3]}), unknown ids {len(unknown)} (e.g. {unknown[:3]})")
    print(f"summary {stem}: docs {total_docs}, tokens {total_tokens}, mismatching docs "
          f"{n_mismatch} (.bin) / {ds_mismatch} (.ds, {ds_present} shard(s) with .ds), "
          f"midtrain {dt:.2f}s", flush=True)
    for m in mismatches:
        print(m, flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--midtrain", required=True, help="path of the midtrain binary")
    ap.add_argument("--tokenizer", default=str(DEFAULT_TOKENIZER))
    ap.add_argument("--corpus", nargs="+", default=DEFAULT_CORPORA)
    ap.add_argument("--limit", type=int, default=0, help="documents per file (default all)")
    ap.add_argument("--eos", default="<|endoftext|>", help="EOS token text the manifest eos_id must name")
    ap.add_argument("--bos", choices=("manifest", "none"), default="manifest",
                    help="prepend the manifest's bos_id when it is set (default) or never")
    ap.add_argument("--midtrain-arg", action="append", default=[],
                    help="extra argument for `midtrain tokenize` (repeatable), e.g. "
                         "--midtrain-arg=--formats --midtrain-arg=megatron,datatrove")
    ap.add_argument("--edge-cases", action="store_true", help="also check a synthetic edge-case corpus")
    ap.add_argument("--keep", help="write outputs here (kept) instead of a temporary directory")
    args = ap.parse_args()
    args.midtrain = str(Path(args.midtrain).resolve())
    args.tokenizer = str(Path(args.tokenizer).resolve())

    tok = Tokenizer.from_file(args.tokenizer)
    rep = Report()
    ctx = tempfile.TemporaryDirectory(prefix="tokenize_check_") if not args.keep else None
    tmp = Path(args.keep) if args.keep else Path(ctx.name)
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        corpora = list(args.corpus)
        if args.edge_cases:
            p = tmp / "edge_cases.parquet"
            pq.write_table(pa.table({ID_COLUMN: [f"edge-{i}" for i in range(len(EDGE_CASES))],
                                     TEXT_COLUMN: EDGE_CASES}), p)
            corpora.append(str(p))
        for c in corpora:
            try:
                check_file(rep, tok, args, c, tmp)
            except Exception as e:  # noqa: BLE001
                rep.check(False, f"{Path(c).stem}: check ran", repr(e))
    finally:
        if ctx is not None:
            ctx.cleanup()
    print(f"\n{rep.passed} passed, {rep.failed} failed")
    return 1 if rep.failed else 0


if __name__ == "__main__":
    sys.exit(main())
