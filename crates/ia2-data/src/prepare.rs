//! Placeholder: `ia2 data` stage, to be implemented.

#[derive(Debug, clap::Args)]
pub struct PrepareArgs {}

pub fn run(_args: PrepareArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
