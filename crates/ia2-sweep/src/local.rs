//! The local executor: `max_parallel` worker processes (`ia2 sweep work DIR --worker NAME`) that claim jobs
//! from the ledger, a progress display, job timeouts, and the record of workers that die mid-job.
//!
//! Workers die with the coordinator (`PR_SET_PDEATHSIG`), so `kill -9` of the coordinator stops everything; the
//! jobs they were running are found interrupted (their locks are free) and run again by the next invocation.

use crate::ledger::{Ev, Ledger};
use crate::plan::{Plan, Stage};
use crate::worker::{self, Readiness};
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// How the coordinator starts workers.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// Program and leading arguments of a worker; `DIR --worker NAME` is appended.
    pub worker_command: Vec<OsString>,
    /// Show a progress bar (on a terminal).
    pub progress: bool,
    /// How often the coordinator reads the ledger.
    pub poll: Duration,
}

impl Default for LocalOptions {
    fn default() -> Self {
        LocalOptions {
            worker_command: vec![
                std::env::current_exe().map_or_else(|_| "ia2".into(), PathBuf::into_os_string),
                "sweep".into(),
                "work".into(),
            ],
            progress: true,
            poll: Duration::from_millis(200),
        }
    }
}

/// Counts after a local run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub total: usize,
    pub done: usize,
    pub failed: usize,
    pub blocked: usize,
    pub pending: usize,
    pub running: usize,
}

impl Counts {
    pub fn of(r: &[Readiness]) -> Counts {
        let mut c = Counts {
            total: r.len(),
            ..Default::default()
        };
        for x in r {
            match x {
                Readiness::Done => c.done += 1,
                Readiness::Failed => c.failed += 1,
                Readiness::Blocked => c.blocked += 1,
                Readiness::Running => c.running += 1,
                Readiness::Ready | Readiness::Waiting => c.pending += 1,
            }
        }
        c
    }

    pub fn complete(&self) -> bool {
        self.done == self.total
    }
}

/// The outcome of `run_local`.
#[derive(Debug, Clone)]
pub struct LocalReport {
    pub counts: Counts,
    pub model_loads: usize,
    pub workers_started: usize,
    pub secs: f64,
}

struct WorkerProc {
    name: String,
    child: Child,
    log: PathBuf,
}

fn spawn(dir: &Path, opts: &LocalOptions, name: &str, threads: usize) -> Result<WorkerProc> {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let log = logs.join(format!("{name}.log"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("opening {}", log.display()))?;
    let (prog, lead) = opts
        .worker_command
        .split_first()
        .context("empty worker command")?;
    let mut cmd = Command::new(prog);
    cmd.args(lead)
        .arg(dir)
        .arg("--worker")
        .arg(name)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(file));
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        cmd.env("RAYON_NUM_THREADS", threads.to_string());
    }
    // SAFETY: prctl is async-signal-safe; the closure allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("starting worker {name} ({})", prog.to_string_lossy()))?;
    info!(worker = name, pid = child.id(), "worker started");
    Ok(WorkerProc {
        name: name.to_string(),
        child,
        log,
    })
}

/// Per-stage progress text.
fn stage_line(plan: &Plan, r: &[Readiness]) -> String {
    let mut m: BTreeMap<Stage, (usize, usize, usize)> = BTreeMap::new();
    for (j, x) in plan.jobs.iter().zip(r) {
        let e = m.entry(j.stage).or_default();
        e.0 += 1;
        if *x == Readiness::Done {
            e.1 += 1;
        }
        if matches!(x, Readiness::Failed | Readiness::Blocked) {
            e.2 += 1;
        }
    }
    m.iter()
        .map(|(s, (t, d, f))| {
            if *f > 0 {
                format!("{s} {d}/{t} ({f} failed/blocked)")
            } else {
                format!("{s} {d}/{t}")
            }
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

/// How many workers holding the plan's base model fit in the memory available now. Every worker keeps the
/// model loaded; weights already in the held dtype are mapped from the files and shared through the page
/// cache (counted once), converted ones are copied per worker, and each worker needs working memory for
/// activations (a quarter of the weight bytes, at least 512 MiB). Unlimited when no job runs the model or
/// the memory cannot be read.
fn workers_fitting_in_memory(plan: &Plan) -> usize {
    if !plan.jobs.iter().any(|j| j.uses_model) {
        return usize::MAX;
    }
    let Some(available) = ia2_load::memory_available() else {
        return usize::MAX;
    };
    // A model that cannot be read yet fails in its first job, with the job's error; here it only leaves
    // the worker count alone.
    let m = match crate::jobs::model_options(&plan.config).and_then(|o| o.weight_memory()) {
        Ok(m) => m,
        Err(e) => {
            tracing::debug!("no memory estimate for the base model: {e:#}");
            return usize::MAX;
        }
    };
    let per_worker = (m.total() / 4).max(512 << 20);
    let fit = m.processes_fitting(available, per_worker);
    if fit < plan.config.execution.max_parallel {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        tracing::warn!(
            "running {fit} worker(s), not execution.max_parallel = {}: each holds the base model \
             ({:.1} GiB shared through the page cache, {:.1} GiB converted per worker) and ≈ {:.1} GiB of \
             working memory, and {:.1} GiB is available",
            plan.config.execution.max_parallel,
            gib(m.shared),
            gib(m.private),
            gib(per_worker),
            gib(available)
        );
    }
    fit
}

/// Runs the sweep of `dir` (its `plan.json`) with local worker processes until nothing is left to do.
pub fn run_local(dir: &Path, opts: &LocalOptions) -> Result<LocalReport> {
    let started = Instant::now();
    let plan = Plan::read(dir)?;
    let ledger = Ledger::open(dir)?;
    ledger.record(
        None,
        Ev::Coordinator {
            executor: "local".into(),
            pid: std::process::id(),
        },
    )?;
    worker::reconcile(&plan, &ledger)?;
    let x = &plan.config.execution;
    let max_attempts = x.max_attempts;
    let loads_before = ledger.snapshot()?.model_loads.len();
    let todo = {
        let r = worker::readiness(&plan, &ledger.snapshot()?, max_attempts);
        r.iter()
            .filter(|r| matches!(r, Readiness::Ready | Readiness::Waiting))
            .count()
    };
    let mut k = x.max_parallel.min(todo).max(usize::from(todo > 0));
    if k > 1 {
        k = k.min(workers_fitting_in_memory(&plan));
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (cores / k.max(1)).max(1);
    let bar = if opts.progress {
        ProgressBar::new(plan.jobs.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} jobs  {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut workers: Vec<WorkerProc> = Vec::new();
    let mut started_workers = 0usize;
    let tag = std::process::id();
    for i in 0..k {
        workers.push(spawn(dir, opts, &format!("w{i}-{tag}"), threads)?);
        started_workers += 1;
    }
    let respawn_limit = k + 2 * plan.jobs.len();
    loop {
        let snap = ledger.snapshot()?;
        let r = worker::readiness(&plan, &snap, max_attempts);
        let counts = Counts::of(&r);
        bar.set_position(counts.done as u64);
        bar.set_message(stage_line(&plan, &r));
        // Timeouts: kill the worker running a job for too long and record the failure.
        if let Some(limit) = x.job_timeout_s {
            for w in &mut workers {
                let pid = w.child.id();
                for (job, rr) in plan.jobs.iter().zip(&r) {
                    let s = snap.state(&job.id);
                    if *rr == Readiness::Running
                        && s.pid == Some(pid)
                        && s.started_at
                            .is_some_and(|t| crate::ledger::now() - t > limit)
                    {
                        warn!(job = %job.id, worker = %w.name, "timed out after {limit} s: killing its worker");
                        w.child.kill().ok();
                        w.child.wait().ok();
                        ledger.record(
                            Some(&job.id),
                            Ev::Fail {
                                attempt: s.attempts,
                                secs: crate::ledger::now() - s.started_at.unwrap_or_default(),
                                error: format!(
                                    "timed out after {limit} s (execution.job_timeout_s)"
                                ),
                                stderr_tail: crate::ledger::tail_since(&w.log, 0, 4096),
                                host: crate::ledger::hostname(),
                                pid,
                            },
                        )?;
                    }
                }
            }
        }
        // Workers that ended.
        let mut i = 0;
        while i < workers.len() {
            match workers[i].child.try_wait()? {
                None => i += 1,
                Some(status) => {
                    let w = workers.remove(i);
                    if !status.success() {
                        let snap = ledger.snapshot()?;
                        for job in &plan.jobs {
                            let s = snap.state(&job.id);
                            if s.status == crate::ledger::Status::Running
                                && s.pid == Some(w.child.id())
                            {
                                ledger.record(
                                    Some(&job.id),
                                    Ev::Fail {
                                        attempt: s.attempts,
                                        secs: crate::ledger::now()
                                            - s.started_at.unwrap_or_default(),
                                        error: format!("worker {} died ({status})", w.name),
                                        stderr_tail: crate::ledger::tail_since(&w.log, 0, 4096),
                                        host: crate::ledger::hostname(),
                                        pid: w.child.id(),
                                    },
                                )?;
                            }
                        }
                        warn!(worker = %w.name, "worker ended with {status}");
                        let r = worker::readiness(&plan, &ledger.snapshot()?, max_attempts);
                        let left = r
                            .iter()
                            .any(|x| matches!(x, Readiness::Ready | Readiness::Waiting));
                        if left && started_workers < respawn_limit {
                            let name = format!("w{started_workers}-{tag}");
                            workers.push(spawn(dir, opts, &name, threads)?);
                            started_workers += 1;
                        }
                    }
                }
            }
        }
        if workers.is_empty() {
            break;
        }
        std::thread::sleep(opts.poll);
    }
    let snap = ledger.snapshot()?;
    let r = worker::readiness(&plan, &snap, max_attempts);
    let counts = Counts::of(&r);
    bar.set_position(counts.done as u64);
    bar.finish_and_clear();
    Ok(LocalReport {
        counts,
        model_loads: snap.model_loads.len() - loads_before,
        workers_started: started_workers,
        secs: started.elapsed().as_secs_f64(),
    })
}
