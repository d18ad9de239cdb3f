//! The command line the kernel builds from core_pattern:
//! `coresnap-handler --archive=<dir> %P %I %s %c %d %t [%e]`.

use crate::HandlerError;
use std::ffi::OsString;
use std::path::PathBuf;

/// The core size limit of the crashing process (`%c`, its soft `RLIMIT_CORE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoreLimit {
    Unlimited,
    Bytes(u64),
}

impl CoreLimit {
    pub fn parse(text: &str) -> Option<CoreLimit> {
        let value: u64 = text.parse().ok()?;
        // The kernel prints RLIM_INFINITY as the largest u64.
        Some(if value == u64::MAX {
            CoreLimit::Unlimited
        } else {
            CoreLimit::Bytes(value)
        })
    }

    pub fn describe(self) -> String {
        match self {
            CoreLimit::Unlimited => "unlimited".to_string(),
            CoreLimit::Bytes(n) => n.to_string(),
        }
    }
}

/// What the kernel told us about one crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelArgs {
    pub archive: PathBuf,
    /// `%P`: the process id in the initial pid namespace (the one `/proc` here shows).
    pub pid: i32,
    /// `%I`: the crashing thread, initial namespace.
    pub tid: i32,
    /// `%s`: the signal that caused the dump.
    pub signal: i32,
    /// `%c`: the core size limit.
    pub core_limit: CoreLimit,
    /// `%d`: the dump mode (1 = normal, 2 = suid_dumpable "suidsafe").
    pub dump_mode: u32,
    /// `%t`: seconds since the epoch.
    pub time: i64,
    /// `%e`: the command name, when given (the kernel's view, kept in case /proc is unreadable).
    pub comm: Option<String>,
}

pub const USAGE: &str = "usage: coresnap-handler --archive=DIR PID TID SIGNAL CORE_LIMIT DUMP_MODE TIME [COMM]\n\
(the kernel runs it from core_pattern, with the core on standard input; `coresnap install` sets that up)";

fn number<T: std::str::FromStr>(value: Option<&String>, what: &str) -> Result<T, HandlerError> {
    let text =
        value.ok_or_else(|| HandlerError::Usage(format!("the {what} is missing\n{USAGE}")))?;
    text.parse().map_err(|_| {
        HandlerError::Usage(format!(
            "the {what} must be a number, not '{text}'\n{USAGE}"
        ))
    })
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<KernelArgs, HandlerError> {
    let mut archive = None;
    let mut positional = Vec::new();
    for arg in args {
        let arg = arg.to_string_lossy().into_owned();
        if let Some(dir) = arg.strip_prefix("--archive=") {
            archive = Some(PathBuf::from(dir));
        } else {
            positional.push(arg);
        }
    }
    let archive =
        archive.ok_or_else(|| HandlerError::Usage(format!("--archive=DIR is missing\n{USAGE}")))?;
    if !archive.is_absolute() {
        return Err(HandlerError::Usage(format!(
            "--archive must be an absolute path, not '{}'",
            archive.display()
        )));
    }
    let mut values = positional.iter();
    let pid = number(values.next(), "process id (%P)")?;
    let tid = number(values.next(), "thread id (%I)")?;
    let signal = number(values.next(), "signal number (%s)")?;
    let limit_text = values.next().ok_or_else(|| {
        HandlerError::Usage(format!("the core size limit (%c) is missing\n{USAGE}"))
    })?;
    let core_limit = CoreLimit::parse(limit_text).ok_or_else(|| {
        HandlerError::Usage(format!(
            "the core size limit (%c) must be a number, not '{limit_text}'"
        ))
    })?;
    let dump_mode = number(values.next(), "dump mode (%d)")?;
    let time = number(values.next(), "time (%t)")?;
    // Kernels before 5.3 split an expanded %e containing spaces into several arguments.
    let rest: Vec<&str> = values.map(String::as_str).collect();
    let comm = if rest.is_empty() {
        None
    } else {
        Some(rest.join(" "))
    };
    Ok(KernelArgs {
        archive,
        pid,
        tid,
        signal,
        core_limit,
        dump_mode,
        time,
        comm,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn parses_the_kernel_line() {
        let parsed = parse(os(&[
            "--archive=/var/coresnap/archive",
            "41",
            "42",
            "11",
            "18446744073709551615",
            "1",
            "1700000000",
            "my prog",
        ]))
        .expect("valid");
        assert_eq!(parsed.pid, 41);
        assert_eq!(parsed.tid, 42);
        assert_eq!(parsed.signal, 11);
        assert_eq!(parsed.core_limit, CoreLimit::Unlimited);
        assert_eq!(parsed.comm.as_deref(), Some("my prog"));
        let zero = parse(os(&["--archive=/a", "1", "1", "6", "0", "1", "5"])).expect("valid");
        assert_eq!(zero.core_limit, CoreLimit::Bytes(0));
        assert_eq!(zero.comm, None);
    }

    #[test]
    fn refuses_what_the_kernel_never_sends() {
        for bad in [
            vec!["1", "1", "6", "0", "1", "5"],
            vec!["--archive=relative", "1", "1", "6", "0", "1", "5"],
            vec!["--archive=/a", "x", "1", "6", "0", "1", "5"],
            vec!["--archive=/a", "1", "1", "6", "-1", "1", "5"],
            vec!["--archive=/a", "1", "1", "6"],
        ] {
            let err = parse(os(&bad)).expect_err("must be refused");
            assert!(err.to_string().len() > 10, "{err}");
        }
    }
}
