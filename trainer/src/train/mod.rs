//! The training run: a TOML config of stages ([`config`]), run in order by the loop
//! ([`training_loop`]), each with its token budget, sequence length, RoPE, LR schedule, data and
//! long/short mix; evaluations per stage ([`evaluator`]); checkpoints and exact resume
//! ([`checkpointer`], [`state`]); `metrics.jsonl` ([`records`]).
//!
//! A run folder holds `train.json` (the resolved config it was started with: a rerun with another
//! config is refused), `metrics.jsonl` (one line per step, plus evaluation lines) and
//! `checkpoints/step-N/`. Rerunning resumes from the newest checkpoint and truncates the
//! metrics to it, so the trajectory equals an uninterrupted run's.

pub mod checkpointer;
pub mod config;
mod evaluator;
pub mod records;
pub mod state;
mod training_loop;

pub use config::{
    BatchConfig, DataConfig, EvalConfig, LoopConfig, MAX_SKIPPED_IN_A_ROW, ModelConfig, ModelSource, OnNonFinite,
    RopeChange, ScheduleConfig, StageConfig, TasksConfig, TrainConfig,
};
pub use records::{EvalRecord, Metrics, StepRecord, When, read_metrics};
pub use state::TrainerState;
pub use training_loop::{Event, TrainDevice, TrainOptions, train};

#[cfg(test)]
mod tests;
