//! The native `ptrace` and `bt` commands: vendor-compatible arguments in, a snapshot out.
//!
//! Both take the same inputs; `ptrace` writes the snapshot JSON to a file, `bt` prints a readable
//! backtrace (or the JSON with `--json`). They are native so that one command costs no Node
//! start-up.

use coresnap_snapshot::SnapshotRequest;
use std::io::Write;
use std::path::PathBuf;

/// What the command line asked for, beyond the snapshot request itself.
#[derive(Debug, Default)]
pub struct Invocation {
    pub request: SnapshotRequest,
    /// `-o FILE` / `-oFILE`; `-` is standard output.
    pub output: Option<PathBuf>,
    /// `-O PREFIX`: write `<PREFIX><uuid>.btt`.
    pub output_prefix: Option<String>,
    pub json: bool,
    pub help: bool,
    pub version: bool,
    /// Vendor flags that do not apply to us; accepted so that vendor scripts keep working.
    pub ignored: Vec<String>,
}

/// A command-line mistake, as a sentence for the user.
#[derive(Debug)]
pub struct UsageError(pub String);

/// Vendor flags that take a value and are accepted without effect.
const IGNORED_WITH_VALUE: &[&str] = &["--load", "--module", "--thread", "--fault-thread", "--exclude", "--symbols"];
/// Vendor flags without a value that are accepted without effect.
const IGNORED_FLAGS: &[&str] = &["--no-kernel", "--minidump", "-u", "--unlink"];

fn parse_kv(value: &str, into: &mut Vec<(String, String)>) -> Result<(), UsageError> {
    // The vendor accepts both `--kv a:1,b:2` and repeated `--kv a:1`.
    for pair in value.split(',').filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once(':') else {
            return Err(UsageError(format!("--kv takes key:value pairs, and '{pair}' has no ':'")));
        };
        if k.is_empty() {
            return Err(UsageError(format!("--kv '{pair}' has an empty key")));
        }
        into.push((k.to_string(), v.to_string()));
    }
    Ok(())
}

/// Parses `[--core] CORE [EXE] | PID` and the flags of both commands.
pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Invocation, UsageError> {
    let mut inv = Invocation::default();
    let mut positionals: Vec<String> = Vec::new();
    let mut explicit_core: Option<String> = None;
    let mut args = args.into_iter().peekable();
    while let Some(arg) = args.next() {
        let (flag, inline_value) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, UsageError> {
            match &inline_value {
                Some(v) => Ok(v.clone()),
                None => args.next().ok_or_else(|| UsageError(format!("{name} needs a value"))),
            }
        };
        match flag.as_str() {
            "-h" | "--help" => inv.help = true,
            "-V" | "--version" => inv.version = true,
            "--json" => inv.json = true,
            "--faulted" => inv.request.faulted = true,
            "--core" => explicit_core = Some(value("--core")?),
            "--kv" => parse_kv(&value("--kv")?, &mut inv.request.attributes)?,
            "--sysroot" => inv.request.sysroot = Some(PathBuf::from(value("--sysroot")?)),
            "--debug-dir" => inv.request.debug_dirs.push(PathBuf::from(value("--debug-dir")?)),
            "--resource" => inv.request.resources.push(PathBuf::from(value("--resource")?)),
            "--classifier" => inv.request.classifiers.push(value("--classifier")?),
            "--executable" | "--exe" => inv.request.executable = Some(PathBuf::from(value("--executable")?)),
            "-o" | "--output" => inv.output = Some(PathBuf::from(value("-o")?)),
            "-O" => inv.output_prefix = Some(value("-O")?),
            f if IGNORED_WITH_VALUE.contains(&f) => {
                let v = value(f)?;
                inv.ignored.push(format!("{f}={v}"));
            }
            f if IGNORED_FLAGS.contains(&f) => inv.ignored.push(f.to_string()),
            f if f.starts_with("-o") && f.len() > 2 && !f.starts_with("--") => inv.output = Some(PathBuf::from(&f[2..])),
            f if f.starts_with("-O") && f.len() > 2 && !f.starts_with("--") => inv.output_prefix = Some(f[2..].to_string()),
            "--" => positionals.extend(args.by_ref()),
            f if f.starts_with('-') && f.len() > 1 => {
                return Err(UsageError(format!("unknown option '{f}' (see --help)")));
            }
            _ => positionals.push(arg),
        }
    }
    if inv.help || inv.version {
        return Ok(inv);
    }
    let mut positionals = positionals.into_iter();
    match explicit_core {
        Some(core) => {
            inv.request.core = Some(PathBuf::from(core));
            if let Some(exe) = positionals.next() {
                inv.request.executable = Some(PathBuf::from(exe));
            }
        }
        None => match positionals.next() {
            Some(first) if !first.is_empty() && first.bytes().all(|b| b.is_ascii_digit()) => {
                let pid = first.parse().map_err(|_| UsageError(format!("'{first}' is not a process id")))?;
                inv.request.pid = Some(pid);
            }
            Some(core) => {
                inv.request.core = Some(PathBuf::from(core));
                if let Some(exe) = positionals.next() {
                    inv.request.executable = Some(PathBuf::from(exe));
                }
            }
            None => return Err(UsageError("give a core file (--core CORE [EXE]) or a process id".into())),
        },
    }
    if let Some(extra) = positionals.next() {
        return Err(UsageError(format!("unexpected argument '{extra}'")));
    }
    Ok(inv)
}

pub const USAGE_COMMON: &str = "\
  --core CORE [EXE]      the core dump and, optionally, its executable (the core names it)
  PID                    a live process: attach with ptrace(2), snapshot every thread, detach
  -o FILE, -oFILE        where to write the snapshot ('-' for standard output)
  -O PREFIX              write the snapshot to PREFIX<uuid>.btt
  --kv key:value[,...]   add attributes (repeatable)
  --sysroot DIR          resolve every mapped file, and its debug tree usr/lib/debug, under DIR
  --debug-dir DIR        also search the build-id debug tree DIR/.build-id (repeatable)
  --resource PATH        attach a file (or each file of a folder) to the snapshot (repeatable)
  --classifier NAME      add a classifier (repeatable)
  --faulted              the process crashed (vendor flag; a core always marks its faulting
                         thread, a live snapshot without it has no faulting thread)
  --load=PREFIX, --module=..., --thread=..., --fault-thread=...
                         accepted for compatibility with the vendor's ptrace; no effect
  --json                 (bt) print the snapshot JSON instead of text
  -h, --help             this text
  -V, --version          the version
";

/// Prints a user-facing error and returns the exit code for it.
pub fn fail(command: &str, message: &str) -> i32 {
    let _ = writeln!(std::io::stderr(), "{command}: {message}");
    1
}

/// Writes to a file atomically (temporary name, fsync, rename), or to standard output for `-`.
pub fn write_output(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    if path.as_os_str() == "-" {
        let mut out = std::io::stdout().lock();
        out.write_all(bytes)?;
        return out.flush();
    }
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "snapshot".into());
    let tmp = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Runs the engine behind a panic guard: a bug of ours becomes an error message, not an abort.
pub fn run_engine(request: &SnapshotRequest) -> Result<coresnap_snapshot::report::Snapshot, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| coresnap_snapshot::snapshot(request))) {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(e.to_string()),
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(format!("internal error while making the snapshot (please report it): {what}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Invocation, UsageError> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn vendor_command_line_from_the_guide_parses() {
        let inv = parse(&[
            "--faulted",
            "-o/var/coresnap/archive/sending/a7",
            "--load=libc-",
            "--kv=coresnap.object:a7",
            "--resource=/var/coresnap/archive/assets/a7",
            "--core",
            "/var/coresnap/archive/pending/a7",
            "/usr/bin/vim.basic",
        ])
        .unwrap();
        assert!(inv.request.faulted);
        assert_eq!(inv.output.as_deref(), Some(std::path::Path::new("/var/coresnap/archive/sending/a7")));
        assert_eq!(inv.request.attributes, vec![("coresnap.object".to_string(), "a7".to_string())]);
        assert_eq!(inv.request.core.as_deref(), Some(std::path::Path::new("/var/coresnap/archive/pending/a7")));
        assert_eq!(inv.request.executable.as_deref(), Some(std::path::Path::new("/usr/bin/vim.basic")));
        assert_eq!(inv.ignored, vec!["--load=libc-".to_string()]);
    }

    #[test]
    fn pid_and_bare_core_forms() {
        assert_eq!(parse(&["1234"]).unwrap().request.pid, Some(1234));
        let inv = parse(&["core.1", "./exe", "--kv", "a:1,b:2", "--debug-dir", "/d1", "--debug-dir=/d2"]).unwrap();
        assert_eq!(inv.request.core.as_deref(), Some(std::path::Path::new("core.1")));
        assert_eq!(inv.request.attributes.len(), 2);
        assert_eq!(inv.request.debug_dirs.len(), 2);
    }

    #[test]
    fn mistakes_are_sentences() {
        assert!(parse(&[]).unwrap_err().0.contains("core file"));
        assert!(parse(&["--kv", "novalue", "core"]).unwrap_err().0.contains("no ':'"));
        assert!(parse(&["--bogus", "core"]).unwrap_err().0.contains("unknown option"));
        assert!(parse(&["core", "exe", "extra"]).unwrap_err().0.contains("unexpected"));
    }
}
