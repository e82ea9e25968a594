//! One held-out toy task as a dataset in the seed's schema (`data/<name>/main.json`), so the ordinary data
//! commands (`ia2 data train-sets --dataset <name>`, ...) and IA2 training work on it unchanged.
//!
//! Each class's 24 words are split in half (seeded): one half feeds `train_examples` (the pool training examples
//! and their demos come from), the other `val_examples`, so a query is never answered by a demo of the same word.
//! Examples cycle through a shuffled list of their half's words: up to 24 they are distinct, beyond that words
//! repeat (with a fresh shuffle per pass).

use crate::task::{self, CLASSES_PER_TASK, LABELS, Pair, Task};
use crate::tokenizer::encode_pairs;
use anyhow::{Result, ensure};
use ia2_data::prepare::{MainOut, Ordered};
use ia2_data::schema::Example;
use ia2_data::stats::char_len;
use ia2_rng::{Generator, SeedSequence};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `n` pairs cycling through shuffles of `words`.
fn cycle(task: &Task, words: &[usize], n: usize, rng: &mut Generator) -> Vec<Pair> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let mut pass = words.to_vec();
        rng.shuffle(&mut pass);
        out.extend(
            pass.into_iter()
                .take(n - out.len())
                .filter_map(|w| task.pair(w)),
        );
    }
    out
}

/// Writes `<data_dir>/<name>/main.json` for the held-out task of `task_seed` ([`Task::held_out_from_seed`]),
/// atomically, and returns its path. An existing file with other content is replaced (the content is a
/// function of the arguments); one with the same content is left as it is. `ia2 toy dataset` uses
/// [`write_task_dataset_with`], which replaces another dataset only with `--force`.
pub fn write_task_dataset(
    task_seed: u64,
    data_dir: &Path,
    name: &str,
    n_train: usize,
    n_val: usize,
) -> Result<PathBuf> {
    write_task_dataset_with(task_seed, data_dir, name, n_train, n_val, true)
}

/// [`write_task_dataset`], refusing (without `force`) to replace an existing `main.json` whose content
/// differs: training and demo files built from it would no longer match it (they record its checksum, see
/// `ia2_runs::provenance`, and `ia2 data train-sets` rebuilds them once it changed).
pub fn write_task_dataset_with(
    task_seed: u64,
    data_dir: &Path,
    name: &str,
    n_train: usize,
    n_val: usize,
    force: bool,
) -> Result<PathBuf> {
    ensure!(
        !name.is_empty() && !name.contains(['/', '\\']) && name != "." && name != "..",
        "dataset name {name:?} must be a plain directory name"
    );
    ensure!(
        n_train > 0 && n_val > 0,
        "n_train and n_val must be at least 1"
    );
    let task = Task::held_out_from_seed(task_seed);
    let mut rng = Generator::from_seed_sequence(&SeedSequence::from_words(&[
        task_seed as u32,
        (task_seed >> 32) as u32,
        0xda7a,
    ]));
    let (mut train_words, mut val_words) = (Vec::new(), Vec::new());
    for slot in 0..CLASSES_PER_TASK {
        let mut words: Vec<usize> = task.class_words(slot).collect();
        rng.shuffle(&mut words);
        let half = words.len() / 2;
        train_words.extend_from_slice(&words[..half]);
        val_words.extend_from_slice(&words[half..]);
    }
    train_words.sort_unstable();
    val_words.sort_unstable();
    let to_examples = |pairs: Vec<Pair>| -> Vec<Example> {
        pairs
            .into_iter()
            .enumerate()
            .map(|(i, p)| p.to_example(i))
            .collect()
    };
    let train = to_examples(cycle(&task, &train_words, n_train, &mut rng));
    let val = to_examples(cycle(&task, &val_words, n_val, &mut rng));

    let all: Vec<&Example> = train.iter().chain(&val).collect();
    let query_chars: Vec<usize> = all.iter().map(|e| char_len(&e.question)).collect();
    // Every question is `Text:` and the word fused with `\nLabel:`: the tokenizer's count (tests check it).
    let query_tokens: Vec<usize> = all
        .iter()
        .map(|_| encode_pairs(&[Pair { word: 0, label: 0 }], false).len())
        .collect();
    let label_counts = |ex: &[Example]| {
        let mut m = BTreeMap::new();
        for e in ex {
            *m.entry(e.answer.clone()).or_insert(0usize) += 1;
        }
        m
    };
    let mut m = Ordered::default();
    m.push("max_choices", CLASSES_PER_TASK);
    m.push(
        "remap_dict",
        Value::Object(
            task.labels
                .iter()
                .enumerate()
                .map(|(i, &l)| (i.to_string(), json!(LABELS[l])))
                .collect(),
        ),
    );
    m.stats("query_length", &query_chars);
    m.push("num_train_examples", train.len());
    m.push("num_val_examples", val.len());
    m.stats("token_length", &query_tokens);
    m.push("dataset", name);
    m.push(
        "label_counts",
        json!({"train": label_counts(&train), "val": label_counts(&val)}),
    );
    let words = |ws: &[usize]| ws.iter().map(|&w| task::word(w)).collect::<Vec<_>>();
    m.push(
        "config",
        json!({
            "tool": "ia2 toy dataset",
            "task_seed": task_seed,
            "task": task.describe(),
            "family": task::family_json(),
            "num_train_samples": n_train,
            "num_val_samples": n_val,
            "train_words": words(&train_words),
            "val_words": words(&val_words),
            "template": "Text:{word}\\nLabel:",
            "tokenizer": "the toy model's word-level tokenizer (ia2 toy pretrain)",
            "ia2_version": env!("CARGO_PKG_VERSION"),
        }),
    );
    let out = data_dir.join(name).join("main.json");
    let mut bytes = serde_json::to_vec_pretty(&MainOut {
        metadata: m,
        train_examples: train,
        val_examples: val,
    })?;
    bytes.push(b'\n');
    match std::fs::read(&out) {
        Ok(old) if old == bytes => {
            tracing::info!(path = %out.display(), "toy task dataset already written");
            return Ok(out);
        }
        Ok(_) if !force => anyhow::bail!(
            "{} already exists with another dataset: pass --force to replace it (then `ia2 data \
             train-sets` rebuilds the training files built from it)",
            out.display()
        ),
        _ => {}
    }
    ia2_data::io::write_atomic(&out, &bytes)?;
    tracing::info!(path = %out.display(), task = %task.describe(), "wrote toy task dataset");
    Ok(out)
}
