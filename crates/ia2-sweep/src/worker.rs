//! Workers: a process that claims ready jobs from the ledger and runs them in-process, keeping the base model
//! loaded between jobs ([`run_loop`]); or runs exactly one job (Slurm array tasks, [`run_single`]).

use crate::jobs::{self, Models};
use crate::ledger::{Ev, Ledger, Snapshot, Status};
use crate::plan::{Job, Plan};
use anyhow::{Context, Result, bail};
use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// What one worker did.
#[derive(Debug, Clone, Default)]
pub struct WorkerReport {
    pub done: usize,
    pub failed: usize,
    pub model_loads: usize,
}

/// Job readiness, derived from the plan and the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    Done,
    Running,
    /// All dependencies done, claimable.
    Ready,
    /// Waiting for dependencies that are not finished yet.
    Waiting,
    /// Failed with no attempts left.
    Failed,
    /// A dependency failed for good.
    Blocked,
}

/// Readiness of every job (in plan order).
pub fn readiness(plan: &Plan, snap: &Snapshot, max_attempts: u32) -> Vec<Readiness> {
    let mut out: Vec<Readiness> = Vec::with_capacity(plan.jobs.len());
    for job in &plan.jobs {
        let s = snap.state(&job.id);
        let deps: Vec<Readiness> = job
            .deps
            .iter()
            .filter_map(|d| plan.position(d).map(|i| out[i]))
            .collect();
        let r = match s.status {
            Status::Done => Readiness::Done,
            Status::Running => Readiness::Running,
            _ if deps
                .iter()
                .any(|d| matches!(d, Readiness::Failed | Readiness::Blocked)) =>
            {
                Readiness::Blocked
            }
            _ if s.failures >= max_attempts => Readiness::Failed,
            _ if deps.iter().all(|d| *d == Readiness::Done) => Readiness::Ready,
            _ => Readiness::Waiting,
        };
        out.push(r);
    }
    out
}

/// Checks the outputs of every job the ledger calls done; records `Invalidated` for those whose outputs are
/// gone or changed, and for every finished job that depends on one of them (they all run again), and
/// `Interrupted` for running jobs whose process is gone.
pub fn reconcile(plan: &Plan, ledger: &Ledger) -> Result<usize> {
    let snap = ledger.snapshot()?;
    let mut changed = 0;
    let mut invalid: HashSet<&str> = HashSet::new();
    for job in &plan.jobs {
        let s = snap.state(&job.id);
        match s.status {
            Status::Done => {
                let reason = match job.deps.iter().find(|d| invalid.contains(d.as_str())) {
                    Some(d) => Err(format!("its dependency {d} runs again")),
                    None => jobs::verify(job, &s.outputs, s.identity.as_deref()),
                };
                if let Err(reason) = reason {
                    warn!(job = %job.id, "finished job runs again: {reason}");
                    ledger.record(Some(&job.id), Ev::Invalidated { reason })?;
                    invalid.insert(&job.id);
                    changed += 1;
                }
            }
            Status::Running if ledger.reap(&job.id)? => changed += 1,
            _ => {}
        }
    }
    Ok(changed)
}

/// The stderr of this process when it is a regular file (a worker's log), with its current length.
fn stderr_log() -> Option<(std::path::PathBuf, u64)> {
    let p = std::fs::read_link("/proc/self/fd/2").ok()?;
    let m = std::fs::metadata(&p).ok()?;
    m.is_file().then_some((p, m.len()))
}

/// Runs one claimed attempt of `job` and records its outcome. Returns whether it succeeded.
fn attempt(
    job: &Job,
    attempt: u32,
    plan: &Plan,
    ledger: &Ledger,
    models: &mut Models,
    worker: &str,
) -> Result<bool> {
    let started = Instant::now();
    let log = stderr_log();
    info!(job = %job.id, attempt, "start");
    let snap = ledger.snapshot()?;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        jobs::execute(job, plan, &snap, models, ledger, worker)
    }));
    let secs = started.elapsed().as_secs_f64();
    let error = match result {
        Ok(Ok(produced)) => {
            info!(job = %job.id, secs, note = %produced.note, "done");
            ledger.record(
                Some(&job.id),
                Ev::Done {
                    secs,
                    outputs: produced.outputs,
                    identity: produced.identity,
                    note: produced.note,
                },
            )?;
            return Ok(true);
        }
        Ok(Err(e)) => format!("{e:#}"),
        Err(panic) => {
            models.clear();
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            format!("panic: {msg}")
        }
    };
    warn!(job = %job.id, attempt, "failed: {error}");
    let stderr_tail = log
        .map(|(p, from)| crate::ledger::tail_since(&p, from, 4096))
        .unwrap_or_default();
    ledger.record(
        Some(&job.id),
        Ev::Fail {
            attempt,
            secs,
            error,
            stderr_tail,
            host: crate::ledger::hostname(),
            pid: std::process::id(),
        },
    )?;
    Ok(false)
}

/// The worker loop: claim a ready job (model-free jobs and jobs of an already loaded model first), run it,
/// repeat; wait while other processes run jobs that may unblock more; return when nothing is left to do.
pub fn run_loop(dir: &Path, worker: &str) -> Result<WorkerReport> {
    let plan = Plan::read(dir)?;
    let ledger = Ledger::open(dir)?;
    let max_attempts = plan.config.execution.max_attempts;
    let mut models = Models::default();
    let mut report = WorkerReport::default();
    let mut skip: HashSet<String> = HashSet::new();
    loop {
        let snap = ledger.snapshot()?;
        let ready = readiness(&plan, &snap, max_attempts);
        let candidates: Vec<&Job> = plan
            .jobs
            .iter()
            .zip(&ready)
            .filter(|(j, r)| **r == Readiness::Ready && !skip.contains(&j.id))
            .map(|(j, _)| j)
            .collect();
        let mut claimed = None;
        for job in candidates {
            if let Some((lock, n)) = ledger.claim(&job.id, max_attempts, worker)? {
                claimed = Some((job, lock, n));
                break;
            }
        }
        match claimed {
            Some((job, lock, n)) => {
                let ok = attempt(job, n, &plan, &ledger, &mut models, worker)?;
                drop(lock);
                if ok {
                    report.done += 1;
                } else {
                    report.failed += 1;
                }
            }
            None => {
                let running = ready.contains(&Readiness::Running);
                let waiting = ready.contains(&Readiness::Waiting);
                let ready_left = ready.contains(&Readiness::Ready);
                if !running && !waiting && !ready_left {
                    break;
                }
                if running {
                    // A process that died while running a job leaves it "running": reclaim it.
                    for (job, r) in plan.jobs.iter().zip(&ready) {
                        if *r == Readiness::Running {
                            ledger.reap(&job.id)?;
                        }
                    }
                }
                if !running && ready_left {
                    // Ready jobs that cannot be claimed (out of attempts between our reads): avoid spinning.
                    for (job, r) in plan.jobs.iter().zip(&ready) {
                        if *r == Readiness::Ready {
                            skip.insert(job.id.clone());
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(150));
            }
        }
    }
    report.model_loads = models.loads;
    info!(
        worker,
        done = report.done,
        failed = report.failed,
        model_loads = report.model_loads,
        "worker finished"
    );
    Ok(report)
}

/// Runs one job (by id or plan index), retrying in-process up to the attempt limit: what a Slurm array task
/// does. Fails when the job failed for good (so `afterok` holds back its dependents) or a dependency is not
/// finished.
pub fn run_single(dir: &Path, job: &str, worker: &str) -> Result<()> {
    let plan = Plan::read(dir)?;
    let ledger = Ledger::open(dir)?;
    let job = match job.parse::<usize>() {
        Ok(i) => plan
            .jobs
            .get(i)
            .with_context(|| format!("--job {i}: the plan has {} jobs", plan.jobs.len()))?,
        Err(_) => plan
            .get(job)
            .with_context(|| format!("--job {job:?}: no such job in the plan"))?,
    }
    .clone();
    let max_attempts = plan.config.execution.max_attempts;
    let mut models = Models::default();
    loop {
        let snap = ledger.snapshot()?;
        if snap.status(&job.id) == Status::Done {
            info!(job = %job.id, "already finished");
            return Ok(());
        }
        for d in &job.deps {
            if snap.status(d) != Status::Done {
                bail!("{}: dependency {d} is not finished", job.id);
            }
        }
        let Some((lock, n)) = ledger.claim(&job.id, max_attempts, worker)? else {
            let s = ledger.snapshot()?.state(&job.id);
            if s.status == Status::Done {
                return Ok(());
            }
            if s.failures >= max_attempts {
                bail!(
                    "{} failed {} time(s): {}",
                    job.id,
                    s.failures,
                    s.last_error.unwrap_or_default()
                );
            }
            bail!("{} is running in another process", job.id);
        };
        let ok = attempt(&job, n, &plan, &ledger, &mut models, worker)?;
        drop(lock);
        if ok {
            return Ok(());
        }
    }
}

/// Runs the jobs listed in a batch file (one id per line), picking line `index` (Slurm's
/// `SLURM_ARRAY_TASK_ID` when not given).
pub fn run_batch(dir: &Path, batch: &Path, index: Option<usize>, worker: &str) -> Result<()> {
    let index = match index {
        Some(i) => i,
        None => std::env::var("SLURM_ARRAY_TASK_ID")
            .context("--batch needs --index or SLURM_ARRAY_TASK_ID")?
            .parse()
            .context("SLURM_ARRAY_TASK_ID is not a number")?,
    };
    let text =
        std::fs::read_to_string(batch).with_context(|| format!("reading {}", batch.display()))?;
    let id = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .nth(index)
        .with_context(|| format!("{}: no line {index}", batch.display()))?;
    run_single(dir, id.trim(), worker)
}
