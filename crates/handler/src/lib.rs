//! `coresnap-handler`: the program the kernel runs for every core dump once `coresnap install`
//! has written `|<path>/coresnap-handler --archive=<dir> %P %I %s %c %d %t %e` into
//! `/proc/sys/kernel/core_pattern`.
//!
//! What the kernel does: runs this program as root, in the initial namespaces, with the core on
//! standard input, the crashing process still present in `/proc/<%P>`, and (because `coresnap
//! install` sets `core_pipe_limit`) waits for it to exit before reaping the process. Standard
//! output and error may be closed.
//!
//! What the handler does, in order, and nothing else:
//! 1. opens the archive (which must be a directory owned by root and writable by no one else) and
//!    reads `state/handler.conf`, the settings `coresnapd` resolved from `coresnap.conf`;
//! 2. honours the core size limit (`%c`): a limit of 0 is skipped and counted, unless the
//!    settings say to ignore the limit; a finite limit truncates the spooled core;
//! 3. with `only_under` set, gives crashes of executables outside that folder the kernel's
//!    default treatment instead (`core` in the process's working directory, written with the
//!    process's own file-system identity), so that a test or a narrow install does not take every
//!    core of the machine;
//! 4. reads what only `/proc/<pid>` knows (executable, cmdline, comm, status, maps, limits,
//!    cgroup, allow-listed environment names) before it reads a byte of the core;
//! 5. rate-limits per executable (a storm of crashes of one program keeps the first
//!    `rate_burst` per `rate_window` seconds and counts the rest in `state/counters`);
//! 6. checks `dump.quota` against the archive's free space before writing, and again while the
//!    core streams in;
//! 7. streams the core into `tmp/<uuid>.core` (0600, `O_EXCL|O_NOFOLLOW`, every path relative to
//!    an already opened archive directory, so no link is followed), writes the metadata to
//!    `meta/<uuid>.json`, fsyncs both, renames the core to `pending/<uuid>` (the daemon's queue),
//!    and pokes `state/coresnapd.sock` (the daemon may be down: the spool is the queue);
//! 8. logs one line to syslog (`/dev/log`) or, without it, to `log/coresnap.log` in the archive.
//!
//! It never panics on what it reads: a missing `/proc` file is noted in the metadata, a bad
//! settings line is logged and ignored.

pub mod archive;
pub mod args;
pub mod conf;
pub mod counters;
pub mod log;
pub mod proc_info;
pub mod spool;

use std::io;

/// Why the handler could not do its job; every message is a sentence for the log.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("{0}")]
    Usage(String),
    #[error("the archive {path} cannot be used: {reason}")]
    Archive { path: String, reason: String },
    #[error("{what} failed: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

impl HandlerError {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> HandlerError {
        HandlerError::Io {
            what: what.into(),
            source,
        }
    }
}
