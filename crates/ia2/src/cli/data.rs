//! `ia2 data ...`: the flags of each stage, parsed into the stage's configuration in `ia2_data` and passed to
//! its `run`.

use clap::Subcommand;
use ia2_data::eval_demos::EvalDemoSetsConfig;
use ia2_data::ldr::LdrConfig;
use ia2_data::prepare::PrepareConfig;
use ia2_data::show::ShowConfig;
use ia2_data::train_sets::TrainSetsConfig;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Prepare `data/<name>/main.json` from a raw source.
    Prepare(PrepareCli),
    /// Show counts, label balance, rendered prompts and token lengths of a prepared dataset.
    Show(ShowCli),
    /// Build training sets with ICL demos: `data/<name>/train/{N}_{run}.json`.
    TrainSets(TrainSetsCli),
    /// Build evaluation demo sets: `data/<eval>/val/<icl_source>/...`.
    EvalDemos(EvalDemosCli),
    /// Build low-data-regime (LDR) training sets: `data/<name>-ldr/train/{N}_{M}_{K}_{run}.json`.
    Ldr(LdrCli),
}

pub fn run(cmd: DataCommand) -> anyhow::Result<()> {
    use super::to_config;
    match cmd {
        DataCommand::Prepare(a) => ia2_data::prepare::run(to_config::<_, PrepareConfig>(&a)?),
        DataCommand::Show(a) => ia2_data::show::run(to_config::<_, ShowConfig>(&a)?),
        DataCommand::TrainSets(a) => {
            ia2_data::train_sets::run(to_config::<_, TrainSetsConfig>(&a)?)
        }
        DataCommand::EvalDemos(a) => {
            ia2_data::eval_demos::run(to_config::<_, EvalDemoSetsConfig>(&a)?)
        }
        DataCommand::Ldr(a) => ia2_data::ldr::run(to_config::<_, LdrConfig>(&a)?),
    }
}

/// `ia2 data prepare` flags ([`PrepareConfig`]).
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct PrepareCli {
    /// Dataset name (sst2, agnews, bbcnews, finsen, poems, strategytf, gsm8k, gsm8ks, sciqa, hmath_<subset>,
    /// sciq_remap, qasc_remap).
    #[arg(long)]
    pub dataset: String,
    /// Raw source: a file, a directory of raw or parquet files, or a Hugging Face cache (`$HF_HOME`,
    /// `.../hub`, or `.../hub/datasets--org--name`). Defaults to `$HF_HOME` (or ~/.cache/huggingface).
    #[arg(long)]
    pub source: Option<PathBuf>,
    /// Output root: writes `<data-dir>/<name>/main.json`.
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// `tokenizer.json` used for the token-length statistics (omitted from the metadata when not given).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    #[arg(long, default_value_t = 2000)]
    pub num_train_samples: usize,
    #[arg(long, default_value_t = 500)]
    pub num_val_samples: usize,
    /// Shuffle seed (the seed system always used 42).
    #[arg(long, default_value_t = 42)]
    pub seed: u32,
    /// Overwrite an existing main.json.
    #[arg(long)]
    pub force: bool,
}

/// `ia2 data show` flags ([`ShowConfig`]).
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct ShowCli {
    /// Dataset name (as given to `ia2 data prepare`).
    #[arg(long)]
    pub dataset: String,
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// `tokenizer.json` for token lengths.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Number of example prompts to render.
    #[arg(short = 'n', long = "num-examples", default_value_t = 3)]
    pub n: usize,
    /// Number of ICL demos in the "with demos" prompts (taken from train_examples, else val_examples, never
    /// the query itself).
    #[arg(long, default_value_t = 3)]
    pub num_demos: usize,
}

/// `ia2 data train-sets` flags ([`TrainSetsConfig`]).
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct TrainSetsCli {
    /// Dataset name: reads `<data-dir>/<dataset>/main.json`.
    #[arg(long)]
    pub dataset: String,
    /// Training-set sizes N (one file per N and run).
    #[arg(long, num_args = 1.., required = true)]
    pub num_train_examples: Vec<usize>,
    /// Number of runs; run r uses seed r.
    #[arg(long, default_value_t = 5)]
    pub num_runs: u32,
    /// Cap on demos per example (also capped at N-1).
    #[arg(long, default_value_t = 48)]
    pub max_icl_demos: usize,
    /// Cap on dev examples (also capped at N/2).
    #[arg(long, default_value_t = 48)]
    pub num_dev_examples: usize,
    /// Name files `shuffled_{K}_{N}_{run}.json` (demos are re-shuffled K times at training time).
    #[arg(long)]
    pub shuffle_demos: bool,
    /// K for `--shuffle-demos`.
    #[arg(long, default_value_t = 5)]
    pub num_shuffles: usize,
    /// One shared demo list drawn from the remaining pool; files go to `train_fixed/`.
    #[arg(long)]
    pub fixed_demos: bool,
    /// Root data directory.
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// Rebuild files that already exist.
    #[arg(long)]
    pub force: bool,
}

/// `ia2 data eval-demos` flags ([`EvalDemoSetsConfig`]).
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct EvalDemosCli {
    /// Evaluation dataset: its `val_examples` are the queries.
    #[arg(long)]
    pub eval_dataset: String,
    /// Dataset whose held-out training pool supplies the demos.
    #[arg(long)]
    pub icl_source: String,
    /// Training-set sizes N whose `train/{N}_{run}.json` define the held-out pool.
    #[arg(long, num_args = 1.., required = true)]
    pub num_train_examples: Vec<usize>,
    /// Number of runs; run r uses seed r and `train/{N}_{r}.json`.
    #[arg(long, default_value_t = 5)]
    pub num_runs: u32,
    /// Requested demo counts (one file per count).
    #[arg(long, num_args = 1.., default_values_t = [48])]
    pub icl_max_demos: Vec<usize>,
    /// Do not cap the demo count at N-1.
    #[arg(long)]
    pub no_n_cap: bool,
    /// Root data directory.
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// Rebuild files that already exist.
    #[arg(long)]
    pub force: bool,
}

/// `ia2 data ldr` flags ([`LdrConfig`]).
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct LdrCli {
    /// Dataset name: reads `<data-dir>/<dataset>/main.json`, writes `<data-dir>/<dataset>-ldr/train/`.
    #[arg(long)]
    pub dataset: String,
    /// N: labelled demos.
    #[arg(long = "num-labelled", num_args = 1.., required = true)]
    pub num_labelled: Vec<usize>,
    /// M: unlabelled training queries.
    #[arg(long = "num-unlabelled", num_args = 1.., required = true)]
    pub num_unlabelled: Vec<usize>,
    /// K: maximum number of distinct demo orders.
    #[arg(long = "max-permutations", num_args = 1.., default_values_t = [24])]
    pub max_permutations: Vec<usize>,
    /// Number of runs; run r uses seed r.
    #[arg(long, default_value_t = 5)]
    pub num_runs: u32,
    /// Cap on dev queries (also capped at M/2).
    #[arg(long, default_value_t = 48)]
    pub num_dev_examples: usize,
    /// Root data directory.
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// Rebuild files that already exist.
    #[arg(long)]
    pub force: bool,
}

#[cfg(test)]
mod tests {
    use super::super::{assert_defaults_match_with, to_config};
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: DataCommand,
    }

    /// No optional flag given ⇒ the library's `Default` (with the required flags' values).
    #[test]
    fn defaults_are_the_library_defaults() {
        assert_defaults_match_with::<PrepareCli, _>(
            &["--dataset", "sst2"],
            PrepareConfig {
                dataset: "sst2".into(),
                ..Default::default()
            },
        );
        assert_defaults_match_with::<ShowCli, _>(
            &["--dataset", "sst2"],
            ShowConfig {
                dataset: "sst2".into(),
                ..Default::default()
            },
        );
        assert_defaults_match_with::<TrainSetsCli, _>(
            &["--dataset", "sst2", "--num-train-examples", "4"],
            TrainSetsConfig::new("sst2", "data", vec![4]),
        );
        assert_defaults_match_with::<EvalDemosCli, _>(
            &[
                "--eval-dataset",
                "a",
                "--icl-source",
                "b",
                "--num-train-examples",
                "4",
            ],
            EvalDemoSetsConfig {
                eval_dataset: "a".into(),
                icl_source: "b".into(),
                num_train_examples: vec![4],
                ..Default::default()
            },
        );
        assert_defaults_match_with::<LdrCli, _>(
            &[
                "--dataset",
                "a",
                "--num-labelled",
                "8",
                "--num-unlabelled",
                "100",
            ],
            LdrConfig {
                dataset: "a".into(),
                num_labelled: vec![8],
                num_unlabelled: vec![100],
                ..Default::default()
            },
        );
    }

    /// The flags parse as documented.
    #[test]
    fn cli_flags_parse() {
        let cli = Cli::try_parse_from([
            "data",
            "train-sets",
            "--dataset",
            "sst2",
            "--num-train-examples",
            "2",
            "4",
            "8",
            "--num-runs",
            "5",
            "--max-icl-demos",
            "256",
            "--num-dev-examples",
            "48",
            "--shuffle-demos",
            "--num-shuffles",
            "3",
            "--force",
        ])
        .unwrap();
        let DataCommand::TrainSets(a) = cli.cmd else {
            panic!("train-sets")
        };
        let a: TrainSetsConfig = to_config(&a).unwrap();
        let expected = TrainSetsConfig {
            max_icl_demos: 256,
            shuffle_demos: true,
            num_shuffles: 3,
            force: true,
            ..TrainSetsConfig::new("sst2", "data", vec![2, 4, 8])
        };
        assert_eq!(a, expected);
        let cli = Cli::try_parse_from([
            "data",
            "eval-demos",
            "--eval-dataset",
            "sst2",
            "--icl-source",
            "finsen",
            "--num-train-examples",
            "16",
            "--icl-max-demos",
            "4",
            "48",
            "--no-n-cap",
        ])
        .unwrap();
        let DataCommand::EvalDemos(a) = cli.cmd else {
            panic!("eval-demos")
        };
        let a: EvalDemoSetsConfig = to_config(&a).unwrap();
        assert_eq!(
            (a.icl_max_demos, a.no_n_cap, a.num_runs),
            (vec![4, 48], true, 5)
        );
        let cli = Cli::try_parse_from([
            "data",
            "ldr",
            "--dataset",
            "sst2",
            "--num-labelled",
            "8",
            "--num-unlabelled",
            "1000",
            "--max-permutations",
            "24",
        ])
        .unwrap();
        let DataCommand::Ldr(a) = cli.cmd else {
            panic!("ldr")
        };
        let a: LdrConfig = to_config(&a).unwrap();
        assert_eq!(
            (a.num_labelled, a.num_unlabelled, a.max_permutations),
            (vec![8], vec![1000], vec![24])
        );
        let cli = Cli::try_parse_from(["data", "show", "--dataset", "x", "-n", "5"]).unwrap();
        let DataCommand::Show(a) = cli.cmd else {
            panic!("show")
        };
        assert_eq!(to_config::<_, ShowConfig>(&a).unwrap().n, 5);
        assert!(
            Cli::try_parse_from(["data", "train-sets", "--dataset", "sst2"]).is_err(),
            "N is required"
        );
    }
}
