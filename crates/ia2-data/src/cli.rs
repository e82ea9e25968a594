//! `ia2 data ...` commands.

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum DataCommand {}

pub fn run(cmd: DataCommand) -> anyhow::Result<()> {
    match cmd {}
}
