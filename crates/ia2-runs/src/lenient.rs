//! `training_config.json` read leniently: the seed's configs (no `"ia2"` key, possibly missing keys, numbers
//! as strings) as well as ours. Every key is optional; a filter on a key the config lacks does not match.

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::Value;
use std::path::Path;

/// `training_config.json` of a run, read leniently (the seed's keys, all optional, plus our `"ia2"` block).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TrainingConfig {
    pub dataset: Option<String>,
    pub training_method: Option<String>,
    pub model_name: Option<String>,
    pub lora_type: Option<String>,
    pub lora_r: Option<usize>,
    pub lora_alpha: Option<f64>,
    pub ia3_type: Option<String>,
    pub num_virtual_tokens: Option<usize>,
    pub num_train_examples: Option<usize>,
    pub num_generated_tokens: Option<usize>,
    pub lr: Option<f64>,
    pub ce_loss_weight: Option<f64>,
    pub label_type: Option<String>,
    pub run_idx: Option<u32>,
    pub ldr_mode: bool,
    pub num_labelled_samples: Option<usize>,
    pub num_unlabelled_samples: Option<usize>,
    pub max_permutations: Option<usize>,
    /// `"all"` or a number, as a string.
    pub tokl_top_k: Option<String>,
    /// `ia2.model_id`: what the user passed to training (hub id, directory or `builtin:NAME`).
    pub ia2_model_id: Option<String>,
    /// `ia2.base_model_fingerprint`.
    pub base_model_fingerprint: Option<String>,
    /// `ia2.identity` (configs written before identities existed have none).
    pub identity: Option<String>,
}

struct Fields<'a> {
    path: &'a Path,
    v: &'a Value,
}

impl Fields<'_> {
    fn raw(&self, key: &str) -> Option<&Value> {
        self.v.get(key).filter(|v| !v.is_null())
    }

    fn string(&self, key: &str) -> Result<Option<String>> {
        Ok(match self.raw(key) {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(other) => bail!(
                "{}: {key} must be a string, found {other}",
                self.path.display()
            ),
        })
    }

    fn float(&self, key: &str) -> Result<Option<f64>> {
        Ok(match self.raw(key) {
            None => None,
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) => Some(s.trim().parse::<f64>().with_context(|| {
                format!(
                    "{}: {key} must be a number, found {s:?}",
                    self.path.display()
                )
            })?),
            Some(other) => bail!(
                "{}: {key} must be a number, found {other}",
                self.path.display()
            ),
        })
    }

    fn uint(&self, key: &str) -> Result<Option<usize>> {
        match self.float(key)? {
            None => Ok(None),
            Some(x) if x >= 0.0 && x.fract() == 0.0 && x < 1e15 => Ok(Some(x as usize)),
            Some(x) => bail!(
                "{}: {key} must be a non-negative integer, found {x}",
                self.path.display()
            ),
        }
    }

    fn boolean(&self, key: &str) -> Result<bool> {
        Ok(match self.raw(key) {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) if s == "true" || s == "True" => true,
            Some(Value::String(s)) if s == "false" || s == "False" => false,
            Some(other) => bail!(
                "{}: {key} must be true or false, found {other}",
                self.path.display()
            ),
        })
    }
}

impl TrainingConfig {
    /// Parses a `training_config.json` value; `path` names the file in errors.
    pub fn from_value(v: &Value, path: &Path) -> Result<TrainingConfig> {
        if !v.is_object() {
            bail!("{}: expected a JSON object", path.display());
        }
        let f = Fields { path, v };
        let ia2 = v.get("ia2").filter(|x| !x.is_null());
        let ia2_fields = ia2.map(|v| Fields { path, v });
        Ok(TrainingConfig {
            dataset: f.string("dataset")?,
            training_method: f.string("training_method")?,
            model_name: f.string("model_name")?,
            lora_type: f.string("lora_type")?,
            lora_r: f.uint("lora_r")?,
            lora_alpha: f.float("lora_alpha")?,
            ia3_type: f.string("ia3_type")?,
            num_virtual_tokens: f.uint("num_virtual_tokens")?,
            num_train_examples: f.uint("num_train_examples")?,
            num_generated_tokens: f.uint("num_generated_tokens")?,
            lr: f.float("lr")?,
            ce_loss_weight: f.float("ce_loss_weight")?,
            label_type: f.string("label_type")?,
            run_idx: f
                .uint("run_idx")?
                .map(|r| u32::try_from(r).context("run_idx is too large"))
                .transpose()?,
            ldr_mode: f.boolean("ldr_mode")?,
            num_labelled_samples: f.uint("num_labelled_samples")?,
            num_unlabelled_samples: f.uint("num_unlabelled_samples")?,
            max_permutations: f.uint("max_permutations")?,
            tokl_top_k: f.string("tokl_top_k")?,
            ia2_model_id: ia2_fields
                .as_ref()
                .map(|f| f.string("model_id"))
                .transpose()?
                .flatten(),
            base_model_fingerprint: ia2_fields
                .as_ref()
                .map(|f| f.string("base_model_fingerprint"))
                .transpose()?
                .flatten(),
            identity: ia2_fields
                .as_ref()
                .map(|f| f.string("identity"))
                .transpose()?
                .flatten(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_config() {
        let v = serde_json::json!({"dataset": "sst2", "training_method": "tok", "lora_r": "8",
            "lora_alpha": 8, "lr": 1e-4, "run_idx": 0, "tokl_top_k": 10, "ce_loss_weight": null});
        let c = TrainingConfig::from_value(&v, Path::new("x.json")).unwrap();
        assert_eq!(c.lora_r, Some(8));
        assert_eq!(c.lora_alpha, Some(8.0));
        assert_eq!(c.tokl_top_k.as_deref(), Some("10"));
        assert_eq!(c.ce_loss_weight, None);
        assert!(!c.ldr_mode);
        let bad = serde_json::json!({"lora_r": [1]});
        let err = TrainingConfig::from_value(&bad, Path::new("x.json")).unwrap_err();
        assert!(format!("{err:#}").contains("lora_r"), "{err:#}");
    }
}
