//! Placeholder: `ia2 data` stage, to be implemented.

#[derive(Debug, clap::Args)]
pub struct ShowArgs {}

pub fn run(_args: ShowArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
