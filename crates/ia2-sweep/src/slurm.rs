//! The Slurm executor: one job array per stage (`sbatch --array`), each array after the arrays holding its
//! jobs' dependencies (`--dependency=afterok:…`, `--kill-on-invalid-dep=yes`). Array task `i` of a stage runs
//! `ia2 sweep work DIR --batch FILE` with `SLURM_ARRAY_TASK_ID = i`: line `i` of the batch file names its job.
//! The ledger on the shared filesystem stays the truth: a rerun submits only jobs that are not finished, and
//! refuses while an earlier submission is still queued or running.

use crate::ledger::{Ev, Ledger};
use crate::plan::{Plan, Stage};
use crate::worker::{self, Readiness};
use anyhow::{Context, Result, bail, ensure};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tracing::info;

/// How to submit.
#[derive(Debug, Clone)]
pub struct SlurmRun {
    /// The `ia2` binary the tasks run (on a filesystem the nodes see).
    pub ia2_bin: PathBuf,
    /// Wait until every submitted array has left the queue.
    pub wait: bool,
    pub poll: Duration,
    /// Give up waiting after this long.
    pub wait_timeout: Option<Duration>,
}

/// One submitted array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    pub stage: Stage,
    pub slurm_job: String,
    pub jobs: usize,
    pub batch: PathBuf,
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Slurm job ids (of `ids`) still in the queue.
pub fn queued(ids: &[String]) -> Result<Vec<String>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let out = Command::new("squeue")
        .args(["-h", "-o", "%F", "-j", &ids.join(",")])
        .output()
        .context("running squeue (is Slurm installed?)")?;
    // squeue exits non-zero when none of the ids is known any more.
    let text = String::from_utf8_lossy(&out.stdout);
    let mut live: Vec<String> = text
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    live.sort();
    live.dedup();
    Ok(live)
}

/// The `sbatch` arguments of the configuration (partition, time, mem, cpus, gres, account, extra).
pub fn sbatch_options(o: &crate::config::SlurmOptions) -> Vec<String> {
    let mut a = Vec::new();
    if let Some(p) = &o.partition {
        a.push(format!("--partition={p}"));
    }
    if let Some(t) = &o.time {
        a.push(format!("--time={t}"));
    }
    if let Some(m) = &o.mem {
        a.push(format!("--mem={m}"));
    }
    if let Some(c) = o.cpus_per_task {
        a.push(format!("--cpus-per-task={c}"));
    }
    if let Some(g) = &o.gres {
        a.push(format!("--gres={g}"));
    }
    if let Some(acc) = &o.account {
        a.push(format!("--account={acc}"));
    }
    a.extend(o.extra_args.iter().cloned());
    a
}

/// Submits every unfinished job of the plan in `dir`.
pub fn submit(dir: &Path, run: &SlurmRun) -> Result<Vec<Submission>> {
    let plan = Plan::read(dir)?;
    let ledger = Ledger::open(dir)?;
    let snap = ledger.snapshot()?;
    let earlier: Vec<String> = snap.submissions.iter().map(|s| s.1.clone()).collect();
    let live = queued(&earlier)?;
    ensure!(
        live.is_empty(),
        "an earlier submission of this sweep is still queued or running (Slurm jobs {}): wait for it or \
         `scancel` it, then run again",
        live.join(", ")
    );
    worker::reconcile(&plan, &ledger)?;
    ledger.record(
        None,
        Ev::Coordinator {
            executor: "slurm".into(),
            pid: std::process::id(),
        },
    )?;
    let snap = ledger.snapshot()?;
    let r = worker::readiness(&plan, &snap, plan.config.execution.max_attempts);
    let dir_abs = std::fs::canonicalize(dir)?;
    let slurm_dir = dir_abs.join("slurm");
    let logs = dir_abs.join("logs");
    std::fs::create_dir_all(&slurm_dir)?;
    std::fs::create_dir_all(&logs)?;
    let stamp = format!("{:.0}", crate::ledger::now() * 1000.0);
    let mut array_of: HashMap<String, String> = HashMap::new();
    let mut subs = Vec::new();
    for stage in Stage::ALL {
        let jobs: Vec<&crate::plan::Job> = plan
            .jobs
            .iter()
            .zip(&r)
            .filter(|(j, x)| j.stage == stage && matches!(x, Readiness::Ready | Readiness::Waiting))
            .map(|(j, _)| j)
            .collect();
        if jobs.is_empty() {
            continue;
        }
        let batch = slurm_dir.join(format!("{stamp}-{}.txt", stage.name()));
        let text: String = jobs.iter().map(|j| format!("{}\n", j.id)).collect();
        ia2_data::io::write_atomic(&batch, text.as_bytes())?;
        let mut after: Vec<String> = jobs
            .iter()
            .flat_map(|j| j.deps.iter().filter_map(|d| array_of.get(d).cloned()))
            .collect();
        after.sort();
        after.dedup();
        let mut args = vec![
            "--parsable".to_string(),
            format!("--job-name=ia2-sweep-{}", stage.name()),
            format!(
                "--array=0-{}{}",
                jobs.len() - 1,
                match plan.config.slurm.array_parallel {
                    0 => String::new(),
                    p => format!("%{p}"),
                }
            ),
            format!("--output={}", logs.join("slurm-%A_%a.log").display()),
            format!("--chdir={}", std::env::current_dir()?.display()),
        ];
        if !after.is_empty() {
            args.push(format!("--dependency=afterok:{}", after.join(":")));
            args.push("--kill-on-invalid-dep=yes".into());
        }
        args.extend(sbatch_options(&plan.config.slurm));
        let wrap = format!(
            "{} sweep work {} --batch {}",
            quote(&run.ia2_bin.display().to_string()),
            quote(&dir_abs.display().to_string()),
            quote(&batch.display().to_string())
        );
        args.push("--wrap".into());
        args.push(wrap);
        let out = Command::new("sbatch")
            .args(&args)
            .output()
            .context("running sbatch (is Slurm installed?)")?;
        if !out.status.success() {
            bail!(
                "sbatch failed for stage {stage} ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let id = String::from_utf8_lossy(&out.stdout)
            .trim()
            .split(';')
            .next()
            .unwrap_or_default()
            .to_string();
        ensure!(
            !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()),
            "sbatch printed no job id: {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
        info!(stage = %stage, slurm_job = %id, jobs = jobs.len(), "submitted");
        ledger.record(
            None,
            Ev::Submit {
                stage: stage.name().into(),
                slurm_job: id.clone(),
                jobs: jobs.len(),
            },
        )?;
        for j in &jobs {
            array_of.insert(j.id.clone(), id.clone());
        }
        subs.push(Submission {
            stage,
            slurm_job: id,
            jobs: jobs.len(),
            batch,
        });
    }
    if run.wait && !subs.is_empty() {
        let ids: Vec<String> = subs.iter().map(|s| s.slurm_job.clone()).collect();
        let started = Instant::now();
        loop {
            if queued(&ids)?.is_empty() {
                break;
            }
            if let Some(t) = run.wait_timeout
                && started.elapsed() > t
            {
                bail!(
                    "Slurm jobs {} still queued after {:.0} s",
                    ids.join(", "),
                    t.as_secs_f64()
                );
            }
            std::thread::sleep(run.poll);
        }
    }
    Ok(subs)
}
