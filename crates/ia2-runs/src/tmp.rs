//! Temporary names, one scheme for everything ia2 writes: `.ia2-tmp-{pid}-{nonce}-{name}` beside the final
//! `name` (a file or a directory). The owner renames it into place when complete; anything else that looks
//! like it after a crash is removed by the next writer of `name` once its owner is gone: the pid is not
//! alive, or the caller holds the lock of `name` (every owner holds that lock while its temporary exists).

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Prefix of every temporary name.
pub const TMP_PREFIX: &str = ".ia2-tmp-";

/// A parsed temporary name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TmpName {
    pub pid: u32,
    pub nonce: String,
    /// The final name it will be renamed to.
    pub name: String,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn nonce() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let c = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mix = (t ^ c.wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    format!("{:08x}", (mix >> 32) as u32)
}

/// A fresh temporary name for `name`.
pub fn tmp_name(name: &str) -> String {
    format!("{TMP_PREFIX}{}-{}-{name}", std::process::id(), nonce())
}

/// A fresh temporary path beside `target`.
pub fn tmp_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    target
        .parent()
        .unwrap_or(Path::new("."))
        .join(tmp_name(&name))
}

/// Parses a temporary name; `None` for anything else.
pub fn parse(file_name: &str) -> Option<TmpName> {
    let rest = file_name.strip_prefix(TMP_PREFIX)?;
    let (pid, rest) = rest.split_once('-')?;
    let (nonce, name) = rest.split_once('-')?;
    Some(TmpName {
        pid: pid.parse().ok()?,
        nonce: nonce.to_string(),
        name: name.to_string(),
    })
}

/// Whether process `pid` exists (on this machine).
pub fn pid_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let Ok(p) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if p <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(p, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Removes the leftovers of `name` in `dir` whose owner is gone: its pid is dead, or (`lock_held`: the
/// caller holds the lock of `name`) any pid but ours. Returns what was removed.
pub fn remove_leftovers(dir: &Path, name: &str, lock_held: bool) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(removed);
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().to_string();
        let Some(t) = parse(&file_name) else { continue };
        // A temporary of a temporary (e.g. an adapter saved inside a run being written) belongs to the
        // innermost name.
        let mut inner = t.name.clone();
        while let Some(n) = parse(&inner) {
            inner = n.name;
        }
        if inner != name && inner != format!("{name}{OLD_SUFFIX}") {
            continue;
        }
        let gone = !pid_alive(t.pid) || (lock_held && t.pid != std::process::id());
        if !gone {
            continue;
        }
        let path = entry.path();
        tracing::info!(path = %path.display(), "removing the leftover of an interrupted write");
        let r = if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        r.with_context(|| format!("removing leftover {}", path.display()))?;
        removed.push(path);
    }
    Ok(removed)
}

/// Suffix of an old version moved aside during a non-atomic replacement (see [`crate::replace`]).
pub const OLD_SUFFIX: &str = ".ia2-old";

/// Writes `bytes` to `path` atomically: a temporary file of this scheme in the same directory, flushed to
/// disk, then renamed over `path`. Leftovers of dead writers of `path` are removed first. An interrupted or
/// failed write never leaves a file at `path` (nor, on failure, the temporary).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating directory {}", dir.display()))?;
    let file_name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?
        .to_string_lossy()
        .to_string();
    remove_leftovers(dir, &file_name, false).ok();
    let tmp = dir.join(tmp_name(&file_name));
    let result = (|| -> Result<()> {
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("flushing {}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes `value` as pretty JSON (with a final newline) to `path` atomically (see [`write_atomic`]).
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).context("serializing JSON")?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// Reads and parses a JSON file, naming the file (and serde's line/column) on failure.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_temporaries_of_a_dead_owner_are_removed_with_their_run() {
        let d = tempfile::tempdir().unwrap();
        // A pid that does not exist (beyond the kernel's pid_max).
        let dead = 4_194_305u32;
        let run_tmp = format!("{TMP_PREFIX}{dead}-n1-run_a");
        // An adapter saved inside that run directory leaves its own sibling when killed mid-save.
        let adapter_tmp = format!("{TMP_PREFIX}{dead}-n2-{run_tmp}");
        let other = format!("{TMP_PREFIX}{dead}-n3-run_b");
        for n in [&run_tmp, &adapter_tmp, &other] {
            std::fs::create_dir_all(d.path().join(n)).unwrap();
        }
        let removed = remove_leftovers(d.path(), "run_a", false).unwrap();
        assert_eq!(removed.len(), 2, "{removed:?}");
        assert!(
            d.path().join(&other).exists(),
            "another run's leftovers are its own business"
        );
    }

    #[test]
    fn names_parse_back() {
        let n = tmp_name("a-b.json");
        let t = parse(&n).unwrap();
        assert_eq!(t.pid, std::process::id());
        assert_eq!(t.name, "a-b.json");
        assert_ne!(tmp_name("x"), tmp_name("x"), "nonces differ");
        assert!(parse(".a.partial-12").is_none());
        assert!(parse(".ia2-tmp-x-1-a").is_none());
    }

    #[test]
    fn leftovers_of_dead_owners_only_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dead_pid();
        let stale = dir.path().join(format!("{TMP_PREFIX}{dead}-0000-r.json"));
        let live = dir.path().join(format!("{TMP_PREFIX}1-0000-r.json")); // init: alive
        let mine = dir.path().join(tmp_name("r.json"));
        let other = dir.path().join(format!("{TMP_PREFIX}{dead}-0000-s.json"));
        for p in [&stale, &live, &mine, &other] {
            std::fs::write(p, b"x").unwrap();
        }
        let removed = remove_leftovers(dir.path(), "r.json", false).unwrap();
        assert_eq!(removed, vec![stale.clone()]);
        assert!(live.exists() && mine.exists() && other.exists());
        // Holding the lock: every owner but us is gone.
        let removed = remove_leftovers(dir.path(), "r.json", true).unwrap();
        assert_eq!(removed, vec![live.clone()]);
        assert!(mine.exists());
        write_atomic(&dir.path().join("s.json"), b"new").unwrap();
        assert!(
            !other.exists(),
            "the writer of s.json cleans its dead leftovers"
        );
        assert_eq!(std::fs::read(dir.path().join("s.json")).unwrap(), b"new");
    }

    /// The pid of a process that has exited.
    pub(crate) fn dead_pid() -> u32 {
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        assert!(!pid_alive(pid));
        pid
    }
}
