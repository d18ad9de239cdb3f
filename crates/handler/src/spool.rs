//! One crash, from the kernel's pipe to `pending/<uuid>`.

use crate::archive::{free_space, fstat, fsync, open_at, rename_at, unlink_at, Archive};
use crate::args::{CoreLimit, KernelArgs};
use crate::conf::{HandlerConf, Others, Quota};
use crate::counters::{self, RateDecision};
use crate::proc_info::{self, ProcessFacts};
use crate::HandlerError;
use serde_json::{json, Value};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// How one crash ended; the caller logs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Spooled as `pending/<uuid>`.
    Stored {
        uuid: String,
        bytes: u64,
        truncated: bool,
        executable: String,
    },
    /// The process's core size limit is 0.
    SkippedLimit { executable: String },
    /// Over the per-executable rate.
    DroppedRate {
        executable: String,
        dropped_total: u64,
    },
    /// The archive's file system is below `dump.quota`.
    DroppedQuota {
        executable: String,
        free: u64,
        required: u64,
    },
    /// Outside `only_under`: handled as core_pattern `core` would (`written` is where, if any).
    PassedThrough {
        executable: String,
        written: Option<String>,
    },
}

/// How much of the core to read per system call: big enough to keep up with the kernel, small
/// enough to keep the handler's memory far below a Node process.
const CHUNK: usize = 256 * 1024;
/// Re-check the quota after this many bytes.
const QUOTA_RECHECK: u64 = 16 * 1024 * 1024;

/// Handles one crash whose core arrives on `input`.
pub fn handle(
    archive: &Archive,
    conf: &HandlerConf,
    args: &KernelArgs,
    input: &mut dyn Read,
) -> Result<Outcome, HandlerError> {
    // Decide first on the executable alone; read the rest of /proc only for crashes we keep.
    let executable = proc_info::executable_of(args.pid)
        .or_else(|| args.comm.clone())
        .unwrap_or_else(|| format!("pid {}", args.pid));
    let state = archive.state.as_raw_fd();

    if let Some(prefix) = &conf.only_under {
        if !executable.starts_with(prefix.as_str()) {
            let _ = counters::bump(state, counters::PASSED_THROUGH, 1);
            let written = match conf.others {
                Others::Drop => None,
                Others::Core => {
                    let facts = ProcessFacts::read(args.pid, &[]);
                    write_kernel_style_core(args, &facts, input)?
                }
            };
            return Ok(Outcome::PassedThrough {
                executable,
                written,
            });
        }
    }

    if args.core_limit == CoreLimit::Bytes(0) && !conf.ignore_limit {
        let _ = counters::bump(state, counters::SKIPPED_LIMIT, 1);
        return Ok(Outcome::SkippedLimit { executable });
    }

    let dropped_before = match counters::rate_check(
        state,
        &executable,
        conf.rate_burst,
        conf.rate_window_secs,
        args.time,
    ) {
        Ok(RateDecision::Keep { dropped_before }) => dropped_before,
        Ok(RateDecision::Drop { dropped_total }) => {
            let _ = counters::bump(state, counters::DROPPED_RATE, 1);
            return Ok(Outcome::DroppedRate {
                executable,
                dropped_total,
            });
        }
        // A broken rate file must not cost a crash: keep it.
        Err(_) => 0,
    };

    let root = archive.root.as_raw_fd();
    if let Some(quota) = conf.quota {
        if let Some((free, required)) = below_quota(root, quota)? {
            let _ = counters::bump(state, counters::DROPPED_QUOTA, 1);
            return Ok(Outcome::DroppedQuota {
                executable,
                free,
                required,
            });
        }
    }

    let facts = ProcessFacts::read(args.pid, &conf.env_allowlist);
    let uuid = uuid::Uuid::new_v4().hyphenated().to_string();
    let tmp = archive.tmp.as_raw_fd();
    let core_tmp = format!("{uuid}.core");
    let meta_tmp = format!("{uuid}.json");
    let result = spool_core(
        archive,
        conf,
        args,
        &facts,
        &executable,
        &uuid,
        dropped_before,
        input,
    );
    if result.is_err() {
        let _ = unlink_at(tmp, &core_tmp);
        let _ = unlink_at(tmp, &meta_tmp);
    }
    let (bytes, truncated) = match result? {
        Spooled::Done { bytes, truncated } => (bytes, truncated),
        Spooled::QuotaReached { free, required } => {
            let _ = unlink_at(tmp, &core_tmp);
            let _ = counters::bump(state, counters::DROPPED_QUOTA, 1);
            return Ok(Outcome::DroppedQuota {
                executable,
                free,
                required,
            });
        }
    };
    let _ = counters::bump(state, counters::STORED, 1);
    poke_daemon(&archive.path, &uuid);
    Ok(Outcome::Stored {
        uuid,
        bytes,
        truncated,
        executable,
    })
}

enum Spooled {
    Done { bytes: u64, truncated: bool },
    QuotaReached { free: u64, required: u64 },
}

/// `Some((free, required))` when the file system holding `dir` has less free space than `quota`.
fn below_quota(dir: RawFd, quota: Quota) -> Result<Option<(u64, u64)>, HandlerError> {
    let (free, total, block) =
        free_space(dir).map_err(|e| HandlerError::io("statvfs on the archive", e))?;
    let required = quota.required_free(total, block);
    Ok((free < required).then_some((free, required)))
}

#[allow(clippy::too_many_arguments)]
fn spool_core(
    archive: &Archive,
    conf: &HandlerConf,
    args: &KernelArgs,
    facts: &ProcessFacts,
    executable: &str,
    uuid: &str,
    dropped_before: u64,
    input: &mut dyn Read,
) -> Result<Spooled, HandlerError> {
    let tmp = archive.tmp.as_raw_fd();
    let core_tmp = format!("{uuid}.core");
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
    let fd = open_at(tmp, &core_tmp, flags, 0o600)
        .map_err(|e| HandlerError::io("creating the spool file", e))?;
    if let Some((uid, gid)) = conf.owner {
        // SAFETY: fchown only reads its arguments.
        if unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) } != 0 {
            return Err(HandlerError::io(
                "handing the spool file to the analysis user",
                io::Error::last_os_error(),
            ));
        }
    }
    let mut file = std::fs::File::from(fd);
    let limit = match args.core_limit {
        CoreLimit::Unlimited => u64::MAX,
        // Only reached with ignore_limit when the limit is 0.
        CoreLimit::Bytes(0) => u64::MAX,
        CoreLimit::Bytes(n) => n,
    };
    let mut buf = vec![0u8; CHUNK];
    let mut bytes: u64 = 0;
    let mut next_check = QUOTA_RECHECK;
    let mut truncated = false;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(HandlerError::io("reading the core from the kernel", e)),
        };
        let room = limit.saturating_sub(bytes);
        let take = usize::try_from(room).map_or(n, |room| room.min(n));
        let chunk = buf.get(..take).unwrap_or(&[]);
        file.write_all(chunk)
            .map_err(|e| HandlerError::io("writing the spool file", e))?;
        bytes = bytes.saturating_add(take as u64);
        if take < n {
            truncated = true;
            break;
        }
        if bytes >= next_check {
            next_check = bytes.saturating_add(QUOTA_RECHECK);
            if let Some(quota) = conf.quota {
                if let Some((free, required)) = below_quota(archive.root.as_raw_fd(), quota)? {
                    return Ok(Spooled::QuotaReached { free, required });
                }
            }
        }
    }
    // Every byte of the core is in our file (the page cache) now. The kernel keeps the crashed
    // process from being reaped until every reader of the core pipe is gone, so the fsyncs and
    // renames below would add their disk latency to every crash: let the process go first and
    // make the spool durable in a detached child.
    release_the_process();
    fsync(file.as_raw_fd()).map_err(|e| HandlerError::io("fsync of the spool file", e))?;
    drop(file);

    let mut meta = facts.to_json();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string());
    meta.insert("uuid".into(), json!(uuid));
    meta.insert("format".into(), json!(1));
    meta.insert(
        "handler".into(),
        json!(format!("coresnap-handler {}", env!("CARGO_PKG_VERSION"))),
    );
    meta.insert("pid".into(), json!(args.pid));
    meta.insert("tid".into(), json!(args.tid));
    meta.insert("signal".into(), json!(args.signal));
    meta.insert("time".into(), json!(args.time));
    meta.insert("coreLimit".into(), json!(args.core_limit.describe()));
    meta.insert("dumpMode".into(), json!(args.dump_mode));
    meta.insert("kernelComm".into(), json!(args.comm));
    meta.insert(
        "application".into(),
        json!(executable.rsplit('/').next().unwrap_or(executable)),
    );
    meta.insert("hostname".into(), json!(hostname));
    meta.insert("coreSize".into(), json!(bytes));
    meta.insert("truncated".into(), json!(truncated));
    meta.insert("droppedBefore".into(), json!(dropped_before));
    meta.insert("spooledAt".into(), json!(crate::log::now_secs()));
    let text = serde_json::to_vec_pretty(&Value::Object(meta))
        .map_err(|e| HandlerError::io("metadata", io::Error::other(e)))?;
    let meta_tmp = format!("{uuid}.json");
    let fd = open_at(tmp, &meta_tmp, flags, 0o640)
        .map_err(|e| HandlerError::io("creating the metadata file", e))?;
    let mut file = std::fs::File::from(fd);
    file.write_all(&text)
        .map_err(|e| HandlerError::io("writing the metadata", e))?;
    fsync(file.as_raw_fd()).map_err(|e| HandlerError::io("fsync of the metadata", e))?;
    drop(file);

    // The metadata first: when the daemon sees pending/<uuid>, its metadata is there.
    rename_at(
        tmp,
        &meta_tmp,
        archive.meta.as_raw_fd(),
        &format!("{uuid}.json"),
    )
    .map_err(|e| HandlerError::io("moving the metadata into meta/", e))?;
    fsync(archive.meta.as_raw_fd()).map_err(|e| HandlerError::io("fsync of meta/", e))?;
    rename_at(tmp, &core_tmp, archive.pending.as_raw_fd(), uuid)
        .map_err(|e| HandlerError::io("moving the core into pending/", e))?;
    fsync(archive.pending.as_raw_fd()).map_err(|e| HandlerError::io("fsync of pending/", e))?;
    Ok(Spooled::Done { bytes, truncated })
}

/// Ends the kernel's wait for this handler while the work goes on: the parent exits at once, the
/// child closes its end of the core pipe (the kernel waits for every reader) and carries on in a
/// session of its own. Standard output and error stay open in the child, so whoever started the
/// handler with pipes there (tests, a wrapper) still sees it finish. If fork fails, the handler
/// simply finishes before the process goes, as it would without this.
fn release_the_process() {
    // SAFETY: the handler is single-threaded; fork, setsid, close and _exit have no
    // preconditions beyond that, and the child only runs this program's own code.
    match unsafe { libc::fork() } {
        0 => unsafe {
            libc::setsid();
            libc::close(0);
        },
        pid if pid > 0 => unsafe { libc::_exit(0) },
        _ => {}
    }
}

/// Tells a running coresnapd that `pending/<uuid>` exists; a daemon that is down finds it when
/// it starts, so every failure here is ignored.
fn poke_daemon(archive: &std::path::Path, uuid: &str) {
    let socket = archive.join("state").join("coresnapd.sock");
    if let Ok(mut stream) = std::os::unix::net::UnixStream::connect(socket) {
        let _ = stream.set_write_timeout(Some(std::time::Duration::from_millis(200)));
        let _ = stream.write_all(format!("{uuid}\n").as_bytes());
    }
}

/// What core_pattern `core` would have done: `core` (or `core.<pid>`) in the process's working
/// directory, created with the process's own file-system ids (so its permissions decide, not
/// ours), never through a link, never over a file with other links or another owner.
fn write_kernel_style_core(
    args: &KernelArgs,
    facts: &ProcessFacts,
    input: &mut dyn Read,
) -> Result<Option<String>, HandlerError> {
    if args.core_limit == CoreLimit::Bytes(0) {
        return Ok(None);
    }
    let (Some(uid), Some(gid)) = (facts.uid, facts.gid) else {
        return Ok(None);
    };
    let uses_pid =
        std::fs::read_to_string("/proc/sys/kernel/core_uses_pid").is_ok_and(|v| v.trim() != "0");
    let name = if uses_pid {
        format!("core.{}", args.pid)
    } else {
        "core".to_string()
    };
    let cwd: OwnedFd = open_at(
        libc::AT_FDCWD,
        &format!("/proc/{}/cwd", args.pid),
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
    )
    .map_err(|e| HandlerError::io("opening the crashed process's working directory", e))?;
    // SAFETY: setfsgid/setfsuid only change this thread's file-system ids; both return the old id.
    let (old_gid, old_uid) = unsafe { (libc::setfsgid(gid), libc::setfsuid(uid)) };
    let opened = open_at(
        cwd.as_raw_fd(),
        &name,
        libc::O_WRONLY | libc::O_CREAT | libc::O_NOFOLLOW,
        0o600,
    );
    // SAFETY: as above; restores the ids we had.
    unsafe {
        libc::setfsuid(old_uid as libc::uid_t);
        libc::setfsgid(old_gid as libc::gid_t);
    }
    let fd = match opened {
        Ok(fd) => fd,
        // The kernel would not have written it either (no permission, a link): not our error.
        Err(_) => return Ok(None),
    };
    let st = fstat(fd.as_raw_fd()).map_err(|e| HandlerError::io("stat of the core file", e))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_nlink != 1 || st.st_uid != uid {
        return Ok(None);
    }
    let mut file = std::fs::File::from(fd);
    file.set_len(0)
        .map_err(|e| HandlerError::io("truncating the core file", e))?;
    let limit = match args.core_limit {
        CoreLimit::Unlimited => u64::MAX,
        CoreLimit::Bytes(n) => n,
    };
    io::copy(&mut input.take(limit), &mut file)
        .map_err(|e| HandlerError::io("writing the core file", e))?;
    let path = facts
        .cwd
        .as_deref()
        .map(|cwd| format!("{}/{name}", cwd.trim_end_matches('/')));
    Ok(path.or(Some(name)))
}
