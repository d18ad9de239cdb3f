//! The archive as directory descriptors: every file the handler touches is named relative to a
//! directory it already opened with `O_NOFOLLOW`, and each directory it writes into must be owned
//! by the handler's user and writable by no one else, so nobody can plant a link where root
//! writes.

use crate::HandlerError;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The folders the handler writes into, with the mode it gives them when it has to create them
/// (`coresnap install` creates them first, with their group).
pub const HANDLER_DIRS: &[(&str, u32)] = &[
    ("tmp", 0o700),
    ("pending", 0o750),
    ("meta", 0o750),
    ("state", 0o700),
    ("log", 0o750),
];

fn cstring(name: &str) -> io::Result<CString> {
    CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a name with a NUL byte"))
}

/// `openat(dir, name, flags | O_CLOEXEC, mode)`.
pub fn open_at(
    dir: RawFd,
    name: &str,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> io::Result<OwnedFd> {
    let name = cstring(name)?;
    loop {
        // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
        let fd = unsafe {
            libc::openat(
                dir,
                name.as_ptr(),
                flags | libc::O_CLOEXEC,
                libc::c_uint::from(mode),
            )
        };
        if fd >= 0 {
            // SAFETY: the kernel just gave us this descriptor; nothing else owns it.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

pub fn rename_at(from_dir: RawFd, from: &str, to_dir: RawFd, to: &str) -> io::Result<()> {
    let (from, to) = (cstring(from)?, cstring(to)?);
    // SAFETY: both names are valid NUL-terminated strings.
    if unsafe { libc::renameat(from_dir, from.as_ptr(), to_dir, to.as_ptr()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub fn unlink_at(dir: RawFd, name: &str) -> io::Result<()> {
    let name = cstring(name)?;
    // SAFETY: `name` is a valid NUL-terminated string.
    if unsafe { libc::unlinkat(dir, name.as_ptr(), 0) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    // SAFETY: an all-zero stat is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid, writable stat buffer.
    if unsafe { libc::fstat(fd, &mut st) } == 0 {
        Ok(st)
    } else {
        Err(io::Error::last_os_error())
    }
}

pub fn fsync(fd: RawFd) -> io::Result<()> {
    // SAFETY: fsync only reads the descriptor number.
    if unsafe { libc::fsync(fd) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The free and total bytes, and the block size, of the file system holding `fd`.
pub fn free_space(fd: RawFd) -> io::Result<(u64, u64, u64)> {
    // SAFETY: an all-zero statvfs is a valid value to be overwritten.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid, writable statvfs buffer.
    if unsafe { libc::fstatvfs(fd, &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let block = st.f_frsize.max(1);
    Ok((
        st.f_bavail.saturating_mul(block),
        st.f_blocks.saturating_mul(block),
        block,
    ))
}

/// An opened archive and its handler-owned folders.
pub struct Archive {
    pub path: PathBuf,
    pub root: OwnedFd,
    pub tmp: OwnedFd,
    pub pending: OwnedFd,
    pub meta: OwnedFd,
    pub state: OwnedFd,
    pub log: OwnedFd,
}

fn check_owned_dir(fd: RawFd, what: &Path) -> Result<(), HandlerError> {
    let st = fstat(fd).map_err(|e| HandlerError::io(format!("stat {}", what.display()), e))?;
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if st.st_uid != euid {
        return Err(HandlerError::Archive {
            path: what.display().to_string(),
            reason: format!(
                "it is owned by uid {}, not by uid {euid} that writes cores into it",
                st.st_uid
            ),
        });
    }
    if st.st_mode & 0o022 != 0 {
        return Err(HandlerError::Archive {
            path: what.display().to_string(),
            reason: format!(
                "its mode {:o} lets others write into it",
                st.st_mode & 0o7777
            ),
        });
    }
    Ok(())
}

const DIR_FLAGS: libc::c_int = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;

impl Archive {
    /// Opens `path` (which must exist) and its handler folders (created when missing).
    pub fn open(path: &Path) -> Result<Archive, HandlerError> {
        let bad = |reason: String| HandlerError::Archive {
            path: path.display().to_string(),
            reason,
        };
        let name = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| bad("the path has a NUL byte".into()))?;
        // SAFETY: `name` is a valid NUL-terminated string.
        let fd = unsafe { libc::open(name.as_ptr(), DIR_FLAGS | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(bad(format!(
                "it cannot be opened as a folder ({})",
                io::Error::last_os_error()
            )));
        }
        // SAFETY: a fresh descriptor from open(2).
        let root = unsafe { OwnedFd::from_raw_fd(fd) };
        check_owned_dir(root.as_raw_fd(), path)?;
        let mut dirs = Vec::with_capacity(HANDLER_DIRS.len());
        for (sub, mode) in HANDLER_DIRS {
            dirs.push(open_subdir(&root, path, sub, *mode)?);
        }
        let mut dirs = dirs.into_iter();
        let mut next = || {
            dirs.next()
                .ok_or_else(|| bad("internal: folder list".into()))
        };
        Ok(Archive {
            path: path.to_path_buf(),
            tmp: next()?,
            pending: next()?,
            meta: next()?,
            state: next()?,
            log: next()?,
            root,
        })
    }
}

fn open_subdir(
    root: &OwnedFd,
    root_path: &Path,
    name: &str,
    mode: u32,
) -> Result<OwnedFd, HandlerError> {
    let full = root_path.join(name);
    let fd = match open_at(root.as_raw_fd(), name, DIR_FLAGS, 0) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let cname = cstring(name).map_err(|e| HandlerError::io("a folder name", e))?;
            // SAFETY: `cname` is a valid NUL-terminated string.
            if unsafe { libc::mkdirat(root.as_raw_fd(), cname.as_ptr(), mode) } != 0 {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::AlreadyExists {
                    return Err(HandlerError::io(
                        format!("creating {}", full.display()),
                        err,
                    ));
                }
            }
            open_at(root.as_raw_fd(), name, DIR_FLAGS, 0)
                .map_err(|e| HandlerError::io(format!("opening {}", full.display()), e))?
        }
        Err(e) => {
            return Err(HandlerError::Archive {
                path: full.display().to_string(),
                reason: format!("it cannot be opened as a folder without following links ({e})"),
            })
        }
    };
    check_owned_dir(fd.as_raw_fd(), &full)?;
    Ok(fd)
}
