//! The ledger: the sweep's truth, safe with many worker processes at once and on a shared filesystem.
//!
//! - `DIR/ledger.jsonl`: an append-only journal, one JSON event per line. Every append happens under an
//!   exclusive `flock` of `DIR/ledger.lock` as one `write` followed by `fsync`; readers take the lock shared. A
//!   line cut short by a crash is ignored (and every later line is still read).
//! - `DIR/locks/<hash>.lock`: held (`flock`, exclusive) by the process running the job for as long as it runs.
//!   The kernel (or the NFS server) drops it when that process dies, however it dies, so a job the journal
//!   shows as running whose lock can be taken was interrupted and is run again.
//!
//! A job's state is the fold of its events ([`JobState`]); blocked jobs (a dependency failed for good) are
//! derived from the plan, never stored.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub const JOURNAL: &str = "ledger.jsonl";
const LOCK: &str = "ledger.lock";
const LOCK_DIR: &str = "locks";

/// One journal line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unix time, seconds.
    pub t: f64,
    /// The job (absent for sweep-wide events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    #[serde(flatten)]
    pub ev: Ev,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Ev {
    /// A process started an attempt.
    Start {
        attempt: u32,
        host: String,
        pid: u32,
        worker: String,
    },
    /// The job finished; `outputs` are its files or directories, `identity` what they held then.
    Done {
        secs: f64,
        #[serde(default)]
        outputs: Vec<String>,
        #[serde(default)]
        identity: Option<String>,
        #[serde(default)]
        note: String,
    },
    /// An attempt failed.
    Fail {
        attempt: u32,
        secs: f64,
        error: String,
        #[serde(default)]
        stderr_tail: String,
        host: String,
        pid: u32,
    },
    /// A running attempt's process vanished (killed); the job runs again, the attempt is not a failure.
    Interrupted { attempt: u32 },
    /// A finished job's outputs are gone or changed: it runs again.
    Invalidated { reason: String },
    /// `ia2 sweep retry`: failures so far no longer count against the attempt limit.
    Retry,
    /// A worker loaded a base model.
    ModelLoad {
        model: String,
        secs: f64,
        worker: String,
        host: String,
        pid: u32,
    },
    /// A Slurm job array was submitted for a stage.
    Submit {
        stage: String,
        slurm_job: String,
        jobs: usize,
    },
    /// A coordinator started (local) or submitted (slurm).
    Coordinator { executor: String, pid: u32 },
}

/// A job's status in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Running,
    Done,
    Failed,
}

/// The fold of a job's events.
#[derive(Debug, Clone, PartialEq)]
pub struct JobState {
    pub status: Status,
    /// Attempts started (ever).
    pub attempts: u32,
    /// Failed attempts since the last retry.
    pub failures: u32,
    pub last_error: Option<String>,
    pub stderr_tail: Option<String>,
    pub host: Option<String>,
    pub pid: Option<u32>,
    pub worker: Option<String>,
    pub started_at: Option<f64>,
    /// Seconds of the finishing attempt.
    pub secs: Option<f64>,
    pub outputs: Vec<String>,
    pub identity: Option<String>,
    pub note: String,
    pub interrupted: u32,
    /// Its finished outputs were found stale (and not redone since): a rerun must overwrite them.
    pub invalidated: bool,
}

impl Default for JobState {
    fn default() -> Self {
        JobState {
            status: Status::Pending,
            attempts: 0,
            failures: 0,
            last_error: None,
            stderr_tail: None,
            host: None,
            pid: None,
            worker: None,
            started_at: None,
            secs: None,
            outputs: Vec::new(),
            identity: None,
            note: String::new(),
            interrupted: 0,
            invalidated: false,
        }
    }
}

impl JobState {
    fn apply(&mut self, t: f64, ev: &Ev) {
        match ev {
            Ev::Start {
                attempt,
                host,
                pid,
                worker,
            } => {
                self.status = Status::Running;
                self.attempts = self.attempts.max(*attempt);
                self.host = Some(host.clone());
                self.pid = Some(*pid);
                self.worker = Some(worker.clone());
                self.started_at = Some(t);
            }
            Ev::Done {
                secs,
                outputs,
                identity,
                note,
            } => {
                self.status = Status::Done;
                self.invalidated = false;
                self.secs = Some(*secs);
                self.outputs = outputs.clone();
                self.identity = identity.clone();
                self.note = note.clone();
            }
            Ev::Fail {
                error,
                stderr_tail,
                host,
                pid,
                ..
            } => {
                // A late failure report of an attempt that another one already finished changes nothing.
                if self.status != Status::Done {
                    self.status = Status::Failed;
                }
                self.failures += 1;
                self.last_error = Some(error.clone());
                self.stderr_tail = Some(stderr_tail.clone());
                self.host = Some(host.clone());
                self.pid = Some(*pid);
            }
            Ev::Interrupted { .. } => {
                if self.status == Status::Running {
                    self.status = Status::Pending;
                }
                self.interrupted += 1;
            }
            Ev::Invalidated { .. } => {
                self.status = Status::Pending;
                self.invalidated = true;
                self.outputs.clear();
                self.identity = None;
            }
            Ev::Retry => {
                self.failures = 0;
                if self.status == Status::Failed {
                    self.status = Status::Pending;
                }
            }
            Ev::ModelLoad { .. } | Ev::Submit { .. } | Ev::Coordinator { .. } => {}
        }
    }
}

/// Everything the journal says.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub jobs: HashMap<String, JobState>,
    /// Model loads (worker, model, seconds).
    pub model_loads: Vec<(String, String, f64)>,
    /// Slurm submissions (stage, job id, jobs).
    pub submissions: Vec<(String, String, usize)>,
    pub events: usize,
    pub first_t: Option<f64>,
    pub last_t: Option<f64>,
}

impl Snapshot {
    pub fn state(&self, id: &str) -> JobState {
        self.jobs.get(id).cloned().unwrap_or_default()
    }

    pub fn status(&self, id: &str) -> Status {
        self.jobs.get(id).map_or(Status::Pending, |s| s.status)
    }

    fn apply(&mut self, e: &Event) {
        self.events += 1;
        self.first_t.get_or_insert(e.t);
        self.last_t = Some(e.t);
        match (&e.job, &e.ev) {
            (
                _,
                Ev::ModelLoad {
                    model,
                    secs,
                    worker,
                    ..
                },
            ) => self
                .model_loads
                .push((worker.clone(), model.clone(), *secs)),
            (
                _,
                Ev::Submit {
                    stage,
                    slurm_job,
                    jobs,
                },
            ) => self
                .submissions
                .push((stage.clone(), slurm_job.clone(), *jobs)),
            (Some(job), ev) => self.jobs.entry(job.clone()).or_default().apply(e.t, ev),
            (None, _) => {}
        }
    }
}

/// The ledger of a sweep directory.
#[derive(Debug, Clone)]
pub struct Ledger {
    dir: PathBuf,
}

pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// The lock a running job holds; dropping it releases the job.
#[derive(Debug)]
pub struct JobLock {
    _file: File,
}

impl Ledger {
    /// Opens (creating) the ledger of `dir`.
    pub fn open(dir: &Path) -> Result<Ledger> {
        std::fs::create_dir_all(dir.join(LOCK_DIR))
            .with_context(|| format!("creating {}", dir.join(LOCK_DIR).display()))?;
        Ok(Ledger {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock_file(&self) -> Result<File> {
        let path = self.dir.join(LOCK);
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))
    }

    /// Appends events (one write under the exclusive lock, then fsync).
    pub fn append(&self, events: &[Event]) -> Result<()> {
        let lock = self.lock_file()?;
        lock.lock().context("locking the ledger")?;
        self.append_locked(events)
    }

    fn append_locked(&self, events: &[Event]) -> Result<()> {
        let path = self.dir.join(JOURNAL);
        let mut text = String::new();
        for e in events {
            text.push_str(&serde_json::to_string(e)?);
            text.push('\n');
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        f.write_all(text.as_bytes())
            .with_context(|| format!("appending to {}", path.display()))?;
        f.sync_data().ok();
        Ok(())
    }

    /// Appends one event of `job`.
    pub fn record(&self, job: Option<&str>, ev: Ev) -> Result<()> {
        self.append(&[Event {
            t: now(),
            job: job.map(str::to_string),
            ev,
        }])
    }

    /// Every event so far.
    pub fn events(&self) -> Result<Vec<Event>> {
        let lock = self.lock_file()?;
        lock.lock_shared().context("locking the ledger")?;
        self.events_locked()
    }

    fn events_locked(&self) -> Result<Vec<Event>> {
        let path = self.dir.join(JOURNAL);
        let mut text = String::new();
        match File::open(&path) {
            Ok(mut f) => {
                f.read_to_string(&mut text)
                    .with_context(|| format!("reading {}", path.display()))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
        }
        Ok(parse_lines(&text))
    }

    /// The state of every job.
    pub fn snapshot(&self) -> Result<Snapshot> {
        let mut s = Snapshot::default();
        for e in self.events()? {
            s.apply(&e);
        }
        Ok(s)
    }

    fn job_lock_path(&self, job: &str) -> PathBuf {
        let h = hex::encode(&Sha256::digest(job.as_bytes())[..12]);
        self.dir.join(LOCK_DIR).join(format!("{h}.lock"))
    }

    /// Takes the job's lock if nobody holds it.
    pub fn try_lock_job(&self, job: &str) -> Result<Option<JobLock>> {
        let path = self.job_lock_path(job);
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match f.try_lock() {
            Ok(()) => Ok(Some(JobLock { _file: f })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
    }

    /// Whether a process holds the job's lock (i.e. is running it right now).
    pub fn is_held(&self, job: &str) -> Result<bool> {
        Ok(self.try_lock_job(job)?.is_none())
    }

    /// If the journal shows `job` running but no process holds its lock, records it as interrupted (under
    /// the job's lock and the journal's, so a concurrent claim is never undone). Returns whether it did.
    pub fn reap(&self, job: &str) -> Result<bool> {
        let Some(_job_lock) = self.try_lock_job(job)? else {
            return Ok(false);
        };
        let lock = self.lock_file()?;
        lock.lock().context("locking the ledger")?;
        let mut s = JobState::default();
        for e in self.events_locked()? {
            if e.job.as_deref() == Some(job) {
                s.apply(e.t, &e.ev);
            }
        }
        if s.status != Status::Running {
            return Ok(false);
        }
        self.append_locked(&[Event {
            t: now(),
            job: Some(job.to_string()),
            ev: Ev::Interrupted {
                attempt: s.attempts,
            },
        }])?;
        Ok(true)
    }

    /// Claims `job` for an attempt: takes its lock and, under the journal's lock, checks that it is neither
    /// finished nor out of attempts nor running elsewhere, then records the start. `None`: not claimable.
    pub fn claim(
        &self,
        job: &str,
        max_attempts: u32,
        worker: &str,
    ) -> Result<Option<(JobLock, u32)>> {
        let Some(job_lock) = self.try_lock_job(job)? else {
            return Ok(None);
        };
        let lock = self.lock_file()?;
        lock.lock().context("locking the ledger")?;
        let mut s = Snapshot::default();
        for e in self.events_locked()? {
            if e.job.as_deref() == Some(job) {
                s.apply(&e);
            }
        }
        let state = s.state(job);
        if state.status == Status::Done || state.failures >= max_attempts {
            return Ok(None);
        }
        let attempt = state.attempts + 1;
        let mut events = Vec::new();
        if state.status == Status::Running {
            // We hold its lock, so the process that started it is gone.
            events.push(Event {
                t: now(),
                job: Some(job.to_string()),
                ev: Ev::Interrupted {
                    attempt: state.attempts,
                },
            });
        }
        events.push(Event {
            t: now(),
            job: Some(job.to_string()),
            ev: Ev::Start {
                attempt,
                host: hostname(),
                pid: std::process::id(),
                worker: worker.to_string(),
            },
        });
        self.append_locked(&events)?;
        Ok(Some((job_lock, attempt)))
    }
}

fn parse_lines(text: &str) -> Vec<Event> {
    let mut out = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Event>(line) {
            Ok(e) => out.push(e),
            Err(e) => tracing::warn!("ledger line {}: unreadable ({e}); ignored", i + 1),
        }
    }
    out
}

/// The last `max` bytes a file gained since `from` (a job's part of a worker's log), as text.
pub fn tail_since(path: &Path, from: u64, max: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let start = from.max(len.saturating_sub(max as u64));
    if f.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    f.take(max as u64).read_to_end(&mut buf).ok();
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_fold_into_states_and_a_cut_line_is_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        let l = Ledger::open(tmp.path()).unwrap();
        let (lock, a) = l.claim("j", 2, "w").unwrap().unwrap();
        assert_eq!(a, 1);
        // Held: a second claim (another file description) is refused.
        assert!(l.claim("j", 2, "w2").unwrap().is_none());
        l.record(
            Some("j"),
            Ev::Fail {
                attempt: 1,
                secs: 0.1,
                error: "boom".into(),
                stderr_tail: "tail".into(),
                host: "h".into(),
                pid: 1,
            },
        )
        .unwrap();
        drop(lock);
        let s = l.snapshot().unwrap().state("j");
        assert_eq!((s.status, s.failures), (Status::Failed, 1));
        assert_eq!(s.last_error.as_deref(), Some("boom"));
        let (_lock, a) = l.claim("j", 2, "w").unwrap().unwrap();
        assert_eq!(a, 2);
        // A torn final line (crash mid-write) does not hide the valid ones.
        let mut f = OpenOptions::new()
            .append(true)
            .open(tmp.path().join(JOURNAL))
            .unwrap();
        f.write_all(b"{\"t\":1.0,\"job\":\"j\",\"ev\":\"do")
            .unwrap();
        let s = l.snapshot().unwrap().state("j");
        assert_eq!((s.status, s.attempts), (Status::Running, 2));
    }

    #[test]
    fn attempts_are_limited_and_retry_resets_them() {
        let tmp = tempfile::tempdir().unwrap();
        let l = Ledger::open(tmp.path()).unwrap();
        for attempt in 1..=2 {
            let (_lock, a) = l.claim("j", 2, "w").unwrap().unwrap();
            assert_eq!(a, attempt);
            l.record(
                Some("j"),
                Ev::Fail {
                    attempt,
                    secs: 0.0,
                    error: "x".into(),
                    stderr_tail: String::new(),
                    host: "h".into(),
                    pid: 1,
                },
            )
            .unwrap();
        }
        assert!(l.claim("j", 2, "w").unwrap().is_none());
        l.record(Some("j"), Ev::Retry).unwrap();
        assert_eq!(l.snapshot().unwrap().status("j"), Status::Pending);
        assert!(l.claim("j", 2, "w").unwrap().is_some());
    }

    #[test]
    fn a_killed_runner_is_detected_by_its_released_lock() {
        let tmp = tempfile::tempdir().unwrap();
        let l = Ledger::open(tmp.path()).unwrap();
        let (lock, _) = l.claim("j", 1, "w").unwrap().unwrap();
        assert!(l.is_held("j").unwrap());
        drop(lock); // the process "dies"
        assert!(!l.is_held("j").unwrap());
        let (_lock, a) = l.claim("j", 1, "w").unwrap().unwrap();
        assert_eq!(a, 2);
        let s = l.snapshot().unwrap().state("j");
        assert_eq!((s.interrupted, s.failures), (1, 0));
    }
}
