//! Typed records: what each source kind's rows mean, with errors naming file, line and field.

use super::formats::{RawRow, read_text};
use crate::registry::SourceKind;
use anyhow::{Result, anyhow, bail};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// One source row, normalised to the Hugging Face schema of its dataset.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// Classification: text and the HF label id of the source dataset (before any dataset-specific mapping).
    Text { text: String, label: i64 },
    /// Question and worked answer / solution.
    Qa { question: String, answer: String },
    /// SciQ row.
    Sciq {
        question: String,
        distractors: [String; 3],
        correct_answer: String,
        support: String,
    },
    /// Multiple choice with fixed option order (QASC); `answer` is the 0-based option index.
    Mcq {
        question: String,
        choices: Vec<String>,
        answer: usize,
    },
}

impl Record {
    /// The label of a classification record.
    pub fn label(&self) -> Option<i64> {
        match self {
            Record::Text { label, .. } => Some(*label),
            _ => None,
        }
    }
}

fn field<'a>(row: &'a RawRow, name: &str) -> Result<&'a Value> {
    row.fields.get(name).ok_or_else(|| {
        anyhow!(
            "{}: missing field `{name}` (found: {})",
            row.location(),
            row.fields.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    })
}

fn bad(row: &RawRow, name: &str, what: &str, v: &Value) -> anyhow::Error {
    let mut shown = v.to_string();
    if shown.len() > 80 {
        let cut = (0..=80)
            .rev()
            .find(|&i| shown.is_char_boundary(i))
            .unwrap_or(0);
        shown.truncate(cut);
        shown.push('…');
    }
    anyhow!(
        "{}: field `{name}`: expected {what}, found {shown}",
        row.location()
    )
}

fn str_of(row: &RawRow, name: &str, v: &Value) -> Result<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        other => Err(bad(row, name, "a string", other)),
    }
}

fn get_str(row: &RawRow, name: &str) -> Result<String> {
    str_of(row, name, field(row, name)?)
}

/// An integer, from a JSON number or a string holding one (TSV/CSV fields).
fn get_int(row: &RawRow, name: &str) -> Result<i64> {
    let v = field(row, name)?;
    match v {
        Value::Number(n) => n.as_i64().ok_or_else(|| bad(row, name, "an integer", v)),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| bad(row, name, "an integer", v)),
        other => Err(bad(row, name, "an integer", other)),
    }
}

/// A boolean, from a JSON bool or the strings `true`/`false`.
fn get_bool(row: &RawRow, name: &str) -> Result<bool> {
    let v = field(row, name)?;
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        other => Err(bad(row, name, "a boolean", other)),
    }
}

fn str_list(row: &RawRow, name: &str, v: &Value) -> Result<Vec<String>> {
    match v {
        Value::Array(items) => items.iter().map(|i| str_of(row, name, i)).collect(),
        other => Err(bad(row, name, "a list of strings", other)),
    }
}

/// Normalises one raw row of `kind` into a [`Record`].
pub fn extract(kind: SourceKind, row: &RawRow) -> Result<Record> {
    use SourceKind as K;
    let has = |f: &str| row.fields.contains_key(f);
    Ok(match kind {
        K::Sst2 => Record::Text {
            text: get_str(row, "sentence")?,
            label: checked_label(row, "label", get_int(row, "label")?, &[0, 1])?,
        },
        K::AgNews => {
            if has("class_index") {
                // Original CSV: class 1..4, text = title + " " + description (as the HF loader builds it).
                let class = checked_label(
                    row,
                    "class_index",
                    get_int(row, "class_index")?,
                    &[1, 2, 3, 4],
                )?;
                Record::Text {
                    text: format!(
                        "{} {}",
                        get_str(row, "title")?,
                        get_str(row, "description")?
                    ),
                    label: class - 1,
                }
            } else {
                Record::Text {
                    text: get_str(row, "text")?,
                    label: checked_label(row, "label", get_int(row, "label")?, &[0, 1, 2, 3])?,
                }
            }
        }
        K::BbcNews => Record::Text {
            text: get_str(row, "text")?,
            label: checked_label(row, "label", get_int(row, "label")?, &[0, 1, 2, 3, 4])?,
        },
        K::FinancialPhrasebank => Record::Text {
            text: get_str(row, "sentence")?,
            label: checked_label(row, "label", get_int(row, "label")?, &[0, 1, 2])?,
        },
        K::PoemSentiment => {
            if has("label_raw") {
                // Original TSV labels: -1 negative, 0 no_impact, 1 positive, 2 mixed → HF 0 neg, 1 pos,
                // 2 no_impact, 3 mixed.
                let raw = get_int(row, "label_raw")?;
                let label = match raw {
                    -1 => 0,
                    1 => 1,
                    0 => 2,
                    2 => 3,
                    _ => return Err(bad(row, "label", "one of -1, 0, 1, 2", &Value::from(raw))),
                };
                Record::Text {
                    text: get_str(row, "verse_text")?,
                    label,
                }
            } else {
                Record::Text {
                    text: get_str(row, "verse_text")?,
                    label: checked_label(row, "label", get_int(row, "label")?, &[0, 1, 2, 3])?,
                }
            }
        }
        K::StrategyQa => Record::Text {
            text: get_str(row, "question")?,
            label: i64::from(get_bool(row, "answer")?),
        },
        K::Gsm8k | K::GsmSymbolic => Record::Qa {
            question: get_str(row, "question")?,
            answer: get_str(row, "answer")?,
        },
        K::HendrycksMath(_) => Record::Qa {
            question: get_str(row, "problem")?,
            answer: get_str(row, "solution")?,
        },
        K::Sciq => Record::Sciq {
            question: get_str(row, "question")?,
            distractors: [
                get_str(row, "distractor1")?,
                get_str(row, "distractor2")?,
                get_str(row, "distractor3")?,
            ],
            correct_answer: get_str(row, "correct_answer")?,
            support: get_str(row, "support")?,
        },
        K::Qasc => qasc(row)?,
    })
}

fn checked_label(row: &RawRow, name: &str, label: i64, allowed: &[i64]) -> Result<i64> {
    if allowed.contains(&label) {
        Ok(label)
    } else {
        let allowed: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
        Err(bad(
            row,
            name,
            &format!("a label in {{{}}}", allowed.join(", ")),
            &Value::from(label),
        ))
    }
}

/// QASC: HF schema (`question`: str, `choices`: {text: [..], label: [..]}, `answerKey`) or the original
/// release (`question`: {stem, choices: [{text, label}]}, `answerKey`). Options keep their order; the answer is
/// the index of the choice whose label equals `answerKey`.
fn qasc(row: &RawRow) -> Result<Record> {
    let key = get_str(row, "answerKey")?;
    let q = field(row, "question")?;
    let (question, texts, labels) = match q {
        Value::String(s) => {
            let ch = field(row, "choices")?;
            let Value::Object(m) = ch else {
                return Err(bad(row, "choices", "an object {text, label}", ch));
            };
            let get = |k: &str, m: &Map<String, Value>| -> Result<Vec<String>> {
                let v = m
                    .get(k)
                    .ok_or_else(|| anyhow!("{}: field `choices.{k}` missing", row.location()))?;
                str_list(row, &format!("choices.{k}"), v)
            };
            (s.clone(), get("text", m)?, get("label", m)?)
        }
        Value::Object(m) => {
            let stem = m
                .get("stem")
                .ok_or_else(|| anyhow!("{}: field `question.stem` missing", row.location()))?;
            let stem = str_of(row, "question.stem", stem)?;
            let choices = m.get("choices").and_then(Value::as_array).ok_or_else(|| {
                anyhow!(
                    "{}: field `question.choices`: expected a list",
                    row.location()
                )
            })?;
            let mut texts = Vec::new();
            let mut labels = Vec::new();
            for c in choices {
                texts.push(str_of(
                    row,
                    "question.choices.text",
                    c.get("text").unwrap_or(&Value::Null),
                )?);
                labels.push(str_of(
                    row,
                    "question.choices.label",
                    c.get("label").unwrap_or(&Value::Null),
                )?);
            }
            (stem, texts, labels)
        }
        other => return Err(bad(row, "question", "a string or {stem, choices}", other)),
    };
    if texts.len() != labels.len() || texts.len() != 8 {
        bail!(
            "{}: field `choices`: expected 8 texts and 8 labels, found {} and {}",
            row.location(),
            texts.len(),
            labels.len()
        );
    }
    let answer = labels.iter().position(|l| *l == key).ok_or_else(|| {
        anyhow!(
            "{}: field `answerKey`: {key:?} is not one of the choice labels {labels:?}",
            row.location()
        )
    })?;
    Ok(Record::Mcq {
        question,
        choices: texts,
        answer,
    })
}

/// Financial PhraseBank release file: `<sentence>@<negative|neutral|positive>` per line (as the HF loader:
/// split at the last `@`, label stripped). Rows get HF fields `sentence` and `label` (0 neg, 1 neutral, 2 pos).
pub fn read_phrasebank(path: &Path) -> Result<Vec<RawRow>> {
    let text = read_text(path)?;
    let mut rows = Vec::new();
    for (i, l) in text.split('\n').enumerate() {
        let line = i + 1;
        let l = l.strip_suffix('\r').unwrap_or(l);
        if l.trim().is_empty() {
            continue;
        }
        let (sentence, label) = l.rsplit_once('@').ok_or_else(|| {
            anyhow!(
                "{} line {line}: expected `<sentence>@<label>`",
                path.display()
            )
        })?;
        let label = match label.trim() {
            "negative" => 0,
            "neutral" => 1,
            "positive" => 2,
            other => bail!(
                "{} line {line}: field `label`: expected negative, neutral or positive, found {other:?}",
                path.display()
            ),
        };
        let mut fields = Map::new();
        fields.insert("sentence".into(), Value::String(sentence.to_string()));
        fields.insert("label".into(), Value::from(label));
        rows.push(RawRow {
            file: path.to_path_buf(),
            line,
            unit: "line",
            fields,
        });
    }
    Ok(rows)
}

/// Original BBC release: `<category>/NNN.txt`, first line the title. Rows (sorted by category, then file
/// name) get `text` = all non-empty lines, trimmed, joined by single spaces, and `label` = the SetFit id
/// (0 tech, 1 business, 2 sport, 3 entertainment, 4 politics).
pub fn read_bbc(dir: &Path, categories: &[&str]) -> Result<Vec<RawRow>> {
    let mut rows = Vec::new();
    for cat in categories {
        let label = match *cat {
            "tech" => 0,
            "business" => 1,
            "sport" => 2,
            "entertainment" => 3,
            "politics" => 4,
            other => bail!("unknown BBC category {other}"),
        };
        let cdir = dir.join(cat);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&cdir)
            .map_err(|e| anyhow!("listing {}: {e}", cdir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "txt"))
            .collect();
        files.sort();
        for f in files {
            let body = read_text(&f)?;
            let text = body
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            if text.is_empty() {
                bail!("{}: empty article", f.display());
            }
            let mut fields = Map::new();
            fields.insert("text".into(), Value::String(text));
            fields.insert("label".into(), Value::from(label));
            rows.push(RawRow {
                file: f,
                line: 1,
                unit: "line",
                fields,
            });
        }
    }
    Ok(rows)
}
