//! `ia2 data show`: what a prepared dataset looks like to the model — counts, label balance, a few rendered
//! prompts without and with ICL demos, and their lengths (characters, and tokens with `--tokenizer`).

use crate::io::read_json;
use crate::prepare::{load_tokenizer, main_path};
use crate::registry::DatasetId;
use crate::schema::{Example, MainFile, icl_prompt};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

/// The options of `ia2 data show` as plain data (`..Default::default()` for the rest; the flags are in the binary,
/// `crates/ia2/src/cli/data.rs`). Required flags default to empty here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShowConfig {
    /// Dataset name (as given to `ia2 data prepare`).
    pub dataset: String,
    pub data_dir: PathBuf,
    /// `tokenizer.json` for token lengths.
    pub tokenizer: Option<PathBuf>,
    /// Number of example prompts to render.
    pub n: usize,
    /// Number of ICL demos in the "with demos" prompts (taken from train_examples, else val_examples, never
    /// the query itself).
    pub num_demos: usize,
}

impl Default for ShowConfig {
    fn default() -> Self {
        ShowConfig {
            dataset: String::new(),
            data_dir: "data".into(),
            tokenizer: None,
            n: 3,
            num_demos: 3,
        }
    }
}

pub fn run(args: ShowConfig) -> Result<()> {
    print!("{}", render(&args)?);
    Ok(())
}

fn balance(examples: &[Example]) -> String {
    let mut m: BTreeMap<&str, usize> = BTreeMap::new();
    for e in examples {
        *m.entry(e.answer.as_str()).or_insert(0) += 1;
    }
    if m.len() > 20 {
        return format!("{} distinct answers (free-form)", m.len());
    }
    let n = examples.len().max(1) as f64;
    m.iter()
        .map(|(k, v)| format!("{k:?}: {v} ({:.1}%)", 100.0 * *v as f64 / n))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The whole report as text.
pub fn render(args: &ShowConfig) -> Result<String> {
    let id = DatasetId::parse(&args.dataset)?;
    let spec = id.spec();
    let path = main_path(&args.data_dir, id);
    if !path.exists() {
        anyhow::bail!(
            "{} not found; run `ia2 data prepare --dataset {id} --source ...` first",
            path.display()
        );
    }
    let main: MainFile = read_json(&path)?;
    let tok = args.tokenizer.as_deref().map(load_tokenizer).transpose()?;
    let ntok = |s: &str| -> Result<Option<usize>> {
        match &tok {
            Some(t) => Ok(Some(
                t.encode(s, true)
                    .map_err(|e| anyhow::anyhow!("tokenizing: {e}"))?
                    .len(),
            )),
            None => Ok(None),
        }
    };
    let lens = |s: &str| -> Result<String> {
        Ok(match ntok(s)? {
            Some(t) => format!("{} chars, {t} tokens", s.chars().count()),
            None => format!("{} chars", s.chars().count()),
        })
    };

    let mut o = String::new();
    writeln!(o, "dataset: {id} ({})", spec.description)?;
    writeln!(o, "file: {}", path.display())?;
    writeln!(o, "source: {} {}", spec.hf_id, spec.hf_config.unwrap_or(""))?;
    writeln!(o, "template: {}", spec.template.pattern())?;
    writeln!(o, "answer parser: {:?}", spec.parser)?;
    let md = &main.metadata;
    writeln!(
        o,
        "max_choices: {}   remap_dict: {}",
        md.get("max_choices").map_or("?".into(), |v| v.to_string()),
        md.get("remap_dict")
            .map_or("null".into(), |v| v.to_string())
    )?;
    writeln!(o, "train examples: {}", main.train_examples.len())?;
    writeln!(o, "val examples:   {}", main.val_examples.len())?;
    if !main.train_examples.is_empty() {
        writeln!(o, "train balance: {}", balance(&main.train_examples))?;
    }
    writeln!(o, "val balance:   {}", balance(&main.val_examples))?;
    for key in [
        "query_length",
        "token_length",
        "answer_length",
        "token_answer_length",
    ] {
        if let Some(max) = md.get(format!("max_{key}")).filter(|v| !v.is_null()) {
            let g = |p: &str| {
                md.get(format!("{p}_{key}"))
                    .map_or("?".into(), |v| v.to_string())
            };
            writeln!(
                o,
                "{key}: max {max}, p95 {}, min {}, mean {}, median {}, std {}",
                g("max_95p"),
                g("min"),
                g("mean"),
                g("median"),
                g("std")
            )?;
        }
    }

    let demo_pool: &[Example] = if main.train_examples.is_empty() {
        &main.val_examples
    } else {
        &main.train_examples
    };
    for (k, q) in main.val_examples.iter().take(args.n).enumerate() {
        writeln!(
            o,
            "\n=== val example {k} (idx {}), gold answer {:?}",
            q.idx, q.answer
        )?;
        let bare = icl_prompt(&[], q);
        writeln!(o, "--- without demos ({}):", lens(&bare)?)?;
        writeln!(o, "{bare}")?;
        let demos: Vec<&Example> = demo_pool
            .iter()
            .filter(|d| !(std::ptr::eq(demo_pool, main.val_examples.as_slice()) && d.idx == q.idx))
            .take(args.num_demos)
            .collect();
        if !demos.is_empty() {
            let p = icl_prompt(&demos, q);
            writeln!(o, "--- with {} demos ({}):", demos.len(), lens(&p)?)?;
            writeln!(o, "{p}")?;
        }
    }
    Ok(o)
}

/// Reads a prepared main file for a dataset name.
pub fn load_main(data_dir: &std::path::Path, dataset: &str) -> Result<MainFile> {
    let id = DatasetId::parse(dataset)?;
    read_json(&main_path(data_dir, id)).with_context(|| format!("loading {id}"))
}
