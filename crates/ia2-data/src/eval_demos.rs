//! Placeholder: `ia2 data` stage, to be implemented.

#[derive(Debug, clap::Args)]
pub struct EvalDemosArgs {}

pub fn run(_args: EvalDemosArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
