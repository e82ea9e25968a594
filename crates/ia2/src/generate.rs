//! `ia2 generate`: batched greedy decoding.

use crate::cli::model::ModelCli;
use crate::prompts::PromptArgs;
use anyhow::{Result, ensure};
use ia2_data::io::write_atomic;
use ia2_model::{GenerateOptions, StopReason, greedy};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelCli,
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

impl GenerateArgs {
    /// Checks the options that need no model (before it is loaded).
    pub fn validate(&self) -> Result<()> {
        ensure!(self.batch_size > 0, "--batch-size must be at least 1");
        ensure!(
            self.max_new_tokens > 0,
            "--max-new-tokens must be at least 1"
        );
        ensure!(
            self.stop.iter().all(|s| !s.is_empty()),
            "--stop: an empty stop string would stop every generation at once"
        );
        if let Some(path) = &self.output
            && path.is_dir()
        {
            anyhow::bail!(
                "--output {} is a directory (expected a file path for the JSON lines)",
                path.display()
            );
        }
        Ok(())
    }
}

/// `--max-new-tokens` against the model's position limit: the longest prompt (plus prompt-tuning virtual
/// tokens) and the new tokens must fit in `max_position_embeddings`.
pub fn check_position_limit(
    longest_prompt: usize,
    virtual_tokens: usize,
    max_new_tokens: usize,
    max_positions: usize,
) -> Result<()> {
    let room = max_positions.saturating_sub(longest_prompt + virtual_tokens);
    ensure!(
        longest_prompt + virtual_tokens < max_positions,
        "the longest prompt has {longest_prompt} tokens{}, the model's max_position_embeddings is \
         {max_positions}: nothing can be generated",
        if virtual_tokens > 0 {
            format!(" (+ {virtual_tokens} virtual tokens)")
        } else {
            String::new()
        }
    );
    ensure!(
        max_new_tokens <= room,
        "--max-new-tokens {max_new_tokens} is past the model's position limit: the longest prompt has \
         {longest_prompt} tokens{}, max_position_embeddings is {max_positions}, so at most {room} new tokens",
        if virtual_tokens > 0 {
            format!(" (+ {virtual_tokens} virtual tokens)")
        } else {
            String::new()
        }
    );
    Ok(())
}

pub fn run(args: GenerateArgs) -> Result<()> {
    args.validate()?;
    let prompts = args.prompts.collect()?;
    ensure!(
        !prompts.is_empty(),
        "no prompts: pass --prompt TEXT or --prompts-file FILE"
    );
    let model = args.model.load()?;
    let all_ids: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| model.tokenizer.encode(p, true))
        .collect::<Result<_, _>>()?;
    if let Some(i) = all_ids.iter().position(Vec::is_empty) {
        anyhow::bail!("prompt {i} tokenizes to no tokens");
    }
    check_position_limit(
        all_ids.iter().map(Vec::len).max().unwrap_or(0),
        model
            .adapter
            .as_ref()
            .map_or(0, ia2_model::Adapter::num_virtual_tokens),
        args.max_new_tokens,
        model.decoder.config.max_position_embeddings,
    )?;
    let options = GenerateOptions {
        max_new_tokens: args.max_new_tokens,
        eos_token_ids: if args.ignore_eos {
            Vec::new()
        } else {
            model.generation.eos_token_ids.clone()
        },
        pad_token_id: model.generation.pad_id(),
        use_cache: !args.no_cache,
    };
    let bar = ProgressBar::new((prompts.len() * args.max_new_tokens) as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} tokens {elapsed_precise} eta {eta}")
            .expect("valid template"),
    );
    let mut lines = Vec::with_capacity(prompts.len());
    for (chunk, ids) in prompts
        .chunks(args.batch_size)
        .zip(all_ids.chunks(args.batch_size))
    {
        // Incremental: each step decodes only the new token's piece (not the whole continuation).
        let mut stops = ia2_hf::StopStrings::new(&args.stop, chunk.len());
        let stop_check = |row: usize, tokens: &[u32]| {
            stops
                .reached(&model.tokenizer, row, tokens)
                .unwrap_or(false)
        };
        let before = bar.position();
        let generated = greedy(
            &model.decoder,
            model.adapter.as_ref(),
            ids,
            &options,
            stop_check,
            |_| bar.inc(chunk.len() as u64),
        )?;
        bar.set_position(before + (chunk.len() * args.max_new_tokens) as u64);
        for ((prompt, prompt_ids), g) in chunk.iter().zip(ids).zip(generated) {
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

#[cfg(test)]
mod tests {
    use super::check_position_limit;

    #[test]
    fn max_new_tokens_is_capped_at_the_position_limit() {
        assert!(check_position_limit(10, 0, 22, 32).is_ok());
        let e = check_position_limit(10, 0, 23, 32).unwrap_err().to_string();
        assert!(
            e.contains("--max-new-tokens 23") && e.contains("at most 22"),
            "{e}"
        );
        let e = check_position_limit(10, 20, 3, 32).unwrap_err().to_string();
        assert!(e.contains("at most 2") && e.contains("20 virtual"), "{e}");
        assert!(check_position_limit(32, 0, 1, 32).is_err());
        assert!(check_position_limit(0, 0, usize::MAX, 32).is_err());
    }
}
