//! `ia2 data ...` commands: each variant is a thin call into one stage module.

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Prepare `data/<name>/main.json` from a raw source.
    Prepare(crate::prepare::PrepareArgs),
    /// Show counts, label balance, rendered prompts and token lengths of a prepared dataset.
    Show(crate::show::ShowArgs),
    /// Build training sets with ICL demos: `data/<name>/train/{N}_{run}.json`.
    TrainSets(crate::train_sets::TrainSetsArgs),
    /// Build evaluation demo sets: `data/<eval>/val/<icl_source>/...`.
    EvalDemos(crate::eval_demos::EvalDemosArgs),
    /// Build low-data-regime (LDR) training sets: `data/<name>-ldr/train/{N}_{M}_{K}_{run}.json`.
    Ldr(crate::ldr::LdrArgs),
}

pub fn run(cmd: DataCommand) -> anyhow::Result<()> {
    match cmd {
        DataCommand::Prepare(a) => crate::prepare::run(a),
        DataCommand::Show(a) => crate::show::run(a),
        DataCommand::TrainSets(a) => crate::train_sets::run(a),
        DataCommand::EvalDemos(a) => crate::eval_demos::run(a),
        DataCommand::Ldr(a) => crate::ldr::run(a),
    }
}
