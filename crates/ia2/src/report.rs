//! `ia2 report`: the command line of ia2-report (aggregated results, plots, tables, HTML report) and
//! `ia2 report reparse`.

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use ia2_report::aggregate::AggregateConfig;
use ia2_report::plots::PlotConfig;
use ia2_report::{HpSelection, ReparseConfig, ReportConfig};
use std::path::PathBuf;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ReportArgs {
    #[command(subcommand)]
    pub command: Option<ReportCommand>,
    #[command(flatten)]
    pub build: BuildArgs,
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Re-apply each evaluation dataset's answer parser to the stored generations and recompute the metrics,
    /// recording what was re-parsed (evaluation_config.reparse) in each file.
    Reparse(ReparseArgs),
}

/// Aggregate every result under `<outputs>/evaluations/` into CSV / Markdown / LaTeX tables, plots
/// (SVG, PNG, PDF) and one self-contained HTML report.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The outputs directory of `ia2 train` / `ia2 eval`.
    #[arg(long, default_value = "outputs")]
    pub outputs_dir: PathBuf,
    /// Where to write the report (default `<outputs-dir>/report`).
    #[arg(long)]
    pub report_dir: Option<PathBuf>,
    /// Analysis outputs (`ia2 analyze`) to embed (default `<outputs-dir>/analysis`).
    #[arg(long)]
    pub analysis_dir: Option<PathBuf>,
    /// A sweep plan / summary JSON or a sweep directory to show (default: the newest JSON under
    /// `<outputs-dir>/sweep*`).
    #[arg(long)]
    pub sweep: Option<PathBuf>,
    /// Hyper-parameter selection per (key, N): `dev_loss` (lowest mean best_dev_loss over runs) or
    /// `performance` (highest mean without-ICL accuracy: selects on the evaluation set, labelled so).
    #[arg(long, default_value = "dev_loss")]
    pub hp_selection: HpSelection,
    /// Bootstrap resamples for the 95 % intervals over runs (0: none).
    #[arg(long, default_value_t = 2000)]
    pub bootstrap: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// PNG resolution (dots per inch).
    #[arg(long, default_value_t = 300.0)]
    pub dpi: f32,
    /// Do not write PNG files.
    #[arg(long)]
    pub no_png: bool,
    /// Do not write PDF files.
    #[arg(long)]
    pub no_pdf: bool,
    /// Report title.
    #[arg(long, default_value = "ia2 report")]
    pub title: String,
}

#[derive(Debug, Args)]
pub struct ReparseArgs {
    /// The outputs directory (every result under `<outputs-dir>/evaluations/`).
    #[arg(long, default_value = "outputs")]
    pub outputs_dir: PathBuf,
    /// Only these result files.
    #[arg(long, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// The data directory (label sets from `data/<name>/main.json`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Write the re-parsed files here (same relative paths) instead of in place.
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// Show what would change without writing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(args: ReportArgs) -> Result<()> {
    match args.command {
        Some(ReportCommand::Reparse(a)) => reparse(a),
        None => build(args.build),
    }
}

fn build(a: BuildArgs) -> Result<()> {
    if a.dpi <= 0.0 || !a.dpi.is_finite() {
        bail!("--dpi must be positive, got {}", a.dpi);
    }
    let cfg = ReportConfig {
        outputs: a.outputs_dir,
        report_dir: a.report_dir,
        analysis_dir: a.analysis_dir,
        sweep: a.sweep,
        aggregate: AggregateConfig {
            selection: a.hp_selection,
            bootstrap_resamples: a.bootstrap,
            seed: a.seed,
        },
        plots: PlotConfig {
            png_dpi: a.dpi,
            png: !a.no_png,
            pdf: !a.no_pdf,
            ..PlotConfig::default()
        },
        no_plot_files: false,
        title: a.title,
    };
    let out = ia2_report::run(&cfg)?;
    println!(
        "{} aggregates, {} problems; {} plot files; {}",
        out.aggregates,
        out.problems,
        out.plots.len(),
        cfg.aggregate.selection.label()
    );
    println!("CSV:     {}", out.csv.display());
    println!("tables:  {}", out.markdown.display());
    println!("summary: {}", out.summary.display());
    println!("report:  {}", out.html.display());
    Ok(())
}

fn reparse(a: ReparseArgs) -> Result<()> {
    let cfg = ReparseConfig {
        outputs: a.outputs_dir,
        files: a.files,
        data_dir: a.data_dir,
        output_dir: a.output_dir,
        dry_run: a.dry_run,
    };
    let (done, failed) = ia2_report::reparse(&cfg)?;
    for r in &done {
        println!(
            "{} ({} parser): {} of {} records changed, {} metrics changed{}",
            r.path.display(),
            r.parser,
            r.changed_records,
            r.records,
            r.changed_metrics.len(),
            r.written_to
                .as_ref()
                .map_or(" (dry run)".to_string(), |p| format!(" → {}", p.display()))
        );
    }
    for (p, e) in &failed {
        eprintln!("FAILED {}: {e}", p.display());
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} files could not be re-parsed",
            failed.len(),
            failed.len() + done.len()
        );
    }
    Ok(())
}
