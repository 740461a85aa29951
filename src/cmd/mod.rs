//! One module per subcommand: argument definitions and output formatting.

pub mod audit;
pub mod dedup;
pub mod filter;
pub mod inspect;
pub mod mix;
pub mod prepare;
pub mod quality;
pub mod tokenize;
pub mod verify;

/// `--tasks N [--task I]`: split input files across machines (file i goes to task i mod N).
#[derive(clap::Args, Clone, Copy)]
pub struct TaskArgs {
    /// Number of tasks the inputs are split into.
    #[arg(long, default_value_t = 1)]
    pub tasks: usize,
    /// This machine's task, 0-based (default: every task, one after the other).
    #[arg(long)]
    pub task: Option<usize>,
}

impl TaskArgs {
    pub fn check(&self) -> anyhow::Result<()> {
        if self.tasks == 0 || self.task.is_some_and(|t| t >= self.tasks) {
            anyhow::bail!("--task must be below --tasks (and --tasks at least 1)");
        }
        Ok(())
    }
}
