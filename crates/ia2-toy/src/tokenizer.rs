//! The toy model's word-level tokenizer, written as an ordinary Hugging Face `tokenizer.json`.
//!
//! An example `Text:{word}\nLabel:{label}` is three tokens: `Text:` (or `\n\nText:` after the blank line
//! that separates demos), `{word}\nLabel:` (the word fused with the answer cue, one token per word) and the
//! label. Fusing the cue into the word token makes prompts 40 % shorter (cheaper training steps) and makes the
//! prompt's last token the query word itself, with each demo's label right after its word: in-context learning
//! is then the textbook induction pattern (`A B ... A -> B`, at the level of classes). Bare words, `\nLabel:`,
//! `\n\n`, `\n`, `:`, ` `, `Text` and `Label` are tokens too, so other text built from the same pieces still
//! tokenizes.
//!
//! A `Split` pre-tokenizer (regex, isolated pieces) cuts text into those pieces (anything else becomes its own
//! piece and maps to `<unk>`), a `WordLevel` model maps pieces to ids, and the `Fuse` decoder concatenates
//! tokens, so `decode(encode(text)) == text` for any text made of known pieces. There is no normalizer and no
//! post-processor (no BOS), as with Qwen. The `tokenizers` crate and transformers' `PreTrainedTokenizerFast` read
//! the same file, so ia2 and Python tokenize alike.

use crate::task::{LABELS, NUM_WORDS, Pair, word};
use anyhow::{Context, Result};
use serde_json::{Value, json};
use std::path::Path;

/// End of text; also the padding token.
pub const EOS: &str = "<|endoftext|>";
/// Unknown piece.
pub const UNK: &str = "<unk>";
/// The answer cue that follows every word of a prompt.
pub const CUE: &str = "\nLabel:";
/// Template tokens, in id order after [`EOS`] and [`UNK`].
pub const TEMPLATE: [&str; 9] = [
    "Text:",
    "\n\nText:",
    CUE,
    "\n\n",
    "\n",
    ":",
    " ",
    "Text",
    "Label",
];

pub const EOS_ID: u32 = 0;
pub const UNK_ID: u32 = 1;
/// `Text:` (the first example of a prompt).
pub const TEXT_ID: u32 = 2;
/// `\n\nText:` (every later example).
pub const SEP_TEXT_ID: u32 = 3;
const WORDS_OFFSET: u32 = 2 + TEMPLATE.len() as u32;
const WORD_CUES_OFFSET: u32 = WORDS_OFFSET + NUM_WORDS as u32;
const LABELS_OFFSET: u32 = WORD_CUES_OFFSET + NUM_WORDS as u32;
/// Vocabulary size (the model's `vocab_size`).
pub const VOCAB_SIZE: usize = LABELS_OFFSET as usize + LABELS.len();

/// Pieces the pre-tokenizer isolates; the first alternative that matches wins, so the order matters.
const SPLIT_PATTERN: &str = r"\n\nText:|Text:|[^\s:]+\nLabel:|\nLabel:|\n\n|\n|:| |[^\s:]+";

/// Token id of the bare word `id`.
pub fn word_token(id: usize) -> u32 {
    WORDS_OFFSET + id as u32
}

/// Token id of word `id` fused with the answer cue (`{word}\nLabel:`).
pub fn word_cue_token(id: usize) -> u32 {
    WORD_CUES_OFFSET + id as u32
}

/// Token id of label `id` (index into [`LABELS`]).
pub fn label_token(id: usize) -> u32 {
    LABELS_OFFSET + id as u32
}

/// Whether `id` is a label token.
pub fn is_label_token(id: u32) -> bool {
    (LABELS_OFFSET..LABELS_OFFSET + LABELS.len() as u32).contains(&id)
}

/// Every token in id order.
pub fn vocab() -> Vec<String> {
    let mut v: Vec<String> = vec![EOS.into(), UNK.into()];
    v.extend(TEMPLATE.iter().map(|s| s.to_string()));
    v.extend((0..NUM_WORDS).map(|w| word(w).to_string()));
    v.extend((0..NUM_WORDS).map(|w| format!("{}{CUE}", word(w))));
    v.extend(LABELS.iter().map(|s| s.to_string()));
    v
}

/// The token ids of [`crate::task::prompt`]`(pairs[..n-1], pairs[n-1])`, followed by the last label when
/// `with_last_label`: `[Text: | \n\nText:, {word}\nLabel:, label]` per example. Training builds its sequences
/// with this instead of running the tokenizer; a test checks both agree.
pub fn encode_pairs(pairs: &[Pair], with_last_label: bool) -> Vec<u32> {
    let mut ids = Vec::with_capacity(pairs.len() * 3);
    for (i, p) in pairs.iter().enumerate() {
        ids.push(if i == 0 { TEXT_ID } else { SEP_TEXT_ID });
        ids.push(word_cue_token(p.word));
        if i + 1 < pairs.len() || with_last_label {
            ids.push(label_token(p.label));
        }
    }
    ids
}

/// `tokenizer.json`.
pub fn tokenizer_json() -> Value {
    let vocab: serde_json::Map<String, Value> = vocab()
        .into_iter()
        .enumerate()
        .map(|(i, t)| (t, json!(i)))
        .collect();
    let special = |id: u32, content: &str| {
        json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false,
            "normalized": false, "special": true})
    };
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(EOS_ID, EOS), special(UNK_ID, UNK)],
        "normalizer": null,
        "pre_tokenizer": {"type": "Split", "pattern": {"Regex": SPLIT_PATTERN}, "behavior": "Isolated",
            "invert": false},
        "post_processor": null,
        "decoder": {"type": "Fuse"},
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": UNK},
    })
}

/// `tokenizer_config.json`: EOS doubles as padding; no BOS; decoding must not touch spaces.
pub fn tokenizer_config_json(model_max_length: usize) -> Value {
    json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": EOS,
        "pad_token": EOS,
        "unk_token": UNK,
        "bos_token": null,
        "add_bos_token": false,
        "add_eos_token": false,
        "clean_up_tokenization_spaces": false,
        "model_max_length": model_max_length,
        "padding_side": "left",
    })
}

/// Writes `tokenizer.json` and `tokenizer_config.json` into `dir`.
pub fn write_tokenizer(dir: &Path, model_max_length: usize) -> Result<()> {
    let write = |name: &str, v: &Value| {
        let text = serde_json::to_string_pretty(v).expect("JSON values serialize");
        std::fs::write(dir.join(name), text)
            .with_context(|| format!("writing {}", dir.join(name).display()))
    };
    write("tokenizer.json", &tokenizer_json())?;
    write(
        "tokenizer_config.json",
        &tokenizer_config_json(model_max_length),
    )
}
