//! Prompt inputs shared by `generate` and `activations`.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;

#[derive(Debug, Clone, clap::Args)]
pub struct PromptArgs {
    /// A prompt (repeatable).
    #[arg(long = "prompt", short = 'p')]
    pub prompts: Vec<String>,
    /// A file of prompts: `.jsonl` with a `prompt` (or `question`) field per line, otherwise one prompt per line.
    #[arg(long)]
    pub prompts_file: Option<PathBuf>,
    /// Interpret `\n`, `\t` and `\\` escapes in --prompt values (off by default: LaTeX uses backslashes).
    #[arg(long, short = 'e')]
    pub escapes: bool,
}

impl PromptArgs {
    pub fn collect(&self) -> Result<Vec<String>> {
        let mut out: Vec<String> = self
            .prompts
            .iter()
            .map(|p| if self.escapes { unescape(p) } else { p.clone() })
            .collect();
        if let Some(path) = &self.prompts_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let jsonl = path.extension().is_some_and(|e| e == "jsonl");
            for (i, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                if !jsonl {
                    out.push(line.to_string());
                    continue;
                }
                let value: serde_json::Value = serde_json::from_str(line)
                    .with_context(|| format!("{} line {}: invalid JSON", path.display(), i + 1))?;
                let prompt = ["prompt", "question"]
                    .iter()
                    .find_map(|k| value.get(*k).and_then(|v| v.as_str()));
                match prompt {
                    Some(p) => out.push(p.to_string()),
                    None => bail!(
                        "{} line {}: expected a string field `prompt` or `question`",
                        path.display(),
                        i + 1
                    ),
                }
            }
        }
        Ok(out)
    }
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn unescape_handles_newlines_and_keeps_unknown_escapes() {
        assert_eq!(super::unescape(r"Text:a\nLabel:"), "Text:a\nLabel:");
        assert_eq!(super::unescape(r"\frac\\x\"), "\\frac\\x\\");
    }
}
