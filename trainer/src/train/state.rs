//! What the loop saves beside each checkpoint to resume exactly where it stopped.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use crate::data::Cursor;
use crate::metrics::{NoiseScale, SpikeDetector};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps done in the whole run.
    pub step: u64,
    pub stage: usize,
    pub step_in_stage: u64,
    pub tokens: u64,
    pub cursor: Cursor,
    pub optimizer_steps: u64,
    pub noise: NoiseScale,
    pub spikes: SpikeDetector,
    /// Mean short-context held-out loss at the start of the current stage.
    #[serde(default)]
    pub short_loss_at_start: Option<f64>,
    /// Steps skipped in a row for a non-finite loss or gradient (`on_nonfinite = "skip_step"`).
    #[serde(default)]
    pub skipped_in_a_row: u64,
    /// Each data path of the run → its identity (a mixture's order checksum, a dataset's
    /// manifest checksum): a resume refuses data that changed underneath it.
    #[serde(default)]
    pub data_identities: BTreeMap<String, String>,
    /// No randomness beyond the seed: data order and initialisation derive from it.
    pub seed: u64,
}

impl TrainerState {
    /// The state of a run that has not taken a step.
    pub fn new(seed: u64) -> Self {
        Self {
            step: 0,
            stage: 0,
            step_in_stage: 0,
            tokens: 0,
            cursor: Cursor::default(),
            optimizer_steps: 0,
            noise: NoiseScale::default(),
            spikes: SpikeDetector::default(),
            short_loss_at_start: None,
            skipped_in_a_row: 0,
            data_identities: BTreeMap::new(),
            seed,
        }
    }

    /// A branch starts its config's first stage from a checkpoint's weights, optimizer moments
    /// and data position: the counters restart, the cursor and moments stay.
    pub fn restart_counters_for_branch(&mut self) {
        self.stage = 0;
        self.step_in_stage = 0;
        self.step = 0;
        self.tokens = 0;
    }

    /// Take `now` as the run's data identities; a resume (`resumed_from`) refuses data that
    /// changed since its checkpoint.
    pub fn adopt_data_identities(&mut self, now: BTreeMap<String, String>, resumed_from: Option<&Path>) -> Result<()> {
        if let Some(checkpoint) = resumed_from {
            for (path, identity) in &self.data_identities {
                if let Some(current) = now.get(path)
                    && current != identity
                {
                    bail!(
                        "{path}: changed since {} was saved (identity {identity}, now {current}: rebuilt or edited); \
                         resuming on it would train on another stream. Restore the data, or start a new run folder",
                        checkpoint.display()
                    );
                }
            }
        }
        self.data_identities = now;
        Ok(())
    }
}
