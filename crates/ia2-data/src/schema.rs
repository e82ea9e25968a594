//! On-disk schemas shared with the seed system (`data/<name>/main.json`, `data/<name>/train/{N}_{run}.json`).

use serde::{Deserialize, Deserializer, Serialize};

/// One example: `question` already ends in its answer cue (`...\nLabel:` / `...\nAnswer:`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// Position in the shuffled source pool.
    pub idx: usize,
    pub question: String,
    /// Always a string; the seed wrote qasc answers as integers, which we accept on read.
    #[serde(deserialize_with = "string_or_number")]
    pub answer: String,
}

/// `data/<name>/main.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MainFile {
    pub metadata: serde_json::Value,
    pub train_examples: Vec<Example>,
    pub val_examples: Vec<Example>,
}

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "expected a string or number answer, found {other}"
        ))),
    }
}

impl Example {
    /// The example as an in-context demo: question immediately followed by its answer.
    pub fn as_demo(&self) -> String {
        format!("{}{}", self.question, self.answer)
    }
}

/// The ICL prompt the model sees: `"\n\n".join(demos) + "\n\n" + query.question`; without demos, the bare
/// question.
pub fn icl_prompt(demos: &[&Example], query: &Example) -> String {
    if demos.is_empty() {
        return query.question.clone();
    }
    let mut s = demos
        .iter()
        .map(|d| d.as_demo())
        .collect::<Vec<_>>()
        .join("\n\n");
    s.push_str("\n\n");
    s.push_str(&query.question);
    s
}
