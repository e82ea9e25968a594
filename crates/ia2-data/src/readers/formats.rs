//! File-format readers. Every row comes back as a JSON object tagged with its file and line (or row) number,
//! so that the typed extraction in [`super::records`] can name the file, line and field of a bad row.

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// One raw row: a JSON object plus where it came from.
#[derive(Debug, Clone)]
pub struct RawRow {
    pub file: PathBuf,
    /// 1-based line number (text formats), 1-based record index (JSON arrays, parquet, per-problem files:
    /// always 1).
    pub line: usize,
    /// What `line` counts: "line", "record" or "row".
    pub unit: &'static str,
    pub fields: Map<String, Value>,
}

impl RawRow {
    /// `file:line` for error messages.
    pub fn location(&self) -> String {
        format!("{} {} {}", self.file.display(), self.unit, self.line)
    }
}

/// Reads a file as UTF-8, dropping a leading BOM.
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let s = match String::from_utf8(bytes) {
        Ok(s) => s,
        // The original BBC / Financial PhraseBank releases are ISO-8859-1: decode byte-per-code-point.
        Err(e) => e.into_bytes().iter().map(|&b| b as char).collect(),
    };
    Ok(s.strip_prefix('\u{feff}').map(str::to_string).unwrap_or(s))
}

/// Lines without their terminators (`\n`, `\r\n`), numbered from 1; empty lines are skipped.
fn numbered_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split('\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)))
        .filter(|(_, l)| !l.trim().is_empty())
}

/// JSON lines: one object per non-empty line.
pub fn read_jsonl(path: &Path) -> Result<Vec<RawRow>> {
    let text = read_text(path)?;
    let mut rows = Vec::new();
    for (line, l) in numbered_lines(&text) {
        let v: Value = serde_json::from_str(l)
            .with_context(|| format!("{} line {line}: invalid JSON", path.display()))?;
        let Value::Object(fields) = v else {
            bail!("{} line {line}: expected a JSON object", path.display());
        };
        rows.push(RawRow {
            file: path.to_path_buf(),
            line,
            unit: "line",
            fields,
        });
    }
    Ok(rows)
}

/// A JSON file holding an array of objects (the original SciQ release) or a single object (one MATH problem).
pub fn read_json_records(path: &Path) -> Result<Vec<RawRow>> {
    let text = read_text(path)?;
    let v: Value =
        serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", path.display()))?;
    let items = match v {
        Value::Array(items) => items,
        obj @ Value::Object(_) => vec![obj],
        _ => bail!(
            "{}: expected a JSON array of objects or an object",
            path.display()
        ),
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::Object(fields) => Ok(RawRow {
                file: path.to_path_buf(),
                line: i + 1,
                unit: "record",
                fields,
            }),
            _ => bail!(
                "{} record {}: expected a JSON object",
                path.display(),
                i + 1
            ),
        })
        .collect()
}

/// A parquet file, through the parquet crate's record API (nested groups and lists become JSON objects and
/// arrays, as in the HF datasets schema).
pub fn read_parquet(path: &Path) -> Result<Vec<RawRow>> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader = SerializedFileReader::new(file)
        .with_context(|| format!("{}: not a readable parquet file", path.display()))?;
    let iter = reader
        .get_row_iter(None)
        .with_context(|| format!("{}: reading parquet rows", path.display()))?;
    let mut rows = Vec::new();
    for (i, row) in iter.enumerate() {
        let row = row.with_context(|| format!("{} row {}: decoding", path.display(), i + 1))?;
        let Value::Object(fields) = row.to_json_value() else {
            bail!("{} row {}: not a record", path.display(), i + 1);
        };
        rows.push(RawRow {
            file: path.to_path_buf(),
            line: i + 1,
            unit: "row",
            fields,
        });
    }
    Ok(rows)
}

/// Tab-separated values without quoting (GLUE style). `columns` names the fields by position; with
/// `header = true` the first non-empty line is skipped. Rows with a different number of fields are errors.
pub fn read_tsv(path: &Path, columns: &[&str], header: bool) -> Result<Vec<RawRow>> {
    let text = read_text(path)?;
    let mut rows = Vec::new();
    for (k, (line, l)) in numbered_lines(&text).enumerate() {
        if header && k == 0 {
            continue;
        }
        let parts: Vec<&str> = l.split('\t').collect();
        if parts.len() != columns.len() {
            bail!(
                "{} line {line}: expected {} tab-separated fields ({}), found {}",
                path.display(),
                columns.len(),
                columns.join(", "),
                parts.len()
            );
        }
        rows.push(RawRow {
            file: path.to_path_buf(),
            line,
            unit: "line",
            fields: columns
                .iter()
                .zip(parts)
                .map(|(c, p)| (c.to_string(), Value::String(p.to_string())))
                .collect(),
        });
    }
    Ok(rows)
}

/// Comma-separated values with `"` quoting (`""` escapes, quoted newlines) and Python's
/// `skipinitialspace=True` (spaces after a delimiter are dropped). With `header = Some(first)`, a first record
/// whose first field equals `first` is skipped (the Kaggle AG News copy has a header, the original has none).
pub fn read_csv(path: &Path, columns: &[&str], header: Option<&str>) -> Result<Vec<RawRow>> {
    let text = read_text(path)?;
    let mut rows = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut at_field_start = true;
    let mut line = 1usize;
    let mut record_line = 1usize;
    let mut chars = text.chars().peekable();
    let finish_record =
        |fields: &mut Vec<String>, record_line: usize, rows: &mut Vec<RawRow>| -> Result<()> {
            let f = std::mem::take(fields);
            if f.len() == 1 && f[0].trim().is_empty() {
                return Ok(()); // blank line
            }
            if rows.is_empty() && header.is_some_and(|h| f.first().map(String::as_str) == Some(h)) {
                return Ok(());
            }
            if f.len() != columns.len() {
                bail!(
                    "{} line {record_line}: expected {} comma-separated fields ({}), found {}",
                    path.display(),
                    columns.len(),
                    columns.join(", "),
                    f.len()
                );
            }
            rows.push(RawRow {
                file: path.to_path_buf(),
                line: record_line,
                unit: "line",
                fields: columns
                    .iter()
                    .zip(f)
                    .map(|(c, p)| (c.to_string(), Value::String(p)))
                    .collect(),
            });
            Ok(())
        };
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cur.push('"');
                } else {
                    in_quotes = false;
                }
            } else {
                if c == '\n' {
                    line += 1;
                }
                cur.push(c);
            }
            continue;
        }
        match c {
            '"' if at_field_start => {
                in_quotes = true;
                at_field_start = false;
            }
            ' ' if at_field_start => {}
            ',' => {
                fields.push(std::mem::take(&mut cur));
                at_field_start = true;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                fields.push(std::mem::take(&mut cur));
                finish_record(&mut fields, record_line, &mut rows)?;
                line += 1;
                record_line = line;
                at_field_start = true;
            }
            _ => {
                cur.push(c);
                at_field_start = false;
            }
        }
    }
    if in_quotes {
        bail!(
            "{} line {record_line}: unterminated quoted field",
            path.display()
        );
    }
    if !cur.is_empty() || !fields.is_empty() {
        fields.push(cur);
        finish_record(&mut fields, record_line, &mut rows)?;
    }
    Ok(rows)
}
