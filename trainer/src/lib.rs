//! `trainer`: mid-training on candle.
//!
//! A Llama decoder built from differentiable ops ([`model`]) in transformers' checkpoint layout
//! ([`config`], [`checkpoint`]), RoPE scalings and learning-rate schedules as pure functions
//! ([`rope`], [`schedule`]), AdamW with parameter groups and clipping ([`optim`]), a packed,
//! resumable data loader over mixtures ([`data`]), and the training loop with its metrics
//! ([`run`], [`metrics`]), evaluation ([`eval`]) and HTML reports ([`report`]).

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod eval;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod passkey;
pub mod report;
pub mod rope;
pub mod run;
pub mod schedule;

pub use schedule::{Decay, LrSchedule, WsdShape};
