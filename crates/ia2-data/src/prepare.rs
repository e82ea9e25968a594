//! `ia2 data prepare`: one dataset's raw source → `data/<name>/main.json`.
//!
//! Pools, templates, label maps and shuffles follow the seed's `prepare_data.py` (see the registry's
//! [`PoolPlan`] for each dataset's pool rules). Every shuffle of a pool is `Generator(seed).permutation(len)`
//! (= HF `Dataset.shuffle(seed)`); sciq_remap's option shuffles use the legacy `RandomState(seed)` stream
//! continued after the remap-table draws, like the seed's global `np.random`.
//!
//! Differences from the seed (bugs fixed): answers are always strings (the seed wrote qasc answers as
//! integers and used QASC's string `id` as `idx`: here `idx` is always the position in the shuffled pool);
//! gsm8ks no longer uses the same rows for train and val (val = the seed's val, train = the next rows of the
//! same shuffle, see [`PoolPlan::ShuffleHeadVal`]).

use crate::io::write_json_atomic;
use crate::readers::{self, Record, SplitData};
use crate::registry::{DatasetId, DatasetSpec, PoolPlan, RowFilter, Split, Template, remap_tokens};
use crate::schema::Example;
use crate::stats::{LengthStats, char_len};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The options of `ia2 data prepare` as plain data (`..Default::default()` for the rest; the flags are in the binary,
/// `crates/ia2/src/cli/data.rs`). Required flags default to empty here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrepareConfig {
    /// Dataset name (sst2, agnews, bbcnews, finsen, poems, strategytf, gsm8k, gsm8ks, sciqa, hmath_<subset>,
    /// sciq_remap, qasc_remap).
    pub dataset: String,
    /// Raw source: a file, a directory of raw or parquet files, or a Hugging Face cache (`$HF_HOME`,
    /// `.../hub`, or `.../hub/datasets--org--name`). Defaults to `$HF_HOME` (or ~/.cache/huggingface).
    pub source: Option<PathBuf>,
    /// Output root: writes `<data-dir>/<name>/main.json`.
    pub data_dir: PathBuf,
    /// `tokenizer.json` used for the token-length statistics (omitted from the metadata when not given).
    pub tokenizer: Option<PathBuf>,
    pub num_train_samples: usize,
    pub num_val_samples: usize,
    /// Shuffle seed (the seed system always used 42).
    pub seed: u32,
    /// Overwrite an existing main.json.
    pub force: bool,
}

impl Default for PrepareConfig {
    fn default() -> Self {
        PrepareConfig {
            dataset: String::new(),
            source: None,
            data_dir: "data".into(),
            tokenizer: None,
            num_train_samples: 2000,
            num_val_samples: 500,
            seed: 42,
            force: false,
        }
    }
}

/// What `prepare` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Written(PathBuf),
    Skipped(PathBuf),
}

pub fn run(args: PrepareConfig) -> Result<()> {
    match prepare(&args)? {
        Outcome::Written(p) => println!("wrote {}", p.display()),
        Outcome::Skipped(p) => {
            println!("{} exists; skipped (use --force to overwrite)", p.display())
        }
    }
    Ok(())
}

/// Default `--source`: `$HF_HOME`, else `~/.cache/huggingface`.
fn default_source() -> Result<PathBuf> {
    if let Some(h) = std::env::var_os("HF_HOME") {
        return Ok(PathBuf::from(h));
    }
    let home = std::env::var_os("HOME")
        .context("no --source given and neither HF_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cache").join("huggingface"))
}

/// Output path of a dataset's main file.
pub fn main_path(data_dir: &Path, id: DatasetId) -> PathBuf {
    data_dir.join(id.name()).join("main.json")
}

/// Runs the prepare stage; skips an existing output unless `force`.
pub fn prepare(args: &PrepareConfig) -> Result<Outcome> {
    let id = DatasetId::parse(&args.dataset)?;
    let spec = id.spec();
    let out = main_path(&args.data_dir, id);
    if out.exists() && !args.force {
        tracing::info!(path = %out.display(), "main.json exists; skipping (use --force to overwrite)");
        return Ok(Outcome::Skipped(out));
    }
    let source = match &args.source {
        Some(s) => s.clone(),
        None => default_source()?,
    };
    let tokenizer = match &args.tokenizer {
        Some(p) => Some(load_tokenizer(p)?),
        None => {
            tracing::warn!("no --tokenizer: token-length statistics are left out of the metadata");
            None
        }
    };
    let built = build(&spec, &source, args, tokenizer.as_ref())?;
    write_json_atomic(&out, &built)?;
    tracing::info!(path = %out.display(), train = built.train_examples.len(), val = built.val_examples.len(), "wrote main.json");
    Ok(Outcome::Written(out))
}

pub fn load_tokenizer(path: &Path) -> Result<tokenizers::Tokenizer> {
    ia2_hf::load_tokenizer_json(path).map_err(|e| anyhow::anyhow!("--tokenizer: {e}"))
}

/// The file written: seed-compatible `metadata` (ordered as the seed writes it, plus our extra keys),
/// `train_examples`, `val_examples`.
#[derive(Debug, Serialize)]
pub struct MainOut {
    pub metadata: Ordered,
    pub train_examples: Vec<Example>,
    pub val_examples: Vec<Example>,
}

/// A JSON object that keeps its key order.
#[derive(Debug, Clone, Default)]
pub struct Ordered(pub Vec<(String, Value)>);

impl Ordered {
    pub fn push(&mut self, k: impl Into<String>, v: impl Into<Value>) {
        self.0.push((k.into(), v.into()));
    }

    /// The seed's length statistics of `values` under `{max,max_95p,min,mean,median,std}_{key}`.
    pub fn stats(&mut self, key: &str, values: &[usize]) {
        let s = LengthStats::of(values);
        let f = |x: Option<Value>| x.unwrap_or(Value::Null);
        self.push(format!("max_{key}"), f(s.map(|s| json!(s.max))));
        self.push(format!("max_95p_{key}"), f(s.map(|s| json!(s.p95))));
        self.push(format!("min_{key}"), f(s.map(|s| json!(s.min))));
        self.push(format!("mean_{key}"), f(s.map(|s| json!(s.mean))));
        self.push(format!("median_{key}"), f(s.map(|s| json!(s.median))));
        self.push(format!("std_{key}"), f(s.map(|s| json!(s.std))));
    }
    pub fn get(&self, k: &str) -> Option<&Value> {
        self.0.iter().find(|(key, _)| key == k).map(|(_, v)| v)
    }
}

impl Serialize for Ordered {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// A pool row: the record and its row index in the source split (provenance).
type Pool = Vec<(usize, Record)>;

fn permute(pool: Pool, seed: u32) -> Pool {
    let perm = ia2_rng::Generator::new(u64::from(seed)).permutation(pool.len());
    let mut slots: Vec<Option<(usize, Record)>> = pool.into_iter().map(Some).collect();
    perm.into_iter()
        .map(|i| {
            slots[i]
                .take()
                .expect("a permutation visits each index once")
        })
        .collect()
}

fn filter(pool: Pool, f: RowFilter) -> Pool {
    match f {
        RowFilter::None => pool,
        RowFilter::KeepLabels(keep) => pool
            .into_iter()
            .filter(|(_, r)| r.label().is_some_and(|l| keep.contains(&l)))
            .collect(),
    }
}

/// Draws the train and val pools (already cut to the requested sizes) following the dataset's plan.
fn draw_pools(
    spec: &DatasetSpec,
    splits: &BTreeMap<&'static str, SplitData>,
    n_train: usize,
    n_val: usize,
    seed: u32,
) -> Result<(Pool, Pool, BTreeMap<&'static str, usize>)> {
    let take = |s: Split| -> Pool {
        splits[s.hf_name()]
            .records
            .iter()
            .cloned()
            .enumerate()
            .collect()
    };
    let (mut train, mut val) = match spec.pools {
        PoolPlan::TrainVal { train, val } => {
            let (t, v) = (take(train), take(val));
            (permute(t, seed), permute(v, seed))
        }
        PoolPlan::EvalOnly { val, filter: f } => {
            let v = filter(take(val), f);
            (Vec::new(), permute(v, seed))
        }
        PoolPlan::ShuffleFilterTail { split, filter: f } => {
            let all = filter(permute(take(split), seed), f);
            split_tail(spec, all, n_val, " after filtering")?
        }
        PoolPlan::ShuffleTailReshuffle { split } => {
            let (t, v) = split_tail(spec, permute(take(split), seed), n_val, "")?;
            (permute(t, seed), permute(v, seed))
        }
        PoolPlan::ShuffleHeadVal { split } => {
            let mut all = permute(take(split), seed);
            let rest = all.split_off(n_val.min(all.len()));
            (rest, all)
        }
    };
    let sizes = BTreeMap::from([("train_pool", train.len()), ("val_pool", val.len())]);
    train.truncate(n_train);
    val.truncate(n_val);
    Ok((train, val, sizes))
}

/// The last `n_val` rows of `all` as val, the rest as train; an error when nothing would be left to train on.
fn split_tail(spec: &DatasetSpec, mut all: Pool, n_val: usize, what: &str) -> Result<(Pool, Pool)> {
    if all.len() <= n_val {
        bail!(
            "{}: only {} rows{what}, not more than --num-val-samples {n_val}",
            spec.id,
            all.len()
        );
    }
    let val = all.split_off(all.len() - n_val);
    Ok((all, val))
}

/// `text[:n]` (in characters) minus its last, possibly partial, word: `" ".join(text[:n].split(" ")[:-1])`.
fn cut_text(text: &str, n: usize) -> String {
    let head: String = text.chars().take(n).collect();
    let mut words: Vec<&str> = head.split(' ').collect();
    words.pop();
    words.join(" ")
}

/// Formats pool rows into examples. `legacy` is the seed's global legacy RNG (used by sciq_remap option
/// shuffles), `remap` the label → token table when the dataset uses remapped labels.
fn format_examples(
    spec: &DatasetSpec,
    pool: &Pool,
    remap: Option<&[&'static str]>,
    legacy: &mut ia2_rng::RandomState,
) -> Result<Vec<Example>> {
    let label_str = |l: usize| -> String {
        match remap {
            Some(t) => t[l].to_string(),
            None => l.to_string(),
        }
    };
    let mut out = Vec::with_capacity(pool.len());
    for (i, (_, rec)) in pool.iter().enumerate() {
        let (question, answer) = match (spec.template, rec) {
            (Template::TextLabel | Template::QuestionAnswer, Record::Text { text, label }) => {
                let mapped = spec
                    .label_map
                    .iter()
                    .find(|(from, _)| from == label)
                    .map_or(*label, |(_, to)| *to);
                let text = match spec.text_cut {
                    Some(n) => cut_text(text, n),
                    None => text.clone(),
                };
                (spec.template.render_text(&text), label_str(mapped as usize))
            }
            (Template::QuestionAnswer, Record::Qa { question, answer }) => {
                (spec.template.render_text(question), answer.clone())
            }
            (
                Template::QuestionAnswer,
                Record::Sciq {
                    question,
                    correct_answer,
                    support,
                    ..
                },
            ) => (
                spec.template.render_text(question),
                format!("{support}\n#### {correct_answer}"),
            ),
            (
                Template::MultipleChoice,
                Record::Sciq {
                    question,
                    distractors,
                    correct_answer,
                    ..
                },
            ) => {
                let markers = remap.context("multiple-choice datasets need a remap table")?;
                // options = [d1, d2, d3, None], np.random.shuffle, None becomes the correct answer.
                let mut options: Vec<Option<&String>> = vec![
                    Some(&distractors[0]),
                    Some(&distractors[1]),
                    Some(&distractors[2]),
                    None,
                ];
                legacy.shuffle(&mut options);
                let answer_idx = options.iter().position(Option::is_none).expect("one None");
                let options: Vec<String> = options
                    .iter()
                    .map(|o| o.unwrap_or(correct_answer).clone())
                    .collect();
                (
                    Template::render_choices(question, markers, &options),
                    label_str(answer_idx),
                )
            }
            (
                Template::MultipleChoice,
                Record::Mcq {
                    question,
                    choices,
                    answer,
                },
            ) => {
                let markers = remap.context("multiple-choice datasets need a remap table")?;
                if choices.len() != markers.len() {
                    bail!(
                        "{}: {} choices but {} labels",
                        spec.id,
                        choices.len(),
                        markers.len()
                    );
                }
                (
                    Template::render_choices(question, markers, choices),
                    label_str(*answer),
                )
            }
            (t, r) => bail!("{}: template {t:?} cannot render record {r:?}", spec.id),
        };
        out.push(Example {
            idx: i,
            question,
            answer,
        });
    }
    Ok(out)
}

/// sha256 (the project's one file hash, `ia2_runs::fingerprint::file_sha256`) and size of a file.
fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let sha = ia2_runs::fingerprint::file_sha256(path)?;
    let len = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    Ok((sha, len))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checksums of one split's files: each file when there are few, else one combined sha256 over the files
/// sorted by path relative to their common folder (relative path + NUL + bytes), as SOURCES.md computes it.
fn checksums(data: &SplitData) -> Result<Value> {
    if data.files.len() <= 16 {
        let files = data
            .files
            .iter()
            .map(|f| {
                let (sha, bytes) = sha256_file(f)?;
                Ok(json!({"path": f.display().to_string(), "sha256": sha, "bytes": bytes}))
            })
            .collect::<Result<Vec<_>>>()?;
        return Ok(json!({"split": data.split.hf_name(), "format": data.format, "files": files}));
    }
    let root = common_dir(&data.files);
    let mut rel: Vec<(String, &PathBuf)> = data
        .files
        .iter()
        .map(|f| {
            let r = f.strip_prefix(&root).unwrap_or(f);
            (r.to_string_lossy().to_string(), f)
        })
        .collect();
    rel.sort();
    let mut h = Sha256::new();
    let mut total = 0u64;
    for (r, f) in &rel {
        let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        total += bytes.len() as u64;
        h.update(r.as_bytes());
        h.update([0u8]);
        h.update(&bytes);
    }
    Ok(json!({
        "split": data.split.hf_name(),
        "format": data.format,
        "root": root.display().to_string(),
        "num_files": rel.len(),
        "bytes": total,
        "combined_sha256": hex(&h.finalize()),
    }))
}

fn common_dir(files: &[PathBuf]) -> PathBuf {
    let mut root = files[0].parent().map(Path::to_path_buf).unwrap_or_default();
    for f in files {
        while !f.starts_with(&root) {
            if !root.pop() {
                return PathBuf::new();
            }
        }
    }
    root
}

fn token_lengths(tok: &tokenizers::Tokenizer, texts: &[&str], what: &str) -> Result<Vec<usize>> {
    let pb =
        indicatif::ProgressBar::new(texts.len() as u64).with_message(format!("tokenizing {what}"));
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(256) {
        let enc = tok
            .encode_batch(chunk.to_vec(), true)
            .map_err(|e| anyhow::anyhow!("tokenizing: {e}"))?;
        out.extend(enc.iter().map(|e| e.len()));
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    Ok(out)
}

fn label_counts(examples: &[Example]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for e in examples {
        *m.entry(e.answer.clone()).or_insert(0) += 1;
    }
    m
}

/// Builds the whole main file in memory (no writing).
pub fn build(
    spec: &DatasetSpec,
    source: &Path,
    args: &PrepareConfig,
    tokenizer: Option<&tokenizers::Tokenizer>,
) -> Result<MainOut> {
    let resolved = readers::resolve_source(source, spec)?;
    let mut splits: BTreeMap<&'static str, SplitData> = BTreeMap::new();
    for s in spec.pools.splits() {
        let data = readers::read_split(&resolved, spec, s)?;
        tracing::info!(dataset = %spec.id, split = s.hf_name(), rows = data.records.len(), "read split");
        splits.insert(s.hf_name(), data);
    }
    let (train_pool, val_pool, pool_sizes) = draw_pools(
        spec,
        &splits,
        args.num_train_samples,
        args.num_val_samples,
        args.seed,
    )?;

    let mut legacy = ia2_rng::RandomState::new(args.seed);
    let remap: Option<Vec<&'static str>> = if spec.remap {
        let n = spec
            .labels
            .count()
            .context("remapped datasets have a label count")?;
        Some(remap_tokens(n, &mut legacy))
    } else {
        None
    };
    let train = format_examples(spec, &train_pool, remap.as_deref(), &mut legacy)?;
    let val = format_examples(spec, &val_pool, remap.as_deref(), &mut legacy)?;
    if val.is_empty() {
        bail!("{}: no validation examples", spec.id);
    }

    let all: Vec<&Example> = train.iter().chain(&val).collect();
    let query_chars: Vec<usize> = all.iter().map(|e| char_len(&e.question)).collect();
    let answer_chars: Vec<usize> = all.iter().map(|e| char_len(&e.answer)).collect();
    let (query_tokens, answer_tokens) = match tokenizer {
        Some(t) => {
            let q: Vec<&str> = all.iter().map(|e| e.question.as_str()).collect();
            let qt = token_lengths(t, &q, "questions")?;
            let at = if spec.answer_stats {
                let a: Vec<&str> = all.iter().map(|e| e.answer.as_str()).collect();
                Some(token_lengths(t, &a, "answers")?)
            } else {
                None
            };
            (Some(qt), at)
        }
        None => (None, None),
    };

    let mut m = Ordered::default();
    m.push("max_choices", spec.max_choices_json());
    m.push(
        "remap_dict",
        match &remap {
            Some(t) => Value::Object(
                t.iter()
                    .enumerate()
                    .map(|(i, tok)| (i.to_string(), json!(tok)))
                    .collect(),
            ),
            None => Value::Null,
        },
    );
    m.stats("query_length", &query_chars);
    if spec.answer_stats {
        m.stats("answer_length", &answer_chars);
        if let Some(at) = &answer_tokens {
            m.stats("token_answer_length", at);
        }
    }
    m.push("num_train_examples", train.len());
    m.push("num_val_examples", val.len());
    if let Some(qt) = &query_tokens {
        m.stats("token_length", qt);
    }
    // Our additions.
    m.push("dataset", spec.id.name());
    m.push(
        "label_counts",
        json!({"train": label_counts(&train), "val": label_counts(&val)}),
    );
    m.push("pool_sizes", json!(pool_sizes));
    let split_rows: BTreeMap<&str, usize> =
        splits.iter().map(|(k, v)| (*k, v.records.len())).collect();
    let source_files = splits.values().map(checksums).collect::<Result<Vec<_>>>()?;
    let tokenizer_info = match &args.tokenizer {
        Some(p) => {
            let (sha, bytes) = sha256_file(p)?;
            json!({"path": p.display().to_string(), "sha256": sha, "bytes": bytes, "add_special_tokens": true})
        }
        None => Value::Null,
    };
    m.push(
        "config",
        json!({
            "dataset": spec.id.name(),
            "hf_id": spec.hf_id,
            "hf_config": spec.hf_config,
            "source": source.display().to_string(),
            "resolved_source": resolved.display().to_string(),
            "source_split_rows": split_rows,
            "source_files": source_files,
            "pool_plan": format!("{:?}", spec.pools),
            "template": spec.template.pattern(),
            "answer_parser": format!("{:?}", spec.parser),
            "seed": args.seed,
            "num_train_samples": args.num_train_samples,
            "num_val_samples": args.num_val_samples,
            "tokenizer": tokenizer_info,
            "ia2_version": env!("CARGO_PKG_VERSION"),
        }),
    );
    Ok(MainOut {
        metadata: m,
        train_examples: train,
        val_examples: val,
    })
}
