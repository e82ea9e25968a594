//! Source readers: find the file(s) holding one HF split of a dataset under `--source`, read them in any of
//! the supported formats, and normalise rows into typed [`Record`]s.
//!
//! # How `--source` is recognised
//! `--source` may be:
//! * a Hugging Face cache: `$HF_HOME`, `$HF_HOME/hub`, or `.../hub/datasets--<org>--<name>` (the dataset's
//!   own folder is looked up by the registry's HF id; the snapshot named by `refs/main`, else the newest one,
//!   is used);
//! * any directory holding HF parquet files (`<split>-NNNNN-of-NNNNN.parquet`, `<split>.parquet`, or
//!   `<split>/NNNN.parquet` as in `refs/convert/parquet`, at any depth up to 4; when the dataset has a config
//!   (`main`, `algebra`, `sentences_50agree`) and some files sit under a folder of that name, only those are
//!   used);
//! * a directory holding the raw release files (names per dataset in [`raw_candidates`]; e.g. sst2
//!   `train.tsv`/`dev.tsv`, agnews `train.csv`/`test.csv`, hmath `train/<subset>/*.json`);
//! * a single file, for datasets that read one split (finsen, poems, bbcnews, strategytf, gsm8ks).
//!
//! Parquet files take precedence over raw files in the same directory. A missing split is an error that
//! names what was looked for.

pub mod formats;
pub mod records;

pub use formats::RawRow;
pub use records::Record;

use crate::registry::{DatasetSpec, SourceKind, Split};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// The files one split was read from and its rows, in source order.
#[derive(Debug, Clone)]
pub struct SplitData {
    pub split: Split,
    pub files: Vec<PathBuf>,
    /// Human-readable format name (`parquet`, `jsonl`, `tsv`, ...).
    pub format: &'static str,
    pub records: Vec<Record>,
}

/// The on-disk format of a split's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Parquet,
    Jsonl,
    JsonRecords,
    Tsv,
    Csv,
    PhraseBank,
    /// A directory of per-problem JSON files (MATH).
    JsonDir,
    /// A directory of `<category>/NNN.txt` files (BBC).
    BbcDir,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Jsonl => "jsonl",
            Format::JsonRecords => "json",
            Format::Tsv => "tsv",
            Format::Csv => "csv",
            Format::PhraseBank => "phrasebank-txt",
            Format::JsonDir => "json-per-problem",
            Format::BbcDir => "bbc-folders",
        }
    }

    fn of_file(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_string_lossy().to_lowercase();
        let ext = name.rsplit('.').next()?;
        Some(match ext {
            "parquet" => Format::Parquet,
            "jsonl" => Format::Jsonl,
            "json" => Format::JsonRecords,
            "tsv" => Format::Tsv,
            "csv" => Format::Csv,
            "txt" => Format::PhraseBank,
            _ => return None,
        })
    }
}

/// Raw (non-parquet) file or folder names that hold `split` for `kind`, relative to the source directory.
pub fn raw_candidates(kind: SourceKind, split: Split) -> Vec<String> {
    use SourceKind as K;
    use Split as S;
    let v: &[&str] = match (kind, split) {
        (K::Sst2, S::Train) => &["train.tsv"],
        (K::Sst2, S::Validation) => &["dev.tsv", "validation.tsv"],
        (K::AgNews, S::Train) => &["train.csv"],
        (K::AgNews, S::Test) => &["test.csv"],
        (K::BbcNews, S::Test) => &["bbc", "."],
        (K::FinancialPhrasebank, S::Train) => &["Sentences_50Agree.txt"],
        (K::PoemSentiment, S::Train) => &["train.tsv"],
        (K::PoemSentiment, S::Validation) => &["dev.tsv", "validation.tsv"],
        (K::PoemSentiment, S::Test) => &["test.tsv"],
        (K::StrategyQa, S::Test) => &["test.jsonl", "strategyqa.jsonl"],
        (K::Gsm8k, S::Train) => &["train.jsonl"],
        (K::Gsm8k, S::Test) => &["test.jsonl"],
        (K::GsmSymbolic, S::Test) => &["test.jsonl", "GSM_symbolic.jsonl"],
        (K::Sciq, S::Train) => &["train.json", "train.jsonl"],
        (K::Sciq, S::Validation) => &[
            "valid.json",
            "validation.json",
            "valid.jsonl",
            "validation.jsonl",
        ],
        (K::Sciq, S::Test) => &["test.json", "test.jsonl"],
        (K::Qasc, S::Train) => &["train.jsonl"],
        (K::Qasc, S::Validation) => &["dev.jsonl", "validation.jsonl"],
        (K::Qasc, S::Test) => &["test.jsonl"],
        (K::HendrycksMath(s), sp) => {
            let dir = if sp == S::Train { "train" } else { "test" };
            return vec![format!("{dir}/{}", s.config())];
        }
        _ => &[],
    };
    v.iter().map(|s| s.to_string()).collect()
}

/// Resolves a user-given `--source` to the directory (or file) that holds the dataset's files: follows
/// `$HF_HOME` → `hub` → `datasets--org--name` → `snapshots/<rev>`.
pub fn resolve_source(source: &Path, spec: &DatasetSpec) -> Result<PathBuf> {
    if !source.exists() {
        bail!("--source {} does not exist", source.display());
    }
    if source.is_file() {
        return Ok(source.to_path_buf());
    }
    let mut dir = source.to_path_buf();
    if dir.join("hub").is_dir() {
        dir = dir.join("hub");
    }
    let cache_name = format!("datasets--{}", spec.hf_id.replace('/', "--"));
    if dir.join(&cache_name).is_dir() {
        dir = dir.join(&cache_name);
    } else if dir.file_name().is_some_and(|n| n == "hub") {
        bail!(
            "{} is a Hugging Face cache but holds no {cache_name} (download {} first)",
            dir.display(),
            spec.hf_id
        );
    }
    let snapshots = dir.join("snapshots");
    if snapshots.is_dir() {
        let by_ref = std::fs::read_to_string(dir.join("refs").join("main"))
            .ok()
            .map(|r| snapshots.join(r.trim()))
            .filter(|p| p.is_dir());
        let chosen = match by_ref {
            Some(p) => p,
            None => {
                let mut snaps: Vec<(std::time::SystemTime, PathBuf)> =
                    std::fs::read_dir(&snapshots)
                        .with_context(|| format!("listing {}", snapshots.display()))?
                        .filter_map(|e| e.ok())
                        .filter(|e| e.path().is_dir())
                        .map(|e| {
                            let t = e
                                .metadata()
                                .and_then(|m| m.modified())
                                .unwrap_or(std::time::UNIX_EPOCH);
                            (t, e.path())
                        })
                        .collect();
                snaps.sort();
                match snaps.pop() {
                    Some((_, p)) => p,
                    None => bail!("{} has no snapshot", snapshots.display()),
                }
            }
        };
        tracing::info!(snapshot = %chosen.display(), "using Hugging Face cache snapshot");
        dir = chosen;
    }
    Ok(dir)
}

/// Parquet files under `dir` (depth ≤ 4) holding `split`, filtered by `config` when some sit under a folder
/// of that name; sorted by path (shard order).
fn parquet_files(dir: &Path, split: Split, config: Option<&str>) -> Result<Vec<PathBuf>> {
    let mut all = Vec::new();
    collect_files(dir, 4, &mut |p| {
        if p.extension().is_some_and(|e| e == "parquet") {
            all.push(p.to_path_buf());
        }
    })?;
    let s = split.hf_name();
    let mut hits: Vec<PathBuf> = all
        .into_iter()
        .filter(|p| {
            let stem = p
                .file_stem()
                .map(|x| x.to_string_lossy().to_string())
                .unwrap_or_default();
            let parent = p
                .parent()
                .and_then(|x| x.file_name())
                .map(|x| x.to_string_lossy().to_string())
                .unwrap_or_default();
            stem == s
                || stem.starts_with(&format!("{s}-"))
                || stem.ends_with(&format!("-{s}"))
                || parent == s
        })
        .collect();
    if let Some(cfg) = config {
        let under_cfg = |p: &PathBuf| {
            p.strip_prefix(dir)
                .map(|r| r.components().any(|c| c.as_os_str() == cfg))
                .unwrap_or(false)
        };
        if hits.iter().any(under_cfg) {
            hits.retain(under_cfg);
        }
    }
    hits.sort();
    Ok(hits)
}

fn collect_files(dir: &Path, depth: usize, f: &mut dyn FnMut(&Path)) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if depth > 0
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                collect_files(&p, depth - 1, f)?;
            }
        } else {
            f(&p);
        }
    }
    Ok(())
}

/// Locates the files of `split` under the resolved source.
fn locate(
    source: &Path,
    spec: &DatasetSpec,
    split: Split,
    single_split: bool,
) -> Result<(Format, Vec<PathBuf>)> {
    let name = spec.id.name();
    if source.is_file() {
        if !single_split {
            bail!(
                "{name} reads more than one split ({}); pass the directory that holds them, not the file {}",
                spec.pools
                    .splits()
                    .iter()
                    .map(|s| s.hf_name())
                    .collect::<Vec<_>>()
                    .join(" and "),
                source.display()
            );
        }
        let format = Format::of_file(source).with_context(|| {
            format!(
                "{}: unrecognised file type (expected .parquet, .jsonl, .json, .tsv, .csv or .txt)",
                source.display()
            )
        })?;
        return Ok((format, vec![source.to_path_buf()]));
    }
    let parquet = parquet_files(source, split, spec.hf_config)?;
    if !parquet.is_empty() {
        return Ok((Format::Parquet, parquet));
    }
    let cands = raw_candidates(spec.source, split);
    for c in &cands {
        let p = source.join(c);
        match spec.source {
            SourceKind::HendrycksMath(_) if p.is_dir() => {
                let mut files = Vec::new();
                collect_files(&p, 0, &mut |f| {
                    if f.extension().is_some_and(|e| e == "json") {
                        files.push(f.to_path_buf());
                    }
                })?;
                if files.is_empty() {
                    bail!("{}: no problem .json files", p.display());
                }
                return Ok((Format::JsonDir, files));
            }
            SourceKind::BbcNews if p.is_dir() && bbc_categories(&p).is_some() => {
                return Ok((Format::BbcDir, vec![p]));
            }
            _ if p.is_file() => {
                let format = Format::of_file(&p).expect("candidate names have known extensions");
                return Ok((format, vec![p]));
            }
            _ => {}
        }
    }
    let mut expected: Vec<String> = cands.iter().filter(|c| *c != ".").cloned().collect();
    if matches!(spec.source, SourceKind::BbcNews) {
        expected = vec![
            "category folders business/ entertainment/ politics/ sport/ tech/ (or bbc/<category>/)"
                .into(),
        ];
    }
    expected.push(format!("{}-*.parquet", split.hf_name()));
    bail!(
        "{name} needs the {} split: expected {} in {}",
        split.hf_name(),
        expected.join(" or "),
        source.display()
    )
}

const BBC_CATEGORIES: [&str; 5] = ["business", "entertainment", "politics", "sport", "tech"];

fn bbc_categories(dir: &Path) -> Option<()> {
    BBC_CATEGORIES
        .iter()
        .all(|c| dir.join(c).is_dir())
        .then_some(())
}

/// Reads one split of a dataset from a resolved source.
pub fn read_split(source: &Path, spec: &DatasetSpec, split: Split) -> Result<SplitData> {
    let single = spec.pools.splits().len() == 1;
    let (format, files) = locate(source, spec, split, single)?;
    if format == Format::BbcDir {
        tracing::warn!(
            "reading the original BBC folders: all 2,225 articles form the pool; SetFit/bbc-news's test split \
             (and its lower-cased text) cannot be reproduced from them, so prompts differ from the seed's"
        );
    }
    tracing::info!(dataset = %spec.id, split = split.hf_name(), format = format.name(), files = files.len(), "reading source");
    let mut rows: Vec<RawRow> = Vec::new();
    for f in &files {
        rows.extend(read_rows(format, f, spec.source)?);
    }
    let records = rows
        .iter()
        .map(|r| records::extract(spec.source, r))
        .collect::<Result<Vec<_>>>()?;
    let files = if format == Format::BbcDir {
        let mut v = Vec::new();
        collect_files(&files[0], 1, &mut |p| {
            if p.extension().is_some_and(|e| e == "txt")
                && p.parent()
                    .and_then(|d| d.file_name())
                    .is_some_and(|d| BBC_CATEGORIES.iter().any(|c| d == *c))
            {
                v.push(p.to_path_buf());
            }
        })?;
        v
    } else {
        files
    };
    Ok(SplitData {
        split,
        files,
        format: format.name(),
        records,
    })
}

fn read_rows(format: Format, path: &Path, kind: SourceKind) -> Result<Vec<RawRow>> {
    match format {
        Format::Parquet => formats::read_parquet(path),
        Format::Jsonl => formats::read_jsonl(path),
        Format::JsonRecords | Format::JsonDir => formats::read_json_records(path),
        Format::Tsv => match kind {
            SourceKind::Sst2 => formats::read_tsv(path, &["label", "sentence"], true),
            SourceKind::PoemSentiment => {
                formats::read_tsv(path, &["id", "verse_text", "label_raw"], false)
            }
            other => bail!(
                "{}: TSV is not a source format of {other:?}",
                path.display()
            ),
        },
        Format::Csv => match kind {
            SourceKind::AgNews => formats::read_csv(
                path,
                &["class_index", "title", "description"],
                Some("Class Index"),
            ),
            other => bail!(
                "{}: CSV is not a source format of {other:?}",
                path.display()
            ),
        },
        Format::PhraseBank => records::read_phrasebank(path),
        Format::BbcDir => records::read_bbc(path, &BBC_CATEGORIES),
    }
}
