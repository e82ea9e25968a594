//! Stop strings during generation, checked incrementally: each row's text grows by the newly decoded piece
//! only (the decode window starts a few tokens back, as text-generation-inference's streaming decoder does,
//! so byte-level pieces of one character and word-start spaces come out right), and only the end of the text
//! that a new piece can complete is searched. A step costs the decode of a few tokens, not of the whole
//! continuation.

use crate::error::Result;
use crate::tokenizer::Tokenizer;

/// Per-row incremental detokenization and stop-string search.
#[derive(Debug, Clone)]
pub struct StopStrings {
    stops: Vec<String>,
    longest: usize,
    rows: Vec<RowText>,
}

#[derive(Debug, Clone, Default)]
struct RowText {
    /// Decoded text of `tokens[..read]`.
    text: String,
    /// Start of the decode window (the token before `read` … ).
    prefix: usize,
    /// Tokens whose text is in `text`.
    read: usize,
}

impl StopStrings {
    /// Matchers for `rows` rows; empty strings in `stops` are ignored.
    pub fn new(stops: &[String], rows: usize) -> Self {
        let stops: Vec<String> = stops.iter().filter(|s| !s.is_empty()).cloned().collect();
        let longest = stops.iter().map(String::len).max().unwrap_or(0);
        Self {
            stops,
            longest,
            rows: vec![RowText::default(); rows],
        }
    }

    /// Whether there is anything to look for.
    pub fn is_empty(&self) -> bool {
        self.stops.is_empty()
    }

    /// `tokens` is row `row`'s whole continuation so far, one token longer than at the previous call; true
    /// once its text contains a stop string. Special tokens are skipped, as in the final decode.
    pub fn reached(&mut self, tok: &Tokenizer, row: usize, tokens: &[u32]) -> Result<bool> {
        if self.stops.is_empty() {
            return Ok(false);
        }
        let r = &mut self.rows[row];
        if tokens.len() < r.read {
            // A new continuation in this row: start over.
            *r = RowText::default();
        }
        let before = tok.decode(&tokens[r.prefix..r.read], true)?;
        let now = tok.decode(&tokens[r.prefix..], true)?;
        // An incomplete character (a byte-level piece) decodes to U+FFFD: wait for the rest.
        if now.len() <= before.len() || now.ends_with('\u{FFFD}') {
            return Ok(false);
        }
        let Some(piece) = now.get(before.len()..) else {
            return Ok(false);
        };
        let old_len = r.text.len();
        r.text.push_str(piece);
        r.prefix = r.read;
        r.read = tokens.len();
        // Only a match ending in the new piece is new.
        let mut from = old_len.saturating_sub(self.longest.saturating_sub(1));
        while !r.text.is_char_boundary(from) {
            from -= 1;
        }
        let window = &r.text[from..];
        Ok(self.stops.iter().any(|s| window.contains(s.as_str())))
    }
}
