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
