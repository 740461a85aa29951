use std::path::{Path, PathBuf};

use candle_core::Device;

use super::scoring::test_access;
use super::*;
use crate::hf_config::LlamaConfig;
use crate::model::Llama;

fn tokenizer() -> tokenizers::Tokenizer {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tokenizer.json");
    tokenizers::Tokenizer::from_file(path).unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn model() -> Llama {
    Llama::init(&LlamaConfig::tiny(4096), 3, &Device::Cpu).unwrap()
}

const MC: &str = r#"{"context": "The cat sat on the", "choices": ["mat", "moon", "idea"], "gold": 0}
{"context": "Two plus two is", "choices": ["four", "five"], "gold": "five"}

{"context": "Pick one:", "choices": ["A thing", "B thing", "C thing"], "gold": "C"}
"#;

#[test]
fn item_kinds_come_from_the_fields_and_gold_from_index_text_or_letter() {
    let dir = tempfile::tempdir().unwrap();
    let task = Task::load(&write(dir.path(), "mc.jsonl", MC), None).unwrap();
    assert_eq!((task.name.as_str(), task.kind), ("mc", TaskKind::MultipleChoice));
    let golds: Vec<usize> = task
        .items
        .iter()
        .map(|i| match &i.target {
            Target::Choices { gold, .. } => *gold,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(golds, [0, 1, 2]);
    assert_eq!(task.items.iter().map(|i| i.row).collect::<Vec<_>>(), [0, 1, 3], "rows are line numbers");
    assert_eq!(task.prompts[1], "Two plus two is");

    let ll = write(dir.path(), "ll.jsonl", "{\"context\": \"Once upon a\", \"continuation\": \"time\"}\n");
    assert_eq!(Task::load(&ll, None).unwrap().kind, TaskKind::Loglikelihood);
    let ppl = write(dir.path(), "ppl.jsonl", "{\"text\": \"A whole text.\"}\n");
    assert_eq!(Task::load(&ppl, None).unwrap().kind, TaskKind::Perplexity);
    assert_eq!(Task::load(&write(dir.path(), "two.jsonl", MC), Some(2)).unwrap().items.len(), 2, "--limit");

    // Errors name the file's row and the field.
    let err = |text: &str| format!("{:#}", Task::load(&write(dir.path(), "bad.jsonl", text), None).unwrap_err());
    let mixed = err("{\"text\": \"a\"}\n{\"context\": \"b\", \"continuation\": \"c\"}\n");
    assert!(mixed.contains("row 1") && mixed.contains("one kind"), "{mixed}");
    let gold = err("{\"context\": \"a\", \"choices\": [\"x\", \"y\"], \"gold\": 2}\n");
    assert!(gold.contains("line 1") && gold.contains("gold 2 is not below the 2 choices"), "{gold}");
    let unknown = err("{\"question\": \"a\"}\n");
    assert!(unknown.contains("cannot tell the item's kind") && unknown.contains("question"), "{unknown}");
    let not_list = err("{\"context\": \"a\", \"choices\": \"x\", \"gold\": 0}\n");
    assert!(not_list.contains("not a list of choices"), "{not_list}");
}

#[test]
fn a_toml_task_sets_templates_letters_and_seeded_fewshot_examples() {
    let dir = tempfile::tempdir().unwrap();
    let rows: String = (0..6u32)
        .map(|i| {
            format!(
                "{{\"q\": \"Q{i}?\", \"opts\": {{\"a\": \"x{i}\", \"b\": \"y{i}\"}}, \"answer\": \"{}\"}}\n",
                if i.is_multiple_of(2) { "A" } else { "B" }
            )
        })
        .collect();
    write(dir.path(), "rows.jsonl", &rows);
    let spec = "data = \"rows.jsonl\"\ncontext = \"Question: {q}\\nAnswer:\"\nchoices = [\"{opts.a}\", \"{opts.b}\"]\n\
                gold = \"answer\"\nfewshot = 2\nfewshot_separator = \"\\n---\\n\"\ndescription = \"Quiz.\\n\"\nseed = 5\n";
    let task = Task::load(&write(dir.path(), "quiz.toml", spec), None).unwrap();
    assert_eq!((task.name.as_str(), task.kind, task.items.len()), ("quiz", TaskKind::MultipleChoice, 6));
    assert_eq!(task.items[3].target, Target::Choices { choices: vec!["x3".into(), "y3".into()], gold: 1 });
    for (item, prompt) in task.items.iter().zip(&task.prompts) {
        // Description, two examples with their gold answers, then the item.
        let parts: Vec<&str> = prompt.strip_prefix("Quiz.\n").unwrap().split("\n---\n").collect();
        assert_eq!(parts.len(), 3, "{prompt}");
        assert_eq!(parts[2], item.context);
        assert_ne!(parts[0], parts[1], "distinct examples");
        for shot in &parts[..2] {
            let i: usize = shot[11..12].parse().unwrap();
            assert_ne!(i as u64, item.row, "never the item itself");
            let gold = if i.is_multiple_of(2) { format!("x{i}") } else { format!("y{i}") };
            assert_eq!(*shot, format!("Question: Q{i}?\nAnswer: {gold}"));
        }
    }
    let again = Task::load(&dir.path().join("quiz.toml"), None).unwrap();
    assert_eq!(again.prompts, task.prompts, "seeded");
    let other_seed = write(dir.path(), "quiz2.toml", &spec.replace("seed = 5", "seed = 6"));
    assert_ne!(Task::load(&other_seed, None).unwrap().prompts, task.prompts);

    let too_many = write(dir.path(), "many.toml", &spec.replace("fewshot = 2", "fewshot = 6"));
    let e = format!("{:#}", Task::load(&too_many, None).unwrap_err());
    assert!(e.contains("pool has 5 example(s)"), "{e}");
    let typo = write(dir.path(), "typo.toml", "data = \"rows.jsonl\"\nfew_shot = 2\n");
    assert!(format!("{:#}", Task::load(&typo, None).unwrap_err()).contains("few_shot"));
    let missing =
        write(dir.path(), "missing.toml", "data = \"rows.jsonl\"\ncontext = \"{nope}\"\nformat = \"loglikelihood\"\n");
    let e = format!("{:#}", Task::load(&missing, None).unwrap_err());
    assert!(e.contains("line 1") && e.contains("nope"), "{e}");
}

#[test]
fn the_continuation_is_what_the_whole_adds_to_the_context() {
    let tok = tokenizer();
    let enc = |s: &str| tok.encode(s, false).unwrap().get_ids().to_vec();
    // Trailing whitespace of the context moves to the continuation (lm-eval's _encode_pair).
    let (ids, from) = test_access::pair(&tok, true, Some(0), "The cat sat ", "on the mat").unwrap();
    assert_eq!(ids, enc("The cat sat on the mat"));
    assert_eq!(&ids[..from], enc("The cat sat").as_slice());
    // An empty context starts from the end-of-text token.
    let (ids, from) = test_access::pair(&tok, true, Some(0), "", "Hello").unwrap();
    assert_eq!((ids[0], from), (0, 1));
    assert_eq!(&ids[1..], enc("Hello").as_slice());
    assert!(test_access::pair(&tok, true, None, "", "Hello").is_err(), "nothing to start from");
    assert!(test_access::pair(&tok, true, Some(0), "a", "").unwrap_err().to_string().contains("adds no token"));

    // Windows predict every token from `first` on exactly once, each with at most max inputs.
    for (n, first, max) in [(10, 1, 4), (9, 1, 4), (3, 1, 8), (12, 3, 5)] {
        let mut predicted = Vec::new();
        for (range, from) in test_access::windows(n, first, max) {
            assert!(range.len() - 1 <= max, "{range:?}");
            predicted.extend(range.start + from..range.end);
        }
        assert_eq!(predicted, (first..n).collect::<Vec<_>>(), "n {n} first {first} max {max}");
    }
}

/// Sum of `score`'s log-probabilities of `ids[from..]`, scored alone.
fn direct(model: &mut Llama, ids: &[u32], from: usize) -> f64 {
    let scores = crate::score(model, ids, false).unwrap();
    scores.log_probs[from - 1..].iter().map(|&v| v as f64).sum()
}

#[test]
fn scores_equal_a_direct_computation_from_per_token_log_probs() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer();
    let mut model = model();
    let task = Task::load(&write(dir.path(), "mc.jsonl", MC), None).unwrap();
    let mut calls = Vec::new();
    let options = EvalOptions { row_tokens: 24, ..EvalOptions::default() };
    let (scores, items) =
        evaluate_task(&mut model, &tok, &task, &options, &mut |done, total| calls.push((done, total))).unwrap();
    assert_eq!(calls.last(), Some(&(8, 8)), "8 choices: {calls:?}");
    assert!(calls.len() > 1, "rows of 24 tokens hold a few requests each: {calls:?}");
    let (mut correct, mut correct_norm) = (0, 0);
    for (item, result) in task.items.iter().zip(&items) {
        let Target::Choices { choices, gold } = &item.target else { unreachable!() };
        let mut lls = Vec::new();
        for (c, choice) in choices.iter().enumerate() {
            let (ids, from) = test_access::pair(&tok, true, Some(0), &item.context, &format!(" {choice}")).unwrap();
            let ll = direct(&mut model, &ids, from);
            assert!((ll - result.log_probs[c]).abs() < 1e-4, "{ll} vs {}", result.log_probs[c]);
            assert_eq!(result.tokens[c], ids.len() - from);
            lls.push(ll);
        }
        let argmax = |v: Vec<f64>| (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b });
        let pred = argmax(lls.clone());
        let pred_norm = argmax(lls.iter().zip(choices).map(|(l, c)| l / c.chars().count() as f64).collect());
        assert_eq!((result.pred, result.pred_norm, result.gold), (Some(pred), Some(pred_norm), Some(*gold)));
        correct += usize::from(pred == *gold);
        correct_norm += usize::from(pred_norm == *gold);
    }
    assert_eq!(scores.n, 3);
    assert_eq!(scores.acc, Some(correct as f64 / 3.0));
    assert_eq!(scores.acc_norm, Some(correct_norm as f64 / 3.0));
    let p = correct as f64 / 3.0;
    let stderr = (3.0 * p * (1.0 - p) / 2.0).sqrt() / 3f64.sqrt();
    assert!((scores.stderr.unwrap() - stderr).abs() < 1e-12);

    // Packing requests together changes nothing: one request per row gives the same scores.
    let alone = EvalOptions { row_tokens: 1, ..EvalOptions::default() };
    let (_, items_alone) = evaluate_task(&mut model, &tok, &task, &alone, &mut |_, _| {}).unwrap();
    for (a, b) in items.iter().zip(&items_alone) {
        for (x, y) in a.log_probs.iter().zip(&b.log_probs) {
            assert!((x - y).abs() < 1e-4, "{x} vs {y}");
        }
    }
}

#[test]
fn loglikelihood_and_perplexity_report_loss_and_bits_per_byte() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer();
    let mut model = model();
    let ll = write(
        dir.path(),
        "ll.jsonl",
        "{\"context\": \"Once upon a\", \"continuation\": \"time there was\"}\n{\"context\": \"The end\", \"continuation\": \"of it\"}\n",
    );
    let task = Task::load(&ll, None).unwrap();
    let (scores, items) = evaluate_task(&mut model, &tok, &task, &EvalOptions::default(), &mut |_, _| {}).unwrap();
    let (mut sum, mut tokens) = (0.0, 0);
    for (item, result) in task.items.iter().zip(&items) {
        let Target::Continuation(c) = &item.target else { unreachable!() };
        let (ids, from) = test_access::pair(&tok, true, Some(0), &item.context, &format!(" {c}")).unwrap();
        let ll = direct(&mut model, &ids, from);
        assert!((ll - result.log_probs[0]).abs() < 1e-4);
        sum -= ll;
        tokens += ids.len() - from;
    }
    assert_eq!(scores.tokens, tokens as u64);
    // f32 log-probabilities summed in another order: equal to ~1e-7 relative.
    let loss = sum / tokens as f64;
    assert!((scores.loss.unwrap() - loss).abs() < 1e-5, "{:?} vs {loss}", scores.loss);
    assert!((scores.perplexity.unwrap() / loss.exp() - 1.0).abs() < 1e-5);
    assert_eq!(scores.perplexity, scores.loss.map(f64::exp));
    let bytes = (" time there was".len() + " of it".len()) as f64;
    assert!((scores.bits_per_byte.unwrap() / (sum / std::f64::consts::LN_2 / bytes) - 1.0).abs() < 1e-5);
    assert!(scores.acc.is_some() && scores.acc_norm.is_none());

    // A text longer than max_length is scored in windows: every token once, the first after
    // the end-of-text token.
    let text = "The little dog ran to the park and played with a red ball all day long.";
    let ppl = write(dir.path(), "ppl.jsonl", &format!("{{\"text\": \"{text}\"}}\n"));
    let task = Task::load(&ppl, None).unwrap();
    let n = tok.encode(text, false).unwrap().get_ids().len();
    let windowed = EvalOptions { max_length: Some(5), ..EvalOptions::default() };
    let (scores, items) = evaluate_task(&mut model, &tok, &task, &windowed, &mut |_, _| {}).unwrap();
    assert_eq!((scores.tokens, items[0].tokens[0]), (n as u64, n));
    assert_eq!(scores.kind, TaskKind::Perplexity);
    assert!(
        (scores.bits_per_byte.unwrap() * text.len() as f64 * std::f64::consts::LN_2 + items[0].log_probs[0]).abs()
            < 1e-6
    );
    let (whole, _) = evaluate_task(&mut model, &tok, &task, &EvalOptions::default(), &mut |_, _| {}).unwrap();
    let mut ids = vec![0];
    ids.extend(tok.encode(text, false).unwrap().get_ids());
    let ll = direct(&mut model, &ids, 1);
    assert!((whole.loss.unwrap() + ll / n as f64).abs() < 1e-5, "one window equals score");
    assert!(whole.loss != scores.loss, "windows of 5 see less context");
}
