//! `midtrain`: the command line. Parsing and printing only; the work lives in the library crates.
//!
//! Exit status: 0 done, 1 done but flagged (an audit flag, a verify mismatch), 2 error (and
//! clap's usage errors). A closed stdout (`| head`) counts as done.

#[macro_use]
mod out;
mod cmd;
mod failpoint;
mod print;
mod progress;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "midtrain", version, about = "LLM mid-training: prepare data, mix, audit and train", long_about = None)]
struct Cli {
    /// Print only results and errors.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Prepare(cmd::prepare::PrepareArgs),
    Filter(cmd::filter::FilterArgs),
    Dedup(cmd::dedup::DedupArgs),
    Decontaminate(cmd::decontaminate::DecontaminateArgs),
    Tokenize(cmd::tokenize::TokenizeArgs),
    Mix(cmd::mix::MixArgs),
    Audit(cmd::audit::AuditArgs),
    Quality(cmd::quality::QualityArgs),
    Inspect(cmd::inspect::InspectArgs),
    Verify(cmd::verify::VerifyArgs),
    Train(cmd::train::TrainArgs),
    Report(cmd::train::ReportArgs),
    Compare(cmd::train::CompareArgs),
    Score(cmd::model::ScoreArgs),
    Eval(cmd::eval::EvalArgs),
    Ablate(cmd::ablate::AblateArgs),
    Soup(cmd::model::SoupArgs),
    Rope(cmd::model::RopeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = if cli.quiet { "error" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MIDTRAIN_LOG").unwrap_or_else(|_| level.into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
    let result = match cli.command {
        Command::Prepare(args) => cmd::prepare::run(args, cli.quiet),
        Command::Filter(args) => cmd::filter::run(args, cli.quiet),
        Command::Dedup(args) => cmd::dedup::run(args, cli.quiet),
        Command::Decontaminate(args) => cmd::decontaminate::run(args, cli.quiet),
        Command::Tokenize(args) => cmd::tokenize::run(args, cli.quiet),
        Command::Mix(args) => cmd::mix::run(args),
        Command::Audit(args) => cmd::audit::run(args),
        Command::Quality(args) => cmd::quality::run(args, cli.quiet),
        Command::Inspect(args) => cmd::inspect::run(args),
        Command::Verify(args) => cmd::verify::run(args),
        Command::Train(args) => cmd::train::run(args, cli.quiet),
        Command::Report(args) => cmd::train::report(args),
        Command::Compare(args) => cmd::train::compare(args),
        Command::Score(args) => cmd::model::score(args),
        Command::Eval(args) => cmd::eval::run(args, cli.quiet),
        Command::Ablate(args) => cmd::ablate::run(args, cli.quiet),
        Command::Soup(args) => cmd::model::soup(args),
        Command::Rope(args) => cmd::model::rope(args),
    };
    match result {
        Ok(code) => code,
        Err(err) if out::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", out::error_text(&err));
            ExitCode::from(2)
        }
    }
}
