//! `ia2 sweep status DIR`: progress per stage, failures with their error text, model loads; the summary file;
//! `ia2 sweep retry DIR`: failed jobs get their attempts back.

use crate::ledger::{Ev, Ledger, Snapshot, Status};
use crate::plan::{Plan, Stage};
use crate::worker::{self, Readiness};
use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

/// Counts of one stage.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct StageCounts {
    pub total: usize,
    pub done: usize,
    pub running: usize,
    pub pending: usize,
    pub failed: usize,
    pub blocked: usize,
}

/// A failed job.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub job: String,
    pub stage: Stage,
    pub attempts: u32,
    pub host: Option<String>,
    pub error: String,
    pub stderr_tail: String,
}

/// Everything `status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct SweepStatus {
    pub stages: BTreeMap<Stage, StageCounts>,
    pub failures: Vec<Failure>,
    /// Blocked jobs with the failed job that blocks them.
    pub blocked: Vec<(String, String)>,
    /// Jobs the journal shows running whose process is gone.
    pub interrupted: Vec<String>,
    pub model_loads: usize,
    pub job_seconds: f64,
    pub total: StageCounts,
}

/// The status of a sweep directory (read-only).
pub fn status(dir: &Path) -> Result<SweepStatus> {
    let plan = Plan::read(dir)?;
    let ledger = Ledger::open(dir)?;
    let snap = ledger.snapshot()?;
    Ok(compute(&plan, &ledger, &snap))
}

fn first_failed_dep(plan: &Plan, r: &[Readiness], id: &str) -> String {
    let mut cur = id.to_string();
    // Walk down to a failed dependency.
    for _ in 0..plan.jobs.len() {
        let Some(job) = plan.get(&cur) else { break };
        let next = job.deps.iter().find_map(|d| {
            let i = plan.position(d)?;
            match r[i] {
                Readiness::Failed => Some((d.clone(), true)),
                Readiness::Blocked => Some((d.clone(), false)),
                _ => None,
            }
        });
        match next {
            Some((d, true)) => return d,
            Some((d, false)) => cur = d,
            None => break,
        }
    }
    String::from("?")
}

pub fn compute(plan: &Plan, ledger: &Ledger, snap: &Snapshot) -> SweepStatus {
    let max = plan.config.execution.max_attempts;
    let r = worker::readiness(plan, snap, max);
    let mut stages: BTreeMap<Stage, StageCounts> = BTreeMap::new();
    let mut total = StageCounts::default();
    let mut failures = Vec::new();
    let mut blocked = Vec::new();
    let mut interrupted = Vec::new();
    let mut job_seconds = 0.0;
    for (job, x) in plan.jobs.iter().zip(&r) {
        let c = stages.entry(job.stage).or_default();
        let s = snap.state(&job.id);
        if let Some(secs) = s.secs {
            job_seconds += secs;
        }
        for c in [&mut *c, &mut total] {
            c.total += 1;
            match x {
                Readiness::Done => c.done += 1,
                Readiness::Running => c.running += 1,
                Readiness::Ready | Readiness::Waiting => c.pending += 1,
                Readiness::Failed => c.failed += 1,
                Readiness::Blocked => c.blocked += 1,
            }
        }
        match x {
            Readiness::Failed => failures.push(Failure {
                job: job.id.clone(),
                stage: job.stage,
                attempts: s.failures,
                host: s.host.clone(),
                error: s.last_error.clone().unwrap_or_default(),
                stderr_tail: s.stderr_tail.clone().unwrap_or_default(),
            }),
            Readiness::Blocked => {
                blocked.push((job.id.clone(), first_failed_dep(plan, &r, &job.id)))
            }
            Readiness::Running if ledger.is_held(&job.id).ok() == Some(false) => {
                interrupted.push(job.id.clone());
            }
            _ => {}
        }
    }
    SweepStatus {
        stages,
        failures,
        blocked,
        interrupted,
        model_loads: snap.model_loads.len(),
        job_seconds,
        total,
    }
}

impl std::fmt::Display for SweepStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = String::new();
        writeln!(
            s,
            "{:<11} {:>6} {:>6} {:>8} {:>8} {:>7} {:>8}",
            "stage", "jobs", "done", "running", "pending", "failed", "blocked"
        )?;
        let row = |s: &mut String, name: &str, c: &StageCounts| {
            writeln!(
                s,
                "{:<11} {:>6} {:>6} {:>8} {:>8} {:>7} {:>8}",
                name, c.total, c.done, c.running, c.pending, c.failed, c.blocked
            )
        };
        for (stage, c) in &self.stages {
            row(&mut s, stage.name(), c)?;
        }
        row(&mut s, "all", &self.total)?;
        writeln!(
            s,
            "\nmodel loads: {}   job time: {:.1} s",
            self.model_loads, self.job_seconds
        )?;
        if !self.interrupted.is_empty() {
            writeln!(
                s,
                "\ninterrupted (process gone; they run again on the next `ia2 sweep run`):"
            )?;
            for j in &self.interrupted {
                writeln!(s, "  {j}")?;
            }
        }
        if !self.failures.is_empty() {
            writeln!(
                s,
                "\nfailed ({}; `ia2 sweep retry DIR` runs them again):",
                self.failures.len()
            )?;
            for fl in &self.failures {
                writeln!(
                    s,
                    "  {} [{}] after {} attempt(s){}",
                    fl.job,
                    fl.stage,
                    fl.attempts,
                    fl.host
                        .as_deref()
                        .map_or(String::new(), |h| format!(" on {h}"))
                )?;
                for line in fl.error.lines() {
                    writeln!(s, "    error: {line}")?;
                }
                let tail: Vec<&str> = fl.stderr_tail.lines().collect();
                if !tail.is_empty() {
                    writeln!(s, "    stderr (last lines):")?;
                    for line in &tail[tail.len().saturating_sub(8)..] {
                        writeln!(s, "      {line}")?;
                    }
                }
            }
        }
        if !self.blocked.is_empty() {
            writeln!(
                s,
                "\nblocked ({}, by a failed dependency):",
                self.blocked.len()
            )?;
            for (j, by) in self.blocked.iter().take(20) {
                writeln!(s, "  {j}  (by {by})")?;
            }
            if self.blocked.len() > 20 {
                writeln!(s, "  ... and {} more", self.blocked.len() - 20)?;
            }
        }
        f.write_str(s.trim_end())
    }
}

/// `ia2 sweep retry`: every failed job (out of attempts or not) gets its attempts back; returns how many.
pub fn retry(dir: &Path) -> Result<usize> {
    let plan = Plan::read(dir)?;
    let ledger = Ledger::open(dir)?;
    let snap = ledger.snapshot()?;
    let mut n = 0;
    for job in &plan.jobs {
        let s = snap.state(&job.id);
        if s.status == Status::Failed || (s.failures > 0 && s.status != Status::Done) {
            ledger.record(Some(&job.id), Ev::Retry)?;
            n += 1;
        }
    }
    Ok(n)
}

/// `DIR/summary.json`: the seed's batch summary keys, per stage, written in the sweep directory.
pub fn write_summary(dir: &Path, secs: f64) -> Result<std::path::PathBuf> {
    let plan = Plan::read(dir)?;
    let st = status(dir)?;
    let path = dir.join("summary.json");
    let value = serde_json::json!({
        "timestamp": crate::ledger::now(),
        "config": plan.config,
        "total": st.total.total,
        "successful": st.total.done,
        "failed": st.total.failed,
        "blocked": st.total.blocked,
        "pending": st.total.pending,
        "success_rate": if st.total.total == 0 { 0.0 } else { st.total.done as f64 / st.total.total as f64 },
        "total_time_seconds": secs,
        "phases": st.stages,
        "failures": st.failures,
        "model_loads": st.model_loads,
    });
    ia2_data::io::write_json_atomic(&path, &value)?;
    Ok(path)
}
