//! `language`: fastText language identification (lid.176-style model, labels `__label__en`).
//!
//! As in FineWeb and DCLM: newlines become spaces, the top label wins, and the document is kept
//! when that label is a wanted language and its probability is above the threshold (0.65).
//! Every document gets `language` and `language_score`, kept or not.

use std::path::{Path, PathBuf};

use fasttext::FastText;
use serde::{Deserialize, Serialize};

use super::{Filter, FilterError, OutputColumn, Verdict};
use crate::document::Document;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LanguageConfig {
    /// fastText model file (`lid.176.bin`, or the fixture's `models/lid.bin`).
    pub model: PathBuf,
    /// Languages to keep (labels without `__label__`).
    #[serde(default = "default_languages")]
    pub languages: Vec<String>,
    /// Keep when the top label's probability is strictly above this.
    #[serde(default = "default_threshold")]
    pub threshold: f64,
}

fn default_languages() -> Vec<String> {
    vec!["en".into()]
}

fn default_threshold() -> f64 {
    0.65
}

/// A loaded fastText model, named by its file for errors.
pub struct FastTextModel {
    model: FastText,
}

impl FastTextModel {
    pub fn load(path: &Path) -> Result<Self, FilterError> {
        let model =
            FastText::load_model(path).map_err(|source| FilterError::Model { path: path.to_path_buf(), source })?;
        Ok(Self { model })
    }

    /// Labels (without `__label__`) and probabilities, best first, for one line of text.
    pub fn predict(&self, text: &str, k: usize) -> Vec<(String, f64)> {
        let line = text.replace(['\n', '\r'], " ");
        self.model
            .predict(&line, k, 0.0)
            .into_iter()
            .map(|p| (p.label.strip_prefix("__label__").unwrap_or(&p.label).to_string(), p.prob as f64))
            .collect()
    }

    /// Probability of `label` (0 when the model gives it none).
    pub fn probability(&self, text: &str, label: &str) -> f64 {
        let k = self.model.get_labels().0.len().max(1);
        self.predict(text, k).into_iter().find(|(l, _)| l == label).map_or(0.0, |(_, p)| p)
    }

    pub fn labels(&self) -> Vec<String> {
        let labels = self.model.get_labels().0;
        labels.into_iter().map(|l| l.strip_prefix("__label__").map(str::to_string).unwrap_or(l)).collect()
    }
}

pub struct LanguageFilter {
    model: FastTextModel,
    languages: Vec<String>,
    threshold: f64,
}

impl LanguageFilter {
    pub fn new(config: &LanguageConfig) -> Result<Self, FilterError> {
        let model = FastTextModel::load(&config.model)?;
        let known = model.labels();
        if let Some(missing) = config.languages.iter().find(|l| !known.contains(l)) {
            return Err(FilterError::Config(format!(
                "language: {missing:?} is not a label of {} (labels: {})",
                config.model.display(),
                known.join(", ")
            )));
        }
        Ok(Self { model, languages: config.languages.clone(), threshold: config.threshold })
    }
}

impl Filter for LanguageFilter {
    fn name(&self) -> &str {
        "language"
    }

    fn apply(&self, doc: &mut Document) -> Verdict {
        let Some((language, score)) = self.model.predict(&doc.text, 1).into_iter().next() else {
            doc.set_score("language_score", 0.0);
            return Verdict::drop("no_language");
        };
        doc.set_score("language_score", score);
        let wanted = self.languages.contains(&language);
        doc.set_label("language", language);
        if !wanted {
            Verdict::drop("unwanted_language")
        } else if score <= self.threshold {
            Verdict::drop("low_language_score")
        } else {
            Verdict::Keep
        }
    }

    fn outputs(&self) -> Vec<OutputColumn> {
        vec![OutputColumn::Label("language"), OutputColumn::Score("language_score")]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_model() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/models/lid.bin")
    }

    #[test]
    fn fixture_model_tells_english_from_german() {
        let f = LanguageFilter::new(&LanguageConfig {
            model: fixture_model(),
            languages: vec!["en".into()],
            threshold: 0.5,
        })
        .unwrap();
        let mut en = Document::new(
            "en".into(),
            "The children walked to the old market and bought fresh bread for the whole family.".into(),
            "f".into(),
            0,
        );
        assert_eq!(f.apply(&mut en), Verdict::Keep);
        assert_eq!(en.label("language"), Some("en"));
        assert!(en.score("language_score").unwrap() > 0.5);
        let mut de = Document::new(
            "de".into(),
            "Die Kinder gingen zum alten Markt und kauften frisches Brot für die ganze Familie.".into(),
            "f".into(),
            0,
        );
        assert_eq!(f.apply(&mut de), Verdict::drop("unwanted_language"));
        assert_eq!(de.label("language"), Some("de"));
    }

    #[test]
    fn unknown_language_and_missing_model_are_config_errors() {
        let config = LanguageConfig { model: fixture_model(), languages: vec!["xx".into()], threshold: 0.65 };
        let err = LanguageFilter::new(&config).err().unwrap().to_string();
        assert!(err.contains("\"xx\"") && err.contains("en"), "{err}");
        let config = LanguageConfig { model: "missing.bin".into(), languages: default_languages(), threshold: 0.65 };
        assert!(LanguageFilter::new(&config).err().unwrap().to_string().contains("missing.bin"));
    }
}
