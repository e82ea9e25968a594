//! Placeholder: `ia2 data` stage, to be implemented.

#[derive(Debug, clap::Args)]
pub struct LdrArgs {}

pub fn run(_args: LdrArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
