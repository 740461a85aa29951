//! The identity gate: the encoder midtrain uses, pieces and all, gives exactly the ids of
//! tokenizers 0.23 encoding each text whole, for tokenizers in the styles real models use.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::*;
use crate::read::{self, ReadOptions};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn fixture_json() -> Value {
    serde_json::from_slice(&std::fs::read(fixtures().join("tokenizer.json")).unwrap()).unwrap()
}

fn byte_level(use_regex: bool) -> Value {
    json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex})
}

fn split(pattern: &str) -> Value {
    json!({"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false})
}

const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The fixture vocabulary under the pre-tokenizers of GPT-2, Llama 3, Qwen 2 (NFC first) and
/// SmolLM (single digits), and one whose vocabulary lacks two bytes (as SmolLM2's does).
fn styles(dir: &Path) -> Vec<(&'static str, PathBuf)> {
    let mut out = Vec::new();
    let mut write = |name: &'static str, doc: Value| {
        let path = dir.join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
        out.push((name, path));
    };
    write("gpt2", fixture_json());
    let mut llama3 = fixture_json();
    llama3["pre_tokenizer"] = json!({"type": "Sequence", "pretokenizers": [split(LLAMA3), byte_level(false)]});
    write("llama3", llama3);
    let mut qwen = fixture_json();
    qwen["normalizer"] = json!({"type": "NFC"});
    qwen["pre_tokenizer"] = json!({"type": "Sequence", "pretokenizers": [split(QWEN2), byte_level(false)]});
    write("qwen2", qwen);
    let mut smollm = fixture_json();
    smollm["pre_tokenizer"] = json!({"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": true}, byte_level(true)]});
    write("smollm", smollm);
    let mut holes = fixture_json();
    let lacking = ['\u{104}', '\u{106}']; // bytes 0x04 and 0x06 in GPT-2's spelling
    holes["model"]["vocab"].as_object_mut().unwrap().retain(|t, _| !t.chars().any(|c| lacking.contains(&c)));
    holes["model"]["merges"]
        .as_array_mut()
        .unwrap()
        .retain(|m| !m.as_array().unwrap().iter().any(|p| p.as_str().unwrap().chars().any(|c| lacking.contains(&c))));
    write("missing-bytes", holes);
    out
}

/// 0.23 as it comes, the contract.
fn reference(path: &Path, specials_as_text: bool) -> tokenizers::Tokenizer {
    let mut t = tokenizers::Tokenizer::from_file(path).unwrap();
    t.set_encode_special_tokens(specials_as_text);
    t
}

/// 0.23 encoding `text` whole.
fn reference_ids(path: &Path, text: &str, specials_as_text: bool) -> Vec<u32> {
    ids_of(&reference(path, specials_as_text), text)
}

fn ids_of(reference: &tokenizers::Tokenizer, text: &str) -> Vec<u32> {
    reference.encode_fast(text, false).unwrap().get_ids().to_vec()
}

fn fixture_texts() -> Vec<String> {
    let mut texts = Vec::new();
    for name in ["web", "books", "code", "math", "instruct"] {
        let path = fixtures().join(format!("dumps/{name}.parquet"));
        let text_column = if name == "code" { "content" } else { "text" };
        let options = ReadOptions { text_column: text_column.into(), ..ReadOptions::default() };
        for batch in read::open(&path, &options).unwrap() {
            texts.extend(batch.unwrap().documents.into_iter().map(|d| d.text));
        }
    }
    assert!(texts.len() > 100, "the fixture dumps are there");
    texts
}

#[test]
fn every_style_is_served_by_1x_with_the_ids_of_0_23() {
    let dir = tempfile::tempdir().unwrap();
    let mut texts = probes::adversarial();
    texts.extend(fixture_texts().into_iter().take(300));
    texts.push(format!("{}!", "z".repeat(1 << 20))); // 1 MB without a space
    texts.push("\u{4}start and \u{6} inside".into());
    for (style, path) in styles(dir.path()) {
        let tok = TextTokenizer::from_file(&path, None, None).unwrap();
        match (style, tok.encoder()) {
            ("missing-bytes", Encoder::Fast { sentinels: 2 }) | (_, Encoder::Fast { sentinels: 0 }) => {}
            (_, other) => panic!("{style}: {other:?}"),
        }
        for mode in [SpecialTokensInText::Split, SpecialTokensInText::Keep] {
            let tok = TextTokenizer::from_file(&path, None, None).unwrap().with_special_tokens_in_text(mode);
            let reference = reference(&path, mode == SpecialTokensInText::Split);
            let mut fell_back = 0;
            for text in &texts {
                let want = ids_of(&reference, text);
                let mut got = Vec::new();
                fell_back += tok
                    .encode_in_pieces(text, ENCODE_PIECE_BYTES, tok.specials_in_text, &mut got)
                    .unwrap()
                    .reference_pieces;
                assert_eq!(got, want, "{style} {mode:?}: {:?}", text.chars().take(60).collect::<String>());
            }
            // Only the texts with the bytes its vocabulary lacks go to 0.23.
            let expected = if style == "missing-bytes" { 2 } else { 0 };
            assert_eq!(fell_back, expected, "{style} {mode:?}");
        }
    }
}

#[test]
fn small_pieces_cut_where_the_tokenizer_splits_give_the_ids_of_the_whole() {
    let dir = tempfile::tempdir().unwrap();
    let texts = fixture_texts();
    let joined: String = texts.iter().take(200).map(|t| t.as_str()).collect::<Vec<_>>().join("\n\n");
    for (style, path) in styles(dir.path()) {
        let tok = TextTokenizer::from_file(&path, None, None).unwrap();
        assert_eq!(tok.cuts, cuts::CutRule::Anywhere, "{style}");
        let want = reference_ids(&path, &joined, true);
        for piece in [64, 333, 4096] {
            let mut got = Vec::new();
            tok.encode_in_pieces(&joined, piece, tok.specials_in_text, &mut got).unwrap();
            assert_eq!(got, want, "{style}, pieces of {piece} bytes");
        }
    }
}

#[test]
fn three_megabyte_documents_with_and_without_spaces_encode_like_the_whole() {
    let path = fixtures().join("tokenizer.json");
    let tok = TextTokenizer::from_file(&path, None, None).unwrap();
    let no_spaces: String = "abcdefghij".repeat(300_000);
    let prose = "The garden was quiet.  Rain fell on the   old stones\nand the path, again; 42 times!\n".repeat(36_000);
    for text in [&no_spaces, &prose] {
        assert!(text.len() >= 3_000_000);
        let mut got = Vec::new();
        tok.encode_document(text, &mut got).unwrap();
        let mut want = reference_ids(&path, text, true);
        want.push(tok.eos_id());
        assert!(
            got == want,
            "{} ids vs {} (first difference at {:?})",
            got.len(),
            want.len(),
            got.iter().zip(&want).position(|(a, b)| a != b)
        );
    }
    // The prose was cut (more than one piece), the letters were not (one pre-token).
    assert!(tok.next_cut(&prose, ENCODE_PIECE_BYTES, SpecialTokensInText::Split).unwrap().is_some());
    assert_eq!(tok.next_cut(&no_spaces, ENCODE_PIECE_BYTES, SpecialTokensInText::Split).unwrap(), None);
}

#[test]
fn special_token_strings_in_text_are_split_kept_or_refused_and_counted() {
    let path = fixtures().join("tokenizer.json");
    let text = "a page about tokenizers: <|endoftext|> ends a document, and <|endoftext|> again";
    let eos = 0;
    let split = TextTokenizer::from_file(&path, None, None).unwrap();
    let mut ids = Vec::new();
    let found = split.encode_document(text, &mut ids).unwrap();
    assert_eq!(found.special_tokens_in_text, 2);
    assert_eq!(ids.iter().filter(|&&id| id == eos).count(), 1, "only the closing EOS: {ids:?}");
    assert_eq!(split.identity().special_tokens_in_text.as_deref(), Some("split"));

    let keep =
        TextTokenizer::from_file(&path, None, None).unwrap().with_special_tokens_in_text(SpecialTokensInText::Keep);
    let found = keep.encode_document(text, &mut ids).unwrap();
    assert_eq!(found.special_tokens_in_text, 2);
    assert_eq!(ids.iter().filter(|&&id| id == eos).count(), 3);

    let refuse =
        TextTokenizer::from_file(&path, None, None).unwrap().with_special_tokens_in_text(SpecialTokensInText::Error);
    let err = refuse.encode_document(text, &mut ids).unwrap_err().to_string();
    assert!(err.contains("<|endoftext|>") && err.contains("special_tokens_in_text"), "{err}");
    assert!(refuse.encode_document("clean text", &mut ids).is_ok());
}

#[test]
fn truncation_in_the_tokenizer_file_never_shortens_a_document() {
    let dir = tempfile::tempdir().unwrap();
    let mut doc = fixture_json();
    doc["truncation"] = json!({"direction": "Right", "max_length": 8, "strategy": "LongestFirst", "stride": 0});
    let path = dir.path().join("truncating.json");
    std::fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
    let text = "one two three four five six seven eight nine ten eleven twelve";
    for tok in [
        TextTokenizer::from_file(&path, None, None).unwrap(),
        TextTokenizer::reference_only(&path, None, None).unwrap(),
    ] {
        assert!(tok.encode_text(text).unwrap().len() > 8);
    }
}

#[test]
fn the_identity_names_the_encoder() {
    let path = fixtures().join("tokenizer.json");
    let fast = TextTokenizer::from_file(&path, None, None).unwrap();
    assert_eq!(fast.identity().encoder.as_deref(), Some("tokenizers 1.0.0-rc.3"));
    let reference = TextTokenizer::reference_only(&path, None, None).unwrap();
    assert_eq!(reference.identity().encoder.as_deref(), Some("tokenizers 0.23.2 (asked for the reference encoder)"));
    assert!(fast.describe().contains("1.0.0-rc.3") && fast.describe().contains("pre-tokenizer splits"));
}

#[test]
fn special_tokens_in_text_reads_its_three_modes_and_names_itself_alike() {
    for mode in [SpecialTokensInText::Split, SpecialTokensInText::Keep, SpecialTokensInText::Error] {
        let text = format!("{:?}", mode.as_str());
        assert_eq!(serde_json::from_str::<SpecialTokensInText>(&text).unwrap(), mode);
        assert_eq!(serde_json::to_string(&mode).unwrap(), text);
    }
    assert!(serde_json::from_str::<SpecialTokensInText>("\"drop\"").is_err());
}

/// A SentencePiece-style BPE as Llama 2 and TinyStories ship it: `▁` for spaces, no
/// pre-tokenizer, byte fallback on but no `<0xNN>` tokens, fused `unk`.
fn sentencepiece_without_bytes(dir: &Path) -> PathBuf {
    let mut vocab = serde_json::Map::new();
    for (i, t) in ["<unk>", "<s>", "</s>", "▁"].iter().enumerate() {
        vocab.insert(t.to_string(), json!(i));
    }
    for c in (b'!'..=b'~').map(char::from) {
        vocab.insert(c.to_string(), json!(vocab.len()));
    }
    let merges = [["▁", "t"], ["h", "e"], ["▁t", "he"], ["▁", "a"], ["i", "n"], ["▁", "in"]];
    for [a, b] in merges {
        vocab.insert(format!("{a}{b}"), json!(vocab.len()));
    }
    let doc = json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [
            {"id": 0, "content": "<unk>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": 1, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": 2, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
        "pre_tokenizer": null, "post_processor": null, "decoder": null,
        "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>", "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                  "vocab": vocab, "merges": merges}
    });
    let path = dir.join("sentencepiece.json");
    std::fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
    path
}

#[test]
fn characters_outside_a_byte_fallback_vocabulary_become_0_23s_unk_on_the_fast_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = sentencepiece_without_bytes(dir.path());
    let mut texts = probes::adversarial();
    texts.extend(fixture_texts().into_iter().take(100));
    for mode in [SpecialTokensInText::Split, SpecialTokensInText::Keep] {
        let tok = TextTokenizer::from_file(&path, Some(&EosSpec::parse("</s>")), None)
            .unwrap()
            .with_special_tokens_in_text(mode);
        assert_eq!(tok.encoder(), &Encoder::Fast { sentinels: 256 });
        let reference = reference(&path, mode == SpecialTokensInText::Split);
        for text in &texts {
            let mut got = Vec::new();
            let found = tok.encode_in_pieces(text, ENCODE_PIECE_BYTES, tok.specials_in_text, &mut got).unwrap();
            assert_eq!(got, ids_of(&reference, text), "{mode:?}: {:?}", text.chars().take(60).collect::<String>());
            assert_eq!(found.reference_pieces, 0);
        }
    }
    let tok = TextTokenizer::from_file(&path, Some(&EosSpec::parse("</s>")), None).unwrap();
    assert_eq!(tok.encode_text("é").unwrap(), [3, 0], "▁ then one unk for the two bytes of é");
    assert_eq!(tok.encode_text("éü").unwrap(), [3, 0], "adjacent unknown characters fuse");
}
