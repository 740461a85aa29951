//! Results go to stdout through these macros: each line is written to the locked stdout and a
//! failed write is an error the command returns (`?`), so `midtrain … | head` ends cleanly
//! instead of panicking when the reader goes away (see `main`).

/// `println!` that returns its `io::Error` to the caller.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

/// `print!` that returns its `io::Error` to the caller.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)?
    }};
}

/// Whether `err` is a write to a closed pipe (the reader of our stdout exited).
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}

/// `err` and its causes, each named once: our errors show their cause in their own message and
/// also expose it as `source()`, so a cause already in the text is not repeated.
pub fn error_text(err: &anyhow::Error) -> String {
    let mut text = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::error_text;

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Shows(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Hides(#[source] std::io::Error);

    #[test]
    fn a_cause_is_named_once_whether_or_not_the_message_shows_it() {
        let io = || std::io::Error::other("disk full");
        assert_eq!(error_text(&Shows(io()).into()), "outer: disk full");
        assert_eq!(error_text(&Hides(io()).into()), "outer: disk full");
        let context = anyhow::Error::from(Shows(io())).context("writing x");
        assert_eq!(error_text(&context), "writing x: outer: disk full");
    }
}
