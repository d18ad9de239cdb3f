//! What only `/proc/<pid>` knows, read while the kernel holds the crashing process for us.

use crate::archive::open_at;
use serde_json::{json, Map, Value};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// Caps per file: maps of a huge process, or an environment of megabytes, must not make the
/// handler slow or big.
const MAX_TEXT: u64 = 4 * 1024 * 1024;

#[derive(Debug, Default, Clone)]
pub struct ProcessFacts {
    /// The executable's path as the kernel resolved it (without " (deleted)").
    pub executable: Option<String>,
    pub executable_deleted: bool,
    pub cwd: Option<String>,
    pub cmdline: Vec<String>,
    pub comm: Option<String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub status: Option<String>,
    pub maps: Option<String>,
    pub limits: Option<String>,
    pub cgroup: Option<String>,
    /// Allow-listed environment variables only.
    pub environment: Vec<(String, String)>,
    /// One sentence per file that could not be read.
    pub problems: Vec<String>,
}

fn read_at(dir: RawFd, name: &str) -> io::Result<Vec<u8>> {
    let fd: OwnedFd = open_at(dir, name, libc::O_RDONLY, 0)?;
    let mut bytes = Vec::new();
    std::fs::File::from(fd)
        .take(MAX_TEXT)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn readlink_at(dir: RawFd, name: &str) -> io::Result<String> {
    let cname =
        std::ffi::CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: `buf` is writable for its whole length, `cname` is NUL-terminated.
    let n = unsafe { libc::readlinkat(dir, cname.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    buf.truncate(n);
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The real id from a `Uid:`/`Gid:` line of `status` (`Uid:\treal\teffective\tsaved\tfs`).
fn status_id(status: &str, key: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Just the executable's path (cheap: one readlink), for the decisions made before the rest of
/// `/proc` is read (rate limit, core size limit), so a storm's dropped crashes cost little.
pub fn executable_of(pid: i32) -> Option<String> {
    let link = readlink_at(libc::AT_FDCWD, &format!("/proc/{pid}/exe")).ok()?;
    Some(
        link.strip_suffix(" (deleted)")
            .map(str::to_string)
            .unwrap_or(link),
    )
}

impl ProcessFacts {
    /// Reads `/proc/<pid>`; what cannot be read is left out and noted in `problems`.
    pub fn read(pid: i32, env_allowlist: &[String]) -> ProcessFacts {
        let mut facts = ProcessFacts::default();
        let dir = match open_at(
            libc::AT_FDCWD,
            &format!("/proc/{pid}"),
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
        ) {
            Ok(fd) => fd,
            Err(e) => {
                facts
                    .problems
                    .push(format!("/proc/{pid} cannot be opened: {e}"));
                return facts;
            }
        };
        let dir = dir.as_raw_fd();
        let note = |what: &str, e: io::Error| facts_problem(pid, what, e);
        let mut problems = Vec::new();

        match readlink_at(dir, "exe") {
            Ok(exe) => match exe.strip_suffix(" (deleted)") {
                Some(path) => {
                    facts.executable = Some(path.to_string());
                    facts.executable_deleted = true;
                }
                None => facts.executable = Some(exe),
            },
            Err(e) => problems.push(note("exe", e)),
        }
        match readlink_at(dir, "cwd") {
            Ok(cwd) => facts.cwd = Some(cwd),
            Err(e) => problems.push(note("cwd", e)),
        }
        match read_at(dir, "cmdline") {
            Ok(bytes) => {
                facts.cmdline = bytes
                    .split(|b| *b == 0)
                    .map(|arg| String::from_utf8_lossy(arg).into_owned())
                    .collect();
                // The block ends with a NUL, which leaves one empty piece.
                if facts.cmdline.last().is_some_and(String::is_empty) {
                    facts.cmdline.pop();
                }
            }
            Err(e) => problems.push(note("cmdline", e)),
        }
        let text = |name: &str, problems: &mut Vec<String>| match read_at(dir, name) {
            Ok(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
            Err(e) => {
                problems.push(facts_problem(pid, name, e));
                None
            }
        };
        facts.comm = text("comm", &mut problems).map(|c| c.trim_end_matches('\n').to_string());
        facts.status = text("status", &mut problems);
        facts.maps = text("maps", &mut problems);
        facts.limits = text("limits", &mut problems);
        facts.cgroup = text("cgroup", &mut problems);
        if let Some(status) = &facts.status {
            facts.uid = status_id(status, "Uid:");
            facts.gid = status_id(status, "Gid:");
        }
        if !env_allowlist.is_empty() {
            match read_at(dir, "environ") {
                Ok(bytes) => {
                    for entry in bytes.split(|b| *b == 0) {
                        let entry = String::from_utf8_lossy(entry);
                        if let Some((name, value)) = entry.split_once('=') {
                            if env_allowlist.iter().any(|allowed| allowed == name) {
                                facts
                                    .environment
                                    .push((name.to_string(), value.to_string()));
                            }
                        }
                    }
                }
                Err(e) => problems.push(note("environ", e)),
            }
        }
        facts.problems = problems;
        facts
    }

    /// The metadata fields this module owns.
    pub fn to_json(&self) -> Map<String, Value> {
        let env: Map<String, Value> = self
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let mut map = Map::new();
        map.insert("executable".into(), json!(self.executable));
        map.insert("executableDeleted".into(), json!(self.executable_deleted));
        map.insert("cwd".into(), json!(self.cwd));
        map.insert("cmdline".into(), json!(self.cmdline));
        map.insert("comm".into(), json!(self.comm));
        map.insert("uid".into(), json!(self.uid));
        map.insert("gid".into(), json!(self.gid));
        map.insert("cgroup".into(), json!(self.cgroup));
        map.insert("status".into(), json!(self.status));
        map.insert("maps".into(), json!(self.maps));
        map.insert("limits".into(), json!(self.limits));
        map.insert("environment".into(), Value::Object(env));
        map.insert("procProblems".into(), json!(self.problems));
        map
    }
}

fn facts_problem(pid: i32, what: &str, e: io::Error) -> String {
    format!("/proc/{pid}/{what} cannot be read: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        std::env::set_var("CORESNAP_HANDLER_TEST_SECRET", "hunter2");
        let facts = ProcessFacts::read(std::process::id() as i32, &["PATH".to_string()]);
        assert!(facts.problems.is_empty(), "{:?}", facts.problems);
        let exe = std::env::current_exe().expect("exe");
        assert_eq!(facts.executable.as_deref(), exe.to_str());
        assert!(!facts.cmdline.is_empty());
        assert!(facts
            .maps
            .as_deref()
            .unwrap_or("")
            .contains(exe.to_str().unwrap_or("?")));
        // SAFETY: getuid has no preconditions.
        assert_eq!(facts.uid, Some(unsafe { libc::getuid() }));
        assert!(facts.environment.iter().any(|(k, _)| k == "PATH"));
        assert!(!facts
            .environment
            .iter()
            .any(|(k, _)| k == "CORESNAP_HANDLER_TEST_SECRET"));
    }

    #[test]
    fn a_missing_process_is_a_problem_not_a_panic() {
        let facts = ProcessFacts::read(i32::MAX, &[]);
        assert_eq!(facts.executable, None);
        assert_eq!(facts.problems.len(), 1, "{:?}", facts.problems);
    }
}
