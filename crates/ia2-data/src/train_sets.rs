//! Placeholder: `ia2 data` stage, to be implemented.

#[derive(Debug, clap::Args)]
pub struct TrainSetsArgs {}

pub fn run(_args: TrainSetsArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
