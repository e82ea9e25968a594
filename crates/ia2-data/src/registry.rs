//! The dataset registry: the one place that knows, per dataset, where its rows come from (Hugging Face id,
//! config, splits, raw file names), how a row becomes a prompt (template), its label set and remap tokens, how
//! its train/val pools are drawn, and how a generated answer is parsed at evaluation time.
//!
//! Everything else in the crate asks a [`DatasetSpec`] instead of matching on dataset names.

use anyhow::{Result, bail};
use std::fmt;

/// The remap vocabulary of the seed (`remap_utils.remap_tokens`), in its order.
pub const REMAP_VOCAB: [&str; 9] = [
    "Monday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
    "apple",
    "banana",
    "orange",
];

/// Seed used for every shuffle of the seed's `prepare_data.py`.
pub const SEED: u64 = 42;

/// Subsets (HF configs) of `EleutherAI/hendrycks_math`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HmathSubset {
    Algebra,
    CountingAndProbability,
    Geometry,
    IntermediateAlgebra,
    NumberTheory,
    Prealgebra,
    Precalculus,
}

impl HmathSubset {
    pub const ALL: [HmathSubset; 7] = [
        HmathSubset::Algebra,
        HmathSubset::CountingAndProbability,
        HmathSubset::Geometry,
        HmathSubset::IntermediateAlgebra,
        HmathSubset::NumberTheory,
        HmathSubset::Prealgebra,
        HmathSubset::Precalculus,
    ];

    /// HF config name (also the folder name in the original MATH release).
    pub fn config(self) -> &'static str {
        match self {
            HmathSubset::Algebra => "algebra",
            HmathSubset::CountingAndProbability => "counting_and_probability",
            HmathSubset::Geometry => "geometry",
            HmathSubset::IntermediateAlgebra => "intermediate_algebra",
            HmathSubset::NumberTheory => "number_theory",
            HmathSubset::Prealgebra => "prealgebra",
            HmathSubset::Precalculus => "precalculus",
        }
    }
}

/// Every dataset `ia2 data prepare` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatasetId {
    Sst2,
    Agnews,
    Bbcnews,
    Finsen,
    Poems,
    Strategytf,
    Gsm8k,
    Gsm8ks,
    Sciqa,
    Hmath(HmathSubset),
    SciqRemap,
    QascRemap,
}

impl DatasetId {
    /// All datasets, in the order they are listed to users.
    pub fn all() -> Vec<DatasetId> {
        let mut v = vec![
            DatasetId::Sst2,
            DatasetId::Agnews,
            DatasetId::Bbcnews,
            DatasetId::Finsen,
            DatasetId::Poems,
            DatasetId::Strategytf,
            DatasetId::Gsm8k,
            DatasetId::Gsm8ks,
            DatasetId::Sciqa,
        ];
        v.extend(HmathSubset::ALL.iter().map(|s| DatasetId::Hmath(*s)));
        v.push(DatasetId::SciqRemap);
        v.push(DatasetId::QascRemap);
        v
    }

    /// The name used on the command line and as the `data/<name>/` directory.
    pub fn name(self) -> String {
        match self {
            DatasetId::Hmath(s) => format!("hmath_{}", s.config()),
            other => other.spec().name.to_string(),
        }
    }

    /// Parses a dataset name; the error lists every known name.
    pub fn parse(name: &str) -> Result<DatasetId> {
        for id in DatasetId::all() {
            if id.name() == name {
                return Ok(id);
            }
        }
        let known: Vec<String> = DatasetId::all().iter().map(|d| d.name()).collect();
        bail!(
            "unknown dataset `{name}`; known datasets: {}",
            known.join(", ")
        )
    }

    /// The dataset's specification.
    pub fn spec(self) -> DatasetSpec {
        spec_of(self)
    }
}

impl fmt::Display for DatasetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl std::str::FromStr for DatasetId {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        DatasetId::parse(s)
    }
}

/// A Hugging Face split of the source dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    Validation,
    Test,
}

impl Split {
    /// HF split name (also the parquet file prefix `<split>-00000-of-00001.parquet`).
    pub fn hf_name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
        }
    }
}

/// The raw record shape a source produces (and which reader normalises into it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// `stanfordnlp/sst2`: `sentence`, `label` (0 neg, 1 pos). Raw: GLUE-style TSV `label<TAB>sentence` with a
    /// header (`train.tsv` = train, `dev.tsv` = validation).
    Sst2,
    /// `fancyzhx/ag_news`: `text`, `label` 0..3. Raw: Zhang et al. CSV `class(1..4),title,description`
    /// (`train.csv` = train, `test.csv` = test); text = title + " " + description, label = class - 1.
    AgNews,
    /// `SetFit/bbc-news`: `text`, `label` (0 tech, 1 business, 2 sport, 3 entertainment, 4 politics). Raw:
    /// the original BBC folders `<category>/NNN.txt` (NOT the SetFit split, see `docs`).
    BbcNews,
    /// `takala/financial_phrasebank` `sentences_50agree`: `sentence`, `label` (0 neg, 1 neutral, 2 pos). Raw:
    /// `Sentences_50Agree.txt`, lines `<sentence>@<negative|neutral|positive>`.
    FinancialPhrasebank,
    /// `google-research-datasets/poem_sentiment`: `verse_text`, `label` (0 neg, 1 pos, 2 no_impact, 3 mixed).
    /// Raw: TSV `id<TAB>verse<TAB>label` with labels -1 neg, 0 no_impact, 1 pos, 2 mixed (`train.tsv`).
    PoemSentiment,
    /// `wics/strategy-qa` (single split `test`): `question`, `answer` (bool). Raw: jsonl with the same fields
    /// (`test.jsonl`).
    StrategyQa,
    /// `openai/gsm8k` `main`: `question`, `answer`. Raw: `train.jsonl`, `test.jsonl`.
    Gsm8k,
    /// `apple/GSM-Symbolic` `main` (single split `test`): `question`, `answer`. Raw: jsonl (`test.jsonl` or
    /// `GSM_symbolic.jsonl`).
    GsmSymbolic,
    /// `allenai/sciq`: `question`, `distractor1..3`, `correct_answer`, `support`. Raw: the original release's
    /// JSON arrays (`train.json`, `valid.json`) or jsonl with the HF fields.
    Sciq,
    /// `EleutherAI/hendrycks_math` `<subset>`: `problem`, `solution`. Raw: the original MATH release,
    /// one JSON file per problem under `train/<subset>/` and `test/<subset>/`.
    HendrycksMath(HmathSubset),
    /// `allenai/qasc`: `question`, `choices {text, label}`, `answerKey`. Raw: jsonl with the HF fields or the
    /// original release (`question {stem, choices: [{text, label}]}`), `train.jsonl` / `dev.jsonl`.
    Qasc,
}

/// How the question string is built from a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Template {
    /// `Text:{text}\nLabel:`
    TextLabel,
    /// `Question:{question}\nAnswer:`
    QuestionAnswer,
    /// `Question:{q}\nChoices:\n[tok0]{o0}\n...[tokK]{oK}\n\nAnswer:` (remap tokens as option markers).
    MultipleChoice,
}

impl Template {
    /// The template with `{}` for the text, for display.
    pub fn pattern(self) -> &'static str {
        match self {
            Template::TextLabel => "Text:{text}\\nLabel:",
            Template::QuestionAnswer => "Question:{question}\\nAnswer:",
            Template::MultipleChoice => {
                "Question:{question}\\nChoices:\\n[{tok_i}]{option_i}\\n...\\nAnswer:"
            }
        }
    }

    pub fn render_text(self, text: &str) -> String {
        match self {
            Template::TextLabel => format!("Text:{text}\nLabel:"),
            Template::QuestionAnswer | Template::MultipleChoice => {
                format!("Question:{text}\nAnswer:")
            }
        }
    }

    /// Multiple-choice rendering with explicit option markers.
    pub fn render_choices(question: &str, markers: &[&str], options: &[String]) -> String {
        let mut s = format!("Question:{question}\nChoices:\n");
        for (m, o) in markers.iter().zip(options) {
            s.push('[');
            s.push_str(m);
            s.push(']');
            s.push_str(o);
            s.push('\n');
        }
        s.push_str("\nAnswer:");
        s
    }
}

/// How a model's generated text is turned into an answer at evaluation time.
///
/// The one implementation of answer parsing: the evaluation crate (`ia2-eval`) picks the parser from the
/// registry and calls [`AnswerParser::parse`] on both the gold answer and the generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerParser {
    /// Classification: the stripped text is the label (or remap token).
    Label,
    /// GSM8K-style numeric answers, first rule that matches wins: the last `\boxed{...}` (balanced braces),
    /// the last `#### ...`, the last `Answer:` / `The answer is` / `answer is` (case-insensitive; the
    /// first number of what follows on that line, else that text), the last number anywhere.
    /// Numbers keep a leading `-`, lose thousands separators (`1,234` → `1234`) and integral values print
    /// as integers (`5.0` → `5`). `None` when the text holds no answer at all.
    ///
    /// Differences from the seed's `parse_answer_gsm8k` (fixes): negative numbers keep their sign; only
    /// real thousands groups are commas (`1,2` is two numbers); boxes may nest braces; no answer gives
    /// `None` instead of the whole text; the last-number fallback does not skip years or values in
    /// (0, 1), and the seed's ad-hoc `$`-amount and unit-word patterns are not used (they preferred an
    /// earlier price over the final result).
    Gsm,
    /// Text after the last `####`, stripped (sciqa); the whole stripped text when there is no `####`
    /// (as the seed).
    HashTail,
    /// Content of the last `\boxed{...}` with balanced braces (hmath), spaces removed, `\dfrac` → `\frac`.
    /// `None` without a (closed) box.
    Boxed,
}

impl AnswerParser {
    /// Parses `text` (a gold answer or a generation). `None` when nothing parseable is found.
    pub fn parse(self, text: &str) -> Option<String> {
        match self {
            AnswerParser::Label => Some(text.trim().to_string()),
            AnswerParser::HashTail => {
                Some(text.rsplit("####").next().unwrap_or("").trim().to_string())
            }
            AnswerParser::Boxed => last_boxed(text).map(|b| {
                b.replace([' ', '\t', '\n'], "")
                    .replace("\\dfrac{", "\\frac{")
            }),
            AnswerParser::Gsm => parse_gsm(text),
        }
    }

    /// Stable name of the parser (recorded in evaluation results).
    pub fn name(self) -> &'static str {
        match self {
            AnswerParser::Label => "label",
            AnswerParser::Gsm => "gsm",
            AnswerParser::HashTail => "hash_tail",
            AnswerParser::Boxed => "boxed",
        }
    }
}

/// Content of the last `\boxed{...}` whose braces balance (nested braces allowed); `\boxed x` (no brace)
/// gives the token after the space. `None` when there is no complete box.
fn last_boxed(text: &str) -> Option<&str> {
    const TAG: &str = "\\boxed";
    let mut search_end = text.len();
    while let Some(pos) = text[..search_end].rfind(TAG) {
        let rest = &text[pos + TAG.len()..];
        if let Some(inner) = rest.strip_prefix('{') {
            let mut depth = 1usize;
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(&inner[..i]);
                        }
                    }
                    _ => {}
                }
            }
        } else if let Some(after) = rest.strip_prefix(' ') {
            let token = after
                .split(|c: char| c.is_whitespace() || c == '$')
                .next()
                .unwrap_or("");
            if !token.is_empty() {
                return Some(token);
            }
        }
        // An unclosed or empty box: look for an earlier one.
        search_end = pos;
    }
    None
}

/// The GSM cascade (see [`AnswerParser::Gsm`]).
fn parse_gsm(text: &str) -> Option<String> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Some(inner) = last_boxed(text) {
        let inner = inner.trim();
        if let Some(n) = numbers(inner).into_iter().next() {
            return Some(n);
        }
        if !inner.is_empty() {
            return Some(inner.to_string());
        }
    }
    let lower = text.to_ascii_lowercase();
    for marker in ["####", "answer:", "the answer is", "answer is"] {
        let Some(p) = lower.rfind(marker) else {
            continue;
        };
        // The rest of the line after the marker (whitespace, newlines included, skipped first).
        let after = text[p + marker.len()..].trim_start();
        let line = after.lines().next().unwrap_or("").trim();
        let line = line.trim_start_matches([':', '$', ' ']).trim();
        if let Some(n) = numbers(line).into_iter().next() {
            return Some(n);
        }
        let cleaned = line.trim_end_matches(['.', ',']).trim();
        if !cleaned.is_empty() {
            return Some(cleaned.to_string());
        }
    }
    numbers(text).pop()
}

/// Every number in `s`, in order, normalised: an optional sign `-` (only at the start or after a space or
/// one of `(=:[{$`), digits with optional thousands groups `,ddd`, an optional fraction `.d+`; commas
/// dropped, integral values printed as integers.
fn numbers(s: &str) -> Vec<String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() || (i > 0 && b[i - 1].is_ascii_digit()) {
            i += 1;
            continue;
        }
        let negative = i > 0 && b[i - 1] == b'-' && (i == 1 || b" \t\n(=:[{$".contains(&b[i - 2]));
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        // Thousands groups: `,ddd` not followed by another digit.
        while i + 3 < b.len()
            && b[i] == b','
            && b[i + 1..i + 4].iter().all(u8::is_ascii_digit)
            && b.get(i + 4).is_none_or(|c| !c.is_ascii_digit())
        {
            i += 4;
        }
        if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
            i += 1;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
        }
        let digits = s[start..i].replace(',', "");
        out.push(normalise_number(&digits, negative));
    }
    out
}

fn normalise_number(digits: &str, negative: bool) -> String {
    let sign = if negative { "-" } else { "" };
    match digits.parse::<f64>() {
        Ok(v) if v.fract() == 0.0 && v < 1e15 => {
            // Integral: print without a fraction (and without leading zeros); `-0` is `0`.
            let n = v as i64;
            if n == 0 {
                "0".to_string()
            } else {
                format!("{sign}{n}")
            }
        }
        Ok(v) => format!("{sign}{v}"),
        Err(_) => format!("{sign}{digits}"),
    }
}

/// Which labels a dataset has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Labels {
    /// `max_choices` = number of classes; the answer is `str(class index)` or its remap token.
    Classes(&'static [&'static str]),
    /// Generation task (`max_choices = "free"`).
    Free,
}

impl Labels {
    pub fn count(self) -> Option<usize> {
        match self {
            Labels::Classes(c) => Some(c.len()),
            Labels::Free => None,
        }
    }
}

/// Whether a pool row passes into the pool, and label mapping applied to a pool (HF `filter`/`map`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowFilter {
    None,
    /// Keep only rows whose label is one of these (original label ids).
    KeepLabels(&'static [i64]),
}

/// How `train_examples` and `val_examples` are drawn from the source splits (all shuffles use seed 42,
/// `Generator(42).permutation(len)`; `idx` = position in the shuffled pool).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolPlan {
    /// train = shuffle(train split)[:N], val = shuffle(val split)[:M].
    TrainVal { train: Split, val: Split },
    /// Evaluation-only dataset (the seed's `val_only=True`): no train examples;
    /// val = shuffle(filter(split))[:M] (filter before shuffle).
    EvalOnly { val: Split, filter: RowFilter },
    /// finsen: shuffle(split), then filter (after the shuffle), then the last M rows are val and the first
    /// N of the rest are train (no reshuffle).
    ShuffleFilterTail { split: Split, filter: RowFilter },
    /// strategytf: shuffle(split); the last M rows are val, the rest train; each part reshuffled with seed 42.
    ShuffleTailReshuffle { split: Split },
    /// gsm8ks (fixes the seed, which used the same split for train and val so that every val example was also
    /// a train example): val = shuffle(split)[:M] (identical to the seed's val), train = the next N rows of
    /// the same shuffle (disjoint from val).
    ShuffleHeadVal { split: Split },
}

impl PoolPlan {
    /// The splits this plan reads, each once.
    pub fn splits(self) -> Vec<Split> {
        match self {
            PoolPlan::TrainVal { train, val } => vec![train, val],
            PoolPlan::EvalOnly { val, .. } => vec![val],
            PoolPlan::ShuffleFilterTail { split, .. }
            | PoolPlan::ShuffleTailReshuffle { split }
            | PoolPlan::ShuffleHeadVal { split } => vec![split],
        }
    }
}

/// Everything the pipeline knows about one dataset.
#[derive(Debug, Clone)]
pub struct DatasetSpec {
    pub id: DatasetId,
    /// CLI / directory name (for hmath: `hmath` plus the subset, see [`DatasetId::name`]).
    pub name: &'static str,
    pub hf_id: &'static str,
    pub hf_config: Option<&'static str>,
    pub source: SourceKind,
    pub template: Template,
    pub labels: Labels,
    /// Whether labels are written as remap tokens (`--label_template remap` in the seed).
    pub remap: bool,
    pub parser: AnswerParser,
    pub pools: PoolPlan,
    /// Label id mapping applied after reading (source HF id → dataset label); ids not listed are kept.
    pub label_map: &'static [(i64, i64)],
    /// Cut the text to its first N characters minus the last (partial) word (bbcnews: 256).
    pub text_cut: Option<usize>,
    /// Whether answer-length statistics are part of the metadata (the seed writes them for generation tasks).
    pub answer_stats: bool,
    /// One line for `ia2 data show` / docs.
    pub description: &'static str,
}

const BINARY: &[&str] = &["negative", "positive"];
const AGNEWS: &[&str] = &["World", "Sports", "Business", "Sci/Tech"];
const TF: &[&str] = &["false", "true"];
const MCQ4: &[&str] = &["option 0", "option 1", "option 2", "option 3"];
const MCQ8: &[&str] = &[
    "option 0", "option 1", "option 2", "option 3", "option 4", "option 5", "option 6", "option 7",
];

fn spec_of(id: DatasetId) -> DatasetSpec {
    use DatasetId as D;
    let cls = |name, hf_id, hf_config, source, labels, pools, description| DatasetSpec {
        id,
        name,
        hf_id,
        hf_config,
        source,
        template: Template::TextLabel,
        labels: Labels::Classes(labels),
        remap: false,
        parser: AnswerParser::Label,
        pools,
        label_map: &[],
        text_cut: None,
        answer_stats: false,
        description,
    };
    let tv = |train, val| PoolPlan::TrainVal { train, val };
    match id {
        D::Sst2 => cls(
            "sst2",
            "stanfordnlp/sst2",
            None,
            SourceKind::Sst2,
            BINARY,
            tv(Split::Train, Split::Validation),
            "SST-2 sentiment (0 negative, 1 positive)",
        ),
        D::Agnews => cls(
            "agnews",
            "fancyzhx/ag_news",
            None,
            SourceKind::AgNews,
            AGNEWS,
            tv(Split::Train, Split::Test),
            "AG News topics (0 World, 1 Sports, 2 Business, 3 Sci/Tech)",
        ),
        D::Bbcnews => DatasetSpec {
            // SetFit ids (0 tech, 1 business, 2 sport, 3 entertainment, 4 politics) onto AG News ids.
            label_map: &[(3, 0), (4, 0), (2, 1), (1, 2), (0, 3)],
            text_cut: Some(256),
            ..cls(
                "bbcnews",
                "SetFit/bbc-news",
                None,
                SourceKind::BbcNews,
                AGNEWS,
                PoolPlan::EvalOnly {
                    val: Split::Test,
                    filter: RowFilter::None,
                },
                "BBC News mapped onto AG News ids (eval only; text cut to 256 chars minus the last partial word)",
            )
        },
        D::Finsen => DatasetSpec {
            label_map: &[(2, 1)],
            ..cls(
                "finsen",
                "takala/financial_phrasebank",
                Some("sentences_50agree"),
                SourceKind::FinancialPhrasebank,
                BINARY,
                PoolPlan::ShuffleFilterTail {
                    split: Split::Train,
                    filter: RowFilter::KeepLabels(&[0, 2]),
                },
                "Financial PhraseBank 50% agreement, negative/positive only (0 negative, 1 positive)",
            )
        },
        D::Poems => cls(
            "poems",
            "google-research-datasets/poem_sentiment",
            None,
            SourceKind::PoemSentiment,
            BINARY,
            PoolPlan::EvalOnly {
                val: Split::Train,
                filter: RowFilter::KeepLabels(&[0, 1]),
            },
            "Poem sentiment, negative/positive only (eval only; the seed evaluates on the train split)",
        ),
        D::Strategytf => DatasetSpec {
            template: Template::QuestionAnswer,
            ..cls(
                "strategytf",
                "wics/strategy-qa",
                None,
                SourceKind::StrategyQa,
                TF,
                PoolPlan::ShuffleTailReshuffle { split: Split::Test },
                "StrategyQA true/false questions (0 false, 1 true)",
            )
        },
        D::Gsm8k | D::Gsm8ks | D::Sciqa | D::Hmath(_) => {
            let (name, hf_id, hf_config, source, parser, pools, description) = match id {
                D::Gsm8k => (
                    "gsm8k",
                    "openai/gsm8k",
                    Some("main"),
                    SourceKind::Gsm8k,
                    AnswerParser::Gsm,
                    tv(Split::Train, Split::Test),
                    "GSM8K grade-school math, worked answers ending in `#### N`",
                ),
                D::Gsm8ks => (
                    "gsm8ks",
                    "apple/GSM-Symbolic",
                    Some("main"),
                    SourceKind::GsmSymbolic,
                    AnswerParser::Gsm,
                    PoolPlan::ShuffleHeadVal { split: Split::Test },
                    "GSM-Symbolic (val as the seed; train = disjoint rows of the same split)",
                ),
                D::Sciqa => (
                    "sciqa",
                    "allenai/sciq",
                    None,
                    SourceKind::Sciq,
                    AnswerParser::HashTail,
                    tv(Split::Train, Split::Validation),
                    "SciQ free-form: answer = `{support}\\n#### {correct_answer}`",
                ),
                D::Hmath(s) => (
                    "hmath",
                    "EleutherAI/hendrycks_math",
                    Some(s.config()),
                    SourceKind::HendrycksMath(s),
                    AnswerParser::Boxed,
                    tv(Split::Train, Split::Test),
                    "Hendrycks MATH, LaTeX solutions with \\boxed{}",
                ),
                _ => unreachable!(),
            };
            DatasetSpec {
                id,
                name,
                hf_id,
                hf_config,
                source,
                template: Template::QuestionAnswer,
                labels: Labels::Free,
                remap: false,
                parser,
                pools,
                label_map: &[],
                text_cut: None,
                answer_stats: true,
                description,
            }
        }
        D::SciqRemap | D::QascRemap => {
            let (name, hf_id, source, labels, description) = if id == D::SciqRemap {
                (
                    "sciq_remap",
                    "allenai/sciq",
                    SourceKind::Sciq,
                    MCQ4,
                    "SciQ 4-way multiple choice with remapped option tokens (options shuffled by legacy numpy seed 42)",
                )
            } else {
                (
                    "qasc_remap",
                    "allenai/qasc",
                    SourceKind::Qasc,
                    MCQ8,
                    "QASC 8-way multiple choice with remapped option tokens",
                )
            };
            DatasetSpec {
                id,
                name,
                hf_id,
                hf_config: None,
                source,
                template: Template::MultipleChoice,
                labels: Labels::Classes(labels),
                remap: true,
                parser: AnswerParser::Label,
                pools: tv(Split::Train, Split::Validation),
                label_map: &[],
                text_cut: None,
                answer_stats: false,
                description,
            }
        }
    }
}

impl DatasetSpec {
    /// `max_choices` as the seed writes it: the label count, or `"free"`.
    pub fn max_choices_json(&self) -> serde_json::Value {
        match self.labels.count() {
            Some(n) => serde_json::json!(n),
            None => serde_json::json!("free"),
        }
    }

    /// The remap table (label index → token) when the dataset uses remapped labels.
    pub fn remap_table(&self) -> Option<Vec<&'static str>> {
        if !self.remap {
            return None;
        }
        let n = self.labels.count()?;
        Some(remap_tokens(n, &mut ia2_rng::RandomState::new(SEED as u32)))
    }
}

/// The seed's remap table construction: for each label in order, draw `np.random.choice(vocab)` until an
/// unused token comes up. Draws from `rng` (the seed reseeds the global legacy RNG with 42 first), which is
/// left advanced: sciq_remap's option shuffles continue on the same stream.
pub fn remap_tokens(n: usize, rng: &mut ia2_rng::RandomState) -> Vec<&'static str> {
    assert!(
        n <= REMAP_VOCAB.len(),
        "at most {} remap labels",
        REMAP_VOCAB.len()
    );
    let mut out: Vec<&'static str> = Vec::with_capacity(n);
    for _ in 0..n {
        loop {
            let tok = REMAP_VOCAB[rng.randint(0, REMAP_VOCAB.len() as i64) as usize];
            if !out.contains(&tok) {
                out.push(tok);
                break;
            }
        }
    }
    out
}
