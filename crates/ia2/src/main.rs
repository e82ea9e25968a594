//! `ia2`: ICL Activation Alignment research toolkit.

mod activations;
mod analyze;
mod bench;
mod cli;
mod demo;
mod eval;
mod generate;
mod prompts;
mod report;
mod sweep;
mod toy;

use clap::{Parser, Subcommand};

// mimalloc reuses the large activation buffers of a training step or a decoding step; glibc's malloc
// returns them to the kernel and page-faults them back in, ~10 % of a step (measured with `ia2 bench`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (the same index in its v2 and v3 headers).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Freed memory stays committed for a second before mimalloc hands it back to the kernel (its default is
/// 10 ms). A training or evaluation step frees and reallocates the same activation buffers many times a
/// second; with the default each reallocation page-faulted them in and the kernel zeroed them again
/// (`clear_page`: about a tenth of a 0.6B act run's time, and more than half of its system time). Peak
/// memory is that of the live buffers either way (a 0.6B act run: +2 % RSS). `MIMALLOC_PURGE_DELAY`
/// in the environment still decides when set.
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: called once at the start of `main`, before any other thread exists (mimalloc's options
        // are not thread safe); the option index is a valid `mi_option_t`.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 1000) };
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "ia2",
    version,
    about = "ICL Activation Alignment (IA2): data, models, adapters, generation and inspection",
    long_about = "ICL Activation Alignment (IA2): train small adapters on a frozen causal LM so that, without \
demos in the prompt, its self-attention outputs imitate those it produces with in-context demos.\n\n\
Models: a local Hugging Face directory (--model DIR), a hub id from the Hugging Face cache \
(--model-id Qwen/Qwen3-4B-Base), or a built-in tiny random model (builtin:tiny-qwen3) for smoke tests.\n\
Logging: RUST_LOG=debug|info|warn (default info)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The paper in miniature on the project's tiny in-context learner (pretrained once, cached): a sweep plan
    /// (`<dir>/plan.toml`: held-out tasks, N, tok / act / a2t / tna LoRA, runs, learning rates), both analyses
    /// and the HTML report; prints the main table and where report.html is.
    Demo(Box<demo::DemoArgs>),
    /// Datasets (the 12 benchmarks): prepare them, build training sets with ICL demos and evaluation demo sets.
    #[command(subcommand)]
    Data(cli::data::DataCommand),
    /// Greedy generation (batched, KV cache, EOS and stop strings), optionally with a PEFT adapter.
    Generate(generate::GenerateArgs),
    /// Write logits and per-layer self-attention outputs of prompts or token ids to a safetensors file.
    Activations(activations::ActivationsArgs),
    /// Evaluate the base model and trained adapters with and without ICL demos (accuracy, uncertainty, agreement).
    Eval(Box<cli::eval::EvalCli>),
    /// Benchmarks: the training step and KV-cache decoding (model), teacher collection and epochs (train).
    Bench(Box<bench::BenchCommand>),
    /// Train adapters: `[ia3-|prompt-|prefix-]{tok,tokl,act,tna,a2t,t2a}` (teacher targets collected once, cached).
    Train(Box<cli::train::TrainCli>),
    /// Collect and cache the teacher targets (ICL responses, activations, distributions) without training.
    Teacher(Box<cli::train::TrainCli>),
    /// Grids of trainings and evaluations as one resumable plan (DAG + ledger), locally or on Slurm.
    Sweep(Box<sweep::SweepArgs>),
    /// The project's own tiny in-context learner: pretrain (or reuse) it, write held-out toy task datasets.
    #[command(subcommand)]
    Toy(toy::ToyCommand),
    /// Mechanistic analyses of trained adapters: LoRA subspace overlap, activation similarity (and vs performance).
    #[command(subcommand)]
    Analyze(analyze::AnalyzeCommand),
    /// Aggregated results (hp selection, mean/std/CI, paired tests vs SFT), plots, CSV/Markdown/LaTeX tables and one HTML report; `reparse` re-applies answer parsers.
    Report(Box<report::ReportArgs>),
}

fn main() {
    tune_allocator();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // tiny_skia warns for every path it cannot stroke while plots are rasterised to PNG (dozens
                // per report); the SVG and PDF are unaffected. RUST_LOG=info,tiny_skia=warn shows them.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tiny_skia=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    // The command runs on a worker of the thread pool that the kernels split their work over, so the
    // calling thread takes part in every parallel op instead of sleeping and waking once per op
    // (~15 % of a decoding step on 2 cores; RAYON_NUM_THREADS sets the size as usual).
    let result = rayon::ThreadPoolBuilder::new()
        .stack_size(16 << 20)
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|pool| pool.install(|| run(cli)));
    if let Err(err) = result {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Data(cmd) => cli::data::run(cmd),
        Command::Generate(args) => generate::run(args),
        Command::Activations(args) => activations::run(args),
        Command::Train(args) => ia2_train::run(&args.config()?).map(|_| ()),
        Command::Teacher(args) => ia2_train::precompute_teacher(&args.config()?).map(|_| ()),
        Command::Eval(args) => eval::run(args.config()?),
        Command::Bench(args) => bench::run(&args),
        Command::Toy(cmd) => toy::run(cmd),
        Command::Sweep(args) => sweep::run(*args),
        Command::Demo(args) => demo::run(&args),
        Command::Analyze(cmd) => analyze::run(cmd),
        Command::Report(args) => report::run(*args),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap's own consistency checks (unique names and ids across flattened option groups, ...), which would
    /// otherwise panic at run time.
    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
