//! Advisory locks (`flock`) per run directory, evaluation result and teacher cache entry: a lock file
//! `.ia2-lock-{name}` beside the target ([`crate::layout::lock_path`]), present only while the lock is held
//! (or left by a crashed holder, then reused). Locks belong to an open file, so
//! two threads with their own [`Lock`]s exclude each other as two processes do; the kernel releases a lock
//! when its holder dies, so a crashed process never blocks anyone.

use anyhow::{Context, Result, bail};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// What to do when another process holds the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Log who holds it and wait for it.
    Block,
    /// Fail at once with a message naming the holder.
    Fail,
}

/// A held lock; released on drop.
#[derive(Debug)]
pub struct Lock {
    file: File,
    path: PathBuf,
}

impl Lock {
    /// Locks `target` (exclusive).
    pub fn acquire(target: &Path, wait: Wait) -> Result<Lock> {
        let path = crate::layout::lock_path(target);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut waited = false;
        loop {
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .with_context(|| format!("opening lock file {}", path.display()))?;
            if !flock(&file, libc::LOCK_EX | libc::LOCK_NB)? {
                let holder = holder(&mut file);
                match wait {
                    Wait::Fail => bail!(
                        "{} is being written by another ia2 process{holder} (lock {} held); try again \
                         when it has finished",
                        target.display(),
                        path.display()
                    ),
                    Wait::Block => {
                        if !waited {
                            tracing::warn!(
                                "{} is being written by another ia2 process{holder}; waiting for it to \
                                 finish",
                                target.display()
                            );
                            waited = true;
                        }
                        flock(&file, libc::LOCK_EX)?;
                    }
                }
            }
            // The holder removes the lock file when it releases the lock: if the file we locked is no
            // longer the one at `path`, it was released meanwhile; lock the current one.
            let same = match (file.metadata(), std::fs::metadata(&path)) {
                (Ok(a), Ok(b)) => {
                    use std::os::unix::fs::MetadataExt;
                    a.ino() == b.ino() && a.dev() == b.dev()
                }
                _ => false,
            };
            if !same {
                continue;
            }
            // Record the holder for the messages of those who wait.
            file.set_len(0).ok();
            file.rewind().ok();
            let _ = write!(file, "{}", std::process::id());
            return Ok(Lock { file, path });
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Lock {
    /// Removes the lock file while still holding the lock (so no directory fills up with them), then
    /// unlocks. A waiter that locked the removed file notices and locks the current one.
    fn drop(&mut self) {
        std::fs::remove_file(&self.path).ok();
        // SAFETY: unlocking our own open descriptor.
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// `Ok(false)` when the lock is held elsewhere (non-blocking request).
fn flock(file: &File, op: libc::c_int) -> Result<bool> {
    loop {
        // SAFETY: flock on a descriptor we own.
        let r = unsafe { libc::flock(file.as_raw_fd(), op) };
        if r == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) => return Ok(false),
            _ => return Err(e).context("flock"),
        }
    }
}

fn holder(file: &mut File) -> String {
    let mut s = String::new();
    file.rewind().ok();
    file.read_to_string(&mut s).ok();
    match s.trim().parse::<u32>() {
        Ok(pid) => format!(" (pid {pid})"),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn second_holder_fails_or_waits() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("run");
        let first = Lock::acquire(&target, Wait::Fail).unwrap();
        let err = Lock::acquire(&target, Wait::Fail).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("another ia2 process")
                && msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        let (tx, rx) = mpsc::channel();
        let t2 = target.clone();
        let h = std::thread::spawn(move || {
            let _l = Lock::acquire(&t2, Wait::Block).unwrap();
            tx.send(()).unwrap();
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "waits while held"
        );
        drop(first);
        rx.recv_timeout(Duration::from_secs(10))
            .expect("gets it once released");
        h.join().unwrap();
        assert!(!target.exists(), "locking never creates the target");
        assert!(
            !crate::layout::lock_path(&target).exists(),
            "the lock file goes with the last holder"
        );
    }
}
