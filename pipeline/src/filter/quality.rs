//! `quality`: a fastText classifier's probability for one label becomes the `quality` score
//! (the DCLM recipe), with an optional threshold below which documents are dropped.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::language::FastTextModel;
use super::{Filter, FilterError, OutputColumn, Verdict};
use crate::document::Document;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityConfig {
    /// fastText classifier (e.g. from `midtrain quality train`).
    pub model: PathBuf,
    /// The label whose probability is the score (without `__label__`).
    #[serde(default = "default_label")]
    pub label: String,
    /// Drop documents scoring below this; `None` only scores.
    pub threshold: Option<f64>,
}

fn default_label() -> String {
    "hq".into()
}

pub struct QualityFilter {
    model: FastTextModel,
    label: String,
    threshold: Option<f64>,
}

impl QualityFilter {
    pub fn new(config: &QualityConfig) -> Result<Self, FilterError> {
        let model = FastTextModel::load(&config.model)?;
        if !model.labels().contains(&config.label) {
            return Err(FilterError::Config(format!(
                "quality: label {:?} is not in {} (labels: {})",
                config.label,
                config.model.display(),
                model.labels().join(", ")
            )));
        }
        Ok(Self { model, label: config.label.clone(), threshold: config.threshold })
    }
}

impl Filter for QualityFilter {
    fn name(&self) -> &str {
        "quality"
    }

    fn apply(&self, doc: &mut Document) -> Verdict {
        let score = self.model.probability(&doc.text, &self.label);
        doc.set_score("quality", score);
        match self.threshold {
            Some(t) if score < t => Verdict::drop("below_quality_threshold"),
            _ => Verdict::Keep,
        }
    }

    fn outputs(&self) -> Vec<OutputColumn> {
        vec![OutputColumn::Score("quality")]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_classifier_scores_prose_above_spam() {
        let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/models/quality.bin");
        let f = QualityFilter::new(&QualityConfig { model, label: "hq".into(), threshold: Some(0.5) }).unwrap();
        let mut good = Document::new(
            "g".into(),
            "Photosynthesis is the process by which plants convert light energy into chemical energy, \
             storing it in the bonds of glucose molecules."
                .into(),
            "f".into(),
            0,
        );
        let mut spam = Document::new(
            "s".into(),
            "CLICK HERE best casino bonus free spins win win win cheap pills buy now!!! best price".into(),
            "f".into(),
            0,
        );
        f.apply(&mut good);
        let verdict = f.apply(&mut spam);
        assert!(good.score("quality").unwrap() > spam.score("quality").unwrap());
        assert_eq!(verdict, Verdict::drop("below_quality_threshold"));
    }
}
