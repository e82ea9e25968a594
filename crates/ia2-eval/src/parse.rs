//! Answer parsing per evaluation dataset: the parser comes from the registry
//! ([`ia2_data::registry::AnswerParser`], the one implementation of the GSM cascade, `\boxed{}`, `####` and
//! labels), the label set from `main.json`'s metadata. Datasets outside the registry (e.g. a synthetic toy
//! dataset) are evaluable too: they get the classification parser and the label set of their metadata.

use anyhow::{Result, bail};
use ia2_data::registry::{AnswerParser, DatasetId, Labels};
use serde_json::Value;

/// What the evaluation needs to know about one evaluation dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetInfo {
    pub name: String,
    /// Whether the dataset is in the registry (else: classification parser, labels from metadata).
    pub registered: bool,
    pub parser: AnswerParser,
    /// The answers of a classification dataset, in label order: `str(i)`, or the remap token of label
    /// `i`. `None` for generation tasks (`max_choices: "free"`).
    pub labels: Option<Vec<String>>,
}

/// Generation length used when `--num-gen-tokens-eval` is not given for a generation task (the seed's
/// default).
pub const DEFAULT_FREE_GEN_TOKENS: usize = 200;

impl DatasetInfo {
    /// From the dataset name and its `main.json` metadata (`max_choices`, `remap_dict`). The metadata's
    /// label set wins over the registry's (it describes the data actually on disk).
    pub fn new(name: &str, metadata: &Value) -> Result<DatasetInfo> {
        let spec = DatasetId::parse(name).ok().map(DatasetId::spec);
        let labels = match labels_from_metadata(name, metadata)? {
            Some(l) => Some(l),
            None => match &spec {
                Some(s) => match (s.labels, s.remap_table()) {
                    (Labels::Classes(_), Some(table)) => {
                        Some(table.iter().map(|t| t.to_string()).collect())
                    }
                    (Labels::Classes(c), None) => {
                        Some((0..c.len()).map(|i| i.to_string()).collect())
                    }
                    (Labels::Free, _) => None,
                },
                None => None,
            },
        };
        Ok(DatasetInfo {
            name: name.to_string(),
            registered: spec.is_some(),
            parser: spec.map_or(AnswerParser::Label, |s| s.parser),
            labels,
        })
    }

    /// The gold answer compared with predictions: the raw answer parsed with the dataset's parser (for
    /// classification the stripped label; for GSM the final number), or the stripped raw answer when the
    /// parser finds nothing.
    pub fn gold(&self, raw: &str) -> String {
        self.parser
            .parse(raw)
            .unwrap_or_else(|| raw.trim().to_string())
    }

    /// The answer in a generation, `None` when there is none.
    pub fn parse(&self, generated: &str) -> Option<String> {
        self.parser.parse(generated)
    }

    /// Default number of generated tokens: 1 for classification, 200 for generation tasks.
    pub fn default_gen_tokens(&self) -> usize {
        if self.labels.is_some() {
            1
        } else {
            DEFAULT_FREE_GEN_TOKENS
        }
    }

    /// Position of `gold` in the label set.
    pub fn label_index(&self, gold: &str) -> Option<usize> {
        self.labels.as_ref()?.iter().position(|l| l == gold)
    }
}

/// The largest `max_choices` accepted.
pub const MAX_CHOICES: usize = 100_000;

/// `max_choices` (an integer, or `"free"` / absent) and `remap_dict` (`{"0": "apple", ...}` or null values)
/// of a `main.json` metadata block.
fn labels_from_metadata(name: &str, metadata: &Value) -> Result<Option<Vec<String>>> {
    let n = match metadata.get("max_choices") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s == "free" => return Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            // Bounded: the labels are materialised, and no classification task has more.
            Some(n) if n > MAX_CHOICES as u64 => bail!(
                "{name}/main.json: metadata.max_choices {n} is implausibly large (at most {MAX_CHOICES})"
            ),
            Some(n) if n > 0 => n as usize,
            _ => bail!(
                "{name}/main.json: metadata.max_choices must be a positive integer or \"free\", found {n}"
            ),
        },
        Some(other) => bail!(
            "{name}/main.json: metadata.max_choices must be a positive integer or \"free\", found {other}"
        ),
    };
    let remap = match metadata.get("remap_dict") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m),
        Some(other) => {
            bail!("{name}/main.json: metadata.remap_dict must be an object, found {other}")
        }
    };
    let labels = (0..n)
        .map(|i| {
            let key = i.to_string();
            match remap.and_then(|m| m.get(&key)) {
                None | Some(Value::Null) => Ok(key),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(other) => bail!(
                    "{name}/main.json: metadata.remap_dict[{key:?}] must be a string or null, found {other}"
                ),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels_come_from_metadata_then_registry() {
        let sst2 =
            DatasetInfo::new("sst2", &json!({"max_choices": 2, "remap_dict": null})).unwrap();
        assert_eq!(sst2.labels, Some(vec!["0".into(), "1".into()]));
        assert!(sst2.registered);
        let toy = DatasetInfo::new(
            "toy",
            &json!({"max_choices": 3, "remap_dict": {"0": "apple", "1": null, "2": "Friday"}}),
        )
        .unwrap();
        assert_eq!(
            toy.labels,
            Some(vec!["apple".into(), "1".into(), "Friday".into()])
        );
        assert!(!toy.registered);
        assert_eq!(toy.parser, AnswerParser::Label);
        let gsm = DatasetInfo::new("gsm8k", &json!({"max_choices": "free"})).unwrap();
        assert_eq!(gsm.labels, None);
        assert_eq!(gsm.default_gen_tokens(), 200);
        assert_eq!(gsm.gold("so 2 + 3 = 5\n#### 5"), "5");
        // Registry fallback when the metadata says nothing.
        let remap = DatasetInfo::new("sciq_remap", &json!({})).unwrap();
        assert_eq!(
            remap.labels,
            Some(vec![
                "apple".into(),
                "Friday".into(),
                "banana".into(),
                "Saturday".into()
            ])
        );
        assert!(DatasetInfo::new("x", &json!({"max_choices": -1})).is_err());
        let e = DatasetInfo::new("x", &json!({"max_choices": 1_000_000_000_000u64}))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("max_choices") && e.contains("implausibly large"),
            "{e}"
        );
    }
}
