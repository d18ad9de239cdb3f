//! ELF core files and live Linux processes, read into one [`ProcessImage`].
//!
//! What the caller does: names a core file (or, with [`live::attach_live`], a pid) and,
//! optionally, a sysroot and the executable that crashed ([`CoreOptions`]).
//!
//! What the crate does: reads everything the kernel (or qemu-user) wrote into the core —
//! threads and their registers (`NT_PRSTATUS`), the process (`NT_PRPSINFO`), the signal
//! (`NT_SIGINFO`, else the crashing thread's `pr_cursig`), the auxiliary vector (`NT_AUXV`), the
//! mapped files (`NT_FILE`), the aarch64 pointer-authentication masks (`NT_ARM_PAC_MASK`) — and
//! gives it back as a [`ProcessImage`] that can also read the process's memory:
//!
//! - Memory comes from the core's `PT_LOAD` segments. Pages the core left out (file-backed text,
//!   `p_filesz < p_memsz`, or a core file cut short) are read from the mapped file on disk, found
//!   under the sysroot and memory-mapped lazily, once per file.
//! - Mappings come from `NT_FILE` plus the anonymous `PT_LOAD` ranges. Cores without `NT_FILE`
//!   (qemu-user writes neither `NT_FILE` nor `NT_SIGINFO`) get their mappings rebuilt from the
//!   dynamic linker's `r_debug`/`link_map` list found through `AT_PHDR` → `PT_DYNAMIC` →
//!   `DT_DEBUG`, with every library's program headers read from disk (under the sysroot).
//!
//! Bad input (empty, truncated at any offset, random bytes, not a core, a mismatched
//! executable) never panics: it gives a [`CoreError`] whose message is a sentence, or a partial
//! image whose [`ProcessImage::warnings`] say what was missing. Counts taken from the file are
//! bounded by the file's size before anything is allocated.

mod core_file;
mod link_map;
pub mod live;
mod memory;
mod notes;
mod sysroot;

use std::path::{Path, PathBuf};

pub use live::{attach_live, LiveAttachment};

use memory::{FileBacking, MemorySource};

/// The CPU a process ran on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
}

/// What the caller knows beyond the core itself.
#[derive(Clone, Debug, Default)]
pub struct CoreOptions {
    /// The root the crashed system's files live under (`/usr/aarch64-linux-gnu` for qemu-user
    /// cores, the extracted target filesystem for cross-machine analysis). Paths from the core
    /// are looked up under it; `None` means this machine's own files.
    pub sysroot: Option<PathBuf>,
    /// The executable that crashed, when it is not where the core says (it replaces the
    /// executable's path, and is used as given, not under the sysroot).
    pub executable: Option<PathBuf>,
}

/// Everything known about a crashed (or stopped) process.
pub struct ProcessImage {
    pub arch: Arch,
    pub pid: i32,
    /// In note order: the kernel puts the crashing thread first.
    pub threads: Vec<ThreadState>,
    /// Index into `threads` of the thread the signal was delivered to.
    pub crashing_thread: Option<usize>,
    pub signal: Option<SignalInfo>,
    pub process: ProcessInfo,
    /// `(AT_* type, value)` pairs, without the terminating `AT_NULL`.
    pub auxv: Vec<(u64, u64)>,
    /// Sorted by start, non-overlapping.
    pub mappings: Vec<Mapping>,
    pub pac_mask: Option<PacMask>,
    /// What could not be read, one sentence each.
    pub warnings: Vec<String>,
    memory: MemorySource,
    files: FileBacking,
    sysroot: Option<PathBuf>,
    executable_override: Option<PathBuf>,
    big_endian: bool,
}

/// One thread's registers as the kernel saved them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadState {
    pub tid: i32,
    /// `pr_cursig`: the signal the thread was handling when the core was written (0 if none).
    pub pending_signal: i32,
    /// In `user_regs_struct` order with the kernel's names: x86_64 `r15 r14 r13 r12 rbp rbx r11
    /// r10 r9 r8 rax rcx rdx rsi rdi orig_rax rip cs eflags rsp ss fs_base gs_base ds es fs gs`;
    /// aarch64 `x0`..`x30 sp pc pstate`.
    pub registers: Vec<(&'static str, u64)>,
    /// Whether floating-point/vector registers were saved (`NT_FPREGSET`, `NT_X86_XSTATE`,
    /// `NT_ARM_SVE`).
    pub has_fp_registers: bool,
}

/// The signal that ended (or stopped) the process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignalInfo {
    pub number: i32,
    /// `si_code`; unknown when the core has no `NT_SIGINFO`.
    pub code: Option<i32>,
    /// The faulting address, for kernel-raised SIGSEGV, SIGBUS, SIGILL, SIGFPE and SIGTRAP.
    pub address: Option<u64>,
    /// Who sent the signal, for `kill`, `tkill`/`tgkill` and `sigqueue`.
    pub sender_pid: Option<i32>,
    pub errno: Option<i32>,
}

/// The process as a whole.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessInfo {
    /// `pr_fname`: the command name (comm), at most 15 bytes.
    pub command: Option<String>,
    /// `pr_psargs`: the start of the command line, arguments separated by spaces.
    pub args: Option<String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub ppid: Option<i32>,
    /// The executable as the process knew it (from `NT_FILE`, `AT_EXECFN` or `link_map`), or
    /// `CoreOptions::executable` when the core does not say.
    pub executable_path: Option<String>,
}

/// One contiguous range of the address space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    /// Where `start` is in the mapped file (0 for anonymous memory).
    pub file_offset: u64,
    /// The mapped file as the process saw it, or a pseudo-name such as `[vdso]`; `None` for
    /// anonymous memory.
    pub path: Option<String>,
    pub readable: bool,
    pub writable: bool,
    pub executable: bool,
}

/// aarch64 pointer-authentication masks: the bits of a code or data pointer that hold the PAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacMask {
    pub data: u64,
    pub insn: u64,
}

/// Why a core (or process) could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the file is empty")]
    Empty,
    #[error("the file is not an ELF file")]
    NotElf,
    #[error("the ELF header is unusable: {0}")]
    BadHeader(String),
    #[error("the ELF file is not a core dump (e_type is {0})")]
    NotCore(String),
    #[error("the core is for an unsupported architecture (e_machine {0})")]
    UnsupportedArch(u16),
    #[error("the core has no thread (no NT_PRSTATUS note)")]
    NoThreads,
    #[error("cannot attach to process {pid}: {reason}")]
    Attach { pid: i32, reason: String },
}

const X86_64_DWARF: [(u16, &str); 17] = [
    (0, "rax"),
    (1, "rdx"),
    (2, "rcx"),
    (3, "rbx"),
    (4, "rsi"),
    (5, "rdi"),
    (6, "rbp"),
    (7, "rsp"),
    (8, "r8"),
    (9, "r9"),
    (10, "r10"),
    (11, "r11"),
    (12, "r12"),
    (13, "r13"),
    (14, "r14"),
    (15, "r15"),
    (16, "rip"),
];

impl ThreadState {
    /// The registers in DWARF numbering: x86_64 0 rax 1 rdx 2 rcx 3 rbx 4 rsi 5 rdi 6 rbp 7 rsp
    /// 8–15 r8–r15 16 rip; aarch64 0–30 x0–x30, 31 sp, 32 pc. Sorted by number.
    pub fn dwarf_registers(&self, arch: Arch) -> Vec<(u16, u64)> {
        let value_of = |name: &str| {
            self.registers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| *v)
        };
        match arch {
            Arch::X86_64 => X86_64_DWARF
                .iter()
                .filter_map(|(number, name)| value_of(name).map(|v| (*number, v)))
                .collect(),
            Arch::Aarch64 => notes::AARCH64_REGISTER_NAMES
                .iter()
                .take(33) // x0..x30, sp, pc: their DWARF numbers are their prstatus indices
                .enumerate()
                .filter_map(|(number, name)| value_of(name).map(|v| (number as u16, v)))
                .collect(),
        }
    }

    /// The value of one register by its kernel name (`rip`, `sp`, `x29`...).
    pub fn register(&self, name: &str) -> Option<u64> {
        self.registers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    /// The program counter (`rip` / `pc`).
    pub fn pc(&self, arch: Arch) -> Option<u64> {
        self.register(match arch {
            Arch::X86_64 => "rip",
            Arch::Aarch64 => "pc",
        })
    }

    /// The stack pointer (`rsp` / `sp`).
    pub fn sp(&self, arch: Arch) -> Option<u64> {
        self.register(match arch {
            Arch::X86_64 => "rsp",
            Arch::Aarch64 => "sp",
        })
    }
}

/// `AT_*` auxiliary-vector types this crate looks at.
pub mod auxv {
    pub const AT_NULL: u64 = 0;
    pub const AT_PHDR: u64 = 3;
    pub const AT_PHENT: u64 = 4;
    pub const AT_PHNUM: u64 = 5;
    pub const AT_PAGESZ: u64 = 6;
    pub const AT_BASE: u64 = 7;
    pub const AT_ENTRY: u64 = 9;
    pub const AT_EXECFN: u64 = 31;
    pub const AT_SYSINFO_EHDR: u64 = 33;
}

/// The vDSO is a few pages; anything claiming more is garbage.
const MAX_VDSO_SIZE: u64 = 1 << 20;

impl ProcessImage {
    /// Reads a core file. See the crate documentation for what is read and how bad input is
    /// handled.
    pub fn open_core(path: &Path, options: &CoreOptions) -> Result<ProcessImage, CoreError> {
        core_file::open_core(path, options)
    }

    /// Reads a core already in memory (the bytes of a core file).
    pub fn from_core_bytes(
        bytes: Vec<u8>,
        options: &CoreOptions,
    ) -> Result<ProcessImage, CoreError> {
        core_file::from_core_bytes(bytes, options)
    }

    /// Fills `buf` with the process's memory at `avma`. Returns false (and leaves `buf` in an
    /// unspecified state) unless every byte could be read.
    pub fn read_memory(&self, avma: u64, buf: &mut [u8]) -> bool {
        memory::read(&self.memory, &self.files, avma, buf, true)
    }

    /// Like [`read_memory`](Self::read_memory), but only from what the core (or live process)
    /// itself holds, never from files on disk: what the process really had in memory.
    pub fn read_memory_dumped(&self, avma: u64, buf: &mut [u8]) -> bool {
        memory::read(&self.memory, &self.files, avma, buf, false)
    }

    /// A 64-bit word in the process's byte order.
    pub fn read_u64(&self, avma: u64) -> Option<u64> {
        let mut bytes = [0u8; 8];
        if !self.read_memory(avma, &mut bytes) {
            return None;
        }
        Some(if self.big_endian {
            u64::from_be_bytes(bytes)
        } else {
            u64::from_le_bytes(bytes)
        })
    }

    /// A 32-bit word in the process's byte order.
    pub fn read_u32(&self, avma: u64) -> Option<u32> {
        let mut bytes = [0u8; 4];
        if !self.read_memory(avma, &mut bytes) {
            return None;
        }
        Some(if self.big_endian {
            u32::from_be_bytes(bytes)
        } else {
            u32::from_le_bytes(bytes)
        })
    }

    /// A NUL-terminated string from memory, at most `max_len` bytes (lossy UTF-8).
    pub fn read_c_string(&self, avma: u64, max_len: usize) -> Option<String> {
        memory::read_c_string(|a, b| self.read_memory(a, b), avma, max_len)
    }

    /// Where the file a mapping names is on this machine: `CoreOptions::executable` for the
    /// executable; otherwise the path under the sysroot (absolute symlinks inside the sysroot
    /// stay inside it); the path itself without a sysroot.
    pub fn resolve_path(&self, path: &str) -> PathBuf {
        if let Some(exe) = &self.executable_override {
            if self.process.executable_path.as_deref() == Some(path) {
                return exe.clone();
            }
        }
        sysroot::resolve(self.sysroot.as_deref(), path)
    }

    /// The mapping that contains `avma`.
    pub fn mapping_at(&self, avma: u64) -> Option<&Mapping> {
        let index = self.mappings.partition_point(|m| m.start <= avma);
        let mapping = self.mappings.get(index.checked_sub(1)?)?;
        (avma < mapping.end).then_some(mapping)
    }

    /// The GNU build-id of the module whose ELF header is at `module_base`, as the process had
    /// it in memory (ELF header → `PT_NOTE` → `NT_GNU_BUILD_ID`). `None` when the core did not
    /// keep those pages (files on disk are not consulted, so that a mismatch can be seen).
    pub fn build_id_in_memory(&self, module_base: u64) -> Option<Vec<u8>> {
        link_map::build_id_in_memory(
            |a, b| self.read_memory_dumped(a, b),
            self.big_endian,
            module_base,
        )
    }

    /// `AT_SYSINFO_EHDR`: where the kernel mapped the vDSO.
    pub fn vdso_base(&self) -> Option<u64> {
        self.auxv_value(auxv::AT_SYSINFO_EHDR).filter(|&v| v != 0)
    }

    /// The whole vDSO ELF image, read from memory (its code exists nowhere else).
    pub fn read_vdso_image(&self) -> Option<Vec<u8>> {
        let base = self.vdso_base()?;
        let size = link_map::elf_image_size(|a, b| self.read_memory(a, b), self.big_endian, base)?;
        // The image cannot extend past the mapping it lives in.
        let limit = self
            .mapping_at(base)
            .map(|m| m.end - base)
            .unwrap_or(MAX_VDSO_SIZE)
            .min(MAX_VDSO_SIZE);
        if size == 0 || size > limit {
            return None;
        }
        let mut image = vec![0u8; usize::try_from(size).ok()?];
        self.read_memory(base, &mut image).then_some(image)
    }

    /// The value of the first auxiliary-vector entry of type `kind`.
    pub fn auxv_value(&self, kind: u64) -> Option<u64> {
        self.auxv.iter().find(|(k, _)| *k == kind).map(|(_, v)| *v)
    }

    /// The crashing thread, if any.
    pub fn crashing_thread(&self) -> Option<&ThreadState> {
        self.threads.get(self.crashing_thread?)
    }
}

impl std::fmt::Debug for ProcessImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessImage")
            .field("arch", &self.arch)
            .field("pid", &self.pid)
            .field("threads", &self.threads.len())
            .field("crashing_thread", &self.crashing_thread)
            .field("signal", &self.signal)
            .field("process", &self.process)
            .field("mappings", &self.mappings.len())
            .field("pac_mask", &self.pac_mask)
            .field("warnings", &self.warnings)
            .finish_non_exhaustive()
    }
}

// Callers share one image between threads (one unwinder per thread).
const _: () = {
    const fn send_and_sync<T: Send + Sync>() {}
    send_and_sync::<ProcessImage>();
};
