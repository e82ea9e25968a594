//! `ia2 activations`: logits and every layer's self-attention output for given prompts or token ids,
//! written to one safetensors file (the research-facing inspection tool and our parity probe).
//!
//! For prompt `i`: `prompt{i}.input_ids` (I64 `[S]`), `prompt{i}.positions` (I64 `[P]`, indices into the
//! processed sequence, which includes prompt-tuning virtual tokens), `prompt{i}.logits` (F32 `[P, vocab]`)
//! and `prompt{i}.attn` (F32 `[layers, P, hidden]`: after o_proj, before the residual add). The metadata
//! holds `{"format": "pt"}` and the full command configuration under `ia2`.

use crate::cli::model::ModelCli;
use crate::prompts::PromptArgs;
use anyhow::{Context, Result, bail, ensure};
use burn::tensor::Tensor;
use ia2_data::io::write_atomic;
use ia2_model::{Batch, Capture, Positions};
use indicatif::ProgressBar;
use safetensors::tensor::{Dtype, TensorView};
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct ActivationsArgs {
    #[command(flatten)]
    pub model: ModelCli,
    #[command(flatten)]
    pub prompts: PromptArgs,
    /// Token ids instead of text: one sequence, comma-separated (repeatable), e.g. `--token-ids 12,7,99`.
    /// Sequences are numbered after the text prompts.
    #[arg(long = "token-ids", value_parser = parse_ids)]
    pub token_ids: Vec<TokenIds>,
    /// Which positions to record: every position, or only the last.
    #[arg(long, value_enum, default_value_t = Which::All)]
    pub positions: Which,
    /// Output safetensors file.
    #[arg(long, short = 'o')]
    pub output: PathBuf,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Which {
    All,
    Last,
}

pub fn run(args: ActivationsArgs) -> Result<()> {
    // Everything that needs no model is checked before it is loaded.
    let prompts = args.prompts.collect()?;
    ensure!(
        !prompts.is_empty() || !args.token_ids.is_empty(),
        "nothing to run: pass --prompt, --prompts-file or --token-ids"
    );
    if args.output.is_dir() {
        bail!(
            "--output {} is a directory (expected a .safetensors file path)",
            args.output.display()
        );
    }
    let model = args.model.load()?;
    let vocab = model.decoder.config.vocab_size;
    for (i, t) in args.token_ids.iter().enumerate() {
        if let Some(bad) = t.0.iter().find(|&&id| id as usize >= vocab) {
            bail!(
                "--token-ids (sequence {i}): token id {bad} is out of range for the model's vocabulary of \
                 {vocab}"
            );
        }
    }
    let mut inputs: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| model.tokenizer.encode(p, true))
        .collect::<Result<_, _>>()?;
    inputs.extend(args.token_ids.iter().map(|t| t.0.clone()));
    if let Some(i) = inputs.iter().position(Vec::is_empty) {
        bail!("input {i} tokenizes to no tokens");
    }
    let positions = match args.positions {
        Which::All => Positions::All,
        Which::Last => Positions::Last,
    };
    let capture = Capture {
        logits: positions.clone(),
        attn: positions,
    };
    let bar = ProgressBar::new(inputs.len() as u64);
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (i, ids) in inputs.iter().enumerate() {
        let adapter = model.adapter.as_ref();
        let mut cache = model.decoder.new_cache(1, adapter);
        let out = model
            .decoder
            .forward(&Batch::single(ids), &mut cache, adapter, &capture)?;
        let total = out.virtual_tokens + ids.len();
        let pos: Vec<i64> = match args.positions {
            Which::All => (0..total as i64).collect(),
            Which::Last => vec![total as i64 - 1],
        };
        let logits = out.logits.context("logits were requested")?;
        let [_, p, vocab] = logits.dims();
        let attn: Tensor<4> = Tensor::stack(out.attn, 0);
        let [layers, _, _, hidden] = attn.dims();
        tensors.push((
            format!("prompt{i}.input_ids"),
            Dtype::I64,
            vec![ids.len()],
            le_bytes_i64(ids.iter().map(|&t| t as i64)),
        ));
        tensors.push((
            format!("prompt{i}.positions"),
            Dtype::I64,
            vec![pos.len()],
            le_bytes_i64(pos.into_iter()),
        ));
        tensors.push((
            format!("prompt{i}.logits"),
            Dtype::F32,
            vec![p, vocab],
            f32_bytes(logits.reshape([p, vocab]))?,
        ));
        tensors.push((
            format!("prompt{i}.attn"),
            Dtype::F32,
            vec![layers, p, hidden],
            f32_bytes(attn.reshape([layers, p, hidden]))?,
        ));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let views = tensors
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            Ok((name.clone(), TensorView::new(*dtype, shape.clone(), bytes)?))
        })
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    let config = serde_json::json!({"model": model.description, "positions": format!("{:?}", args.positions).to_lowercase(),
        "inputs": inputs.len()});
    let metadata = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        ("ia2".to_string(), config.to_string()),
    ]);
    let bytes = safetensors::serialize(views, Some(metadata))?;
    write_atomic(&args.output, &bytes)?;
    tracing::info!(path = %args.output.display(), inputs = inputs.len(), "wrote activations");
    Ok(())
}

/// One sequence of token ids given on the command line.
#[derive(Debug, Clone)]
pub struct TokenIds(Vec<u32>);

fn parse_ids(s: &str) -> Result<TokenIds, String> {
    s.split(',')
        .map(|t| {
            t.trim()
                .parse::<u32>()
                .map_err(|e| format!("token id {t:?}: {e}"))
        })
        .collect::<Result<_, _>>()
        .map(TokenIds)
}

fn le_bytes_i64(values: impl Iterator<Item = i64>) -> Vec<u8> {
    values.flat_map(i64::to_le_bytes).collect()
}

fn f32_bytes<const D: usize>(t: Tensor<D>) -> Result<Vec<u8>> {
    let values = t
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("reading tensor: {e:?}"))?;
    Ok(values.into_iter().flat_map(f32::to_le_bytes).collect())
}
