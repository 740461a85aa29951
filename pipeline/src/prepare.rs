//! `midtrain prepare` as a library: every domain of a [`PrepareConfig`] through filter,
//! deduplication (over the `[dedup]` domains together) and tokenization, or one stage of it for
//! one task of a split run. Each step's result reaches an [`Observer`] as soon as it is known, as
//! a typed [`StepOutcome`]: done, or waiting (on other tasks, or on an earlier stage).
//!
//! Layout under `output`: `NAME/filtered/` (the filter stage), `NAME/dedup/` and the shared
//! `_dedup/` (with `[dedup]`), and the dataset itself in `NAME/` (with `[tokenizer]`).
//!
//! What a rerun compares to resume (the identity of each folder) holds only what changes that
//! folder's bytes: a domain's own settings, plus the dedup partners' for a deduplicated domain.
//! Editing one domain leaves every other finished domain finished.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::config::{DomainConfig, PrepareConfig, PrepareTokenizerConfig};
use crate::dataset::{self, DatasetError, DatasetOptions, Formats};
use crate::dedup::{self, DedupError, DedupJob, DedupSettings, DedupStats, SettingsError};
use crate::file_error::FileError;
use crate::filter::{FilterChain, FilterConfig, FilterError};
use crate::filter_stage::{StageError, finish_filter_stage, run_filter_stage};
use crate::read::{self, ReadError, ReadOptions};
use crate::run_folder::{Folder, Parts, Progress, RunFolderError, RunIdentity, TaskSlice, part_name};
use crate::stats::StageStats;
use crate::tokenize::{EosSpec, TextTokenizer, TokenizeError};

#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error(transparent)]
    Stage(#[from] StageError),
    #[error(transparent)]
    Dedup(#[from] DedupError),
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error(transparent)]
    Tokenize(#[from] TokenizeError),
    #[error(transparent)]
    DedupSettings(#[from] SettingsError),
    #[error(transparent)]
    Folder(#[from] RunFolderError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error("domain {domain:?}: {source}")]
    Domain {
        domain: String,
        #[source]
        source: Box<PrepareError>,
    },
    #[error(
        "{dir}: not finished: {} of its parts have no done-marker ({}); run their tasks (the same stage with \
         --task I), then finalize again",
        parts.len(),
        parts.join(", ")
    )]
    PartsMissing { dir: PathBuf, parts: Vec<String> },
    #[error("{0}")]
    Settings(String),
    /// The observer could not report (stdout closed, say).
    #[error("cannot print the result: {0}")]
    Report(#[source] std::io::Error),
}

impl PrepareError {
    fn in_domain(domain: &str) -> impl FnOnce(PrepareError) -> PrepareError + '_ {
        move |e| PrepareError::Domain { domain: domain.to_string(), source: Box::new(e) }
    }
}

/// Which stage of prepare to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Stage {
    /// Every stage in order.
    All,
    Filter,
    DedupSignatures,
    DedupPairs,
    DedupClusters,
    DedupApply,
    Tokenize,
}

impl Stage {
    fn runs(self, stage: Stage) -> bool {
        self == Stage::All || self == stage
    }

    fn dedups(self) -> bool {
        [Stage::DedupSignatures, Stage::DedupPairs, Stage::DedupClusters, Stage::DedupApply]
            .into_iter()
            .any(|s| self.runs(s))
    }
}

/// What of a stage this machine runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Every task's files, then the stage's summary.
    All,
    /// One task's files only (an array task); the summary is the finalize step's.
    Task(usize),
    /// Only the summary (`stats.json`, `manifest.json`, ...), once every task's done-markers
    /// exist; an error naming the missing parts otherwise.
    Finalize,
}

/// A step's result: finished, or not yet.
#[derive(Debug)]
pub enum Outcome<T> {
    Done(T),
    Waiting(Waiting),
}

/// What a step that is not finished waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waiting {
    /// This task's files are done; the finalize step writes the stage's summary.
    OtherTasks,
    /// `domain`'s `stage` is not finished (every task of it must be).
    Stage { stage: &'static str, domain: String },
}

/// The dataset of a domain.
#[derive(Debug)]
pub enum DatasetDone {
    /// Finished by an earlier run; left alone.
    AlreadyPrepared { documents: u64, tokens: u64 },
    Written {
        documents: u64,
        tokens: u64,
        shards: usize,
        /// Documents in `removed.parquet`, every stage's.
        removed: u64,
        /// The tokenize figures of `stats.json`.
        tokenize: serde_json::Value,
    },
}

/// One step's outcome, reported as soon as it is known.
#[derive(Debug)]
pub enum StepOutcome<'a> {
    Filtered { domain: &'a str, out: &'a Path, outcome: Outcome<StageStats> },
    Deduplicated { domains: &'a [String], out: &'a Path, outcome: Outcome<(StageStats, DedupStats)> },
    Dataset { domain: &'a str, out: &'a Path, outcome: Outcome<DatasetDone> },
}

/// Where a run's progress and results go (the CLI prints them).
pub trait Observer: Sync {
    /// Progress of `work` (a domain's name, "dedup", "NAME tokenize").
    fn progress(&self, work: &str, progress: Progress);
    /// `work` has ended on this machine.
    fn finished(&self, work: &str);
    fn outcome(&self, outcome: &StepOutcome) -> std::io::Result<()>;
    /// A line for the log.
    fn note(&self, line: &str);
}

/// A prepare run, everything it needs checked before any stage runs.
pub struct Prepare<'a> {
    config: &'a PrepareConfig,
    stage: Stage,
    /// The slices this machine runs (one with `--task`, none to finalize, else every task in turn).
    slices: Vec<TaskSlice>,
    /// Whether this run writes the stages' summaries.
    finalize: bool,
    tasks: usize,
    force: bool,
    /// Loaded up front, so that a mistake in `[tokenizer]` shows before hours of filtering.
    tokenizer: Option<TextTokenizer>,
    domains: Vec<DomainPlan<'a>>,
}

struct DomainPlan<'a> {
    config: &'a DomainConfig,
    inputs: Vec<PathBuf>,
    /// Built when this run filters, up front for the same reason.
    chain: Option<FilterChain>,
}

impl<'a> Prepare<'a> {
    /// A run of `stage` over `only` (every domain when empty), doing `part` of a run split into
    /// `tasks`.
    pub fn new(
        config: &'a PrepareConfig,
        only: &[String],
        stage: Stage,
        part: Part,
        tasks: usize,
        force: bool,
    ) -> Result<Self, PrepareError> {
        let task = match part {
            Part::Task(task) => Some(task),
            _ => None,
        };
        if matches!(part, Part::Task(_)) && stage == Stage::All {
            return Err(PrepareError::Settings(
                "--task runs one task's share of one stage: name it with --stage (each stage's summary is then \
                 written by --finalize before the next stage can start)"
                    .into(),
            ));
        }
        if part == Part::Finalize && !matches!(stage, Stage::Filter | Stage::DedupApply | Stage::Tokenize) {
            return Err(PrepareError::Settings(
                "--finalize writes a split stage's summary: use it with --stage filter, dedup-apply or tokenize".into(),
            ));
        }
        if let Some(unknown) = only.iter().find(|d| !config.domains.iter().any(|c| &c.name == *d)) {
            return Err(PrepareError::Settings(format!("no domain named {unknown:?}")));
        }
        if tasks == 0 || task.is_some_and(|t| t >= tasks) {
            return Err(PrepareError::Settings("--task must be below --tasks (and --tasks at least 1)".into()));
        }
        let slices = match part {
            Part::Task(task) => vec![TaskSlice { task, tasks }],
            Part::Finalize => Vec::new(),
            Part::All => (0..tasks).map(|task| TaskSlice { task, tasks }).collect(),
        };
        let finalize = task.is_none();
        let tokenizer = config.tokenizer.as_ref().map(load_tokenizer).transpose()?;
        let mut domains = Vec::new();
        for domain in config.domains.iter().filter(|d| only.is_empty() || only.contains(&d.name)) {
            let plan = (|| {
                let inputs = read::expand_inputs(&domain.inputs)?;
                let chain = if stage.runs(Stage::Filter) {
                    Some(FilterChain::new(domain.filters.iter().map(FilterConfig::build).collect::<Result<_, _>>()?))
                } else {
                    None
                };
                Ok(DomainPlan { config: domain, inputs, chain })
            })()
            .map_err(PrepareError::in_domain(&domain.name))?;
            domains.push(plan);
        }
        Ok(Self { config, stage, slices, finalize, tasks, force, tokenizer, domains })
    }

    /// Run the stages this run covers, in order.
    pub fn run(&self, observer: &dyn Observer) -> Result<(), PrepareError> {
        if self.stage.runs(Stage::Filter) {
            for domain in &self.domains {
                self.filter(domain, observer).map_err(PrepareError::in_domain(&domain.config.name))?;
            }
        }
        if let Some(section) = &self.config.dedup
            && self.stage.dedups()
        {
            self.dedup(section, observer)?;
        }
        if let (Some(section), Some(tokenizer)) = (&self.config.tokenizer, &self.tokenizer)
            && self.stage.runs(Stage::Tokenize)
        {
            observer.note(&tokenizer.describe());
            for domain in &self.domains {
                self.tokenize(domain.config, section, tokenizer, observer)
                    .map_err(PrepareError::in_domain(&domain.config.name))?;
            }
        }
        Ok(())
    }

    fn filter(&self, domain: &DomainPlan, observer: &dyn Observer) -> Result<(), PrepareError> {
        let config = self.config;
        let name = &domain.config.name;
        let out = config.output.join(name).join("filtered");
        let mut settings =
            json!({ "domain": domain.config, "batch_size": config.batch_size, "on_error": config.on_error });
        crate::filter::add_file_checksums(&mut settings, &domain.config.filters).map_err(FilterError::from)?;
        if domain.config.render_config().is_set() {
            let render = domain.config.render_config().identity().map_err(|e| PrepareError::Settings(e.to_string()))?;
            settings["render"] = render;
        }
        Folder::stage(&out).claim(&RunIdentity::new("filter", &domain.inputs, settings), self.force)?;
        let options = domain
            .config
            .read_options(config.batch_size, config.on_error)
            .map_err(|e| PrepareError::Settings(e.to_string()))?;
        let chain = domain.chain.as_ref().expect("built for a run that filters");
        for line in chain.notes() {
            observer.note(&format!("{name}: {line}"));
        }
        for &slice in &self.slices {
            run_filter_stage(&domain.inputs, &options, chain, &out, slice, &|p| observer.progress(name, p))?;
        }
        observer.finished(name);
        let outcome = if self.finalize {
            match finish_filter_stage(domain.inputs.len(), chain, &out)? {
                Parts::Complete(stats) => Outcome::Done(stats),
                Parts::Missing(parts) => return Err(PrepareError::PartsMissing { dir: out, parts }),
            }
        } else {
            Outcome::Waiting(Waiting::OtherTasks)
        };
        observer.outcome(&StepOutcome::Filtered { domain: name, out: &out, outcome }).map_err(PrepareError::Report)
    }

    /// The domains deduplicated together, in config order.
    fn dedup_domains(&self) -> Vec<&'a DomainConfig> {
        let Some(section) = &self.config.dedup else { return Vec::new() };
        let names = section.domain_names(&self.config.domains);
        self.config.domains.iter().filter(|d| names.contains(&d.name.as_str())).collect()
    }

    fn dedup(&self, section: &DedupSettings, observer: &dyn Observer) -> Result<(), PrepareError> {
        let domains: Vec<String> = self.dedup_domains().iter().map(|d| d.name.clone()).collect();
        let out = self.config.output.join("_dedup");
        let report = |outcome| {
            let step = StepOutcome::Deduplicated { domains: &domains, out: &out, outcome };
            observer.outcome(&step).map_err(PrepareError::Report)
        };
        let job = match self.dedup_job(section, &out)? {
            Outcome::Done(job) => job,
            Outcome::Waiting(on) => return report(Outcome::Waiting(on)),
        };
        // Domains whose normalisation is not the preset's: those keeping their numbers.
        let preset = job.config.near.as_ref().map(|near| near.normalization);
        let keeping: Vec<&str> = domains
            .iter()
            .map(String::as_str)
            .filter(|d| section.near_normalization(&job.config, d) != preset)
            .collect();
        if !keeping.is_empty() {
            observer.note(&format!(
                "near-dedup keeps the numbers of {} (numbers tell their documents apart)",
                keeping.join(", ")
            ));
        }
        let progress = |p| observer.progress("dedup", p);
        if self.stage.runs(Stage::DedupSignatures) {
            for slice in &self.slices {
                dedup::signatures(&job, slice.task, &progress)?;
            }
        }
        if self.stage.runs(Stage::DedupPairs) {
            dedup::pairs(&job)?;
        }
        if self.stage.runs(Stage::DedupClusters) {
            dedup::clusters(&job, &progress)?;
        }
        if self.stage.runs(Stage::DedupApply) {
            for slice in &self.slices {
                dedup::apply(&job, slice.task, &progress)?;
            }
            observer.finished("dedup");
            if !self.finalize {
                return report(Outcome::Waiting(Waiting::OtherTasks));
            }
            match dedup::finish(&job)? {
                Parts::Complete(done) => report(Outcome::Done(done))?,
                Parts::Missing(parts) => return Err(PrepareError::PartsMissing { dir: out, parts }),
            }
        }
        Ok(())
    }

    /// The dedup job over the filtered documents of the `[dedup]` domains, once they are filtered.
    fn dedup_job(&self, section: &DedupSettings, out: &Path) -> Result<Outcome<DedupJob>, PrepareError> {
        let config = self.config;
        let mut inputs = Vec::new();
        let mut parts = Vec::new();
        let mut near_normalization = Vec::new();
        let resolved = section.resolve()?;
        for domain in self.dedup_domains() {
            let filtered = config.output.join(&domain.name).join("filtered");
            if !filtered.join("stats.json").is_file() {
                return Ok(Outcome::Waiting(Waiting::Stage { stage: "filter", domain: domain.name.clone() }));
            }
            let kept = read::expand_inputs(&[filtered.join("kept/*.parquet").to_string_lossy()])?;
            for (i, path) in kept.into_iter().enumerate() {
                inputs.push(path);
                parts.push((config.output.join(&domain.name).join("dedup"), part_name(i)));
                near_normalization.extend(section.near_normalization(&resolved, &domain.name));
            }
        }
        let settings = json!({ "dedup": section, "tasks": self.tasks, "near_normalization": near_normalization });
        let identity = RunIdentity::new("dedup", &inputs, settings);
        let restart = self.force && self.stage.runs(Stage::DedupSignatures);
        if restart {
            for (dir, _) in &parts {
                match std::fs::remove_dir_all(dir) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(FileError::at(dir)(e).into());
                    }
                    _ => {}
                }
            }
        }
        Folder::stage(out).claim(&identity, restart)?;
        Ok(Outcome::Done(DedupJob {
            inputs,
            read: ReadOptions::stage_output(),
            config: resolved,
            work: out.join("work"),
            out: out.to_path_buf(),
            tasks: self.tasks,
            parts,
            near_normalization,
        }))
    }

    /// Tokenize a domain's kept documents into `OUTPUT/NAME` (shards, sidecars,
    /// removed.parquet, stats.json, manifest.json last).
    fn tokenize(
        &self,
        domain: &DomainConfig,
        section: &PrepareTokenizerConfig,
        tokenizer: &TextTokenizer,
        observer: &dyn Observer,
    ) -> Result<(), PrepareError> {
        let out = self.config.output.join(&domain.name);
        let report = |outcome| {
            let step = StepOutcome::Dataset { domain: &domain.name, out: &out, outcome };
            observer.outcome(&step).map_err(PrepareError::Report)
        };
        let dedup_domains = self.dedup_domains();
        let in_dedup = dedup_domains.iter().any(|d| d.name == domain.name);
        let (stage, ready) = if in_dedup {
            ("dedup", self.config.output.join("_dedup/stats.json").is_file())
        } else {
            ("filter", out.join("filtered/stats.json").is_file())
        };
        if !ready {
            return report(Outcome::Waiting(Waiting::Stage { stage, domain: domain.name.clone() }));
        }
        let kept_in = if in_dedup { "dedup" } else { "filtered" };
        let inputs = read::expand_inputs(&[out.join(kept_in).join("kept/*.parquet").to_string_lossy()])?;
        let options = DatasetOptions {
            domain: domain.name.clone(),
            read: ReadOptions::stage_output(),
            shard_bytes: section.shard_size_mb << 20,
            formats: Formats::from_list(&section.formats)?,
            chat: domain.messages_column.is_some().then_some(domain.loss_mask),
            config: self.dataset_settings(domain, in_dedup.then_some(&dedup_domains)),
        };
        let identity = json!({ "config": options.config, "inputs": inputs, "tokenizer": tokenizer.identity() });
        if let Some(m) =
            dataset::claim_dataset_folder(&out, &domain.name, &identity, self.force, &["filtered", "dedup"])?
        {
            return report(Outcome::Done(DatasetDone::AlreadyPrepared { documents: m.documents, tokens: m.tokens }));
        }
        let work = format!("{} tokenize", domain.name);
        for &slice in &self.slices {
            dataset::tokenize_inputs(&inputs, tokenizer, &options, &out, slice, &|p| observer.progress(&work, p))?;
        }
        observer.finished(&work);
        if !self.finalize {
            return report(Outcome::Waiting(Waiting::OtherTasks));
        }
        let parts = match dataset::finished_parts(inputs.len(), &out) {
            Parts::Complete(parts) => parts,
            Parts::Missing(parts) => return Err(PrepareError::PartsMissing { dir: out, parts }),
        };
        let done = finish_dataset(&out, in_dedup, &parts, tokenizer, &options)?;
        report(Outcome::Done(done))
    }

    /// What a domain's dataset depends on: its own settings, the tokenizer section, and for a
    /// deduplicated domain the dedup settings and its partners' settings (their documents
    /// decide which of its documents are duplicates). Recorded in its manifest and compared on
    /// resume.
    fn dataset_settings(&self, domain: &DomainConfig, dedup_with: Option<&Vec<&DomainConfig>>) -> serde_json::Value {
        let config = self.config;
        json!({
            "domain": domain,
            "batch_size": config.batch_size,
            "on_error": config.on_error,
            "dedup": dedup_with.map(|partners| json!({ "settings": config.dedup, "domains": partners })),
            "tokenizer": config.tokenizer,
        })
    }
}

fn load_tokenizer(section: &PrepareTokenizerConfig) -> Result<TextTokenizer, TokenizeError> {
    Ok(TextTokenizer::from_file(
        &section.path,
        section.eos.as_deref().map(EosSpec::parse).as_ref(),
        section.bos.as_deref().map(EosSpec::parse).as_ref(),
    )?
    .with_special_tokens_in_text(section.special_tokens_in_text))
}

/// removed.parquet (every stage's removals), stats.json, then manifest.json.
fn finish_dataset(
    out: &Path,
    in_dedup: bool,
    parts: &[dataset::PartDone],
    tokenizer: &TextTokenizer,
    options: &DatasetOptions,
) -> Result<DatasetDone, PrepareError> {
    let glob = |sub: &str| read::expand_inputs(&[out.join(sub).join("*.parquet").to_string_lossy()]);
    let mut removed_parts = glob("filtered/removed")?;
    if in_dedup {
        removed_parts.extend(glob("dedup/removed")?);
    }
    removed_parts.extend(glob("removed")?);
    let removed = dataset::merge_parquet(&removed_parts, &out.join("removed.parquet"))?;
    let filter_stats: serde_json::Value = read_json(&out.join("filtered/stats.json"))?;
    let dedup_stats = if in_dedup { Some(merged_dedup_stats(&out.join("dedup/stats"))?) } else { None };
    let tokenize = dataset::tokenize_stats(parts, tokenizer, options);
    let stats = json!({ "filter": filter_stats, "dedup": dedup_stats, "tokenize": tokenize, "removed": removed });
    let path = out.join("stats.json");
    let text = serde_json::to_string_pretty(&stats).expect("serialisable");
    util::fsutil::write_atomic(&path, text.as_bytes()).map_err(FileError::at(&path))?;
    let manifest = dataset::write_manifest(parts, tokenizer, options, out)?;
    Ok(DatasetDone::Written {
        documents: manifest.documents,
        tokens: manifest.tokens,
        shards: manifest.shards.len(),
        removed,
        tokenize,
    })
}

/// The dedup stage's per-part stats of one domain, summed in part order.
fn merged_dedup_stats(dir: &Path) -> Result<StageStats, PrepareError> {
    let io = |e: std::io::Error| FileError::at(dir)(e);
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir).map_err(io)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>().map_err(io)?;
    files.sort();
    let mut total = StageStats::default();
    for f in files {
        total.merge(&read_json(&f)?);
    }
    Ok(total)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, PrepareError> {
    let bytes = std::fs::read(path).map_err(FileError::at(path))?;
    Ok(serde_json::from_slice(&bytes).map_err(FileError::at(path))?)
}

/// What every job of the Slurm script asks for, and how arrays are cut.
#[derive(Clone, Debug)]
pub struct SlurmOptions {
    pub cpus: usize,
    pub mem: String,
    pub time: String,
    pub partition: Option<String>,
    /// Anything else, passed to every `sbatch` as it is (`--account=x`, `--qos=y`).
    pub extra: Vec<String>,
    /// Largest array index the cluster accepts plus one (Slurm's `MaxArraySize`, 1001 by default).
    pub max_array_size: usize,
    /// At most this many tasks of an array at once (`%K`).
    pub throttle: Option<usize>,
}

impl Default for SlurmOptions {
    fn default() -> Self {
        Self {
            cpus: 2,
            mem: "4G".into(),
            time: "24:00:00".into(),
            partition: None,
            extra: Vec::new(),
            max_array_size: 1001,
            throttle: None,
        }
    }
}

/// `text` as one word for the shell, whatever it holds.
fn shell_quote(text: &str) -> String {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-=:,+%@".contains(&b)) {
        return text.to_string();
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// A Slurm script running `exe prepare CONFIG` stage by stage: each split stage a job array of
/// `tasks` (cut into arrays of at most `max_array_size - 1` indices), then a one-task finalize
/// job that writes the stage's summary or fails naming the missing parts; each job `afterok` the
/// previous. The last job verifies every dataset.
pub fn slurm_script(
    exe: &Path,
    config_path: &Path,
    config: &PrepareConfig,
    tasks: usize,
    slurm: &SlurmOptions,
) -> Result<String, PrepareError> {
    if tasks == 0 {
        return Err(PrepareError::Settings("--emit-slurm needs at least 1 task".into()));
    }
    if slurm.max_array_size < 2 || slurm.cpus == 0 || slurm.throttle == Some(0) {
        return Err(PrepareError::Settings(
            "--slurm-max-array-size must be at least 2, --slurm-cpus and --slurm-throttle at least 1".into(),
        ));
    }
    let base = format!(
        "{} prepare {} --tasks {tasks}",
        shell_quote(&exe.to_string_lossy()),
        shell_quote(&config_path.to_string_lossy())
    );
    let mut options = vec![
        format!("--cpus-per-task={}", slurm.cpus),
        format!("--mem={}", slurm.mem),
        format!("--time={}", slurm.time),
        "--open-mode=append".to_string(),
    ];
    options.extend(slurm.partition.iter().map(|p| format!("--partition={p}")));
    options.extend(slurm.extra.iter().cloned());
    let options: Vec<String> = options.iter().map(|o| shell_quote(o)).collect();
    let mut s = format!(
        "#!/usr/bin/env bash\n\
         # midtrain prepare as Slurm jobs, generated by `midtrain prepare --emit-slurm {tasks}`.\n\
         # Each split stage is a job array, then a finalize job that writes the stage's summary (it\n\
         # fails, naming the missing parts, if a task did not finish). After a failure, fix the cause\n\
         # and run this script again: every stage resumes, redoing only unfinished files.\n\
         # OUTPUT ({}) must be on a filesystem all nodes share. Logs: logs/STAGE-JOB_TASK.log.\n\
         set -euo pipefail\n\
         SBATCH_OPTS=({})\n\
         mkdir -p logs\n\
         dep=\"\"\n\
         # submit NAME WRAP [ARRAY-ARGS]: one sbatch after the previous jobs; prints the job id.\n\
         submit() {{\n  \
           sbatch --parsable \"${{SBATCH_OPTS[@]}}\" --job-name=\"midtrain-$1\" ${{dep:+--dependency=afterok:$dep}} \\\n    \
           --output=\"logs/$1-%A_%a.log\" ${{3:+--array=$3}} --wrap=\"$2\"\n\
         }}\n",
        config.output.display(),
        options.join(" ")
    );
    let throttle = slurm.throttle.map(|k| format!("%{k}")).unwrap_or_default();
    let chunk = slurm.max_array_size - 1;
    // One stage's jobs after `$dep`: an array of every task (then, with `finalize`, the job that
    // writes its summary), or one job; `$dep` is then the last of them.
    let stage = |s: &mut String, name: &str, args: &str, array: bool, finalize: bool| {
        let cmd = format!("{base} {args}");
        if !array {
            let wrap = shell_quote(&format!("{cmd} -q"));
            s.push_str(&format!("dep=$(submit {name} {wrap})\necho \"{name}: job $dep\"\n"));
            return;
        }
        s.push_str("ids=\"\"\n");
        for offset in (0..tasks).step_by(chunk) {
            let count = chunk.min(tasks - offset);
            let task = if offset == 0 {
                "$SLURM_ARRAY_TASK_ID".to_string()
            } else {
                format!("$(({offset} + SLURM_ARRAY_TASK_ID))")
            };
            let wrap = shell_quote(&format!("{cmd} --task {task} -q"));
            s.push_str(&format!("ids=\"${{ids:+$ids:}}$(submit {name} {wrap} 0-{}{throttle})\"\n", count - 1));
        }
        s.push_str(&format!("echo \"{name}: jobs $ids\"\ndep=$ids\n"));
        if finalize {
            let wrap = shell_quote(&format!("{cmd} --finalize -q"));
            s.push_str(&format!("dep=$(submit {name}-finalize {wrap})\necho \"{name}-finalize: job $dep\"\n"));
        }
    };
    stage(&mut s, "filter", "--stage filter", true, true);
    s.push_str("filtered=$dep\n");
    if let Some(dedup) = &config.dedup {
        // The signatures have no summary: the pairs stage checks every task's.
        stage(&mut s, "dedup-sig", "--stage dedup-signatures", true, false);
        stage(&mut s, "dedup-pairs", "--stage dedup-pairs", false, false);
        stage(&mut s, "dedup-clusters", "--stage dedup-clusters", false, false);
        stage(&mut s, "dedup-apply", "--stage dedup-apply", true, true);
        s.push_str("deduplicated=$dep\n");
        if config.tokenizer.is_some() {
            // Each domain tokenizes once what it reads is finished: its filter, or the dedup.
            let deduplicated = dedup.domain_names(&config.domains);
            s.push_str("tokenized=\"\"\n");
            for d in &config.domains {
                let after = if deduplicated.contains(&d.name.as_str()) { "deduplicated" } else { "filtered" };
                s.push_str(&format!("dep=${after}\n"));
                let args = format!("--stage tokenize --domain {}", shell_quote(&d.name));
                stage(&mut s, &format!("tokenize-{}", d.name), &args, true, true);
                s.push_str("tokenized=\"${tokenized:+$tokenized:}$dep\"\n");
            }
            s.push_str("dep=$tokenized\n");
        }
    } else if config.tokenizer.is_some() {
        stage(&mut s, "tokenize", "--stage tokenize", true, true);
    }
    if config.tokenizer.is_some() {
        let verify: Vec<String> = config
            .domains
            .iter()
            .map(|d| {
                let dir = config.output.join(&d.name);
                format!("{} verify {}", shell_quote(&exe.to_string_lossy()), shell_quote(&dir.to_string_lossy()))
            })
            .collect();
        let wrap = shell_quote(&verify.join(" && "));
        s.push_str(&format!("dep=$(submit verify {wrap})\necho \"verify: job $dep\"\n"));
    }
    Ok(s)
}
