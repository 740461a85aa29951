//! Texts on which two encoders, or one encoder with and without cuts, must give the same ids:
//! the cases where byte-level BPE splitters are known to differ (whitespace runs before a word,
//! `\s+(?!\S)`, contractions, Unicode digits and spaces, marks, emoji, very long words).
//! Loading a tokenizer runs them as a gate, and the tests run them on several tokenizer styles.

/// Short adversarial texts, each encoded on its own.
pub fn adversarial() -> Vec<String> {
    let mut texts: Vec<String> = [
        "",
        " ",
        "  ",
        "hello world",
        " hello  world   ",
        "a\n\nb\n\n\n c",
        "line\r\nnext\r\n\r\n  indented\r\n",
        "tabs\t\tand\t \tspaces \t",
        "trailing spaces   ",
        "   leading spaces",
        "x   y",
        "x \n y",
        "no\u{a0}break\u{a0}\u{a0}space and\u{3000}ideographic\u{3000}\u{3000}space",
        "thin\u{2009}space, em\u{2003}space, zero\u{200b}width, bom\u{feff}here",
        "I'm you're he's we'll they'd I've don't CAN'T O'Neil 's 'S",
        "ſ ſt ẞ straße STRASSE İstanbul ǅ ﬁ",
        "digits 1 12 123 1234 12345 3.14159 1,000,000 -42 0x1F",
        "٣٤٥ ۱۲۳ १२३ ১২৩ ๑๒๓ ①②③ ⅫⅣ ²³ ½ 𝟙𝟚𝟛 ０１２",
        "e\u{301}te\u{301} n\u{303} a\u{308}\u{304} Z\u{351}\u{34b}\u{34f}",
        "emoji 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 🇫🇷 ❤️ 🙂🙃",
        "中文没有空格的句子很长。日本語のテキスト、カタカナ。한국어 문장",
        "עברית مرحبا بالعالم Ελληνικά Русский текст ქართული",
        "code: fn main() { let x = vec![1, 2]; println!(\"{x:?}\"); }\n\tif (a && b || !c) return;",
        "<html><body class=\"x\">&amp; &lt;tag&gt;</body></html>",
        "path/to/file.txt C:\\Windows\\System32 https://example.com/a?b=c&d=e#f",
        "@@@ ### $$$ %%% ^^^ &&& *** ((( ))) ___ +++ === ~~~ ``` ||| \\\\\\ ///",
        "!!!???...,,,;;;:::---",
        "mixedCASEwords camelCase snake_case SCREAMING_CASE kebab-case",
        "NUL\u{0}char BEL\u{7}char ESC\u{1b}[0m DEL\u{7f} \u{4}\u{6}\u{1f}",
        "\u{85}next line\u{2028}line sep\u{2029}para sep\u{b}vt\u{c}ff",
        "max scalar \u{10ffff} private \u{e000} replacement \u{fffd} noncharacter \u{fdd0}",
        "<|endoftext|> in text, <|im_start|>user and <|im_end|>, </s> <s> <eos> [SEP] <pad>",
        "<|endoftext|><|endoftext|>",
        " <|endoftext|> ",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    texts.push(format!("{} end", "a".repeat(10_000)));
    texts.push(format!("{}x", " ".repeat(300)));
    texts.push("9".repeat(1000));
    texts.push("ab1".repeat(2000));
    texts.push("é".repeat(3000));
    texts.push("😀".repeat(1000));
    texts.push("\n".repeat(500) + "x");
    texts
}

/// One long text mixing all of the above with prose, for the cut check (cut with small pieces,
/// it must encode like the whole).
pub fn long_mixed() -> String {
    let prose = "The quick brown fox jumps over the lazy dog. It's 12:30 and we've got 1,234 items; \
                 don't stop!\n\nNew paragraph   with  odd   spacing\tand\ttabs.\r\n";
    let mut text = String::new();
    for (i, probe) in adversarial().iter().enumerate() {
        text.push_str(prose);
        text.push_str(probe);
        text.push_str(if i % 3 == 0 { " " } else { "\n" });
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_long_text_holds_every_probe() {
        let long = super::long_mixed();
        assert!(super::adversarial().iter().all(|p| long.contains(p.as_str())));
        assert!(long.len() > 30_000, "{}", long.len());
    }
}
