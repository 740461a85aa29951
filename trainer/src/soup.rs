//! Weight averaging of checkpoints ("souping"): several same-shape HF folders into one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use candle_core::{DType, Device, Tensor};

use crate::hf_config::LlamaConfig;
use crate::model::save_safetensors;

/// Average the weights of `checkpoints` (same configuration) into a new HF folder `out`.
/// `out` must not exist yet (or be an empty folder) and must not be one of the inputs: the
/// average is written into a temporary folder beside it and renamed into place.
pub fn soup(checkpoints: &[PathBuf], out: &Path) -> Result<LlamaConfig> {
    ensure!(!checkpoints.is_empty(), "name at least one checkpoint to average");
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    if let Some(input) = checkpoints.iter().find(|c| canonical(c) == canonical(out)) {
        bail!("{}: is one of the checkpoints to average; write the soup into a new folder", input.display());
    }
    if out.exists() {
        let empty = out.is_dir() && std::fs::read_dir(out).map(|mut d| d.next().is_none()).unwrap_or(false);
        ensure!(empty, "{}: already exists and is not empty; write the soup into a new folder", out.display());
    }
    let config = LlamaConfig::load(&checkpoints[0].join("config.json"))?;
    let mut sums: HashMap<String, Tensor> = HashMap::new();
    for dir in checkpoints {
        let other = LlamaConfig::load(&dir.join("config.json"))?;
        if other != config {
            bail!(
                "{}: its config.json differs from {}'s; only same-shape models average",
                dir.display(),
                checkpoints[0].display()
            );
        }
        let path = dir.join("model.safetensors");
        let tensors = candle_core::safetensors::load(&path, &Device::Cpu)
            .with_context(|| format!("{}: cannot read the weights", path.display()))?;
        if !sums.is_empty() && tensors.len() != sums.len() {
            bail!(
                "{}: holds {} tensors, {} holds {}",
                path.display(),
                tensors.len(),
                checkpoints[0].display(),
                sums.len()
            );
        }
        for (name, t) in tensors {
            let t = t.to_dtype(DType::F64)?;
            let sum = match sums.remove(&name) {
                Some(s) => {
                    ensure!(s.dims() == t.dims(), "{}: tensor {name:?} has another shape", path.display());
                    (s + t)?
                }
                None if dir == &checkpoints[0] => t,
                None => bail!("{}: tensor {name:?} is not in {}", path.display(), checkpoints[0].display()),
            };
            sums.insert(name, sum);
        }
    }
    let n = checkpoints.len() as f64;
    let averaged =
        sums.into_iter().map(|(name, t)| Ok((name, (t / n)?.to_dtype(DType::F32)?))).collect::<Result<Vec<_>>>()?;
    let tmp = util::fsutil::temp_path(out);
    std::fs::create_dir_all(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
    save_safetensors(&tmp.join("model.safetensors"), averaged)?;
    config.save(&tmp)?;
    if out.is_dir() {
        std::fs::remove_dir(out).with_context(|| format!("{}: cannot replace the empty folder", out.display()))?;
    }
    util::fsutil::durable_rename(&tmp, out).with_context(|| format!("{}: cannot finish", out.display()))?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Llama;

    /// Two tiny models of one config, seeded differently, as HF folders `m1` and `m2`.
    fn two_checkpoints(dir: &Path) -> Vec<PathBuf> {
        let config = LlamaConfig::tiny(30);
        let mut paths = Vec::new();
        for seed in [1, 2] {
            let m = Llama::init(&config, seed, &Device::Cpu).unwrap();
            let p = dir.join(format!("m{seed}"));
            std::fs::create_dir_all(&p).unwrap();
            m.config.save(&p).unwrap();
            m.save_weights(&p).unwrap();
            paths.push(p);
        }
        paths
    }

    #[test]
    fn soup_averages_weights() {
        let dir = tempfile::tempdir().unwrap();
        let paths = two_checkpoints(dir.path());
        soup(&paths, &dir.path().join("soup")).unwrap();
        let w = |p: &Path| {
            Llama::load(p, &Device::Cpu).unwrap().params()[1]
                .1
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let (a, b, s) = (w(&paths[0]), w(&paths[1]), w(&dir.path().join("soup")));
        for i in 0..a.len() {
            assert!((s[i] - (a[i] + b[i]) / 2.0).abs() < 1e-7);
        }
        let other = dir.path().join("other");
        std::fs::create_dir_all(&other).unwrap();
        let m = Llama::init(&LlamaConfig::tiny(31), 1, &Device::Cpu).unwrap();
        m.config.save(&other).unwrap();
        m.save_weights(&other).unwrap();
        let err = soup(&[paths[0].clone(), other], &dir.path().join("bad")).unwrap_err();
        assert!(err.to_string().contains("differs"));
        assert!(!dir.path().join("bad").exists(), "a failed soup leaves nothing");
    }

    #[test]
    fn soup_never_overwrites_an_input_or_a_folder_with_files() {
        let dir = tempfile::tempdir().unwrap();
        let paths = two_checkpoints(dir.path());
        let before = std::fs::read(paths[0].join("model.safetensors")).unwrap();
        let spelled = dir.path().join("m2/../m1");
        let err = soup(&paths, &spelled).unwrap_err().to_string();
        assert!(err.contains("one of the checkpoints"), "{err}");
        assert_eq!(std::fs::read(paths[0].join("model.safetensors")).unwrap(), before);
        let full = dir.path().join("full");
        std::fs::create_dir_all(&full).unwrap();
        std::fs::write(full.join("notes.txt"), "mine").unwrap();
        assert!(soup(&paths, &full).unwrap_err().to_string().contains("not empty"));
        assert_eq!(std::fs::read_to_string(full.join("notes.txt")).unwrap(), "mine");
        let empty = dir.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        soup(&paths, &empty).unwrap();
        assert!(empty.join("model.safetensors").is_file());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 4, "no temporary folder is left");
    }
}
