#!/usr/bin/env python3
"""Differential check: midtrain's chat-template rendering against transformers' `apply_chat_template`.

Run with the parity venv (scripts/parity/setup_venv.sh transformers datatrove: transformers,
tokenizers, jinja2, numpy, pyarrow) and SmolLM2-135M-Instruct (../shared/models/get-smollm2.sh):

    .venv-parity/bin/python scripts/parity/chat_templates.py \
        --midtrain target/debug/midtrain --smollm2 .models/smollm2-135m \
        [--instruct ../shared/corpora/instruct.parquet] [--instruct-rows N] [--date YYYY-MM-DD] \
        [--templates smollm2,llama3,...] [--exclude NAME,...] [--show N] [--keep DIR]

Templates (the tokenizer is always SmolLM2's tokenizer.json; Llama 3's special tokens are then
plain text to it, which is fine for rendering parity):

- smollm2             SmolLM2's own template, midtrain given the model folder;
- smollm2-generation  the same text, written with `{% generation %}` blocks and whitespace control
                      (a chat_template.jinja in a folder beside SmolLM2's tokenizer_config.json);
- llama3              Llama 3 Instruct's template, in a tokenizer_config.json (bos_token
                      <|begin_of_text|>, eos_token <|eot_id|>);
- llama3.2            the Llama 3.1 Instruct layout with Llama 3.2's `strftime_now("%d %b %Y")` date,
                      as a .jinja file (same special tokens); midtrain gets --template-date DATE and
                      transformers' `strftime_now` sees the same date (its `datetime` is patched);
- chatml              midtrain's built-in `chatml` against the standard ChatML template string
                      (the built-in text, from the manifest, is compared with it too);
- plain               midtrain's built-in `plain`, its own text (from the manifest) rendered by
                      transformers: engine parity only, there is no upstream for it; tokenized with
                      --bos '<|im_start|>' --eos '<|im_end|>' so that a BOS is framed and masked too.

Each template renders the same conversations: hand-written edge cases (system/user/assistant,
multi-turn, unicode/emoji, empty and whitespace-only content, leading/trailing whitespace and
newlines, exotic whitespace, CRLF, control characters, curly braces and Jinja-looking text,
special-token strings, long turns, 100-turn chats, tool turns, extra/null/missing keys,
assistant-first), 60 seeded random ones, and --instruct-rows rows of --instruct (its `messages`
column, or else instruction [+ input] as the user turn and output as the assistant turn).
Everything goes into one JSONL file, tokenized twice by

    midtrain tokenize IN.jsonl --tokenizer TOK --out DIR --messages-column messages
        --chat-template SRC --on-error skip -q --force [--template-date DATE] [--loss-mask assistant]

Checks per template:

- rendered text: transformers' `apply_chat_template(messages, tokenize=False,
  add_generation_prompt=False)` equals midtrain's text exactly (decoded from its ids; decoding is
  first checked to round-trip transformers' text), and a conversation transformers cannot render
  is one midtrain removes (`--on-error skip`), and the other way round;
- token ids: each document (both runs) is `[bos_id]? + Tokenizer.encode(text,
  add_special_tokens=False).ids + [eos_id]` with the manifest's bos/eos and its
  `special_tokens_in_text` ("keep": special-token strings are the special ids; "split": encoded
  as text);
- loss mask (`PREFIX.loss`, one byte per token): 1 exactly on the tokens whose offsets overlap an
  assistant turn as transformers locates it, 0 on BOS, and 1 on the final EOS when the last
  assistant turn ends the text (midtrain's documented rule). Without `{% generation %}` the turns
  come from the incremental method: render turns[:i] with add_generation_prompt=True, then
  turns[:i+1]; the turn is the difference (a conversation where that is no continuation must be
  removed by midtrain too). With `{% generation %}` they are transformers' own `assistant_masks`
  (`return_assistant_tokens_mask=True`).

Prints per template: conversations, exact text matches, token id matches, mask matches
(mismatching tokens), the first --show mismatches with both strings around the first differing
offset; then `N passed, N failed`; exit status 1 when anything failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402
from transformers.utils import chat_template_utils  # noqa: E402

from parity_report import Report  # noqa: E402  (sibling module: scripts/parity/)

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_INSTRUCT = ROOT.parent / "shared" / "corpora" / "instruct.parquet"
MIDTRAIN_TIMEOUT_S = 1800
SEED = 20240601

# Llama 3 (Meta-Llama-3-8B-Instruct) as published.
LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 "
    "%}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

# The Llama 3.1 Instruct layout (system block with the knowledge cutoff and today's date, tool
# calls, ipython turns) with the date taken from strftime_now as in Llama 3.2 Instruct.
LLAMA32 = """{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message #}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{%- if tools is not none %}
    {{- "Environment: ipython\\n" }}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\\n\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\\n\\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\\n\\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\\n\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
        {{- '{"name": "' + tool_call.name + '", ' }}
        {{- '"parameters": ' }}
        {{- tool_call.arguments | tojson }}
        {{- "}" }}
        {{- "<|eot_id|>" }}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

# The standard ChatML template (as in transformers' chat-templating docs).
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
    "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# SmolLM2's template rewritten with {% generation %} around what the assistant generates
# (content + <|im_end|>\n) and with whitespace control; it renders the same text.
SMOLLM2_GENERATION = """{%- for message in messages %}
    {%- if loop.first and messages[0]['role'] != 'system' %}
        {{- '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}
    {%- endif %}
    {%- if message['role'] == 'assistant' %}
        {{- '<|im_start|>assistant\\n' }}
        {%- generation %}
            {{- message['content'] + '<|im_end|>' + '\\n' }}
        {%- endgeneration %}
    {%- else %}
        {{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

LLAMA_SPECIALS = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}
ALL_TEMPLATES = ["smollm2", "smollm2-generation", "llama3", "llama3.2", "chatml", "plain"]


# ---------------------------------------------------------------------------------------------
# Conversations


def S(c):
    return {"role": "system", "content": c}


def U(c):
    return {"role": "user", "content": c}


def A(c):
    return {"role": "assistant", "content": c}


WORDS = ("the quick brown fox jumps over lazy dog café naïve 日本語 中文 русский עברית العربية हिन्दी 😀 👩‍👩‍👧 🇫🇷 "
         "e\u0301 {{ }} {% %} {# #} ' \" \\ <|im_end|> <|eot_id|> <|endoftext|> 42 3.14 1,000 x=y; `code` $HOME "
         "%s\u200b").split(" ")
PADS = ["", "", "", " ", "  ", "\n", "\n\n", "\t", " \n ", "\r\n"]


def random_text(rng: random.Random) -> str:
    n = rng.choice([0, 1, 3, 8, 20, 60])
    words = [rng.choice(WORDS) for _ in range(n)]
    text = ""
    for w in words:
        text += w + rng.choice([" ", " ", " ", "\n", "\n\n", "", ", "])
    return rng.choice(PADS) + text + rng.choice(PADS)


def random_conversations(rng: random.Random, n: int) -> list[tuple[str, list[dict]]]:
    out = []
    for i in range(n):
        msgs = [S(random_text(rng))] if rng.random() < 0.4 else []
        for t in range(rng.randint(1, 6)):
            msgs.append(U(random_text(rng)) if t % 2 == 0 else A(random_text(rng)))
        out.append((f"random-{i:02d}", msgs))
    return out


def handwritten_conversations() -> list[tuple[str, list[dict]]]:
    long_user = " ".join(f"Paragraph {i}: the quick brown fox jumps over the lazy dog, ünïcödé {i}."
                         for i in range(300))
    long_answer = "\n\n".join(f"{i}. {'lorem ipsum dolor sit amet ' * 20}".strip() for i in range(60))
    many = [S("You count.")]
    for i in range(100):
        many += [U(f"What comes after {i}?"), A(f"{i + 1}")]
    return [
        ("sys-user-asst", [S("You are a concise assistant."), U("What is 2+2?"), A("4.")]),
        ("user-asst", [U("Hi"), A("Hello! How can I help?")]),
        ("multi-turn", [S("Be helpful."), U("Name a fruit."), A("Apple."), U("Another?"), A("Banana."),
                        U("And a vegetable?"), A("Carrot.")]),
        ("multi-turn-no-system", [U("Hi "), A(" Hello!"), U("2+2?"), A("4")]),
        ("unicode-emoji", [U("Ünïcödé: café, naïve, 日本語, 中文, русский, עברית, العربية, हिन्दी"),
                           A("Emoji: 😀 👩‍👩‍👧‍👦 🇫🇷 ✨ e\u0301 \U0001F9D1\u200d\U0001F4BB \U00010348 ﷽")]),
        ("empty-contents", [S(""), U(""), A("")]),
        ("empty-assistant", [U("Say nothing."), A("")]),
        ("whitespace-only", [U(" "), A("  \n  "), U("\n"), A("\t")]),
        ("leading-trailing-whitespace", [S("  padded system  "), U("\n\n  leading and trailing  \n"),
                                         A("\tTabbed answer\t\n\n"), U("   spaces"), A("newline at end\n")]),
        ("newlines-inside", [U("line 1\nline 2\n\nline 4"), A("a\n\n\n\nb")]),
        ("crlf", [U("line one\r\nline two\r\n"), A("ok\r\n")]),
        ("nbsp-ideographic-space", [U("\u00a0nbsp\u00a0"), A("\u3000ideographic\u3000")]),
        ("ascii-separators", [U("\x1cfile sep\x1f"), A("\x1dgroup\x1e")]),
        ("unicode-line-separators", [U("\u2028ls\u2029"), A("\x85nel\x0b\x0c")]),
        ("jinja-looking", [U("{{ messages }} {% if true %}yes{% endif %} {# comment #} {{ bos_token }}"),
                           A("{%- raw %}{{ x }}{% endraw -%} {{'}}'}} }}{{ {% %} {'role': 'x'} "
                             "{{ raise_exception('no') }}")]),
        ("curly-braces", [U("{}{{}}{{{}}}{ }"), A("{\"json\": {\"nested\": [1, 2, {}]}}")]),
        ("quotes-backslashes", [U('She said "hi" and \'bye\' \\n \\t \\\\ \\u0041'),
                                A("C:\\path\\to\\file `code` $x %s %(name)s %d %%")]),
        ("special-token-strings", [U("<|im_start|>user\nfake<|im_end|> <|endoftext|>"),
                                   A("<|eot_id|><|start_header_id|>assistant<|end_header_id|> <|begin_of_text|>")]),
        ("control-chars", [U("nul\x00byte esc\x1b[31mred\x1b[0m bell\x07"), A("del\x7f ok \ufeffbom")]),
        ("long-turns", [S("Summarize."), U(long_user), A(long_answer)]),
        ("many-turns", many),
        ("user-only", [U("Is anyone there?")]),
        ("ends-with-user", [U("Q1"), A("A1"), U("Q2")]),
        ("system-only", [S("Only a system prompt.")]),
        ("system-user", [S("sys"), U("no answer yet")]),
        ("consecutive-assistant", [U("Tell me two things."), A("One."), A("Two.")]),
        ("consecutive-user", [U("First."), U("Second."), A("Both read.")]),
        ("assistant-first", [A("I speak first."), U("ok"), A("done")]),
        ("system-after-start", [U("hi"), S("late system"), A("ok")]),
        ("custom-role", [{"role": "developer", "content": "dev note"}, U("hi"), A("hello")]),
        ("tool-role", [U("Weather in Paris?"), {"role": "tool", "content": "{\"temp\": 21}"}, A("21 degrees.")]),
        ("extra-keys", [{"role": "user", "content": "Hi", "name": "bob"},
                        {"role": "assistant", "content": "Hi Bob", "weight": 1}]),
        ("null-keys", [U("Hi"), {"role": "assistant", "content": "Hello", "tool_calls": None, "name": None}]),
        ("tool-call", [U("Weather?"),
                       {"role": "assistant", "content": "",
                        "tool_calls": [{"type": "function",
                                        "function": {"name": "get_weather",
                                                     "arguments": {"city": "Paris", "days": 3, "unit": "°C"}}}]},
                       {"role": "tool", "content": "sunny"}, A("Sunny.")]),
        ("tool-dict-content", [U("numbers"),
                               {"role": "tool",
                                "content": {"b": 1, "a": [0.5, 3.0, -2, True, None], "s": "é\"\n\t/<>&"}},
                               A("ok")]),
        ("tool-float-content", [U("floats"), {"role": "tool", "content": {"x": [0.1, 1e20, 1e-7, -0.0, 2.5e-3]}},
                                A("ok")]),
        ("missing-content", [U("x"), {"role": "assistant"}]),
    ]


def instruct_conversations(path: Path, rows: int) -> tuple[list[tuple[str, list[dict]]], str]:
    if rows <= 0:
        return [], "skipped (--instruct-rows 0)"
    if not path.is_file():
        return [], f"skipped: {path} not found"
    pf = pq.ParquetFile(path)
    names = pf.schema_arrow.names
    total = pf.metadata.num_rows
    take = sorted({int(i) for i in np.linspace(0, total - 1, min(rows, total))})
    if "messages" in names:
        table = pq.read_table(path, columns=[c for c in ("id", "messages") if c in names])
        rows_ = table.take(take).to_pylist()
        return [(f"instruct-{r.get('id', i)}", list(r["messages"])) for i, r in zip(take, rows_)], \
            f"{len(take)} rows of its messages column"
    if not {"instruction", "output"} <= set(names):
        return [], f"skipped: {path.name} has no messages column (columns: {', '.join(names)})"
    cols = [c for c in ("id", "instruction", "input", "output") if c in names]
    rows_ = pq.read_table(path, columns=cols).take(take).to_pylist()
    out = []
    for k, (i, r) in enumerate(zip(take, rows_)):
        user = r["instruction"] + (f"\n\n{r['input']}" if r.get("input") else "")
        msgs = [U(user), A(r["output"])]
        if k % 3 == 0:
            msgs.insert(0, S("You are a helpful assistant."))
        out.append((f"instruct-{r.get('id', i)}", msgs))
    return out, (f"{len(out)} rows: no messages column, so instruction [+ input] is the user turn and output the "
                 "assistant turn (a system turn on every third)")


# ---------------------------------------------------------------------------------------------
# transformers side


class NotLocated(Exception):
    pass


def patch_strftime_now(date: dt.date) -> None:
    """transformers' strftime_now calls `datetime.now()` from chat_template_utils' globals."""

    class FixedDatetime(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(date.year, date.month, date.day)

    chat_template_utils.datetime = FixedDatetime


@dataclass
class Template:
    name: str
    title: str
    source: str  # --chat-template
    hf: object  # a transformers tokenizer
    hf_template: str | None  # None: the tokenizer's own
    generation: bool = False
    date: bool = False
    from_manifest: bool = False  # hf_template = the text in midtrain's manifest (built-ins)
    extra: tuple[str, ...] = ()  # more `midtrain tokenize` arguments

    def template_text(self) -> str:
        return self.hf_template if self.hf_template is not None else self.hf.get_chat_template()

    def render(self, messages: list[dict], gen: bool) -> str:
        if not messages:  # apply_chat_template refuses an empty conversation; midtrain renders it
            texts, _ = chat_template_utils.render_jinja_template(
                conversations=[messages], chat_template=self.template_text(), add_generation_prompt=gen,
                **self.hf.special_tokens_map)
            return texts[0]
        return self.hf.apply_chat_template(messages, chat_template=self.hf_template, tokenize=False,
                                           add_generation_prompt=gen)

    def spans(self, messages: list[dict], text: str) -> list[tuple[int, int]]:
        """Character ranges of the assistant turns (transformers' view)."""
        if self.generation:
            _, indices = chat_template_utils.render_jinja_template(
                conversations=[messages], chat_template=self.template_text(), return_assistant_tokens_mask=True,
                add_generation_prompt=False, **self.hf.special_tokens_map)
            return [(s, e) for s, e in indices[0] if e > s]
        spans = []
        for i, m in enumerate(messages):
            if m.get("role") != "assistant":
                continue
            prompt = self.render(messages[:i], True)
            through = self.render(messages[: i + 1], False)
            if not through.startswith(prompt) or not text.startswith(through) or len(through) == len(prompt):
                raise NotLocated(f"turn {i} is not a continuation of the turns before it")
            spans.append((len(prompt), len(through)))
        return spans

    def hf_assistant_mask(self, messages: list[dict]) -> tuple[list[int], list[int]]:
        out = self.hf.apply_chat_template(messages, chat_template=self.hf_template, tokenize=True, return_dict=True,
                                          return_assistant_tokens_mask=True)
        return list(out["input_ids"]), list(out["assistant_masks"])


@dataclass
class Expected:
    text: str | None = None
    error: str | None = None
    spans: list[tuple[int, int]] | None = None
    span_error: str | None = None
    hf_mask: list[int] | None = None  # generation templates: transformers' assistant_masks
    hf_ids: list[int] | None = None


def expectations(t: Template, convs) -> dict[str, Expected]:
    out = {}
    for cid, msgs in convs:
        e = Expected()
        try:
            e.text = t.render(msgs, False)
        except Exception as ex:  # noqa: BLE001 - any template error: midtrain must remove the row
            e.error = f"{type(ex).__name__}: {ex}"
            out[cid] = e
            continue
        try:
            e.spans = t.spans(msgs, e.text)
            if t.generation:
                e.hf_ids, e.hf_mask = t.hf_assistant_mask(msgs)
        except Exception as ex:  # noqa: BLE001
            e.span_error = f"{type(ex).__name__}: {ex}"
        out[cid] = e
    return out


# ---------------------------------------------------------------------------------------------
# midtrain side


@dataclass
class Dataset:
    manifest: dict
    docs: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    removed: dict[str, str]


def read_idx(prefix: Path) -> tuple[np.ndarray, np.dtype]:
    raw = prefix.with_name(prefix.name + ".idx").read_bytes()
    assert raw[:9] == b"MMIDIDX\x00\x00", f"{prefix}.idx: bad magic"
    code = raw[17]
    dtype = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 8: np.uint16}[code]
    n = int(np.frombuffer(raw, np.uint64, 1, 18)[0])
    lengths = np.frombuffer(raw, np.int32, n, 34).astype(np.int64)
    return lengths, np.dtype(dtype)


def read_dataset(out: Path) -> Dataset:
    manifest = json.loads((out / "manifest.json").read_text())
    docs, masks = {}, {}
    for shard in manifest["shards"]:
        prefix = out / shard["prefix"]
        lengths, dtype = read_idx(prefix)
        tokens = np.fromfile(prefix.with_name(prefix.name + ".bin"), dtype=dtype)
        ids = pq.read_table(out / shard["sidecar"], columns=["id", "tokens"]).to_pydict()
        loss = np.fromfile(out / shard["loss_mask"], dtype=np.uint8) if shard.get("loss_mask") else None
        assert len(ids["id"]) == len(lengths) and int(lengths.sum()) == len(tokens), f"{prefix}: sizes disagree"
        if loss is not None:
            assert len(loss) == len(tokens), f"{prefix}: .loss has {len(loss)} bytes for {len(tokens)} tokens"
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        for k, doc_id in enumerate(ids["id"]):
            a, b = int(offsets[k]), int(offsets[k + 1])
            assert ids["tokens"][k] == b - a, f"{prefix}: sidecar tokens of {doc_id} disagree with the index"
            docs[doc_id] = tokens[a:b].astype(np.int64)
            if loss is not None:
                masks[doc_id] = loss[a:b]
    removed = {}
    if (out / "removed.parquet").is_file():
        r = pq.read_table(out / "removed.parquet").to_pydict()
        removed = dict(zip(r.get("id", []), r.get("reason", [""] * len(r.get("id", [])))))
    return Dataset(manifest, docs, masks, removed)


def run_midtrain(args, t: Template, inp: Path, out: Path, mask: bool) -> Dataset:
    cmd = [args.midtrain, "tokenize", str(inp), "--tokenizer", args.tokenizer, "--out", str(out),
           "--messages-column", "messages", "--chat-template", t.source, "--on-error", "skip", "-q", "--force"]
    if t.date:
        cmd += ["--template-date", args.date]
    cmd += list(t.extra)
    if mask:
        cmd += ["--loss-mask", "assistant"]
    print("$ " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=MIDTRAIN_TIMEOUT_S)
    if p.returncode != 0:
        raise RuntimeError(f"midtrain exited {p.returncode}: {p.stderr.strip()[-2000:]}")
    return read_dataset(out)


# ---------------------------------------------------------------------------------------------
# comparison


def first_diff(a, b) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n if len(a) != len(b) else -1


def window(s: str, at: int, ctx: int = 60) -> str:
    lo = max(0, at - ctx)
    return ("…" if lo else "") + repr(s[lo: at + ctx])[1:-1] + ("…" if at + ctx < len(s) else "")


def frame(manifest: dict) -> tuple[list[int], int, str]:
    tok = manifest["tokenizer"]
    bos = [tok["bos_id"]] if tok.get("bos_id") is not None else []
    return bos, tok["eos_id"], tok.get("special_tokens_in_text") or "split"


@dataclass
class Tally:
    conversations: int = 0
    text_equal: int = 0  # agreements: equal texts, or both sides refuse the conversation
    text_exact: int = 0  # texts transformers renders that midtrain renders exactly alike
    errors_hf: int = 0
    errors_mt: int = 0
    ids_equal: int = 0
    ids_docs: int = 0
    mask_equal: int = 0
    mask_docs: int = 0
    mask_tokens: int = 0
    mask_bad_tokens: int = 0
    span_errors: int = 0
    not_roundtrip: list[str] = field(default_factory=list)
    not_compared: list[str] = field(default_factory=list)  # masks of documents whose ids differ
    problems: dict[str, list[str]] = field(default_factory=lambda: {"text": [], "ids": [], "mask": []})


def encoders(tokenizer: str) -> dict[str, Tokenizer]:
    keep = Tokenizer.from_file(tokenizer)
    split = Tokenizer.from_file(tokenizer)
    split.encode_special_tokens = True
    return {"keep": keep, "split": split}


def check_template(rep: Report, args, t: Template, convs, tmp: Path, enc: dict[str, Tokenizer]) -> None:
    print(f"\n=== {t.name}: {t.title}", flush=True)
    work = tmp / t.name
    work.mkdir(parents=True, exist_ok=True)
    inp = work / "conversations.jsonl"
    with inp.open("w", encoding="utf-8") as f:
        for cid, msgs in convs:
            f.write(json.dumps({"id": cid, "messages": msgs}, ensure_ascii=False) + "\n")
    plain_run = run_midtrain(args, t, inp, work / "all", mask=False)
    mask_run = run_midtrain(args, t, inp, work / "assistant", mask=True)
    mt_text = plain_run.manifest["config"]["input"]["render"]["chat_template_text"]
    if t.from_manifest:
        t.hf_template = mt_text
    if t.name == "chatml":
        same = "".join(mt_text.split()) == "".join(CHATML.split())
        rep.check(same, "chatml: built-in text is the standard ChatML template",
                  "equal up to whitespace inside {{ }}" if same and mt_text != CHATML else
                  ("equal" if same else f"built-in {mt_text!r} vs standard {CHATML!r}"))
    else:
        hf_text = t.template_text()
        same = mt_text.rstrip("\n") == hf_text.rstrip("\n")
        print(f"info: template text midtrain read {'=' if same else '!='} transformers' chat_template "
              f"({len(mt_text)} vs {len(hf_text)} chars)", flush=True)
    if t.date:
        want = "Today Date: " + dt.date.fromisoformat(args.date).strftime("%d %b %Y")
        print(f"info: strftime_now date: midtrain --template-date {args.date}, transformers patched; "
              f"expect {want!r}", flush=True)
    exp = expectations(t, convs)
    if t.date:
        undated = [cid for cid, e in exp.items() if e.text is not None and want not in e.text]
        rep.check(not undated, f"{t.name}: transformers' strftime_now gives the fixed date",
                  f"{len(undated)} texts without {want!r}" if undated else f"every text has {want!r}")
    bos, eos, mode = frame(mask_run.manifest)
    bos_p, eos_p, mode_p = frame(plain_run.manifest)
    print(f"info: manifest tokenizer: eos_id {eos}, bos_id {bos[0] if bos else None}, special_tokens_in_text "
          f"{mode!r} (without mask: {mode_p!r})", flush=True)
    tally = Tally(conversations=len(convs))
    keep_tok = enc["keep"]
    for cid, msgs in convs:
        e = exp[cid]
        got = plain_run.docs.get(cid)
        # (a) rendering, and rendering errors on both sides
        if e.error is not None:
            tally.errors_hf += 1
        if got is None:
            tally.errors_mt += 1
        if e.error is not None or got is None:
            if e.error is not None and got is None:
                tally.text_equal += 1
            elif got is None:
                tally.problems["text"].append(
                    f"{cid}: transformers renders it ({len(e.text)} chars) but midtrain removed it: "
                    f"{plain_run.removed.get(cid, '?')}")
            else:
                inner = got[len(bos_p):-1].tolist()
                tally.problems["text"].append(
                    f"{cid}: transformers raised {e.error!r} but midtrain rendered "
                    f"{window(keep_tok.decode(inner, skip_special_tokens=False), 0, 100)!r}")
            continue
        want_enc = enc.get(mode_p, enc["split"]).encode(e.text, add_special_tokens=False)
        want = bos_p + want_enc.ids + [eos_p]
        roundtrip = keep_tok.decode(want_enc.ids, skip_special_tokens=False) == e.text
        if not roundtrip:
            tally.not_roundtrip.append(cid)
        inner = got[len(bos_p):-1].tolist() if len(got) >= len(bos_p) + 1 else got.tolist()
        mt = keep_tok.decode(inner, skip_special_tokens=False)
        ids_ok = got.tolist() == want
        text_ok = (mt == e.text) if roundtrip else ids_ok
        if text_ok:
            tally.text_equal += 1
            tally.text_exact += 1
        else:
            at = first_diff(e.text, mt)
            tally.problems["text"].append(
                f"{cid}: first difference at char {at} (transformers {len(e.text)} chars, midtrain {len(mt)})\n"
                f"      transformers: {window(e.text, at)}\n      midtrain:     {window(mt, at)}")
        # (b) token ids, run without the mask
        tally.ids_docs += 1
        if ids_ok:
            tally.ids_equal += 1
        else:
            at = first_diff(want, got.tolist())
            tally.problems["ids"].append(f"{cid} (no mask): first differing token {at}: expected "
                                         f"{want[at:at + 5]}, midtrain {got.tolist()[at:at + 5]}")
        # (c) the run with --loss-mask assistant: ids again, and the mask
        mgot = mask_run.docs.get(cid)
        if e.span_error is not None:
            tally.span_errors += 1
            if mgot is not None:
                tally.problems["mask"].append(
                    f"{cid}: transformers cannot locate the assistant turns ({e.span_error}) but midtrain kept it")
            continue
        if mgot is None:
            tally.problems["mask"].append(f"{cid}: transformers locates the assistant turns {e.spans} but midtrain "
                                          f"removed it: {mask_run.removed.get(cid, '?')}")
            continue
        m_enc = enc.get(mode, enc["split"]).encode(e.text, add_special_tokens=False)
        mwant = bos + m_enc.ids + [eos]
        tally.ids_docs += 1
        if mgot.tolist() != mwant:
            at = first_diff(mwant, mgot.tolist())
            tally.problems["ids"].append(f"{cid} (loss-mask run): first differing token {at}: expected "
                                         f"{mwant[at:at + 5]}, midtrain {mgot.tolist()[at:at + 5]}")
            tally.not_compared.append(cid)
            continue
        tally.ids_equal += 1
        if e.hf_mask is not None:  # {% generation %}: transformers' own assistant_masks
            if e.hf_ids != m_enc.ids:
                tally.problems["mask"].append(f"{cid}: transformers' tokenize=True ids differ from tokenizers'")
                continue
            body = e.hf_mask
        else:
            body = [int(any(s < b and t_end > a for a, b in e.spans)) for s, t_end in m_enc.offsets]
        last_end = e.spans[-1][1] if e.spans else -1
        want_mask = [0] * len(bos) + body + [int(last_end == len(e.text))]
        got_mask = mask_run.masks[cid].tolist()
        bad = sum(x != y for x, y in zip(want_mask, got_mask)) + abs(len(want_mask) - len(got_mask))
        tally.mask_docs += 1
        tally.mask_tokens += len(want_mask)
        tally.mask_bad_tokens += bad
        if bad == 0:
            tally.mask_equal += 1
        else:
            at = first_diff(want_mask, got_mask)
            toks = [keep_tok.id_to_token(i) for i in mwant[max(0, at - 2): at + 3]]
            tally.problems["mask"].append(
                f"{cid}: {bad} tokens differ, first at token {at} (tokens {toks}): expected "
                f"{want_mask[max(0, at - 2): at + 3]}, midtrain {got_mask[max(0, at - 2): at + 3]}")
    report_template(rep, args, t, tally, mask_run)


def report_template(rep: Report, args, t: Template, y: Tally, mask_run: Dataset) -> None:
    def show(kind: str) -> None:
        for p in y.problems[kind][: args.show]:
            print(f"    {p}", flush=True)
        if len(y.problems[kind]) > args.show:
            print(f"    ... and {len(y.problems[kind]) - args.show} more", flush=True)

    rendered = y.conversations - y.errors_hf
    rep.check(not y.problems["text"], f"{t.name}: rendered text",
              f"{y.text_equal}/{y.conversations} agree: {y.text_exact}/{rendered} texts equal to apply_chat_template "
              f"exactly; transformers raised on {y.errors_hf}, midtrain removed {y.errors_mt}"
              + (f"; {len(y.not_roundtrip)} compared by ids, as decoding does not give the text back: "
                 f"{', '.join(y.not_roundtrip[:5])}" if y.not_roundtrip else ""))
    show("text")
    rep.check(not y.problems["ids"], f"{t.name}: token ids", f"{y.ids_equal}/{y.ids_docs} documents (both runs)")
    show("ids")
    stats = mask_run.manifest.get("documents")
    rep.check(not y.problems["mask"], f"{t.name}: loss mask",
              f"{y.mask_equal}/{y.mask_docs} documents equal, {y.mask_bad_tokens} of {y.mask_tokens} tokens differ; "
              f"{y.span_errors} conversations whose turns cannot be located, removed by midtrain too "
              f"({stats} documents in the mask run)"
              + (f"; not compared where the ids differ: {', '.join(y.not_compared)}" if y.not_compared else ""))
    show("mask")
    print(f"summary {t.name}: conversations {y.conversations}, exact text matches {y.text_exact}/{rendered} "
          f"(agreements incl. refusals {y.text_equal}/{y.conversations}), token id matches "
          f"{y.ids_equal}/{y.ids_docs}, mask matches {y.mask_equal}/{y.mask_docs} "
          f"({y.mask_bad_tokens} mismatching tokens)", flush=True)


# ---------------------------------------------------------------------------------------------


def build_templates(args, tmp: Path, names: list[str]) -> list[Template]:
    smol = Path(args.smollm2).resolve()
    smol_tok = AutoTokenizer.from_pretrained(str(smol))
    out = []

    def folder(name: str, config: dict, jinja: str | None) -> Path:
        d = tmp / "templates" / name
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(args.tokenizer, d / "tokenizer.json")
        (d / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False))
        if jinja is not None:
            (d / "chat_template.jinja").write_text(jinja)
        return d

    smol_config = json.loads((smol / "tokenizer_config.json").read_text())
    for name in names:
        if name == "smollm2":
            out.append(Template(name, f"SmolLM2-135M-Instruct's own template (--chat-template {smol})", str(smol),
                                smol_tok, None))
        elif name == "smollm2-generation":
            d = folder(name, smol_config, SMOLLM2_GENERATION)
            out.append(Template(name, f"SmolLM2's template with {{% generation %}} blocks (--chat-template {d})",
                                str(d), AutoTokenizer.from_pretrained(str(d)), None, generation=True))
        elif name == "llama3":
            cfg = {"tokenizer_class": "TokenizersBackend", **LLAMA_SPECIALS, "chat_template": LLAMA3}
            d = folder(name, cfg, None)
            src = d / "tokenizer_config.json"
            out.append(Template(name, f"Llama 3 Instruct template (--chat-template {src})", str(src),
                                AutoTokenizer.from_pretrained(str(d)), None))
        elif name == "llama3.2":
            cfg = {"tokenizer_class": "TokenizersBackend", **LLAMA_SPECIALS}
            d = folder(name, cfg, LLAMA32)
            src = d / "chat_template.jinja"
            out.append(Template(name, f"Llama 3.1 layout with 3.2's strftime_now date (--chat-template {src})",
                                str(src), AutoTokenizer.from_pretrained(str(d)), None, date=True))
        elif name == "chatml":
            out.append(Template(name, "built-in chatml vs the standard ChatML template", "chatml", smol_tok, CHATML))
        elif name == "plain":
            out.append(Template(name, "built-in plain, its own text rendered by transformers (engine parity), "
                                "framed with --bos '<|im_start|>' --eos '<|im_end|>'", "plain", smol_tok, None,
                                from_manifest=True, extra=("--bos", "<|im_start|>", "--eos", "<|im_end|>")))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--midtrain", required=True, help="path of the midtrain binary")
    ap.add_argument("--smollm2", required=True, help="SmolLM2-135M-Instruct folder (tokenizer.json, template)")
    ap.add_argument("--tokenizer", help="tokenizer.json for every template (default: SMOLLM2/tokenizer.json)")
    ap.add_argument("--instruct", default=str(DEFAULT_INSTRUCT), help="parquet of real conversations")
    ap.add_argument("--instruct-rows", type=int, default=200, help="rows of --instruct, evenly spread (0: none)")
    ap.add_argument("--random", type=int, default=60, help="seeded random conversations")
    ap.add_argument("--date", default="2025-01-05", help="the date strftime_now gives (YYYY-MM-DD)")
    ap.add_argument("--templates", default=",".join(ALL_TEMPLATES), help="comma-separated subset of "
                    + ", ".join(ALL_TEMPLATES))
    ap.add_argument("--exclude", default="", help="comma-separated conversation names to leave out "
                    "(e.g. ascii-separators), to look past a known discrepancy")
    ap.add_argument("--show", type=int, default=3, help="mismatches printed per check")
    ap.add_argument("--keep", help="write inputs and outputs here (kept) instead of a temporary directory")
    args = ap.parse_args()
    args.midtrain = str(Path(args.midtrain).resolve())
    args.tokenizer = str(Path(args.tokenizer or Path(args.smollm2) / "tokenizer.json").resolve())
    names = [n.strip() for n in args.templates.split(",") if n.strip()]
    unknown = [n for n in names if n not in ALL_TEMPLATES]
    if unknown:
        ap.error(f"unknown templates {unknown}; known: {ALL_TEMPLATES}")
    patch_strftime_now(dt.date.fromisoformat(args.date))

    convs = handwritten_conversations() + random_conversations(random.Random(SEED), args.random)
    instruct, note = instruct_conversations(Path(args.instruct), args.instruct_rows)
    convs += instruct
    excluded = {n.strip() for n in args.exclude.split(",") if n.strip()}
    missing = excluded - {name for name, _ in convs}
    if missing:
        ap.error(f"--exclude: no conversations named {sorted(missing)}")
    convs = [(name, msgs) for name, msgs in convs if name not in excluded]
    convs = [(f"c{i:04d}-{name}", msgs) for i, (name, msgs) in enumerate(convs)]
    print(f"conversations: {len(convs)} ({len(handwritten_conversations())} hand-written, {args.random} random, "
          f"instruct: {note}" + (f"; left out: {', '.join(sorted(excluded))}" if excluded else "") + ")", flush=True)

    rep = Report()
    ctx = tempfile.TemporaryDirectory(prefix="chat_templates_") if not args.keep else None
    tmp = Path(args.keep) if args.keep else Path(ctx.name)
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        enc = encoders(args.tokenizer)
        for t in build_templates(args, tmp, names):
            try:
                check_template(rep, args, t, convs, tmp, enc)
            except Exception as e:  # noqa: BLE001
                rep.check(False, f"{t.name}: check ran", repr(e))
    finally:
        if ctx is not None:
            ctx.cleanup()
    print(f"\n{rep.passed} passed, {rep.failed} failed")
    return 1 if rep.failed else 0


if __name__ == "__main__":
    sys.exit(main())
