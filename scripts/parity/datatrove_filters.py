#!/usr/bin/env python3
"""Differential check: midtrain's heuristic filters against datatrove 0.10.1's.

Run with the parity venv (scripts/parity/setup_venv.sh datatrove):

    .venv-parity/bin/python scripts/parity/datatrove_filters.py \
        --corpus /work/shared/corpora/web.parquet [--midtrain target/release/midtrain] \
        [--limit N] [--bench] [--filters gopher_quality,c4_quality]

For each filter in FILTERS (datatrove class instantiated with its default arguments; the
C4 "no terminal punct" variant only flips `filter_no_terminal_punct`), every document of the
corpora (Parquet, columns `id` and `text`) is passed to `filter(Document)` directly and the
keep/drop verdict and drop reason are recorded.

With `--midtrain BIN`, each filter is also run as

    BIN filter CORPUS... <MIDTRAIN_ARGS[name]> --out TMPDIR/<name>

which must write TMPDIR/<name>/removed.parquet (columns `id`, `reason`, ...) and
TMPDIR/<name>/kept.parquet (column `id`, optionally `text`). Per filter the script prints
documents, datatrove drops, midtrain drops, keep/drop agreement, reason agreement among
documents both dropped, C4 text agreement among documents both kept (when kept.parquet has a
`text` column), and up to 5 sample disagreements. Exit status 1 when any filter's keep/drop
agreement is below --min-agreement (default 99%).

With `--limit N` only the first N rows of each corpus are used; when --midtrain is given those
rows are written to TMPDIR/input/<stem>.parquet (columns id, text) and midtrain reads those, so
both sides see the same documents.

`--bench` times datatrove per filter (single process, filter-major order so datatrove's small
lru_cache on split_into_words never carries work from one filter to the next) and prints MB/s of
UTF-8 text; with --midtrain it also times each midtrain command (wall clock, process start and
Parquet I/O included) and prints the speed ratio.

Helpers for the Rust port (no corpus needed):
  --gen-vectors DIR        regenerate DIR/spacy_words.jsonl and DIR/sentences.jsonl
                           (the committed ones live in pipeline/src/filter/testdata/)
  --dump-spacy-rules FILE  write spaCy blank("en") tokenizer data as JSON: prefix/suffix/infix/
                           url regex sources, every special case (string -> token texts), the
                           special cases that take part in the post-pass matcher, and the
                           sentencizer punctuation characters
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from loguru import logger  # noqa: E402  (datatrove dependency)

logger.remove()  # datatrove logs every step construction at INFO

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from datatrove.data import Document  # noqa: E402
from datatrove.pipeline.filters import (  # noqa: E402
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
)
from datatrove.utils.text import split_into_sentences, split_into_words  # noqa: E402
from datatrove.utils.typeshelper import Languages  # noqa: E402

# name -> factory of the datatrove filter (default arguments)
FILTERS = {
    "gopher_quality": lambda: GopherQualityFilter(),
    "gopher_repetition": lambda: GopherRepetitionFilter(),
    "c4_quality": lambda: C4QualityFilter(),  # filter_no_terminal_punct=True (C4 default)
    "c4_quality_no_terminal_punct": lambda: C4QualityFilter(filter_no_terminal_punct=False),  # FineWeb's setting
    "fineweb_quality": lambda: FineWebQualityFilter(),
}

# name -> midtrain arguments placed after `BIN filter CORPUS...` (then `--out DIR` is appended).
# Edit here if the CLI changes.
MIDTRAIN_ARGS = {
    "gopher_quality": ["--filters", "gopher_quality"],
    "gopher_repetition": ["--filters", "gopher_repetition"],
    "c4_quality": ["--filters", "c4_quality"],
    "c4_quality_no_terminal_punct": ["--filters", "c4_quality", "--c4-terminal-punct", "false"],
    "fineweb_quality": ["--filters", "fineweb_quality"],
}

KEEP = "keep"


# ----------------------------------------------------------------------------------------------
# corpus handling


def read_corpus(path: str, limit: int | None) -> list[tuple[str, str]]:
    table = pq.read_table(path, columns=["id", "text"])
    if limit is not None:
        table = table.slice(0, limit)
    ids = table.column("id").to_pylist()
    texts = table.column("text").to_pylist()
    return [(str(i), t if t is not None else "") for i, t in zip(ids, texts)]


def run_datatrove(name: str, docs: list[tuple[str, str]]):
    """Returns ({id: verdict}, {id: modified text for kept docs}, seconds, errors)."""
    flt = FILTERS[name]()
    verdicts: dict[str, str] = {}
    texts: dict[str, str] = {}
    errors = 0
    t0 = time.perf_counter()
    for doc_id, text in docs:
        doc = Document(text=text, id=doc_id)
        try:
            res = flt.filter(doc)
        except Exception as e:  # noqa: BLE001 - report, don't die
            errors += 1
            verdicts[doc_id] = f"error:{type(e).__name__}"
            continue
        keep, reason = (res if isinstance(res, tuple) else (res, None))
        if keep:
            verdicts[doc_id] = KEEP
            if doc.text != text:
                texts[doc_id] = doc.text
        else:
            verdicts[doc_id] = reason or "dropped"
    return verdicts, texts, time.perf_counter() - t0, errors


def run_midtrain(binary: str, name: str, corpora: list[str], tmpdir: Path):
    out = tmpdir / name
    if out.exists():
        shutil.rmtree(out)
    cmd = [binary, "filter", *corpora, *MIDTRAIN_ARGS[name], "--out", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    secs = time.perf_counter() - t0
    if proc.returncode != 0:
        print(f"  midtrain failed (exit {proc.returncode}): {' '.join(cmd)}")
        print("  " + (proc.stderr or proc.stdout).strip().replace("\n", "\n  ")[-3000:])
        return None, None, secs
    verdicts: dict[str, str] = {}
    texts: dict[str, str] = {}
    # midtrain writes one part per input file: OUT/removed/part-*.parquet, OUT/kept/part-*.parquet
    removed = out / "removed" if (out / "removed").is_dir() else out / "removed.parquet"
    kept = out / "kept" if (out / "kept").is_dir() else out / "kept.parquet"
    if removed.exists():
        t = pq.read_table(removed)
        reasons = t.column("reason").to_pylist() if "reason" in t.column_names else [None] * t.num_rows
        for i, r in zip(t.column("id").to_pylist(), reasons):
            verdicts[str(i)] = r or "dropped"
    if kept.exists():
        t = pq.read_table(kept)
        ids = t.column("id").to_pylist()
        ktexts = t.column("text").to_pylist() if "text" in t.column_names else [None] * len(ids)
        for i, tx in zip(ids, ktexts):
            verdicts[str(i)] = KEEP
            if tx is not None:
                texts[str(i)] = tx
    if not removed.exists() and not kept.exists():
        print(f"  midtrain wrote neither {removed} nor {kept}")
        return None, None, secs
    return verdicts, texts, secs


def compare(name, docs, dt_verdicts, dt_texts, mt_verdicts, mt_texts):
    text_of = dict(docs)
    n = len(docs)
    dt_drop = sum(1 for v in dt_verdicts.values() if v != KEEP)
    mt_drop = sum(1 for i, _ in docs if mt_verdicts.get(i, "missing") != KEEP)
    agree = 0
    both_drop = 0
    reason_agree = 0
    both_keep_text = 0
    text_agree = 0
    disagreements = []
    reason_mismatch = []
    text_mismatch = []
    for doc_id, text in docs:
        a = dt_verdicts[doc_id]
        b = mt_verdicts.get(doc_id, "missing")
        if (a == KEEP) == (b == KEEP):
            agree += 1
            if a != KEEP:
                both_drop += 1
                if a == b:
                    reason_agree += 1
                else:
                    reason_mismatch.append((doc_id, a, b))
            elif doc_id in mt_texts:
                both_keep_text += 1
                want = dt_texts.get(doc_id, text)
                if mt_texts[doc_id] == want:
                    text_agree += 1
                else:
                    text_mismatch.append(doc_id)
        else:
            disagreements.append((doc_id, a, b))
    pct = 100.0 * agree / n if n else 100.0
    print(f"  documents            {n}")
    print(f"  datatrove dropped    {dt_drop}")
    print(f"  midtrain dropped     {mt_drop}")
    print(f"  keep/drop agreement  {pct:.2f}%  ({n - agree} disagree)")
    if both_drop:
        print(f"  reason agreement     {100.0 * reason_agree / both_drop:.2f}%  of {both_drop} both-dropped")
    if both_keep_text:
        print(f"  kept-text agreement  {100.0 * text_agree / both_keep_text:.2f}%  of {both_keep_text} both-kept")
    for doc_id, a, b in disagreements[:5]:
        snippet = text_of[doc_id][:200].replace("\n", "\\n")
        print(f"    DIFF {doc_id}: datatrove={a} midtrain={b} | {snippet}")
    for doc_id, a, b in reason_mismatch[:3]:
        print(f"    REASON {doc_id}: datatrove={a} midtrain={b}")
    for doc_id in text_mismatch[:3]:
        want = dt_texts.get(doc_id, text_of[doc_id])
        got = mt_texts[doc_id]
        k = next((i for i in range(min(len(want), len(got))) if want[i] != got[i]), min(len(want), len(got)))
        print(f"    TEXT {doc_id}: first difference at char {k}: datatrove={want[k:k + 60]!r} midtrain={got[k:k + 60]!r}")
    return pct


def reason_histogram(verdicts: dict[str, str]) -> str:
    counts: dict[str, int] = {}
    for v in verdicts.values():
        if v != KEEP:
            counts[v] = counts.get(v, 0) + 1
    return ", ".join(f"{k}={v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


# ----------------------------------------------------------------------------------------------
# spaCy rule dump


def dump_spacy_rules(path: str) -> None:
    import spacy
    from spacy.pipeline.sentencizer import Sentencizer
    from spacy.symbols import ORTH

    nlp = spacy.blank("en")
    tok = nlp.tokenizer
    specials = {k: [d[ORTH] for d in v] for k, v in sorted(tok.rules.items())}
    matcher_keys = sorted(
        k for k in tok.rules if tok.find_prefix(k) or tok.find_infix(k) or tok.find_suffix(k) or " " in k
    )
    data = {
        "spacy_version": spacy.__version__,
        "note": "Python `re` syntax. prefix = '|'.join('^'+p), suffix = '|'.join(p+'$'), infix = '|'.join(p). "
        "specials: exact whitespace-delimited chunk -> token texts. matcher_keys: specials also re-applied "
        "after affix splitting when their affix tokens occur contiguously.",
        "prefix_pattern": tok.prefix_search.__self__.pattern,
        "suffix_pattern": tok.suffix_search.__self__.pattern,
        "infix_pattern": tok.infix_finditer.__self__.pattern,
        "url_pattern": tok.url_match.__self__.pattern,
        "specials": specials,
        "matcher_keys": matcher_keys,
        "sentencizer_punct_chars": sorted(Sentencizer.default_punct_chars),
    }
    Path(path).write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path}: {len(specials)} specials, {len(matcher_keys)} matcher keys")


# ----------------------------------------------------------------------------------------------
# test vectors

WORD_CASES = [
    # contractions
    "don't", "Don't", "DON'T", "dont", "I'm here", "i'm", "Im", "we'll", "We'll", "they've", "can't", "Can't",
    "won't", "wont", "y'all", "yall", "o'clock", "O'clock", "ain't", "shouldn't've", "I'd've", "it's", "its",
    "Its", "ill", "well", "we're", "were", "she'd", "who's", "What's up?", "let's go", "Let's", "cannot",
    "gonna", "gotta", "c'mon", "ma'am", "'em", "'cause", "lovin'", "goin’", "don’t", "I’m", "it’s", "can’t",
    "rock'n'roll", "Tom's car", "James' book", "the dogs' bones", "'90s", "’tis", "O'Neill", "d'Artagnan",
    # hyphens and dashes
    "well-known", "state-of-the-art", "e-mail", "COVID-19", "3-4", "1990-1995", "-5 degrees", "pre- and post-war",
    "a--b", "a---b", "x-ray's", "Jean-Luc", "über-cool", "ab-12", "12-ab", "a—b", "a – b", "a–b", "word—",
    "—word", "pages 10–20", "A-", "-A", "- bullet", "• bullet point", "~tilde~", "a~b",
    # ellipses
    "wait...", "wait...what", "...", "....", "…", "wait…what", "Hmm.. ok", ". . .", "...and then", "so.....",
    # urls and emails
    "http://example.com", "https://www.example.com/path?query=1&b=2#frag", "www.google.com", "visit example.com.",
    "(see https://x.org/a)", "ftp://files.example.org/file.txt", "google.co.uk/search?q=a", "localhost:8080",
    "192.168.0.1", "8.8.8.8", "example.Com", "john.doe@example.com", "<me@x.org>", "mailto:me@x.org",
    "http://a.b/c,d", "https://example.com/a_(b)", "user@mail",
    # numbers and currency
    "1,000", "1,000,000.50", "3.14", "$3.50", "€10", "10€", "£5.99", "US$5", "50%", "50 %", "-3.5", "+44 20 7946 0958",
    "+5", "1/2", "3x4", "2+2=4", "10km", "5kg.", "6ft", "9am", "10a.m.", "12pm", "1st", "21st-century", "1990s", "#1",
    "No.1", "100°C", "30°C.", "4.5/5", "12:00", "v1.2.3", "2023-01-15", "01/15/2023", "(555) 123-4567", "1e10",
    "0.5x", "5.", "5.5.", "3-", "¥500", "₹100", "100$",
    # quotes
    '"hi"', "'hi'", "“hi”", "‘hi’", "«bonjour»", "„Hallo“", 'He said, "Stop!"', "'Hello,' she said.", "``quoted''",
    "''", '"', "'", '""', "“”", "‘", "’",
    # parentheses and brackets
    "(a)", "[1]", "{x}", "f(x)", "a[i]", "(see above).", "[citation needed]", "((double))", "<tag>", "<b>bold</b>",
    "a<b", "x>=y", "x=1", "a/b", "and/or", "w/o", "24/7", "(", ")", "[]", "{}", "（括弧）",
    # emoji and symbols
    "😀", "I ❤️ NY", "👍🏽", "🇺🇸", "hello😀world", ":)", ":-)", "<3", "hello:)", "(:", "¯\\_(ツ)_/¯", "☺",
    "★★★★☆", "©2020", "®", "™", "°", "§5", "¶", "→", "x²", "½",
    # non-Latin scripts
    "我爱北京天安门。", "今日は良い天気ですね。", "안녕하세요, 세계!", "Привет, мир! Как дела?", "Γειά σου Κόσμε.",
    "مرحبا بالعالم؟", "नमस्ते दुनिया।", "שלום עולם.", "สวัสดีครับ", "Tokyo（東京）", "ＡＢＣ！", "Straße, Größe, über",
    "Ünïcödé-wörd", "naïve café", "Ελληνικά-λέξη", "Москва-река",
    # whitespace
    "a  b", "a\tb", "a\n\nb", "  leading", "trailing  ", "a \n b", "\u00a0nbsp\u00a0", "a\u2003b", "a\u200bb",
    "a\r\nb", "a\x0bb", "a\x1cb", "a\u3000b", "a\x85b", " ", "\n", "", "a \t\n b", "x\u2028y",
    # punctuation runs
    "!!!", "?!", "....", "Hello!!!", "What?!?!", "Wow!?", "--", "***", "###", "...!", "!?!", "?", "a,b", "a,b,c",
    "a;b", "a:b", "end.", "end.)", "(end.)", '"end."', 'end."', 'end!"', ",,,", "a.b.c", "end.Next", "lower.Upper",
    "UPPER.Upper", "a:b:c", "a=b", "<<>>", "@@", "%%", "&&", "||", "__", "**bold**", "_italic_", "-->", "<!--",
    # abbreviations
    "U.S.", "U.S.A.", "e.g.", "i.e.", "Dr. Smith", "Mr. Jones", "Mrs.", "St. Louis", "Jan. 5", "Inc.", "etc.", "vs.",
    "No.", "approx.", "Ph.D.", "a.m.", "p.m.", "U.K.", "N.Y.", "Washington D.C.", "Sept. 11", "Prof.", "cf.", "Fig. 3",
    "a.", "b.", "A.", "Mr.Smith", "E.G.", "US.", "USA.", "IBM.", "A.B", "NASA's",
    # hashtags, code-ish
    "#hashtag", "#MeToo", "@user", "@user123:", "C#", "F#", "C++", "#!/bin/bash", "##", "# heading", "$HOME",
    "~/path", "path/to/file.txt", "snake_case", "camelCase", "file.py", "__init__", "a_b", "foo()", "x[0]=1;",
    "if (a && b) { return; }", "<div class=\"x\">", "key: value", "a->b", "i++", "x != y",
    # times
    "3:30pm", "3:30 pm", "10am", "10 a.m.", "12:45:00", "5pm.", "9a.m.", "T-minus 10", "1pm-3pm",
    # sentences and paragraphs
    "Hello, world! This is a test... isn't it? Yes (mostly).",
    "The U.S. economy grew 3.5% in Q2, according to Dr. Smith's report.",
    "She said: “I can’t believe it’s already 5 o'clock!”",
    "Prices: $5.99–$7.49 (incl. VAT); see www.shop.com/deals for more.",
    "Line one.\nLine two!\n\nParagraph two, line one?",
    "- item one\n- item two\n• item three",
    "Click here >> Read more... | Share | Tweet",
    "Copyright © 2019 Example Inc. All rights reserved.",
    # affix-loop corner cases (prefix/suffix interplay, special cases re-applied by the matcher pass)
    "(:)", "'s.", "Hello...", "5km²", "10US$", "x……", "……x", ".hidden", "..x", "+a", "a+", "5+", "C$5", "A$",
    "don't.", "(don't)", "Dr.,", "e.g.,", "U.S.,", "'90s.", ":)))", "a.m.,", "hello:-)", ":):)", "x :) y", "8)",
    "(8)", "100°F.", "°F.", "Hello.World", 'x."Y', "ab,cd", "ab,12", "1,ab", "5:b", "5/b", "a=5", "s.", "(x.)",
]

SENTENCE_CASES = [
    "Hello world. This is a test.",
    "Dr. Smith went home. He slept.",
    "Wait... what? Really!",
    'He said "Stop." Then he left.',
    "(Really.) Yes.",
    "U.S. policy changed. Why?",
    "Version 1.2.3 was released. Great!",
    "Hi!!! How are you??? Fine.",
    "No punctuation at all",
    "It ends with an ellipsis...",
    "Multiple.   Spaces.   Here.",
    "e.g. this. And that.",
    "Is it 3.14? Yes.",
    "中文句子。 更多文字。",
    "中文句子。更多文字。",
    "Really?! Yes.",
    "He left.'' Then he came back.",
    "I got an a. Then a b. Then a c.",
    "Mr. and Mrs. Smith live on St. James St. in Washington D.C. now.",
    "It costs 5. Then it costs 6.",
    "The end.\tTab next.",
    "The end.)  Next one.",
    "Sentence one.Sentence two.",
    "Sentence one. sentence two lower.",
    "What is this?That is that.",
    "One! Two? Three. Four",
    "A sentence with a URL http://example.com. Another one.",
    "Emails like me@x.com. Are fine.",
    "Wow… really… yes.",
    "Quote: “Done.” Next.",
    "He asked, 'Why?' She replied.",
    "Numbers 1. 2. 3. go here.",
    "Ends with exclamation!",
    "Ends with question?",
    "Ends with quote.\"",
    "Ends with single quote.'",
    "Ends with ellipsis... and then continues.",
    "Dots . . . spaced out.",
    "Fig. 3 shows the result. Tab. 2 lists it.",
    "I paid $5.50. He paid €3.",
    "Привет. Как дела? Хорошо!",
    "नमस्ते। आप कैसे हैं?",
    "See ch. 5 for details. Or not.",
    "etc. and so on. Next.",
    "The year was 1999. The month was May.",
    "A line with a citation.[1] Another sentence.",
    "Read more » Share this. Tweet.",
    "This sentence has no end but has three words",
    "Line with :) emoticon. Next sentence.",
    "Semicolons; colons: and commas, no split. But this splits.",
    "Hey!Hey!Hey!",
    "Okay.. Maybe.. Not.",
    "Use the --force flag. It helps.",
    "x.y.z is a name. OK.",
    "The temperature was 30°C. It was hot.",
    "I live in the U.S. It is big.",
    "She earned a Ph.D. She is smart.",
    "Is this (the end?) or not.",
    "He said \"Go!\" and went.",
    "Multi\nline. Text\n\nhere.",
    "Wait.  ! Really.",
    "Yes. \u00a0No.",
    "Stop.\u00a0Go.",
    "Tab\tseparated. words here",
    "Hi.  (x) there.",
    "It was 5 p.m. Then 6.",
    "See x. Then y.",
]


def sample_corpus_snippets(path: str, n: int, rng: random.Random, max_chars: int = 400) -> list[str]:
    docs = read_corpus(path, None)
    docs.sort(key=lambda d: d[0])
    picked = rng.sample(range(len(docs)), n)
    out = []
    for idx in picked:
        text = docs[idx][1]
        starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n" and i + 1 < len(text) and text[i + 1].strip()]
        start = rng.choice(starts)
        out.append(text[start : start + max_chars])
    return out


def sample_corpus_lines(path: str, n: int, rng: random.Random, max_chars: int = 400) -> list[str]:
    docs = read_corpus(path, None)
    docs.sort(key=lambda d: d[0])
    out: list[str] = []
    order = list(range(len(docs)))
    rng.shuffle(order)
    for idx in order:
        if len(out) >= n:
            break
        lines = [ln.strip() for ln in docs[idx][1].splitlines()]
        lines = [ln for ln in lines if len(ln.split()) >= 3 and len(ln) <= max_chars and any(c in ln for c in ".?!")]
        if lines:
            out.append(rng.choice(lines))
    return out


def gen_vectors(outdir: str, corpora_dir: str) -> None:
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(20260601)
    web = os.path.join(corpora_dir, "web.parquet")
    books = os.path.join(corpora_dir, "books.parquet")
    wiki = os.path.join(corpora_dir, "wiki.parquet")

    word_texts = list(dict.fromkeys(WORD_CASES))
    word_texts += sample_corpus_snippets(web, 75, rng) + sample_corpus_snippets(books, 75, rng)
    with open(out / "spacy_words.jsonl", "w", encoding="utf-8") as f:
        for text in word_texts:
            words = list(split_into_words(text, Languages.english))
            f.write(json.dumps({"text": text, "words": words}, ensure_ascii=False) + "\n")

    sent_texts = list(dict.fromkeys(SENTENCE_CASES))
    sent_texts += sample_corpus_lines(web, 30, rng) + sample_corpus_lines(books, 20, rng) + sample_corpus_lines(wiki, 10, rng)
    with open(out / "sentences.jsonl", "w", encoding="utf-8") as f:
        for text in sent_texts:
            sents = list(split_into_sentences(text, Languages.english))
            f.write(json.dumps({"text": text, "sentences": sents}, ensure_ascii=False) + "\n")
    print(f"wrote {out / 'spacy_words.jsonl'} ({len(word_texts)} vectors), {out / 'sentences.jsonl'} ({len(sent_texts)} vectors)")


# ----------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", nargs="+", default=[], help="Parquet files with `id` and `text` columns")
    ap.add_argument("--midtrain", help="midtrain binary to compare against")
    ap.add_argument("--limit", type=int, help="first N rows of each corpus")
    ap.add_argument("--bench", action="store_true", help="print MB/s per filter (and midtrain's ratio)")
    ap.add_argument("--filters", default=",".join(FILTERS), help="comma-separated subset of: " + ", ".join(FILTERS))
    ap.add_argument("--min-agreement", type=float, default=99.0, help="percent; exit 1 below this")
    ap.add_argument("--tmpdir", help="keep midtrain outputs here instead of a temporary folder")
    ap.add_argument("--dump-verdicts", help="write datatrove verdicts as JSON lines {filter, id, verdict} here")
    ap.add_argument("--gen-vectors", metavar="DIR", help="regenerate spacy_words.jsonl and sentences.jsonl in DIR")
    ap.add_argument("--corpora-dir", default="/work/shared/corpora", help="where --gen-vectors samples from")
    ap.add_argument("--dump-spacy-rules", metavar="FILE", help="write spaCy en tokenizer data as JSON")
    args = ap.parse_args()

    if args.gen_vectors or args.dump_spacy_rules:
        if args.gen_vectors:
            gen_vectors(args.gen_vectors, args.corpora_dir)
        if args.dump_spacy_rules:
            dump_spacy_rules(args.dump_spacy_rules)
        if not args.corpus:
            return 0
    if not args.corpus:
        ap.error("--corpus is required")

    names = [n.strip() for n in args.filters.split(",") if n.strip()]
    for n in names:
        if n not in FILTERS:
            ap.error(f"unknown filter {n!r} (known: {', '.join(FILTERS)})")

    docs: list[tuple[str, str]] = []
    per_corpus: list[list[tuple[str, str]]] = []
    for path in args.corpus:
        rows = read_corpus(path, args.limit)
        per_corpus.append(rows)
        docs.extend(rows)
    ids = [d[0] for d in docs]
    if len(set(ids)) != len(ids):
        print("warning: duplicate ids across the corpora; later rows win in the comparison", file=sys.stderr)
    total_bytes = sum(len(t.encode("utf-8")) for _, t in docs)
    print(f"corpus: {len(docs)} documents, {total_bytes / 1e6:.2f} MB text from {', '.join(args.corpus)}")

    # warm up spaCy (model construction is not filter work)
    split_into_words("warm up the tokenizer.", Languages.english)
    split_into_sentences("Warm up. The sentencizer.", Languages.english)

    tmp_ctx = None
    tmpdir: Path | None = None
    midtrain_corpora = list(args.corpus)
    if args.midtrain:
        if args.tmpdir:
            tmpdir = Path(args.tmpdir)
            tmpdir.mkdir(parents=True, exist_ok=True)
        else:
            tmp_ctx = tempfile.TemporaryDirectory(prefix="dt-parity-")
            tmpdir = Path(tmp_ctx.name)
        if args.limit is not None:
            (tmpdir / "input").mkdir(exist_ok=True)
            midtrain_corpora = []
            for k, (path, rows) in enumerate(zip(args.corpus, per_corpus)):
                dst = tmpdir / "input" / f"{k:02d}_{Path(path).stem}.parquet"
                pq.write_table(pa.table({"id": [r[0] for r in rows], "text": [r[1] for r in rows]}), dst)
                midtrain_corpora.append(str(dst))

    dump_f = open(args.dump_verdicts, "w", encoding="utf-8") if args.dump_verdicts else None
    failed = []
    bench_rows = []
    for name in names:
        print(f"\n== {name}")
        dt_verdicts, dt_texts, dt_secs, errors = run_datatrove(name, docs)
        dt_drop = sum(1 for v in dt_verdicts.values() if v != KEEP)
        print(f"  datatrove: dropped {dt_drop}/{len(docs)} in {dt_secs:.1f}s; {reason_histogram(dt_verdicts)}")
        if errors:
            print(f"  datatrove raised on {errors} documents (counted as verdict 'error:...')")
        if dump_f:
            for doc_id, _ in docs:
                dump_f.write(json.dumps({"filter": name, "id": doc_id, "verdict": dt_verdicts[doc_id]}) + "\n")
        mt_secs = None
        if args.midtrain:
            mt_verdicts, mt_texts, mt_secs = run_midtrain(args.midtrain, name, midtrain_corpora, tmpdir)
            if mt_verdicts is None:
                failed.append(name)
            else:
                pct = compare(name, docs, dt_verdicts, dt_texts, mt_verdicts, mt_texts)
                if pct < args.min_agreement:
                    failed.append(name)
        bench_rows.append((name, dt_secs, mt_secs))

    if dump_f:
        dump_f.close()

    if args.bench:
        mb = total_bytes / 1e6
        print(f"\n== bench ({mb:.2f} MB of text, one process)")
        print(f"  {'filter':32s} {'datatrove MB/s':>15s} {'midtrain MB/s':>15s} {'speedup':>9s}")
        for name, dt_secs, mt_secs in bench_rows:
            dt = mb / dt_secs if dt_secs > 0 else float("inf")
            if mt_secs:
                mt = mb / mt_secs
                print(f"  {name:32s} {dt:15.3f} {mt:15.3f} {dt_secs / mt_secs:8.1f}x")
            else:
                print(f"  {name:32s} {dt:15.3f} {'-':>15s} {'-':>9s}")

    if tmp_ctx is not None:
        tmp_ctx.cleanup()
    if failed:
        print(f"\nFAIL: {', '.join(failed)} below {args.min_agreement}% agreement (or midtrain failed)")
        return 1
    if args.midtrain:
        print(f"\nPASS: all filters at or above {args.min_agreement}% keep/drop agreement")
    return 0


if __name__ == "__main__":
    sys.exit(main())
