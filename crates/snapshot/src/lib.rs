//! Turns a core dump (or a live process) into one Backtrace-shaped crash snapshot.
//!
//! What the caller does: fills a [`SnapshotRequest`] (a core file and optionally its executable,
//! or a pid; a sysroot; debug folders; attributes) and calls [`snapshot`].
//!
//! What the crate does: reads the process with `coresnap-core`, opens every mapped module with
//! `coresnap-symbols`, walks every thread with `coresnap-unwind`, symbolicates each frame
//! (inlined frames expanded), classifies the crash and returns a [`report::Snapshot`] whose JSON
//! form is written down in docs/snapshot-format.md. Problems that leave a usable snapshot (a
//! missing library, a mismatched build-id, a stack that could not be walked to its end) come back
//! as warnings in the snapshot; only a process that cannot be read at all is an error.

pub mod classify;
mod frames;
pub mod host;
mod modules;
pub mod report;
pub mod signals;
pub mod text;

use coresnap_core::{CoreOptions, ProcessImage};
use coresnap_symbols::DebugSearch;
use coresnap_unwind::{Arch as UnwindArch, Memory, Regs, UnwindOptions, Unwinder};
use report::{ArchInfo, Attachment, Module, Process, Signal, Snapshot, Thread};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// The largest resource embedded into a snapshot; larger ones are listed without their bytes.
const MAX_EMBEDDED_RESOURCE: u64 = 16 * 1024 * 1024;

/// What to snapshot and how.
#[derive(Debug, Clone, Default)]
pub struct SnapshotRequest {
    /// A core file, or `None` with `pid` set for a live process.
    pub core: Option<PathBuf>,
    /// A live process to attach to with ptrace(2).
    pub pid: Option<i32>,
    /// The crashed executable; the core names it when absent.
    pub executable: Option<PathBuf>,
    /// Every mapped file (and its debug tree `usr/lib/debug`) is looked up under this folder.
    pub sysroot: Option<PathBuf>,
    /// Extra build-id debug trees (`DIR/.build-id/xx/rest.debug`).
    pub debug_dirs: Vec<PathBuf>,
    /// `--kv key:value` attributes, in order; later ones win.
    pub attributes: Vec<(String, String)>,
    /// Files attached to the snapshot (`--resource`); a folder attaches each file in it.
    pub resources: Vec<PathBuf>,
    /// `--faulted`: the process crashed. A live snapshot without it is a hang snapshot, whose
    /// threads are all shown and none is marked as faulting.
    pub faulted: bool,
    /// `--classifier`: extra classifiers to add.
    pub classifiers: Vec<String>,
}

/// Why no snapshot could be made at all.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot read the core file {path}: {source}")]
    Core { path: String, source: coresnap_core::CoreError },
    #[error("cannot snapshot process {pid}: {source}")]
    Live { pid: i32, source: coresnap_core::CoreError },
    #[error("nothing to snapshot: give a core file or a process id")]
    NoTarget,
}

struct ImageMemory<'a>(&'a ProcessImage);

impl Memory for ImageMemory<'_> {
    fn read(&self, avma: u64, buf: &mut [u8]) -> bool {
        self.0.read_memory(avma, buf)
    }
    fn read_u64(&self, avma: u64) -> Option<u64> {
        self.0.read_u64(avma)
    }
}

fn arch_name(arch: coresnap_core::Arch) -> &'static str {
    match arch {
        coresnap_core::Arch::X86_64 => "x86_64",
        coresnap_core::Arch::Aarch64 => "aarch64",
    }
}

fn unwind_arch(arch: coresnap_core::Arch) -> UnwindArch {
    match arch {
        coresnap_core::Arch::X86_64 => UnwindArch::X86_64,
        coresnap_core::Arch::Aarch64 => UnwindArch::Aarch64,
    }
}

/// Makes the snapshot.
pub fn snapshot(request: &SnapshotRequest) -> Result<Snapshot, SnapshotError> {
    let options = CoreOptions { sysroot: request.sysroot.clone(), executable: request.executable.clone() };
    let (image, attachment, source) = if let Some(core) = &request.core {
        let image = ProcessImage::open_core(core, &options)
            .map_err(|source| SnapshotError::Core { path: core.display().to_string(), source })?;
        (image, None, "core")
    } else if let Some(pid) = request.pid {
        let (image, attachment) = coresnap_core::live::attach_live(pid, &options)
            .map_err(|source| SnapshotError::Live { pid, source })?;
        (image, Some(attachment), "live")
    } else {
        return Err(SnapshotError::NoTarget);
    };

    let mut warnings = image.warnings.clone();
    let search = DebugSearch { sysroot: request.sysroot.clone(), debug_dirs: request.debug_dirs.clone() };
    let modules = modules::load_modules(&image, &search, request.executable.as_deref(), &mut warnings);

    // Walk every thread while the process (if live) is stopped; symbolication needs only files.
    let uarch = unwind_arch(image.arch);
    let unwind_options = UnwindOptions { pac_mask: image.pac_mask.as_ref().map(|m| m.insn), ..UnwindOptions::default() };
    let mut unwinder = Unwinder::new(uarch, modules::unwind_infos(&modules), unwind_options);
    for m in image.mappings.iter().filter(|m| m.executable) {
        if modules::module_for(&modules, m.start).is_none_or(|module| module.info.is_none()) {
            unwinder.add_executable_range(m.start..m.end);
        }
    }
    let memory = ImageMemory(&image);
    let walks: Vec<_> = image
        .threads
        .iter()
        .map(|t| unwinder.unwind(&Regs::with_values(uarch, t.dwarf_registers(image.arch)), &memory))
        .collect();
    drop(attachment);

    let crashing = if source == "live" && !request.faulted { None } else { image.crashing_thread };
    let mut symbolicator = frames::Symbolicator::default();
    let mut threads = BTreeMap::new();
    let mut thread_order = Vec::new();
    let mut order: Vec<usize> = (0..image.threads.len()).collect();
    if let Some(c) = crashing {
        order.retain(|&i| i != c);
        order.insert(0, c);
    }
    let command = image.process.command.clone().unwrap_or_default();
    for &i in &order {
        let (Some(state), Some(walk)) = (image.threads.get(i), walks.get(i)) else { continue };
        let fault = crashing == Some(i);
        let mut stack = Vec::with_capacity(walk.frames.len());
        for (n, frame) in walk.frames.iter().enumerate() {
            if let Some(callee) = n.checked_sub(1).and_then(|i| walk.frames.get(i)) {
                stack.extend(symbolicator.tail_calls(&modules, callee, frame));
            }
            stack.extend(symbolicator.expand(&modules, frame, n == 0, fault && n == 0));
        }
        let name = if state.tid == image.pid || image.threads.len() == 1 {
            command.clone()
        } else {
            format!("{command}:{}", state.tid)
        };
        let tid = state.tid.to_string();
        thread_order.push(tid.clone());
        threads.insert(tid, Thread { name, fault, stack, stop_reason: Some(walk.stop_reason.to_string()) });
    }
    let main_thread = thread_order.first().cloned().unwrap_or_default();

    let signal = image.signal.as_ref().map(|s| Signal {
        number: s.number,
        name: signals::signal_name(s.number),
        code: s.code,
        code_name: s.code.and_then(|c| signals::code_name(s.number, c)).map(str::to_string),
        address: s.address.filter(|_| signals::has_fault_address(s.number)).map(|a| format!("{a:#x}")),
        sender_pid: s.sender_pid,
    });

    let abort_message = read_abort_message(&image, &modules);
    let crash_state = crashing.and_then(|c| image.threads.get(c));
    let stack_pointer = crash_state.and_then(|t| t.sp(image.arch));
    let fault_address = image.signal.as_ref().and_then(|s| s.address);
    let mut classifiers = classify::classify(&classify::CrashFacts {
        signal: if crashing.is_some() { image.signal.as_ref().map(|s| s.number) } else { None },
        fault_address,
        stack_pointer,
        fault_address_mapped: fault_address
            .is_some_and(|a| image.mappings.iter().any(|m| m.readable && a >= m.start && a < m.end)),
        crashing_thread: threads.get(&main_thread),
        abort_message: abort_message.as_deref(),
    });
    classifiers.extend(request.classifiers.iter().cloned());

    let executable = image.process.executable_path.clone();
    let application = executable
        .as_deref()
        .and_then(|p| p.rsplit('/').next())
        .map(str::to_string)
        .or_else(|| image.process.command.clone());
    let mut attributes: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    if let Some(h) = host::hostname() {
        attributes.insert("hostname".into(), h.into());
    }
    if let Some(app) = &application {
        attributes.insert("application".into(), app.clone().into());
    }
    attributes.insert("uname.machine".into(), arch_name(image.arch).into());
    if let Some(u) = host::uname() {
        attributes.insert("uname.sysname".into(), u.sysname.into());
        attributes.insert("uname.release".into(), u.release.into());
        attributes.insert("uname.version".into(), u.version.into());
    }
    attributes.insert("pid".into(), image.pid.into());
    if let Some(s) = &signal {
        attributes.insert("signal".into(), s.name.clone().into());
    }
    let mut annotations = BTreeMap::new();
    if let Some(message) = &abort_message {
        attributes.insert("error.message".into(), message.trim_end().to_string().into());
        annotations.insert("abort message".to_string(), serde_json::Value::from(message.clone()));
    }
    for (k, v) in &request.attributes {
        attributes.insert(k.clone(), v.clone().into());
    }

    let report_modules = modules
        .iter()
        .map(|m| Module {
            start: format!("{:#x}", m.avma_range.start),
            size: m.avma_range.end.saturating_sub(m.avma_range.start),
            code_file: m.name.clone(),
            debug_file: m.info.as_ref().and_then(|i| i.debug_file().map(|p| p.display().to_string())),
            debug_identifier: m.build_id_hex(),
            debug_file_exists: m.info.as_ref().is_some_and(|i| i.has_debug_info()),
            loaded_from: m.loaded_from.as_ref().map(|p| p.display().to_string()),
            mismatch: m.mismatch.clone(),
        })
        .collect();

    let attachments = collect_attachments(&request.resources, &mut warnings);
    let mut registers = BTreeMap::new();
    if let Some(t) = image.threads.first() {
        for (name, _) in &t.registers {
            registers.insert(name.to_string(), "u64".to_string());
        }
    }

    let timestamp = request
        .core
        .as_ref()
        .and_then(|c| std::fs::metadata(c).ok())
        .and_then(|m| m.modified().ok())
        .unwrap_or_else(SystemTime::now)
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);

    Ok(Snapshot {
        uuid: new_uuid(),
        timestamp,
        lang: "c".into(),
        lang_version: "unknown".into(),
        agent: "coresnap".into(),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        arch: ArchInfo { name: arch_name(image.arch).into(), registers },
        main_thread,
        threads,
        thread_order,
        attributes,
        classifiers,
        modules: report_modules,
        signal,
        process: Process {
            pid: image.pid,
            command: image.process.command.clone(),
            args: image.process.args.clone(),
            executable,
            uid: image.process.uid,
            gid: image.process.gid,
            source: source.into(),
        },
        attachments,
        warnings,
        annotations,
    })
}

/// Makes the snapshot and returns it as the JSON document described in docs/snapshot-format.md.
pub fn snapshot_json(request: &SnapshotRequest) -> Result<serde_json::Value, SnapshotError> {
    let snapshot = snapshot(request)?;
    Ok(serde_json::to_value(snapshot).unwrap_or(serde_json::Value::Null))
}

/// glibc keeps the text of its last fatal message (assert failures, heap corruption) in
/// `__abort_msg`, a pointer to `{ u32 size; char msg[]; }`; a core holds it when libc wrote one.
fn read_abort_message(image: &ProcessImage, modules: &[modules::ProcessModule]) -> Option<String> {
    const MAX_MESSAGE: usize = 4096;
    let libc = modules.iter().find(|m| {
        let file = m.name.rsplit('/').next().unwrap_or(&m.name);
        file.starts_with("libc.so") || (file.starts_with("libc-") && file.ends_with(".so"))
    })?;
    let svma = libc.info.as_ref()?.symbol_address("__abort_msg")?;
    let pointer = image.read_u64(svma.wrapping_add(libc.bias))?;
    if pointer == 0 {
        return None;
    }
    let size = image.read_u32(pointer)? as usize;
    let message = image.read_c_string(pointer.checked_add(4)?, size.clamp(1, MAX_MESSAGE))?;
    (!message.is_empty()).then_some(message)
}

fn collect_attachments(resources: &[PathBuf], warnings: &mut Vec<String>) -> Vec<Attachment> {
    use base64::Engine as _;
    let mut files = Vec::new();
    for r in resources {
        match std::fs::metadata(r) {
            Ok(m) if m.is_dir() => match std::fs::read_dir(r) {
                Ok(entries) => {
                    let mut inner: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
                    inner.sort();
                    files.extend(inner);
                }
                Err(e) => warnings.push(format!("the resource folder {} cannot be read: {e}", r.display())),
            },
            Ok(_) => files.push(r.clone()),
            // coresnapd names an assets folder that may not exist yet: nothing to attach.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warnings.push(format!("the resource {} cannot be read: {e}", r.display())),
        }
    }
    files
        .into_iter()
        .filter_map(|path| {
            let size = std::fs::metadata(&path).ok()?.len();
            let name = path.file_name()?.to_string_lossy().into_owned();
            let data = if size <= MAX_EMBEDDED_RESOURCE {
                match std::fs::read(&path) {
                    Ok(bytes) => Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
                    Err(e) => {
                        warnings.push(format!("the resource {} cannot be read: {e}", path.display()));
                        None
                    }
                }
            } else {
                warnings.push(format!(
                    "the resource {} is {size} bytes, more than the {MAX_EMBEDDED_RESOURCE} that are embedded; only its name is kept",
                    path.display()
                ));
                None
            };
            Some(Attachment { name, path: path.display().to_string(), size, data })
        })
        .collect()
}

fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}
