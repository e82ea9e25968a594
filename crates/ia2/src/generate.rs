//! `ia2 generate`: batched greedy decoding.

use crate::prompts::PromptArgs;
use anyhow::{Result, ensure};
use ia2_data::io::write_atomic;
use ia2_load::ModelArgs;
use ia2_model::{GenerateOptions, StopReason, greedy};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub prompts: PromptArgs,
    /// Maximum number of new tokens per prompt.
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
    /// Stop when the completion contains this string (repeatable); the completion is cut before it.
    #[arg(long = "stop")]
    pub stop: Vec<String>,
    /// Do not stop on the model's EOS tokens.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Recompute the whole prefix at every step instead of using the KV cache (for checking; slow).
    #[arg(long)]
    pub no_cache: bool,
    /// Prompts decoded together (left-padded).
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Write JSON lines here instead of stdout.
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
}

pub fn run(args: GenerateArgs) -> Result<()> {
    let prompts = args.prompts.collect()?;
    ensure!(
        !prompts.is_empty(),
        "no prompts: pass --prompt TEXT or --prompts-file FILE"
    );
    ensure!(args.batch_size > 0, "--batch-size must be at least 1");
    let model = args.model.load()?;
    let options = GenerateOptions {
        max_new_tokens: args.max_new_tokens,
        eos_token_ids: if args.ignore_eos {
            Vec::new()
        } else {
            model.generation.eos_token_ids.clone()
        },
        pad_token_id: model
            .generation
            .pad_token_id
            .or(model.generation.eos_token_ids.first().copied())
            .unwrap_or(0),
        use_cache: !args.no_cache,
    };
    let bar = ProgressBar::new((prompts.len() * args.max_new_tokens) as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} tokens {elapsed_precise} eta {eta}")
            .expect("valid template"),
    );
    let mut lines = Vec::with_capacity(prompts.len());
    for chunk in prompts.chunks(args.batch_size) {
        let ids: Vec<Vec<u32>> = chunk
            .iter()
            .map(|p| model.tokenizer.encode(p, true))
            .collect::<Result<_, _>>()?;
        let stop_check = |_: usize, tokens: &[u32]| {
            !args.stop.is_empty()
                && model
                    .tokenizer
                    .decode(tokens, true)
                    .is_ok_and(|t| args.stop.iter().any(|s| t.contains(s.as_str())))
        };
        let before = bar.position();
        let generated = greedy(
            &model.decoder,
            model.adapter.as_ref(),
            &ids,
            &options,
            stop_check,
            |_| bar.inc(chunk.len() as u64),
        )?;
        bar.set_position(before + (chunk.len() * args.max_new_tokens) as u64);
        for ((prompt, prompt_ids), g) in chunk.iter().zip(&ids).zip(generated) {
            let mut completion = model.tokenizer.decode(&g.tokens, true)?;
            if g.stop == StopReason::StopString
                && let Some(cut) = args
                    .stop
                    .iter()
                    .filter_map(|s| completion.find(s.as_str()))
                    .min()
            {
                completion.truncate(cut);
            }
            lines.push(serde_json::json!({
                "prompt": prompt,
                "prompt_tokens": prompt_ids.len(),
                "completion": completion,
                "tokens": g.tokens,
                "stop_reason": g.stop,
            }));
        }
    }
    bar.finish_and_clear();
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    match &args.output {
        Some(path) => {
            // The full configuration beside the completions: `<output>.config.json`.
            let config = serde_json::json!({
                "model": model.description,
                "max_new_tokens": args.max_new_tokens,
                "stop": args.stop,
                "eos_token_ids": options.eos_token_ids,
                "pad_token_id": options.pad_token_id,
                "use_cache": options.use_cache,
                "batch_size": args.batch_size,
                "prompts": lines.len(),
                "ia2_version": env!("CARGO_PKG_VERSION"),
            });
            let mut config_path = path.as_os_str().to_owned();
            config_path.push(".config.json");
            write_atomic(path, text.as_bytes())?;
            write_atomic(
                std::path::Path::new(&config_path),
                format!("{config:#}\n").as_bytes(),
            )?;
            tracing::info!(path = %path.display(), prompts = lines.len(), "wrote completions");
        }
        None => print!("{text}"),
    }
    Ok(())
}
