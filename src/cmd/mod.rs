//! One module per subcommand: argument definitions and output formatting.

pub mod ablate;
pub mod audit;
pub mod decontaminate;
pub mod dedup;
pub mod eval;
pub mod filter;
pub mod inspect;
pub mod mix;
pub mod model;
pub mod prepare;
pub mod quality;
pub mod tokenize;
pub mod train;
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

/// How a one-stage command (filter, tokenize) runs, and what it does with a finished folder.
#[derive(clap::Args, Clone, Copy)]
pub struct RunArgs {
    /// Documents per parallel batch.
    #[arg(long, default_value_t = pipeline::read::ReadOptions::default().batch_size)]
    pub batch_size: usize,
    /// Redo the run even if OUT holds a finished or different one.
    #[arg(long)]
    pub force: bool,
    /// Print results as JSON.
    #[arg(long)]
    pub json: bool,
}

/// How to read the input files: columns and what to do with bad rows.
#[derive(clap::Args, Clone)]
pub struct InputArgs {
    /// Column (or jsonl field) holding the text.
    #[arg(long, default_value = "text")]
    pub text_column: String,
    /// Id column; rows without one get FILE#ROW.
    #[arg(long, default_value = "id")]
    pub id_column: String,
    /// What to do with bad rows: fail, or skip (record them as removed).
    #[arg(long, value_enum, default_value_t = pipeline::read::OnError::Fail)]
    pub on_error: pipeline::read::OnError,
    /// Chat data: the column of message lists ([{"role", "content"}, ...]), rendered with
    /// --chat-template instead of reading --text-column.
    #[arg(long)]
    pub messages_column: Option<String>,
    /// A .jinja file, a tokenizer_config.json, a model folder, or the built-in chatml / plain.
    #[arg(long)]
    pub chat_template: Option<String>,
    /// Flat fields into text: "Question: {question}\nAnswer: {answer}" (dotted names reach
    /// into nested fields).
    #[arg(long)]
    pub template: Option<String>,
    /// assistant: write a loss mask (PREFIX.loss) that counts only the assistant turns' tokens.
    #[arg(long, value_enum, default_value = "all")]
    pub loss_mask: LossMaskArg,
    /// The date strftime_now gives a chat template (YYYY-MM-DD).
    #[arg(long)]
    pub template_date: Option<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum LossMaskArg {
    All,
    Assistant,
}

impl InputArgs {
    /// Read options with these columns and error policy (everything else default).
    pub fn read_options(&self) -> anyhow::Result<pipeline::read::ReadOptions> {
        Ok(pipeline::read::ReadOptions {
            text_column: self.text_column.clone(),
            id_column: Some(self.id_column.clone()),
            on_error: self.on_error,
            render: self.render_config().build()?.map(std::sync::Arc::new),
            ..Default::default()
        })
    }

    pub fn render_config(&self) -> pipeline::render::RenderConfig {
        pipeline::render::RenderConfig {
            messages_column: self.messages_column.clone(),
            chat_template: self.chat_template.as_deref().map(pipeline::render::TemplateSource::parse),
            template: self.template.clone(),
            loss_mask: match self.loss_mask {
                LossMaskArg::All => pipeline::render::LossMask::All,
                LossMaskArg::Assistant => pipeline::render::LossMask::Assistant,
            },
            template_date: self.template_date.clone(),
        }
    }

    /// Rendered chat documents, and their loss mask (`None`: plain text).
    pub fn chat(&self) -> Option<pipeline::render::LossMask> {
        self.messages_column.is_some().then(|| self.render_config().loss_mask)
    }

    /// The settings as recorded in a run's identity.
    pub fn settings(&self) -> anyhow::Result<serde_json::Value> {
        let mut settings = serde_json::json!({ "text_column": self.text_column, "id_column": self.id_column, "on_error": self.on_error });
        let render = self.render_config();
        if render.is_set() {
            settings["render"] = render.identity()?;
        }
        Ok(settings)
    }
}
