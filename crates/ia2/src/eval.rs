//! `ia2 eval`: a thin call into `ia2_eval::run` (selection, both modes per example, metrics, result files).

use anyhow::Result;

pub fn run(args: ia2_eval::EvalConfig) -> Result<()> {
    let summary = ia2_eval::run(&args)?;
    println!("{summary}");
    Ok(())
}
