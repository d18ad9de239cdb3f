//! Counters and the per-executable rate limit, kept in `state/` under `flock` because during a
//! storm many handlers run at once.
//!
//! `state/counters` holds one `name value` per line; the names the handler uses are
//! [`STORED`], [`DROPPED_RATE`], [`DROPPED_QUOTA`], [`SKIPPED_LIMIT`], [`PASSED_THROUGH`] and
//! [`FAILED`]. `state/rate/<hash of the executable path>` holds
//! `window_start count dropped_total dropped_unreported` and, on its second line, the path.

use crate::archive::{fstat, open_at};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

pub const STORED: &str = "stored";
pub const DROPPED_RATE: &str = "dropped.rate";
pub const DROPPED_QUOTA: &str = "dropped.quota";
pub const SKIPPED_LIMIT: &str = "skipped.limit";
pub const PASSED_THROUGH: &str = "passed_through";
pub const FAILED: &str = "failed";

/// An open file held under an exclusive `flock` until dropped.
struct Locked {
    file: std::fs::File,
}

impl Locked {
    fn open(dir: RawFd, name: &str) -> io::Result<Locked> {
        let fd: OwnedFd = open_at(
            dir,
            name,
            libc::O_RDWR | libc::O_CREAT | libc::O_NOFOLLOW,
            0o600,
        )?;
        let st = fstat(fd.as_raw_fd())?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_nlink != 1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{name} is not a plain file"),
            ));
        }
        loop {
            // SAFETY: flock only reads the descriptor number.
            if unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX) } == 0 {
                break;
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
        Ok(Locked {
            file: std::fs::File::from(fd),
        })
    }

    fn read_text(&mut self) -> io::Result<String> {
        let mut bytes = Vec::new();
        self.file.seek(SeekFrom::Start(0))?;
        // Bounded: these files are a few lines long; anything bigger is damage.
        (&mut self.file).take(64 * 1024).read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn write_text(&mut self, text: &str) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(0))?;
        self.file.set_len(0)?;
        self.file.write_all(text.as_bytes())?;
        self.file.sync_data()
    }
}

/// Parses `name value` lines; lines that do not parse are dropped.
pub fn parse_counters(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|line| {
            let (name, value) = line.trim().split_once(' ')?;
            Some((name.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// Adds `by` to counter `name` in `state/counters`; returns the new value.
pub fn bump(state_dir: RawFd, name: &str, by: u64) -> io::Result<u64> {
    let mut locked = Locked::open(state_dir, "counters")?;
    let mut counters = parse_counters(&locked.read_text()?);
    let value = match counters.iter_mut().find(|(n, _)| n == name) {
        Some((_, v)) => {
            *v = v.saturating_add(by);
            *v
        }
        None => {
            counters.push((name.to_string(), by));
            by
        }
    };
    let text: String = counters.iter().map(|(n, v)| format!("{n} {v}\n")).collect();
    locked.write_text(&text)?;
    Ok(value)
}

/// FNV-1a, 64 bits: a stable file name for an executable path (not a security boundary).
fn path_key(path: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in path.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    /// Spool it; `dropped_before` crashes of this executable were dropped since the last one
    /// spooled (recorded in its metadata).
    Keep { dropped_before: u64 },
    /// Drop it; `dropped_total` of this executable have been dropped so far.
    Drop { dropped_total: u64 },
}

/// Decides whether a crash of `executable` at `now` fits in its window.
pub fn rate_check(
    state_dir: RawFd,
    executable: &str,
    burst: u32,
    window_secs: u64,
    now: i64,
) -> io::Result<RateDecision> {
    if burst == 0 {
        return Ok(RateDecision::Keep { dropped_before: 0 });
    }
    let rate_dir = match open_at(
        state_dir,
        "rate",
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        0,
    ) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // SAFETY: a static NUL-terminated name.
            if unsafe { libc::mkdirat(state_dir, c"rate".as_ptr(), 0o700) } != 0 {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::AlreadyExists {
                    return Err(err);
                }
            }
            open_at(
                state_dir,
                "rate",
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                0,
            )?
        }
        Err(e) => return Err(e),
    };
    let mut locked = Locked::open(rate_dir.as_raw_fd(), &path_key(executable))?;
    let text = locked.read_text()?;
    let numbers: Vec<i64> = text
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    let field = |i: usize| numbers.get(i).copied().unwrap_or(0);
    let (mut start, mut count) = (field(0), field(1));
    let (mut dropped_total, mut unreported) = (field(2).max(0) as u64, field(3).max(0) as u64);
    let window = i64::try_from(window_secs).unwrap_or(i64::MAX);
    // A clock that went backwards also starts a new window.
    if now < start || now.saturating_sub(start) >= window {
        start = now;
        count = 0;
    }
    let decision = if count < i64::from(burst) {
        count += 1;
        let before = unreported;
        unreported = 0;
        RateDecision::Keep {
            dropped_before: before,
        }
    } else {
        dropped_total = dropped_total.saturating_add(1);
        unreported = unreported.saturating_add(1);
        RateDecision::Drop { dropped_total }
    };
    locked.write_text(&format!(
        "{start} {count} {dropped_total} {unreported}\n{executable}\n"
    ))?;
    Ok(decision)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> (std::path::PathBuf, OwnedFd) {
        let dir =
            std::env::temp_dir().join(format!("coresnap-handler-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let fd = std::fs::File::open(&dir).expect("open dir");
        (dir, OwnedFd::from(fd))
    }

    #[test]
    fn counters_add_up_across_threads() {
        let (dir, fd) = temp_dir("counters");
        let raw = fd.as_raw_fd();
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..25 {
                        bump(raw, STORED, 1).expect("bump");
                    }
                });
            }
        });
        bump(raw, DROPPED_RATE, 3).expect("bump");
        let text = std::fs::read_to_string(dir.join("counters")).expect("read");
        let counters = parse_counters(&text);
        assert!(counters.contains(&(STORED.to_string(), 200)), "{text}");
        assert!(counters.contains(&(DROPPED_RATE.to_string(), 3)), "{text}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_window_keeps_a_burst_and_counts_the_rest() {
        let (dir, fd) = temp_dir("rate");
        let raw = fd.as_raw_fd();
        let mut kept = 0;
        let mut dropped = 0;
        for _ in 0..10 {
            match rate_check(raw, "/bin/storm", 3, 60, 1000).expect("check") {
                RateDecision::Keep { .. } => kept += 1,
                RateDecision::Drop { .. } => dropped += 1,
            }
        }
        assert_eq!((kept, dropped), (3, 7));
        // Another executable has its own window.
        assert_eq!(
            rate_check(raw, "/bin/other", 3, 60, 1000).expect("check"),
            RateDecision::Keep { dropped_before: 0 }
        );
        // The next window reports the drops once.
        assert_eq!(
            rate_check(raw, "/bin/storm", 3, 60, 1060).expect("check"),
            RateDecision::Keep { dropped_before: 7 }
        );
        assert_eq!(
            rate_check(raw, "/bin/storm", 3, 60, 1061).expect("check"),
            RateDecision::Keep { dropped_before: 0 }
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
