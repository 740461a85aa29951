#!/usr/bin/env python3
"""Regenerate the spaCy English tokenizer tables embedded by `pipeline::text::words`.

Run with the parity venv (scripts/parity/setup_venv.sh datatrove):

    .venv-parity/bin/python scripts/parity/gen_spacy_tables.py [--out pipeline/src/text/data]

Writes two files (deterministic output):

- spacy_en_specials.json: `specials` (every tokenizer special case: chunk -> token texts),
  `matcher` (the special cases that the post-pass PhraseMatcher re-applies: key -> the key's
  tokenization without special cases) and `digit_suffixes` (CURRENCY and UNITS strings, which
  are suffixes only after an ASCII digit).
- spacy_en_char_classes.txt: one character class per line, `name: lo-hi lo-hi ...` (hex code
  point ranges), enumerated by testing every code point against the compiled Python regex.

The Rust side hand-codes the structure of the prefix/suffix/infix/URL patterns (see words.rs);
this script asserts that the installed spaCy still builds them from the pieces it assumes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

EXPECTED_SPACY = "3.8.18"


def ranges(pred) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    start = None
    for cp in range(0x110000):
        ok = pred(chr(cp))
        if ok and start is None:
            start = cp
        elif not ok and start is not None:
            out.append((start, cp - 1))
            start = None
    if start is not None:
        out.append((start, 0x10FFFF))
    return out


def class_pred(body: str):
    rx = re.compile(f"[{body}]")
    return lambda c: rx.fullmatch(c) is not None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[2] / "pipeline/src/text/data"))
    args = ap.parse_args()

    import spacy
    from spacy.lang import char_classes as cc
    from spacy.lang import punctuation as punct
    from spacy.pipeline.sentencizer import Sentencizer
    from spacy.symbols import ORTH
    from spacy.tokenizer import Tokenizer

    if spacy.__version__ != EXPECTED_SPACY:
        print(f"warning: spaCy {spacy.__version__}, tables were designed for {EXPECTED_SPACY}", file=sys.stderr)

    nlp = spacy.blank("en")
    tok = nlp.tokenizer
    assert tok.token_match is None, "English token_match is expected to be None"
    # The Rust port hard-codes the rule structure; fail loudly if spaCy's lists changed.
    assert punct.TOKENIZER_PREFIXES == ["§", "%", "=", "—", "–", r"\+(?![0-9])"] + cc.LIST_PUNCT + cc.LIST_ELLIPSES + cc.LIST_QUOTES + cc.LIST_CURRENCY + cc.LIST_ICONS
    assert cc.LIST_ELLIPSES == [r"\.\.+", "…"] and cc.HYPHENS == "-|–|—|--|---|——|~"
    # An empty alternative (from the double space in spaCy's quote list) would match everywhere.
    assert tok.prefix_search("x") is None and tok.suffix_search("x") is None and not tok.find_infix("x")
    url = tok.url_match.__self__.pattern
    assert f"[{cc.ALPHA_LOWER}]{{2,63}}" in url, "URL TLD class is expected to be ALPHA_LOWER"

    # Special cases and the matcher keys (tokenized without special cases, like
    # Tokenizer.add_special_case does for its PhraseMatcher).
    specials = {k: [d[ORTH] for d in v] for k, v in tok.rules.items()}
    plain = Tokenizer(nlp.vocab, rules={}, prefix_search=tok.prefix_search, suffix_search=tok.suffix_search,
                      infix_finditer=tok.infix_finditer, url_match=tok.url_match)
    matcher = {
        k: [t.text for t in plain(k)]
        for k in specials
        if tok.find_prefix(k) or tok.find_infix(k) or tok.find_suffix(k) or " " in k
    }
    digit_suffixes = sorted({s.replace("\\", "") for s in cc.LIST_CURRENCY + cc.LIST_UNITS if s})

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["{", f' "spacy_version": {json.dumps(spacy.__version__)},', ' "specials": [']
    items = sorted(specials.items())
    lines += [f"  {json.dumps([k, v], ensure_ascii=False)}" + ("," if i + 1 < len(items) else "") for i, (k, v) in enumerate(items)]
    lines += [" ],", ' "matcher": [']
    items = sorted(matcher.items())
    lines += [f"  {json.dumps([k, v], ensure_ascii=False)}" + ("," if i + 1 < len(items) else "") for i, (k, v) in enumerate(items)]
    lines += [" ],", f' "digit_suffixes": {json.dumps(digit_suffixes, ensure_ascii=False)}', "}"]
    (out / "spacy_en_specials.json").write_text("\n".join(lines) + "\n", encoding="utf-8")

    # Character classes. prefix_char / suffix_char: single characters that the prefix / suffix
    # regex splits off regardless of context ('+' needs its lookahead checked separately).
    prefix_search, suffix_search = tok.prefix_search, tok.suffix_search

    def prefix_char(c: str) -> bool:
        m = prefix_search(c + "a")
        return m is not None and m.end() == 1

    def suffix_char(c: str) -> bool:
        m = suffix_search("\x00" + c)  # \x00 satisfies none of the lookbehinds
        return m is not None and m.start() == 1

    sdl = f"0-9{cc.ALPHA_LOWER}%²\\-\\+{cc.PUNCT}(?:{cc.CONCAT_QUOTES})"
    classes = {
        "alpha": class_pred(cc.ALPHA),
        "alpha_lower": class_pred(cc.ALPHA_LOWER),
        "alpha_upper": class_pred(cc.ALPHA_UPPER),
        "quotes": class_pred(cc.CONCAT_QUOTES),
        "icons": class_pred(cc.CONCAT_ICONS),
        "suffix_dot_lookbehind": class_pred(sdl),
        "prefix_char": prefix_char,
        "suffix_char": suffix_char,
        "sent_punct": lambda c, s=frozenset(Sentencizer.default_punct_chars): c in s,
    }
    assert all(len(c) == 1 for c in Sentencizer.default_punct_chars)
    with open(out / "spacy_en_char_classes.txt", "w", encoding="utf-8") as f:
        f.write(f"# spaCy {spacy.__version__} English character classes; generated by scripts/parity/gen_spacy_tables.py\n")
        for name, pred in classes.items():
            rs = ranges(pred)
            body = " ".join(f"{a:X}" if a == b else f"{a:X}-{b:X}" for a, b in rs)
            f.write(f"{name}: {body}\n")
            print(f"{name}: {len(rs)} ranges")
    print(f"wrote {out}: {len(specials)} specials, {len(matcher)} matcher keys, {len(digit_suffixes)} digit suffixes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
