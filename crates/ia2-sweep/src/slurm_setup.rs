//! A real single-node Slurm for tests (see ../shared/notes/slurm.md): installs Debian's packages when `CI` is
//! set, writes `/etc/slurm/slurm.conf` and `cgroup.conf`, starts munged, slurmctld and slurmd, and waits for the
//! node to be idle. Idempotent: a Slurm that already answers `sinfo` with a usable node is reused as it is.
//! Without Slurm and without `CI` it returns `None` after printing a loud SKIPPED line.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A Slurm this process started (stopped on drop) or found running (left alone).
#[derive(Debug)]
pub struct LocalSlurm {
    pub started: bool,
    pid_files: Vec<PathBuf>,
}

impl Drop for LocalSlurm {
    fn drop(&mut self) {
        if !self.started {
            return;
        }
        for f in &self.pid_files {
            if let Ok(text) = std::fs::read_to_string(f)
                && let Ok(pid) = text.trim().parse::<i32>()
            {
                // SAFETY: plain kill(2) of a daemon we started.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
        }
    }
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn sh(cmd: &str) -> Result<String> {
    let out = Command::new("sh")
        .args(["-c", cmd])
        .output()
        .with_context(|| format!("running {cmd}"))?;
    if !out.status.success() {
        bail!(
            "`{cmd}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Node states `sinfo` reports (e.g. `idle`, `mixed`, `down*`).
fn node_states() -> Vec<String> {
    Command::new("sinfo")
        .args(["-h", "-o", "%T"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

fn usable(states: &[String]) -> bool {
    // A trailing `*` means the node does not respond.
    states
        .iter()
        .any(|s| matches!(s.as_str(), "idle" | "mixed" | "allocated" | "completing"))
}

fn running(name: &str) -> bool {
    Command::new("pgrep")
        .args(["-x", name])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The Slurm for this test run, or `None` (after a SKIPPED message) when it is absent and `CI` is not set.
pub fn ensure_slurm() -> Result<Option<LocalSlurm>> {
    let tools = ["sbatch", "squeue", "sinfo", "slurmctld", "slurmd", "munged"];
    if !tools.iter().all(|t| have(t)) {
        if std::env::var_os("CI").is_none() {
            eprintln!(
                "SKIPPED: Slurm not installed (need slurmctld, slurmd, slurm-client, munge; set CI=1 to install them)"
            );
            return Ok(None);
        }
        sh("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge")
            .context("installing Slurm")?;
    }
    if usable(&node_states()) {
        return Ok(Some(LocalSlurm {
            started: false,
            pid_files: Vec::new(),
        }));
    }
    let host = sh("hostname -s")?.trim().to_string();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let state = Path::new("/var/lib/ia2-slurm");
    for d in ["ctld", "spool", "log"] {
        std::fs::create_dir_all(state.join(d))?;
    }
    let pid = |n: &str| state.join(format!("{n}.pid"));
    let conf = format!(
        "ClusterName=local\nSlurmctldHost={host}\nAuthType=auth/munge\nProctrackType=proctrack/linuxproc\n\
         TaskPlugin=task/none\nSelectType=select/cons_tres\nSelectTypeParameters=CR_Core\nSchedulerType=sched/backfill\n\
         SlurmUser=root\nReturnToService=2\nJobAcctGatherType=jobacct_gather/none\nMaxArraySize=100000\n\
         SlurmctldPidFile={}\nSlurmdPidFile={}\nSlurmdSpoolDir={}\nStateSaveLocation={}\n\
         SlurmctldLogFile={}\nSlurmdLogFile={}\n\
         NodeName={host} CPUs={cpus} RealMemory=20000 State=UNKNOWN\n\
         PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP\n",
        pid("slurmctld").display(),
        pid("slurmd").display(),
        state.join("spool").display(),
        state.join("ctld").display(),
        state.join("log/slurmctld.log").display(),
        state.join("log/slurmd.log").display(),
    );
    std::fs::create_dir_all("/etc/slurm")?;
    std::fs::write("/etc/slurm/slurm.conf", conf).context("writing /etc/slurm/slurm.conf")?;
    std::fs::write(
        "/etc/slurm/cgroup.conf",
        "CgroupPlugin=cgroup/v1\nCgroupAutomount=yes\nConstrainCores=no\nConstrainRAMSpace=no\n",
    )?;
    if !running("munged") {
        sh("mkdir -p /run/munge && chown munge:munge /run/munge && \
            (test -f /etc/munge/munge.key || mungekey --create 2>/dev/null || true) && \
            su -s /bin/sh munge -c /usr/sbin/munged")
        .context("starting munged")?;
    }
    let mut started = false;
    if !running("slurmctld") {
        sh("slurmctld").context("starting slurmctld")?;
        started = true;
    }
    if !running("slurmd") {
        sh("slurmd").context("starting slurmd")?;
        started = true;
    }
    let t = Instant::now();
    loop {
        let states = node_states();
        if usable(&states) {
            break;
        }
        if states
            .iter()
            .any(|s| s.starts_with("down") || s.starts_with("drain"))
        {
            let _ = sh(&format!("scontrol update nodename={host} state=resume"));
        }
        if t.elapsed() > Duration::from_secs(60) {
            bail!(
                "Slurm node not idle after 60 s (sinfo: {states:?}); logs in {}",
                state.join("log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(Some(LocalSlurm {
        started,
        pid_files: vec![pid("slurmd"), pid("slurmctld")],
    }))
}
