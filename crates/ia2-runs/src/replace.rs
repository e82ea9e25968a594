//! Putting a finished directory in place of an older one, atomically where the kernel allows it.
//!
//! With `renameat2(RENAME_EXCHANGE)` (Linux ≥ 3.15, most local file systems) the new directory and the old
//! one swap names in one step: a crash leaves either the old run in place and the new one under its
//! temporary name, or the new run in place and the old one under the temporary name; the temporary is
//! removed by the next start either way. Where the exchange is not supported, the old directory is first
//! moved aside under a temporary name ending in [`crate::tmp::OLD_SUFFIX`]; a crash between the two
//! renames leaves no run in place, and the next start ([`recover`]) moves the old one back.

use crate::tmp::{self, OLD_SUFFIX};
use anyhow::{Context, Result};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const RENAME_EXCHANGE: libc::c_uint = 1 << 1;

/// Swaps the names of `a` and `b` atomically (`renameat2(RENAME_EXCHANGE)`).
pub fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    let ca = CString::new(a.as_os_str().as_bytes())?;
    let cb = CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: two valid NUL-terminated paths; the syscall reads them only.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            RENAME_EXCHANGE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// How [`replace_dir_with`] replaces (tests simulate crashes and kernels without the exchange).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplaceOptions {
    /// Use the two-rename fallback even where the exchange works.
    pub no_exchange: bool,
    /// Stop after the first rename as a crash would (returns an error).
    pub crash_after_first_rename: bool,
}

/// Moves the directory `new` to `target`, replacing an existing `target` (see the module notes). The caller
/// holds the lock of `target`.
pub fn replace_dir(new: &Path, target: &Path) -> Result<()> {
    replace_dir_with(new, target, ReplaceOptions::default())
}

#[doc(hidden)]
pub fn replace_dir_with(new: &Path, target: &Path, opts: ReplaceOptions) -> Result<()> {
    if std::fs::symlink_metadata(target).is_err() {
        return std::fs::rename(new, target)
            .with_context(|| format!("renaming {} to {}", new.display(), target.display()));
    }
    let exchanged = if opts.no_exchange {
        false
    } else {
        match exchange(new, target) {
            Ok(()) => true,
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
                ) =>
            {
                false
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("exchanging {} and {}", new.display(), target.display())
                });
            }
        }
    };
    if exchanged {
        if opts.crash_after_first_rename {
            anyhow::bail!("simulated crash");
        }
        // `new` now holds the old run.
        remove_all(new);
        return Ok(());
    }
    let name = target
        .file_name()
        .context("target has no name")?
        .to_string_lossy()
        .to_string();
    let aside = target
        .parent()
        .unwrap_or(Path::new("."))
        .join(tmp::tmp_name(&format!("{name}{OLD_SUFFIX}")));
    std::fs::rename(target, &aside)
        .with_context(|| format!("moving the old {} aside", target.display()))?;
    if opts.crash_after_first_rename {
        anyhow::bail!("simulated crash");
    }
    if let Err(e) = std::fs::rename(new, target) {
        std::fs::rename(&aside, target).ok();
        return Err(e)
            .with_context(|| format!("renaming {} to {}", new.display(), target.display()));
    }
    remove_all(&aside);
    Ok(())
}

fn remove_all(p: &Path) {
    if let Err(e) = std::fs::remove_dir_all(p) {
        tracing::warn!("could not remove {}: {e}", p.display());
    }
}

/// Cleans up after crashed writers of `target` (the caller holds its lock): an old version moved aside by
/// an interrupted fallback replacement is moved back when `target` is missing; every other temporary of
/// `target` is removed. Returns the removed paths.
pub fn recover(target: &Path) -> Result<Vec<std::path::PathBuf>> {
    let dir = target.parent().unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .context("target has no name")?
        .to_string_lossy()
        .to_string();
    if std::fs::symlink_metadata(target).is_err()
        && let Ok(entries) = std::fs::read_dir(dir)
    {
        let old = format!("{name}{OLD_SUFFIX}");
        for e in entries.flatten() {
            if let Some(t) = tmp::parse(&e.file_name().to_string_lossy())
                && t.name == old
                && t.pid != std::process::id()
            {
                tracing::warn!(
                    "restoring {} from an interrupted replacement",
                    target.display()
                );
                std::fs::rename(e.path(), target)
                    .with_context(|| format!("restoring {}", target.display()))?;
                break;
            }
        }
    }
    let mut removed = tmp::remove_leftovers(dir, &name, true)?;
    // Leftovers of ia2 versions before this scheme, removed when their owner is dead.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let f = e.file_name().to_string_lossy().to_string();
            let legacy = [format!(".{name}.partial-"), format!(".{name}.replaced-")];
            let Some(pid) = legacy
                .iter()
                .find_map(|p| f.strip_prefix(p.as_str()))
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if !tmp::pid_alive(pid) && std::fs::remove_dir_all(e.path()).is_ok() {
                removed.push(e.path());
            }
        }
    }
    Ok(removed)
}
