//! Live processes: every thread stopped with ptrace, the rest read through `/proc`.
//!
//! What the caller does: names a pid it may trace (root, or `ptrace_scope` permitting), and keeps
//! the returned [`LiveAttachment`] for as long as it reads the image.
//!
//! What this module does: `PTRACE_SEIZE` + `PTRACE_INTERRUPT` on every thread of
//! `/proc/<pid>/task` (again until a pass finds no new thread, since threads may be created
//! meanwhile), waits for each to stop, reads its registers with `PTRACE_GETREGSET`, and reads
//! `/proc/<pid>/{maps,auxv,cmdline,comm,status,exe}`. Memory is read with `pread` on
//! `/proc/<pid>/mem` while the threads stay stopped. Dropping the [`LiveAttachment`] detaches
//! every thread (re-delivering any signal that arrived meanwhile), so the process runs on.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::memory::{FileBacking, MemorySource};
use crate::{notes, Arch, CoreError, CoreOptions, Mapping, ProcessImage, ProcessInfo, ThreadState};

/// `PTRACE_EVENT_STOP`: the stop `PTRACE_INTERRUPT` causes (`status >> 16`).
const PTRACE_EVENT_STOP: i32 = 128;
/// How long one thread may take to stop (one in uninterruptible sleep is given up on).
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Passes over `/proc/<pid>/task` before accepting that threads keep appearing.
const MAX_PASSES: usize = 100;
const NT_PRFPREG: usize = 2;

#[cfg(target_arch = "x86_64")]
const HOST_ARCH: Option<Arch> = Some(Arch::X86_64);
#[cfg(target_arch = "aarch64")]
const HOST_ARCH: Option<Arch> = Some(Arch::Aarch64);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const HOST_ARCH: Option<Arch> = None;

/// The threads of a process held stopped by ptrace; dropping it lets them run again.
#[derive(Debug)]
pub struct LiveAttachment {
    pid: i32,
    /// Seized threads, and the signal each stopped with (to deliver on detach).
    threads: Vec<(i32, i32)>,
}

impl LiveAttachment {
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The threads held stopped.
    pub fn tids(&self) -> Vec<i32> {
        self.threads.iter().map(|(tid, _)| *tid).collect()
    }
}

impl Drop for LiveAttachment {
    fn drop(&mut self) {
        for &(tid, signal) in &self.threads {
            detach(tid, signal);
        }
    }
}

fn ptrace(
    request: RequestType,
    tid: i32,
    address: usize,
    data: usize,
) -> Result<i64, std::io::Error> {
    // SAFETY: the requests used here read into buffers we own (GETREGSET) or take no pointers.
    let result = unsafe {
        libc::ptrace(
            request,
            tid,
            address as *mut libc::c_void,
            data as *mut libc::c_void,
        )
    };
    if result == -1 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(result as i64)
    }
}

#[cfg(target_env = "musl")]
type RequestType = libc::c_int;
#[cfg(not(target_env = "musl"))]
type RequestType = libc::c_uint;

fn detach(tid: i32, signal: i32) {
    if ptrace(libc::PTRACE_DETACH, tid, 0, signal as usize).is_ok() {
        return;
    }
    // PTRACE_DETACH needs a stopped tracee: stop a thread that never stopped, then detach it.
    if ptrace(libc::PTRACE_INTERRUPT, tid, 0, 0).is_ok()
        && wait_for_stop(tid, Duration::from_secs(1)).is_some()
    {
        let _ = ptrace(libc::PTRACE_DETACH, tid, 0, signal as usize);
    }
}

enum Stop {
    /// Stopped; the signal to re-deliver on detach (0: none).
    Stopped(i32),
    Gone,
}

/// Waits for `tid` to report a ptrace stop, without blocking past `timeout`.
fn wait_for_stop(tid: i32, timeout: Duration) -> Option<Stop> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut status = 0;
        // SAFETY: plain syscall with a pointer to a local.
        let waited = unsafe { libc::waitpid(tid, &mut status, libc::__WALL | libc::WNOHANG) };
        if waited == tid {
            if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                return Some(Stop::Gone);
            }
            if libc::WIFSTOPPED(status) {
                let event = status >> 16;
                let signal = libc::WSTOPSIG(status);
                // An interrupt stop (or a group stop) carries no signal to give back; a
                // signal-delivery stop does: the signal arrived while we were stopping it.
                let pending = if event == PTRACE_EVENT_STOP || event != 0 {
                    0
                } else {
                    signal
                };
                return Some(Stop::Stopped(pending));
            }
            continue;
        }
        if waited == -1 {
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Some(Stop::Gone);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn list_tasks(pid: i32) -> std::io::Result<BTreeSet<i32>> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/task"))?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect())
}

/// Stops every thread of `pid` and reads it into a [`ProcessImage`] whose memory is the live
/// process's; the threads stay stopped until the [`LiveAttachment`] is dropped.
///
/// `crashing_thread` and `signal` are `None` (nothing crashed); the thread whose tid is the pid
/// comes first.
pub fn attach_live(
    pid: i32,
    options: &CoreOptions,
) -> Result<(ProcessImage, LiveAttachment), CoreError> {
    let fail = |reason: String| CoreError::Attach { pid, reason };
    let Some(arch) = HOST_ARCH else {
        return Err(fail("this machine's architecture is not supported".into()));
    };
    if pid <= 0 {
        return Err(fail("it is not a valid process id".into()));
    }
    let mut tasks = list_tasks(pid).map_err(|e| {
        fail(format!(
            "/proc/{pid}/task cannot be read ({e}); is the process running?"
        ))
    })?;
    let mut attachment = LiveAttachment {
        pid,
        threads: Vec::new(),
    };
    let mut warnings = Vec::new();
    let mut seized = BTreeSet::new();
    for _ in 0..MAX_PASSES {
        let new: Vec<i32> = tasks.difference(&seized).copied().collect();
        if new.is_empty() {
            break;
        }
        for tid in new {
            seized.insert(tid);
            match ptrace(libc::PTRACE_SEIZE, tid, 0, 0) {
                Ok(_) => {}
                // The thread exited since the directory was listed.
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => continue,
                Err(e) => {
                    if attachment.threads.is_empty() && tid == pid {
                        return Err(fail(format!("PTRACE_SEIZE failed: {e}")));
                    }
                    warnings.push(format!("Thread {tid} cannot be seized: {e}."));
                    continue;
                }
            }
            let _ = ptrace(libc::PTRACE_INTERRUPT, tid, 0, 0);
            match wait_for_stop(tid, STOP_TIMEOUT) {
                Some(Stop::Stopped(signal)) => attachment.threads.push((tid, signal)),
                Some(Stop::Gone) => {}
                None => {
                    warnings.push(format!(
                        "Thread {tid} did not stop within {STOP_TIMEOUT:?}; it is left out."
                    ));
                    // Keep it for detaching, without reading it.
                    attachment.threads.push((tid, 0));
                }
            }
        }
        tasks = match list_tasks(pid) {
            Ok(tasks) => tasks,
            Err(_) => break,
        };
    }
    if attachment.threads.is_empty() {
        return Err(fail(
            "no thread could be stopped (the process may have exited)".into(),
        ));
    }

    let mut threads = Vec::new();
    for &(tid, signal) in &attachment.threads {
        match read_registers(tid, arch) {
            Ok(registers) => threads.push(ThreadState {
                tid,
                pending_signal: signal,
                registers,
                has_fp_registers: has_fp_registers(tid),
            }),
            Err(e) => warnings.push(format!(
                "The registers of thread {tid} cannot be read: {e}."
            )),
        }
    }
    if threads.is_empty() {
        return Err(fail("no thread's registers could be read".into()));
    }
    // The main thread first, as a core would have the crashing one.
    threads.sort_by_key(|t| (t.tid != pid, t.tid));

    let mem = File::open(format!("/proc/{pid}/mem"))
        .map_err(|e| fail(format!("/proc/{pid}/mem cannot be opened: {e}")))?;
    let auxv = match std::fs::read(format!("/proc/{pid}/auxv")) {
        Ok(bytes) => notes::parse_auxv(&bytes, cfg!(target_endian = "big")),
        Err(e) => {
            warnings.push(format!("/proc/{pid}/auxv cannot be read: {e}."));
            Vec::new()
        }
    };
    let mappings = match std::fs::read_to_string(format!("/proc/{pid}/maps")) {
        Ok(text) => parse_maps(&text),
        Err(e) => {
            warnings.push(format!("/proc/{pid}/maps cannot be read: {e}."));
            Vec::new()
        }
    };
    let process = process_info(pid, options);

    let image = ProcessImage {
        arch,
        pid,
        threads,
        crashing_thread: None,
        signal: None,
        process,
        auxv,
        mappings,
        pac_mask: pac_mask(pid, arch),
        warnings,
        memory: MemorySource::Live(mem),
        files: FileBacking::default(),
        sysroot: options.sysroot.clone(),
        executable_override: options.executable.clone(),
        big_endian: cfg!(target_endian = "big"),
    };
    Ok((image, attachment))
}

fn read_registers(tid: i32, arch: Arch) -> std::io::Result<Vec<(&'static str, u64)>> {
    let names = notes::register_names(arch);
    let mut values = [0u64; 64];
    let mut vector = libc::iovec {
        iov_base: values.as_mut_ptr().cast(),
        iov_len: names.len() * 8,
    };
    ptrace(
        libc::PTRACE_GETREGSET,
        tid,
        notes::NT_PRSTATUS as usize,
        &mut vector as *mut libc::iovec as usize,
    )?;
    if vector.iov_len < names.len() * 8 {
        return Err(std::io::Error::other(
            "the kernel returned fewer registers than expected",
        ));
    }
    Ok(names.iter().copied().zip(values).collect())
}

fn has_fp_registers(tid: i32) -> bool {
    let mut buffer = [0u8; 1024];
    let mut vector = libc::iovec {
        iov_base: buffer.as_mut_ptr().cast(),
        iov_len: buffer.len(),
    };
    ptrace(
        libc::PTRACE_GETREGSET,
        tid,
        NT_PRFPREG,
        &mut vector as *mut libc::iovec as usize,
    )
    .is_ok()
}

fn pac_mask(pid: i32, arch: Arch) -> Option<crate::PacMask> {
    if arch != Arch::Aarch64 {
        return None;
    }
    let mut masks = [0u64; 2];
    let mut vector = libc::iovec {
        iov_base: masks.as_mut_ptr().cast(),
        iov_len: 16,
    };
    ptrace(
        libc::PTRACE_GETREGSET,
        pid,
        notes::NT_ARM_PAC_MASK as usize,
        &mut vector as *mut libc::iovec as usize,
    )
    .ok()?;
    Some(crate::PacMask {
        data: masks[0],
        insn: masks[1],
    })
}

/// `/proc/<pid>/maps`: `start-end perms offset dev inode [path]`.
fn parse_maps(text: &str) -> Vec<Mapping> {
    let mut mappings: Vec<Mapping> = text
        .lines()
        .filter_map(|line| {
            let mut rest = line;
            let mut fields = [""; 5];
            for field in &mut fields {
                rest = rest.trim_start();
                let end = rest.find(' ').unwrap_or(rest.len());
                *field = &rest[..end];
                rest = &rest[end..];
            }
            let (start, end) = fields[0].split_once('-')?;
            let perms = fields[1].as_bytes();
            let path = rest.trim_start();
            Some(Mapping {
                start: u64::from_str_radix(start, 16).ok()?,
                end: u64::from_str_radix(end, 16).ok()?,
                file_offset: u64::from_str_radix(fields[2], 16).ok()?,
                path: (!path.is_empty()).then(|| path.to_string()),
                readable: perms.first() == Some(&b'r'),
                writable: perms.get(1) == Some(&b'w'),
                executable: perms.get(2) == Some(&b'x'),
            })
        })
        .collect();
    mappings.sort_by_key(|m| m.start);
    mappings
}

fn process_info(pid: i32, options: &CoreOptions) -> ProcessInfo {
    let read = |name: &str| std::fs::read(format!("/proc/{pid}/{name}")).ok();
    let args = read("cmdline").map(|bytes| {
        let text = String::from_utf8_lossy(&bytes).replace('\0', " ");
        text.trim_end().to_string()
    });
    let command = read("comm").map(|bytes| String::from_utf8_lossy(&bytes).trim_end().to_string());
    let status = read("status")
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_string)
    };
    let executable_path = std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .map(|p: PathBuf| {
            let text = p.to_string_lossy().into_owned();
            text.strip_suffix(" (deleted)")
                .map(str::to_string)
                .unwrap_or(text)
        })
        .or_else(|| {
            options
                .executable
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned())
        });
    ProcessInfo {
        command: command.filter(|s| !s.is_empty()),
        args: args.filter(|s| !s.is_empty()),
        uid: field("Uid:").and_then(|v| v.parse().ok()),
        gid: field("Gid:").and_then(|v| v.parse().ok()),
        ppid: field("PPid:").and_then(|v| v.parse().ok()),
        executable_path,
    }
}

#[cfg(test)]
mod tests {
    use super::parse_maps;

    #[test]
    fn maps_lines_with_and_without_paths() {
        let maps = parse_maps(
            "7f0000000000-7f0000001000 r-xp 00002000 08:01 1234                       /usr/lib/lib with space.so\n\
             7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]\n\
             7e0000000000-7e0000001000 ---p 00000000 00:00 0 \n\
             garbage\n",
        );
        assert_eq!(maps.len(), 3);
        assert_eq!(maps[0].path, None);
        assert!(!maps[0].readable);
        assert_eq!(maps[1].path.as_deref(), Some("/usr/lib/lib with space.so"));
        assert_eq!(maps[1].file_offset, 0x2000);
        assert!(maps[1].readable && maps[1].executable && !maps[1].writable);
        assert_eq!(maps[2].path.as_deref(), Some("[stack]"));
    }
}
