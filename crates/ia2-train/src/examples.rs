//! A training file turned into token sequences: for every example (and every demo ordering with
//! `--shuffle-demos`), the no-ICL prompt, the ICL prompt and the ground-truth answer, tokenized as the seed does.
//!
//! Prompts are tokenized with the tokenizer's special tokens and cut after the decode position (the last prompt
//! token), so a BOS is present exactly when the tokenizer adds one. The answer is tokenized without special
//! tokens; for T > 1 EOS is appended, so a generation task learns to stop.

use anyhow::{Context, Result, bail, ensure};
use ia2_data::schema::Example;
use ia2_data::splits::schema::{IclDemos, Split, TrainFile};
use ia2_hf::Tokenizer;
use ia2_rng::RandomState;
use std::path::Path;

/// One training (or dev) sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequence {
    /// Index of the example in its split.
    pub example: usize,
    /// The query alone, up to and including the decode position.
    pub query_ids: Vec<u32>,
    /// Demos + query, up to and including the decode position.
    pub icl_ids: Vec<u32>,
    /// The dataset answer (+ EOS when T > 1).
    pub ground_truth: Vec<u32>,
}

/// Training and dev sequences of one run.
#[derive(Debug, Clone)]
pub struct RunData {
    pub train: Vec<Sequence>,
    pub dev: Vec<Sequence>,
}

/// How the demos of each example are presented.
#[derive(Debug, Clone, Copy)]
pub struct DemoOrder {
    /// K orderings per example, re-shuffled with `RandomState(run)` (the seed's `ICLDatasetShuffled`).
    pub shuffles: Option<usize>,
    pub run: usize,
}

/// Reads `path` (a training file in the seed's schema) and tokenizes it.
pub fn load_run_data(
    path: &Path,
    tokenizer: &Tokenizer,
    num_generated_tokens: usize,
    eos: Option<u32>,
    order: DemoOrder,
) -> Result<RunData> {
    let file: TrainFile = ia2_data::io::read_json(path)?;
    let (Some(train), Some(dev)) = (file.train, file.dev) else {
        bail!(
            "{}: no `train`/`dev` sections (an evaluation-only dataset has no training examples)",
            path.display()
        );
    };
    ensure!(
        !train.examples.is_empty(),
        "{}: `train.examples` is empty",
        path.display()
    );
    let prepare = |split: &Split, name: &str| {
        tokenize_split(split, tokenizer, num_generated_tokens, eos, order)
            .with_context(|| format!("{}: `{name}`", path.display()))
    };
    Ok(RunData {
        train: prepare(&train, "train")?,
        dev: prepare(&dev, "dev")?,
    })
}

fn demos_of(demos: &IclDemos, i: usize) -> Result<&[String]> {
    match demos {
        IclDemos::Fixed(d) => Ok(d),
        IclDemos::PerExample(lists) => lists
            .get(i)
            .map(Vec::as_slice)
            .with_context(|| format!("`icl_demos` has no list for example {i}")),
    }
}

fn tokenize_split(
    split: &Split,
    tokenizer: &Tokenizer,
    num_generated_tokens: usize,
    eos: Option<u32>,
    order: DemoOrder,
) -> Result<Vec<Sequence>> {
    // Demo orderings: identity, or K shuffles per example drawn shuffle-major as the seed does.
    let mut plan: Vec<(usize, Vec<usize>)> = Vec::new();
    match order.shuffles {
        None => {
            for i in 0..split.examples.len() {
                plan.push((i, (0..demos_of(&split.icl_demos, i)?.len()).collect()));
            }
        }
        Some(k) => {
            let mut rng = RandomState::new(order.run as u32);
            for _ in 0..k {
                for i in 0..split.examples.len() {
                    let mut perm: Vec<usize> = (0..demos_of(&split.icl_demos, i)?.len()).collect();
                    rng.shuffle(&mut perm);
                    plan.push((i, perm));
                }
            }
        }
    }
    plan.into_iter()
        .map(|(i, perm)| {
            let ex = &split.examples[i];
            let demos = demos_of(&split.icl_demos, i)?;
            let ordered: Vec<&str> = perm.iter().map(|&j| demos[j].as_str()).collect();
            tokenize_example(ex, i, &ordered, tokenizer, num_generated_tokens, eos)
                .with_context(|| format!("example {i} (idx {})", ex.idx))
        })
        .collect()
}

/// The prompt tokens up to and including the decode position (see the module docs).
pub fn prompt_ids(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    let with_special = tokenizer.encode(text, true)?;
    let plain = tokenizer.encode(text, false)?;
    ensure!(!plain.is_empty(), "the prompt tokenizes to nothing");
    let bos = tokenizer.special_tokens().bos.as_ref().map(|b| b.1);
    let has_bos = bos.is_some() && with_special.first().copied() == bos;
    let decode_pos = plain.len() - usize::from(!has_bos);
    ensure!(
        decode_pos < with_special.len(),
        "tokenizer added no BOS but removed tokens"
    );
    Ok(with_special[..=decode_pos].to_vec())
}

fn tokenize_example(
    ex: &Example,
    index: usize,
    demos: &[&str],
    tokenizer: &Tokenizer,
    num_generated_tokens: usize,
    eos: Option<u32>,
) -> Result<Sequence> {
    let mut ground_truth = tokenizer.encode(&ex.answer, false)?;
    ensure!(
        !ground_truth.is_empty(),
        "answer {:?} tokenizes to nothing",
        ex.answer
    );
    if num_generated_tokens > 1 {
        ground_truth
            .push(eos.context("T > 1 appends EOS to the answer, but the tokenizer has none")?);
    }
    let icl_text = if demos.is_empty() {
        ex.question.clone()
    } else {
        format!("{}\n\n{}", demos.join("\n\n"), ex.question)
    };
    Ok(Sequence {
        example: index,
        query_ids: prompt_ids(tokenizer, &ex.question)?,
        icl_ids: prompt_ids(tokenizer, &icl_text)?,
        ground_truth,
    })
}
