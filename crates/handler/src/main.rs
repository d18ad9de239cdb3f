//! `coresnap-handler`: see the crate documentation (src/lib.rs) for the contract.

use coresnap_handler::archive::{open_at, Archive};
use coresnap_handler::args::{self, KernelArgs};
use coresnap_handler::conf::HandlerConf;
use coresnap_handler::counters;
use coresnap_handler::log::{Logger, Severity};
use coresnap_handler::spool::{self, Outcome};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::process::ExitCode;

/// The kernel may start us with standard output and error closed; fill 0–2 with /dev/null so
/// that no file we open later lands on a descriptor something might print to.
fn fill_standard_descriptors() {
    loop {
        // SAFETY: a static NUL-terminated path.
        let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        if fd < 0 {
            return;
        }
        if fd > 2 {
            // SAFETY: we just opened it and own it.
            unsafe { libc::close(fd) };
            return;
        }
    }
}

fn main() -> ExitCode {
    fill_standard_descriptors();
    let mut argv = std::env::args_os().skip(1).peekable();
    if let Some(first) = argv.peek() {
        match first.to_str() {
            Some("--version" | "-V") => {
                println!("coresnap-handler {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            Some("--help" | "-h") => {
                println!("{}", args::USAGE);
                return ExitCode::SUCCESS;
            }
            _ => {}
        }
    }
    let parsed = match args::parse(argv) {
        Ok(parsed) => parsed,
        Err(e) => {
            Logger::new(None).log(Severity::Error, &e.to_string());
            return ExitCode::from(2);
        }
    };
    let archive = match Archive::open(&parsed.archive) {
        Ok(archive) => archive,
        Err(e) => {
            Logger::new(None).log(
                Severity::Error,
                &format!("core of pid {} not saved: {e}", parsed.pid),
            );
            return ExitCode::from(1);
        }
    };
    let mut log = Logger::new(Some(archive.log.as_raw_fd()));
    let conf = read_conf(&archive, &mut log);
    run(&archive, &conf, &parsed, &mut log)
}

fn read_conf(archive: &Archive, log: &mut Logger) -> HandlerConf {
    let fd = match open_at(
        archive.state.as_raw_fd(),
        "handler.conf",
        libc::O_RDONLY | libc::O_NOFOLLOW,
        0,
    ) {
        Ok(fd) => fd,
        Err(_) => return HandlerConf::default(),
    };
    let mut text = String::new();
    if std::fs::File::from(fd)
        .take(64 * 1024)
        .read_to_string(&mut text)
        .is_err()
    {
        log.log(
            Severity::Warning,
            "state/handler.conf is unreadable; using the defaults",
        );
        return HandlerConf::default();
    }
    let (conf, problems) = HandlerConf::parse(&text);
    for problem in problems {
        log.log(Severity::Warning, &problem);
    }
    conf
}

fn run(archive: &Archive, conf: &HandlerConf, args: &KernelArgs, log: &mut Logger) -> ExitCode {
    let mut stdin = std::io::stdin().lock();
    match spool::handle(archive, conf, args, &mut stdin) {
        Ok(Outcome::Stored {
            uuid,
            bytes,
            truncated,
            executable,
        }) => {
            let path = archive.path.join("pending").join(&uuid);
            let note = if truncated {
                " (truncated at the process's core size limit)"
            } else {
                ""
            };
            log.log(
                Severity::Info,
                &format!(
                    "Crash dump archived in {} ({executable}, pid {}, {bytes} bytes){note}",
                    path.display(),
                    args.pid
                ),
            );
            ExitCode::SUCCESS
        }
        Ok(Outcome::SkippedLimit { executable }) => {
            log.log(
                Severity::Info,
                &format!(
                    "core of {executable} (pid {}) not saved: its core size limit (ulimit -c) is 0",
                    args.pid
                ),
            );
            ExitCode::SUCCESS
        }
        Ok(Outcome::DroppedRate {
            executable,
            dropped_total,
        }) => {
            log.log(
                Severity::Warning,
                &format!(
                    "core of {executable} (pid {}) dropped: more than {} crashes in {} s ({dropped_total} dropped so far)",
                    args.pid, conf.rate_burst, conf.rate_window_secs
                ),
            );
            ExitCode::SUCCESS
        }
        Ok(Outcome::DroppedQuota {
            executable,
            free,
            required,
        }) => {
            log.log(
                Severity::Warning,
                &format!(
                    "core of {executable} (pid {}) not saved: {free} bytes free in {}, dump.quota keeps {required}",
                    args.pid,
                    archive.path.display()
                ),
            );
            ExitCode::SUCCESS
        }
        Ok(Outcome::PassedThrough {
            executable,
            written,
        }) => {
            let what = written.map_or_else(
                || "no core written".to_string(),
                |path| format!("core written to {path}"),
            );
            log.log(
                Severity::Info,
                &format!(
                    "{executable} (pid {}) is outside only_under: {what}",
                    args.pid
                ),
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = counters::bump(archive.state.as_raw_fd(), counters::FAILED, 1);
            log.log(
                Severity::Error,
                &format!("core of pid {} not saved: {e}", args.pid),
            );
            ExitCode::from(1)
        }
    }
}
