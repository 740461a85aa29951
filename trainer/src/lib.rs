//! `trainer`: mid-training on candle. Learning-rate schedules ([`schedule`]) are pure functions
//! of the step, tested against Megatron-LM's formulas.

pub mod schedule;

pub use schedule::{Decay, LrSchedule, WsdShape};
