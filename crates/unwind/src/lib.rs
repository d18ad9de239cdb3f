//! Stack walking for x86_64 and aarch64 Linux processes.
//!
//! **What the caller does.** It describes every module (an ELF file mapped into the process)
//! with a [`ModuleUnwindInfo`]: where its code is mapped, its bias, and its unwind sections
//! (`.eh_frame`, `.eh_frame_hdr`, `.debug_frame`) as bytes. It builds one [`Unwinder`] per
//! process, supplies a [`Memory`] that reads the process's address space (stack and code), and
//! calls [`Unwinder::unwind`] with each thread's registers.
//!
//! **What the crate does.** It walks the stack from those registers and returns every frame,
//! each tagged with how it was found ([`Trust`]), and why the walk stopped ([`StopReason`]).
//! It knows nothing of ELF files, cores or symbols. For each caller frame it tries, in order:
//!
//! 1. DWARF CFI of the module containing the frame's `lookup_pc`: `.eh_frame` (through the
//!    `.eh_frame_hdr` search table when present, else a sorted index built once), then
//!    `.debug_frame`. Every register rule is evaluated, DWARF expressions included, so callee-saved
//!    registers are recovered, not just pc/sp/fp. An undefined return address ends the stack.
//! 2. The frame-pointer chain (`[fp]` = caller's fp, `[fp+8]` = return address), accepted only
//!    when the return address is in executable code and the stack pointer grows.
//! 3. A stack scan: the first word above the stack pointer that points into executable code
//!    just after a call instruction.
//!
//! Frame 0 (and a frame restored from a signal context) gets two extra chances when CFI has
//! nothing for it, because it may not have pushed anything yet: a pc in no mapping (a call
//! through a bad pointer) or, on x86_64, a leaf without a frame: the return address is then
//! at `[sp]` (x86_64) or in lr (aarch64), if it follows a call instruction (trust `Scan`).
//!
//! A frame whose pc is a signal trampoline (x86_64 `__restore_rt`, aarch64
//! `__kernel_rt_sigreturn`) is a [`FrameKind::Signal`] frame; its caller, the interrupted frame,
//! is restored whole from the `ucontext` the kernel saved on the stack, and is looked up at its
//! pc (not pc-1), since it was interrupted rather than calling.
//!
//! On aarch64, every recovered return address is stripped of pointer-authentication bits.
//!
//! The walk has no depth limit for frames CFI vouches for. It stops at a zero pc, at an
//! address in no executable mapping, when the stack pointer stops growing (it may stay equal
//! from a frame whose registers came from a context, which can be a leaf, and move either way
//! across a signal frame), when a `(pc, sp)` pair repeats, or when a return address would be
//! the frame's own pc without being read from the stack. Guesses are bounded: 1,000 scanned
//! frames in a row, or 100,000 frames without CFI in a row, end the walk. It never panics and
//! never loops, whatever memory holds.
//! Parsed FDE indexes and evaluated unwind rows are cached per [`Unwinder`], so many threads, or
//! thousands of frames of one recursive function, cost one CFI lookup per distinct address.

mod aarch64;
mod cfi;
mod regs;
mod unwinder;
mod x86_64;

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

pub use regs::{register_name, Regs};
pub use unwinder::Unwinder;

/// The CPU architecture of the process being walked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    /// The DWARF number of the instruction pointer.
    pub(crate) fn pc_register(self) -> u16 {
        match self {
            Arch::X86_64 => x86_64::RIP,
            Arch::Aarch64 => aarch64::PC,
        }
    }

    /// The DWARF number of the stack pointer.
    pub(crate) fn sp_register(self) -> u16 {
        match self {
            Arch::X86_64 => x86_64::RSP,
            Arch::Aarch64 => aarch64::SP,
        }
    }

    /// The DWARF number of the frame pointer.
    pub(crate) fn fp_register(self) -> u16 {
        match self {
            Arch::X86_64 => x86_64::RBP,
            Arch::Aarch64 => aarch64::FP,
        }
    }

    /// The CFI column holding the return address.
    pub(crate) fn return_address_register(self) -> u16 {
        match self {
            Arch::X86_64 => x86_64::RETURN_ADDRESS,
            Arch::Aarch64 => aarch64::RETURN_ADDRESS,
        }
    }

    pub(crate) fn is_callee_saved(self, dwarf: u16) -> bool {
        match self {
            Arch::X86_64 => x86_64::is_callee_saved(dwarf),
            Arch::Aarch64 => aarch64::is_callee_saved(dwarf),
        }
    }
}

/// Reads the crashed (or stopped) process's memory.
pub trait Memory {
    /// Fills `buf` with the bytes at `avma`; false (and `buf` unspecified) when any of them
    /// cannot be read.
    fn read(&self, avma: u64, buf: &mut [u8]) -> bool;

    /// The little-endian 64-bit word at `avma`.
    fn read_u64(&self, avma: u64) -> Option<u64> {
        let mut bytes = [0u8; 8];
        self.read(avma, &mut bytes)
            .then(|| u64::from_le_bytes(bytes))
    }
}

/// A byte range inside a shared owner (an mmap, a decompressed section, a `Vec`), so module
/// sections can be handed over without copying.
#[derive(Clone)]
pub struct SectionBytes {
    owner: Arc<dyn AsRef<[u8]> + Send + Sync>,
    range: Range<usize>,
}

impl SectionBytes {
    /// The bytes `range` of `owner`. A range outside the owner reads as empty.
    pub fn new(owner: Arc<dyn AsRef<[u8]> + Send + Sync>, range: Range<usize>) -> Self {
        SectionBytes { owner, range }
    }

    pub fn from_vec(bytes: Vec<u8>) -> Self {
        let range = 0..bytes.len();
        SectionBytes {
            owner: Arc::new(bytes),
            range,
        }
    }

    pub fn bytes(&self) -> &[u8] {
        (*self.owner)
            .as_ref()
            .get(self.range.clone())
            .unwrap_or(&[])
    }
}

impl fmt::Debug for SectionBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SectionBytes({} bytes)", self.bytes().len())
    }
}

/// One unwind section: its bytes and the address the ELF file states for it.
#[derive(Clone, Debug)]
pub struct UnwindSection {
    pub svma: u64,
    pub data: SectionBytes,
}

/// What the walker needs to know about one module.
#[derive(Clone, Debug)]
pub struct ModuleUnwindInfo {
    /// For messages only.
    pub name: String,
    /// Where the module's executable code is mapped.
    pub avma_range: Range<u64>,
    /// `avma = svma.wrapping_add(bias)`.
    pub bias: u64,
    pub eh_frame: Option<UnwindSection>,
    pub eh_frame_hdr: Option<UnwindSection>,
    /// From the file or its separate debug file.
    pub debug_frame: Option<UnwindSection>,
    /// Executable sections (SVMA): a scanned return address must fall in one. Empty means the
    /// whole `avma_range` is code.
    pub text_svma_ranges: Vec<Range<u64>>,
}

/// How the walk may proceed.
#[derive(Clone, Debug)]
pub struct UnwindOptions {
    /// aarch64: the bits to clear from return addresses (`NT_ARM_PAC_MASK`'s instruction mask).
    /// When `None`, the bits above the 48-bit user address space are cleared.
    pub pac_mask: Option<u64>,
    /// Follow the frame-pointer chain when CFI is missing or fails. Default true.
    pub allow_frame_pointer: bool,
    /// Scan the stack for return addresses when CFI and frame pointers fail. Default true.
    pub allow_scan: bool,
    /// How many 8-byte words above the stack pointer a scan examines. Default 1024.
    pub scan_words: usize,
}

impl Default for UnwindOptions {
    fn default() -> Self {
        UnwindOptions {
            pac_mask: None,
            allow_frame_pointer: true,
            allow_scan: true,
            scan_words: 1024,
        }
    }
}

/// The walk of one thread.
#[derive(Clone, Debug)]
pub struct Unwound {
    /// Innermost first; `frames[0]` is the thread's own registers (it is absent only when
    /// those registers have no pc).
    pub frames: Vec<Frame>,
    pub stop_reason: StopReason,
}

/// Why the walk ended after the last frame.
#[derive(Clone, Debug, PartialEq)]
pub enum StopReason {
    /// The unwind information (an undefined return address) or a zero frame pointer marks the
    /// last frame as the outermost one.
    EndOfStack,
    /// The next return address is zero.
    ZeroPc,
    /// The next return address is in no module or executable range.
    NoExecutableMapping(u64),
    /// The next frame's stack pointer is not above this one's.
    StackNotGrowing,
    /// The next frame would repeat a `(pc, sp)` pair already walked, or its return address
    /// would be the current pc without having been saved anywhere.
    Loop,
    /// Memory the next step needs could not be read.
    MemoryUnreadable(u64),
    /// No method (CFI, frame pointer, stack scan) applies or finds a caller, or too many
    /// guessed frames in a row (the last frame's warnings say so).
    NoUnwindMethod,
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::EndOfStack => write!(f, "the last frame is the outermost one"),
            StopReason::ZeroPc => write!(f, "the return address is zero"),
            StopReason::NoExecutableMapping(pc) => {
                write!(f, "the return address {pc:#x} is in no executable mapping")
            }
            StopReason::StackNotGrowing => write!(f, "the stack pointer did not grow"),
            StopReason::Loop => write!(f, "the same frame (pc and stack pointer) came up twice"),
            StopReason::MemoryUnreadable(address) => {
                write!(f, "the memory at {address:#x} could not be read")
            }
            StopReason::NoUnwindMethod => {
                write!(
                    f,
                    "no unwind method (CFI, frame pointer, stack scan) found a caller"
                )
            }
        }
    }
}

/// One frame of a walk.
#[derive(Clone, Debug)]
pub struct Frame {
    /// The instruction address (frame 0, or a frame restored from a signal context) or the
    /// return address (others); pointer-authentication bits stripped.
    pub pc: u64,
    /// The address to look CFI and symbols up with: `pc` for frame 0, for signal trampoline
    /// frames and for frames interrupted by a signal; `pc - 1` otherwise, so that a call at
    /// the very end of a function is attributed to it.
    pub lookup_pc: u64,
    pub sp: u64,
    /// This frame's canonical frame address, when the step to its caller computed one.
    pub cfa: Option<u64>,
    /// The registers known at this frame.
    pub regs: Regs,
    pub trust: Trust,
    pub kind: FrameKind,
    /// Problems met while finding this frame (a failed method before the one that worked).
    pub warnings: Vec<String>,
}

/// How a frame was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust {
    /// The thread's registers, or a signal context saved by the kernel.
    Context,
    /// DWARF call-frame information.
    Cfi,
    /// The frame-pointer chain.
    FramePointer,
    /// A stack word that points just after a call instruction in executable code.
    Scan,
}

impl Trust {
    pub fn as_str(&self) -> &'static str {
        match self {
            Trust::Context => "context",
            Trust::Cfi => "cfi",
            Trust::FramePointer => "frame-pointer",
            Trust::Scan => "scan",
        }
    }
}

/// What kind of code a frame is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    Normal,
    /// A signal trampoline: the next frame is the one the signal interrupted.
    Signal,
}
