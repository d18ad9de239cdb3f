//! One line per crash: to syslog through `/dev/log` when something listens there, else appended
//! to `log/coresnap.log` in the archive (the same file coresnapd appends to without syslog).

use crate::archive::open_at;
use std::io::Write;
use std::os::fd::RawFd;
use std::os::unix::net::UnixDatagram;

/// The vendor logs every step as `coresnap[pid]`; the daemon uses the same tag.
pub const TAG: &str = "coresnap";
pub const LOG_FILE: &str = "coresnap.log";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error = 3,
    Warning = 4,
    Info = 6,
}

pub struct Logger {
    syslog: Option<UnixDatagram>,
    file: Option<std::fs::File>,
    pid: u32,
}

/// `YYYY-MM-DDTHH:MM:SSZ` for `secs` since the epoch (no time-zone database needed).
pub fn utc_timestamp(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Logger {
    /// A logger for the archive's `log` folder (`log_dir`), or stderr only when there is none.
    pub fn new(log_dir: Option<RawFd>) -> Logger {
        let syslog = UnixDatagram::unbound()
            .ok()
            .filter(|s| s.connect("/dev/log").is_ok());
        let file = match (&syslog, log_dir) {
            (None, Some(dir)) => open_at(
                dir,
                LOG_FILE,
                libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_NOFOLLOW,
                0o640,
            )
            .ok()
            .map(std::fs::File::from),
            _ => None,
        };
        Logger {
            syslog,
            file,
            pid: std::process::id(),
        }
    }

    pub fn uses_syslog(&self) -> bool {
        self.syslog.is_some()
    }

    pub fn log(&mut self, severity: Severity, message: &str) {
        // Facility daemon (3).
        let priority = 3 * 8 + severity as u32;
        let one_line = message.replace('\n', " ");
        if let Some(socket) = &self.syslog {
            if socket
                .send(format!("<{priority}>{TAG}[{}]: {one_line}", self.pid).as_bytes())
                .is_ok()
            {
                return;
            }
        }
        let line = format!(
            "{} {TAG}[{}]: {one_line}\n",
            utc_timestamp(now_secs()),
            self.pid
        );
        match &mut self.file {
            // One write(2) per line with O_APPEND keeps lines from concurrent writers whole.
            Some(file) => {
                let _ = file.write_all(line.as_bytes());
            }
            None => {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_timestamp(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
