//! `ia2 analyze ...`: LoRA subspace overlap and activation similarity (see the `ia2-analyze` crate).

use anyhow::Result;
use ia2_analyze::select::{HpSelection, SelectionConfig};
use ia2_analyze::similarity::{ModelSpec, SimilarityConfig, Variant};
use ia2_analyze::{RankTolerance, SubspaceConfig};
use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub enum AnalyzeCommand {
    /// LoRA subspace overlap ‖U1ᵀU2‖²_F / r of col(lora_B) between tok, act, tna and a2t (six pairs), per
    /// layer and projection, per run, per N; writes subspace.json and the figures.
    Subspace(SubspaceArgs),
    /// Activation similarity of each adapter without demos to the base model with the run's ICL demos
    /// (free-running and teacher-forced, plus a base-without-demos row); joined with each run's accuracy and
    /// ECE (similarity vs performance); writes similarity.json, similarity_vs_performance.csv and the figures.
    Similarity(Box<SimilarityArgs>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HpArg {
    /// argmin of the mean best dev loss over runs (default).
    DevLoss,
    /// argmax of the mean without-ICL accuracy: selects on the evaluation set.
    Performance,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VariantArg {
    FreeRunning,
    TeacherForced,
}

#[derive(Debug, clap::Args)]
pub struct SelectionArgs {
    /// Training outputs root (`{method}/{dataset}/{run}/` run directories, `evaluations/`).
    #[arg(long, default_value = "outputs")]
    pub outputs_dir: PathBuf,
    /// Methods (directory names under the outputs root).
    #[arg(long, num_args = 1.., default_values_t = ["tok".to_string(), "act".into(), "tna".into(), "a2t".into()])]
    pub methods: Vec<String>,
    /// Trained datasets (default: all found).
    #[arg(long, num_args = 1..)]
    pub trained_datasets: Vec<String>,
    /// Ns (default: all found).
    #[arg(long, num_args = 1..)]
    pub num_train_examples: Vec<usize>,
    /// Only runs of this base model name (`model_name` in training_config.json).
    #[arg(long)]
    pub model_name: Option<String>,
    /// Label type of tok / a2t runs.
    #[arg(long, default_value = "icl_outputs")]
    pub label_type: String,
    /// Hyper-parameter selection.
    #[arg(long, value_enum, default_value_t = HpArg::DevLoss)]
    pub hp_selection: HpArg,
    /// Output directory (default: <outputs-dir>/analysis).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Skip the figures (JSON / CSV only).
    #[arg(long)]
    pub no_plots: bool,
}

impl SelectionArgs {
    fn config(&self) -> SelectionConfig {
        SelectionConfig {
            outputs: self.outputs_dir.clone(),
            methods: self.methods.clone(),
            trained_datasets: self.trained_datasets.clone(),
            num_train_examples: self.num_train_examples.clone(),
            model_name: self.model_name.clone(),
            label_type: self.label_type.clone(),
            hp_selection: match self.hp_selection {
                HpArg::DevLoss => HpSelection::DevLoss,
                HpArg::Performance => HpSelection::Performance,
            },
        }
    }

    fn out(&self) -> PathBuf {
        self.out
            .clone()
            .unwrap_or_else(|| self.outputs_dir.join("analysis"))
    }
}

#[derive(Debug, clap::Args)]
pub struct SubspaceArgs {
    #[command(flatten)]
    pub selection: SelectionArgs,
    /// A singular value counts towards the effective rank above this fraction of the largest.
    #[arg(long, default_value_t = 1e-6)]
    pub relative_tolerance: f64,
    /// A lora_B whose largest singular value is at most this is treated as zero.
    #[arg(long, default_value_t = 1e-10)]
    pub absolute_tolerance: f64,
}

#[derive(Debug, clap::Args)]
pub struct SimilarityArgs {
    #[command(flatten)]
    pub selection: SelectionArgs,
    #[command(flatten)]
    pub model: crate::cli::model::ModelCli,
    /// Data directory (datasets, training files, evaluation demo sets).
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// Evaluation dataset (default: each key's trained dataset).
    #[arg(long)]
    pub eval_dataset: Option<String>,
    /// Demo count asked for (capped at N - 1 and the pool, as `ia2 eval`).
    #[arg(long, alias = "icl_max_demos", default_value_t = 256)]
    pub icl_max_demos: usize,
    /// M: the first M evaluation examples.
    #[arg(long, default_value_t = 100)]
    pub num_examples: usize,
    /// T: response steps compared (default: each key's training T).
    #[arg(long)]
    pub num_generated_tokens: Option<usize>,
    /// Variants (default: both).
    #[arg(long, value_enum, num_args = 1..)]
    pub variants: Vec<VariantArg>,
    /// Leave out the base-without-demos reference row.
    #[arg(long)]
    pub no_reference_row: bool,
    /// Sequences per decoding batch.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Recompute everything instead of reusing cached results.
    #[arg(long)]
    pub no_cache: bool,
    /// Cache directory (default: <out>/cache).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
}

pub fn run(cmd: AnalyzeCommand) -> Result<()> {
    match cmd {
        AnalyzeCommand::Subspace(a) => {
            let cfg = SubspaceConfig {
                selection: a.selection.config(),
                tolerance: RankTolerance {
                    relative: a.relative_tolerance,
                    absolute: a.absolute_tolerance,
                },
                out_dir: a.selection.out(),
                plots: !a.selection.no_plots,
            };
            let report = ia2_analyze::subspace::run(&cfg)?;
            for g in &report.groups {
                for p in &g.pairs {
                    if let Some(m) = p.overall {
                        println!(
                            "{} N={:<4} {:<28} {:.4} ± {:.4} ({} runs, {} sites excluded)",
                            g.key, g.n, p.label, m.mean, m.std, m.count, p.excluded_sites
                        );
                    }
                }
            }
            for m in &report.messages {
                eprintln!("{m}");
            }
            if report.flagged_sites > 0 {
                eprintln!(
                    "{} near-zero or rank-deficient lora_B matrices were excluded from the means (see subspace.json)",
                    report.flagged_sites
                );
            }
            println!("wrote {}", cfg.out_dir.join("subspace.json").display());
        }
        AnalyzeCommand::Similarity(a) => {
            let m = &a.model;
            let cfg = SimilarityConfig {
                selection: a.selection.config(),
                model: ModelSpec {
                    model: m.model.clone(),
                    model_id: m.model_id.clone(),
                    revision: m.revision.clone(),
                    dtype: format!("{:?}", m.dtype).to_lowercase(),
                    device: m.device.clone(),
                },
                data_dir: a.data_dir.clone(),
                eval_dataset: a.eval_dataset.clone(),
                icl_max_demos: a.icl_max_demos,
                num_examples: a.num_examples,
                num_generated_tokens: a.num_generated_tokens,
                variants: if a.variants.is_empty() {
                    vec![Variant::FreeRunning, Variant::TeacherForced]
                } else {
                    a.variants
                        .iter()
                        .map(|v| match v {
                            VariantArg::FreeRunning => Variant::FreeRunning,
                            VariantArg::TeacherForced => Variant::TeacherForced,
                        })
                        .collect()
                },
                reference_row: !a.no_reference_row,
                batch_size: a.batch_size,
                reuse_cache: !a.no_cache,
                cache_dir: a.cache_dir.clone(),
                out_dir: a.selection.out(),
                plots: !a.selection.no_plots,
            };
            anyhow::ensure!(
                m.adapter.is_none(),
                "--adapter is not used by `ia2 analyze similarity`: the adapters are the selected runs"
            );
            let report = ia2_analyze::similarity::run(&cfg)?;
            for g in &report.groups {
                for (variant, methods) in &g.variants {
                    for (method, r) in methods {
                        if let Some(o) = r.aggregate.overall {
                            println!(
                                "{} N={:<4} {:<15} {:<16} {:.4} ± {:.4} ({} examples × runs)",
                                g.key, g.n, variant, method, o.mean, o.std, o.count
                            );
                        }
                    }
                }
            }
            if let Some(vs) = &report.vs_performance {
                for c in &vs.correlations {
                    println!(
                        "similarity vs performance ({}, {}): r(accuracy) = {} over {} points, r(ECE) = {} over {}",
                        c.group,
                        c.variant,
                        c.r_accuracy.map_or("n/a".into(), |r| format!("{r:.3}")),
                        c.points_accuracy,
                        c.r_ece.map_or("n/a".into(), |r| format!("{r:.3}")),
                        c.points_ece
                    );
                }
            }
            for m in &report.messages {
                eprintln!("{m}");
            }
            println!("wrote {}", cfg.out_dir.join("similarity.json").display());
        }
    }
    Ok(())
}
