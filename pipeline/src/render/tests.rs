use std::collections::BTreeMap;

use serde_json::json;

use super::*;

const LLAMA3: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = \
    '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% \
    if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if \
    add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

fn conversation() -> serde_json::Value {
    json!([
        {"role": "user", "content": "Hi "},
        {"role": "assistant", "content": " Hello!"},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
    ])
}

fn chat(template: ChatTemplate, mask: LossMask) -> Renderer {
    Renderer::Chat { column: "messages".into(), template: Box::new(template), loss_mask: mask }
}

fn compiled(text: &str, tokens: &[(&str, &str)]) -> ChatTemplate {
    let tokens: BTreeMap<String, String> = tokens.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    ChatTemplate::compile(text, tokens, None, "test").unwrap()
}

fn spans_text(r: &Rendered) -> Vec<&str> {
    r.loss_spans.iter().map(|s| &r.text[s.start as usize..s.end as usize]).collect()
}

#[test]
fn chatml_renders_each_turn_and_masks_what_the_assistant_generates() {
    let t = ChatTemplate::load(&TemplateSource::parse("chatml"), None).unwrap();
    let r = chat(t, LossMask::Assistant).render(&json!({ "messages": conversation() })).unwrap();
    assert_eq!(
        r.text,
        "<|im_start|>user\nHi <|im_end|>\n<|im_start|>assistant\n Hello!<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n\
         <|im_start|>assistant\n4<|im_end|>\n"
    );
    assert_eq!(spans_text(&r), [" Hello!<|im_end|>\n", "4<|im_end|>\n"]);
}

#[test]
fn a_llama3_style_template_trims_content_and_starts_with_the_bos_of_the_tokenizer_config() {
    let r = chat(compiled(LLAMA3, &[("bos_token", "<|begin_of_text|>")]), LossMask::Assistant)
        .render(&json!({ "messages": conversation() }))
        .unwrap();
    assert_eq!(
        r.text,
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n\
         Hello!<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n\
         4<|eot_id|>"
    );
    assert_eq!(spans_text(&r), ["Hello!<|eot_id|>", "4<|eot_id|>"]);
}

#[test]
fn plain_puts_a_system_message_first_and_refuses_unknown_roles() {
    let t = || ChatTemplate::load(&TemplateSource::parse("plain"), None).unwrap();
    let messages = json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why?"},
        {"role": "assistant", "content": "Because."}]);
    let r = chat(t(), LossMask::Assistant).render(&json!({ "messages": messages })).unwrap();
    assert_eq!(r.text, "Be brief.\n\nUser: Why?\nAssistant: Because.\n");
    assert_eq!(spans_text(&r), ["Because.\n"]);
    let err = chat(t(), LossMask::All).render(&json!({ "messages": [{"role": "tool", "content": "x"}] })).unwrap_err();
    assert!(matches!(&err, RenderProblem::Template(m) if m.contains("not tool")), "{err}");
}

#[test]
fn generation_blocks_give_the_spans_and_keep_whitespace_control() {
    let text = "{% for m in messages %}{% if m.role == 'assistant' %}\n  {%- generation %}\n[A] {{ m.content }}\n{% endgeneration %}\n{% else %}[U] {{ m.content }}\n{% endif %}{% endfor %}";
    let r = chat(compiled(text, &[]), LossMask::Assistant).render(&json!({ "messages": conversation() })).unwrap();
    assert_eq!(r.text, "[U] Hi \n[A]  Hello!\n[U] 2+2?\n[A] 4\n");
    assert_eq!(spans_text(&r), ["[A]  Hello!\n", "[A] 4\n"]);
    let r = chat(compiled(text, &[]), LossMask::All).render(&json!({ "messages": conversation() })).unwrap();
    assert!(r.loss_spans.is_empty());
}

#[test]
fn a_template_that_rewrites_earlier_turns_cannot_be_masked_turn_by_turn() {
    // Shows only the last assistant turn in full: a later rendering is no continuation.
    let text = "{% for m in messages %}{% if m.role == 'assistant' and not loop.last %}[A] ...\n{% else %}[{{ m.role }}] {{ m.content }}\n{% endif %}{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}";
    let err =
        chat(compiled(text, &[]), LossMask::Assistant).render(&json!({ "messages": conversation() })).unwrap_err();
    assert_eq!(err, RenderProblem::TurnNotLocated { turn: 1 });
}

#[test]
fn hf_template_functions_tojson_raise_exception_strftime_and_python_methods() {
    let text = "{{ messages[0].content.strip().upper() }}|{{ messages | tojson }}|{{ {'b': 1, 'a': [1, 2]} | tojson(indent=2) }}|{% for m in messages %}{% if loop.index0 == 1 %}{% break %}{% endif %}{{ m.role }}{% endfor %}";
    let r = chat(compiled(text, &[]), LossMask::All)
        .render(&json!({ "messages": [{"role": "user", "content": " é\"x "}, {"role": "assistant", "content": "y"}] }))
        .unwrap();
    assert_eq!(
        r.text,
        "É\"X|[{\"role\": \"user\", \"content\": \" é\\\"x \"}, {\"role\": \"assistant\", \"content\": \"y\"}]|{\n  \"b\": 1,\n  \"a\": [\n    1,\n    2\n  ]\n}|user"
            .trim_start()
    );
    let raising =
        compiled("{% if messages[0].role != 'system' %}{{ raise_exception('system first') }}{% endif %}", &[]);
    let err = chat(raising, LossMask::All).render(&json!({ "messages": conversation() })).unwrap_err();
    assert!(matches!(&err, RenderProblem::Template(m) if m.contains("system first")), "{err}");
    let dated = |date| ChatTemplate::compile("{{ strftime_now('%d %b %Y, %A') }}", BTreeMap::new(), date, "t").unwrap();
    let r = chat(dated(Some((2024, 7, 26))), LossMask::All).render(&json!({ "messages": [] })).unwrap();
    assert_eq!(r.text, "26 Jul 2024, Friday");
    let err = chat(dated(None), LossMask::All).render(&json!({ "messages": [] })).unwrap_err();
    assert!(err.to_string().contains("template_date"), "{err}");
    assert_eq!(chat::strftime_for_test((2000, 3, 1), "%j %a %y"), "061 Wed 00");
}

/// As Python: `trim` / `strip()` also take U+001C–U+001F, and keys whose value is null are not
/// in the message (transformers drops them), found by `parity/chat_templates.py`.
#[test]
fn trimming_and_null_keys_agree_with_transformers() {
    let text = "{% for m in messages %}[{{ m.content | trim }}|{{ m.content.strip() }}|{{ m.content.rstrip() }}|{{ 'tool_calls' in m }}]{% endfor %}";
    let r = chat(compiled(text, &[]), LossMask::All)
        .render(&json!({ "messages": [{"role": "user", "content": "\u{1c}a b\u{1f} ", "tool_calls": null}] }))
        .unwrap();
    assert_eq!(r.text, "[a b|a b|\u{1c}a b|False]");
}

/// Floats and containers print as Python's `str()` and `json.dumps` do (`1e+20`, `1e-07`,
/// single-quoted dict keys), found by `parity/chat_templates.py` on tool-call content.
#[test]
fn floats_and_containers_print_as_python_does() {
    let text = "{{ messages[0].content }}|{{ messages[0].content | tojson }}|{{ messages[0].content.x[1] }}|{{ 0.5 }}|{{ messages[0].content | trim }}";
    let content = json!({"x": [0.1, 1e20, 1e-7, -0.0, 0.0025, 1e15, 1e16, 3, true, null, "it's"]});
    let r = chat(compiled(text, &[]), LossMask::All)
        .render(&json!({ "messages": [{"role": "user", "content": content}] }))
        .unwrap();
    assert_eq!(
        r.text,
        "{'x': [0.1, 1e+20, 1e-07, -0.0, 0.0025, 1000000000000000.0, 1e+16, 3, True, None, \"it's\"]}|\
         {\"x\": [0.1, 1e+20, 1e-07, -0.0, 0.0025, 1000000000000000.0, 1e+16, 3, true, null, \"it's\"]}|1e+20|0.5|\
         {'x': [0.1, 1e+20, 1e-07, -0.0, 0.0025, 1000000000000000.0, 1e+16, 3, True, None, \"it's\"]}"
    );
}

#[test]
fn chat_rows_without_a_message_list_are_named() {
    let r = chat(ChatTemplate::load(&TemplateSource::parse("chatml"), None).unwrap(), LossMask::All);
    assert_eq!(r.render(&json!({})).unwrap_err(), RenderProblem::MissingField("messages".into()));
    assert_eq!(r.render(&json!({"messages": null})).unwrap_err(), RenderProblem::NullField("messages".into()));
    assert!(r.render(&json!({"messages": "hi"})).unwrap_err().to_string().contains("is a string, not a list"));
}

#[test]
fn templates_load_from_a_jinja_file_a_tokenizer_config_or_a_model_folder() {
    let dir = tempfile::tempdir().unwrap();
    let config = json!({ "bos_token": {"content": "<s>", "special": true}, "eos_token": "</s>",
        "chat_template": [{"name": "tool_use", "template": "x"}, {"name": "default", "template": "{{ bos_token }}{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}"}] });
    std::fs::write(dir.path().join("tokenizer_config.json"), config.to_string()).unwrap();
    let row = json!({ "messages": [{"role": "user", "content": "a"}] });
    let render = |source: &str| {
        let t = ChatTemplate::load(&TemplateSource::parse(source), None).unwrap();
        chat(t, LossMask::All).render(&row).unwrap().text
    };
    let folder = dir.path().to_str().unwrap().to_string();
    assert_eq!(render(&folder), "<s>a</s>");
    assert_eq!(render(&format!("{folder}/tokenizer_config.json")), "<s>a</s>");
    std::fs::write(dir.path().join("chat_template.jinja"), "[{{ messages[0].content }}{{ eos_token }}]").unwrap();
    assert_eq!(render(&folder), "[a</s>]", "chat_template.jinja wins, tokens still from tokenizer_config.json");
    let empty = tempfile::tempdir().unwrap();
    let err = ChatTemplate::load(&TemplateSource::Path(empty.path().into()), None).unwrap_err();
    assert!(err.to_string().contains("no chat_template.jinja"), "{err}");
    std::fs::write(empty.path().join("tokenizer_config.json"), "{}").unwrap();
    let err = ChatTemplate::load(&TemplateSource::Path(empty.path().into()), None).unwrap_err();
    assert!(err.to_string().contains("\"chatml\""), "{err}");
    let err = ChatTemplate::compile("{% for %}", BTreeMap::new(), None, "broken.jinja").unwrap_err();
    assert!(err.to_string().starts_with("chat_template broken.jinja: the template does not parse"), "{err}");
}

#[test]
fn flat_templates_reach_into_nested_fields_and_name_missing_ones() {
    let t = FieldTemplate::parse("Q: {question}\n{{A}}: {answer.text} ({meta.tags.0}, {score})").unwrap();
    let r = Renderer::Fields(t);
    assert_eq!(r.columns(), ["answer", "meta", "question", "score"]);
    let row = json!({ "question": "2+2?", "answer": {"text": "4"}, "meta": {"tags": ["math"]}, "score": 0.5 });
    assert_eq!(r.render(&row).unwrap().text, "Q: 2+2?\n{A}: 4 (math, 0.5)");
    let mut missing = row.clone();
    missing["answer"] = json!({});
    assert_eq!(r.render(&missing).unwrap_err(), RenderProblem::MissingField("answer.text".into()));
    let mut null = row.clone();
    null["question"] = json!(null);
    assert_eq!(r.render(&null).unwrap_err().to_string(), "template_null_field: field \"question\" is null");
    for bad in ["no fields", "{unclosed", "a } b", "{}", "{a..b}"] {
        assert!(FieldTemplate::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn render_settings_that_do_not_hold_together_are_refused() {
    let base = RenderConfig::default();
    assert!(base.build().unwrap().is_none());
    let both = RenderConfig { messages_column: Some("m".into()), template: Some("{a}".into()), ..base.clone() };
    assert!(matches!(both.build(), Err(RenderConfigError::Both)));
    let no_template = RenderConfig { messages_column: Some("m".into()), ..base.clone() };
    assert!(matches!(no_template.build(), Err(RenderConfigError::MessagesWithoutTemplate)));
    let mask = RenderConfig { template: Some("{a}".into()), loss_mask: LossMask::Assistant, ..base.clone() };
    assert!(matches!(mask.build(), Err(RenderConfigError::MaskWithoutMessages)));
    let date = RenderConfig { template: Some("{a}".into()), template_date: Some("2024-02-30".into()), ..base };
    assert!(matches!(date.build(), Err(RenderConfigError::Date(_))));
}
