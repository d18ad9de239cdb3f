//! The payloads of the notes the kernel (and qemu-user) write into a core, as laid out by
//! `include/uapi/linux/elfcore.h` and the per-architecture `user_regs_struct` (64-bit only).

use crate::{Arch, PacMask, SignalInfo};

pub(crate) const NT_PRSTATUS: u32 = 1;
pub(crate) const NT_FPREGSET: u32 = 2;
pub(crate) const NT_PRPSINFO: u32 = 3;
pub(crate) const NT_AUXV: u32 = 6;
pub(crate) const NT_SIGINFO: u32 = 0x5349_4749;
pub(crate) const NT_FILE: u32 = 0x4649_4c45;
pub(crate) const NT_X86_XSTATE: u32 = 0x202;
pub(crate) const NT_ARM_SVE: u32 = 0x405;
pub(crate) const NT_ARM_PAC_MASK: u32 = 0x406;

pub(crate) const X86_64_REGISTER_NAMES: [&str; 27] = [
    "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx", "rsi",
    "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs",
    "gs",
];

pub(crate) const AARCH64_REGISTER_NAMES: [&str; 34] = [
    "x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11", "x12", "x13", "x14",
    "x15", "x16", "x17", "x18", "x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26", "x27",
    "x28", "x29", "x30", "sp", "pc", "pstate",
];

pub(crate) fn register_names(arch: Arch) -> &'static [&'static str] {
    match arch {
        Arch::X86_64 => &X86_64_REGISTER_NAMES,
        Arch::Aarch64 => &AARCH64_REGISTER_NAMES,
    }
}

/// Fixed-offset fields of a note payload in the core's byte order.
#[derive(Clone, Copy)]
pub(crate) struct Fields<'a> {
    pub data: &'a [u8],
    pub big_endian: bool,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(data: &'a [u8], big_endian: bool) -> Self {
        Fields { data, big_endian }
    }

    fn array<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        self.data
            .get(offset..offset.checked_add(N)?)?
            .try_into()
            .ok()
    }

    pub(crate) fn u64(&self, offset: usize) -> Option<u64> {
        let bytes = self.array::<8>(offset)?;
        Some(if self.big_endian {
            u64::from_be_bytes(bytes)
        } else {
            u64::from_le_bytes(bytes)
        })
    }

    pub(crate) fn u32(&self, offset: usize) -> Option<u32> {
        let bytes = self.array::<4>(offset)?;
        Some(if self.big_endian {
            u32::from_be_bytes(bytes)
        } else {
            u32::from_le_bytes(bytes)
        })
    }

    pub(crate) fn i32(&self, offset: usize) -> Option<i32> {
        self.u32(offset).map(|v| v as i32)
    }

    pub(crate) fn i16(&self, offset: usize) -> Option<i16> {
        let bytes = self.array::<2>(offset)?;
        Some(if self.big_endian {
            i16::from_be_bytes(bytes)
        } else {
            i16::from_le_bytes(bytes)
        })
    }

    /// A NUL-padded string field of `len` bytes.
    fn c_string(&self, offset: usize, len: usize) -> Option<String> {
        let field = self.data.get(offset..offset.checked_add(len)?)?;
        let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
        Some(String::from_utf8_lossy(&field[..end]).into_owned())
    }
}

/// `struct elf_prstatus` (64-bit): `pr_cursig` at 12, `pr_pid` at 32, `pr_reg` at 112.
pub(crate) struct PrStatus {
    pub tid: i32,
    pub cursig: i32,
    pub registers: Vec<(&'static str, u64)>,
}

const PRSTATUS_CURSIG: usize = 12;
const PRSTATUS_PID: usize = 32;
const PRSTATUS_REGS: usize = 112;

pub(crate) fn parse_prstatus(desc: &[u8], arch: Arch, big_endian: bool) -> Option<PrStatus> {
    let fields = Fields::new(desc, big_endian);
    let tid = fields.i32(PRSTATUS_PID)?;
    let cursig = i32::from(fields.i16(PRSTATUS_CURSIG)?);
    let registers = register_names(arch)
        .iter()
        .enumerate()
        .map(|(index, name)| Some((*name, fields.u64(PRSTATUS_REGS + index * 8)?)))
        .collect::<Option<Vec<_>>>()?;
    Some(PrStatus {
        tid,
        cursig,
        registers,
    })
}

/// `struct elf_prpsinfo` (64-bit, 32-bit uid/gid as on x86_64 and arm64).
pub(crate) struct PrPsInfo {
    pub uid: u32,
    pub gid: u32,
    pub pid: i32,
    pub ppid: i32,
    pub fname: String,
    pub psargs: String,
}

pub(crate) fn parse_prpsinfo(desc: &[u8], big_endian: bool) -> Option<PrPsInfo> {
    let fields = Fields::new(desc, big_endian);
    Some(PrPsInfo {
        uid: fields.u32(16)?,
        gid: fields.u32(20)?,
        pid: fields.i32(24)?,
        ppid: fields.i32(28)?,
        fname: fields.c_string(40, 16)?,
        psargs: fields.c_string(56, 80)?.trim_end().to_string(),
    })
}

const SIGILL: i32 = 4;
const SIGTRAP: i32 = 5;
const SIGBUS: i32 = 7;
const SIGFPE: i32 = 8;
const SIGSEGV: i32 = 11;
const SI_USER: i32 = 0;
const SI_QUEUE: i32 = -1;
const SI_TKILL: i32 = -6;

/// `siginfo_t` as the kernel's `NT_SIGINFO` copies it: `si_signo`, `si_errno`, `si_code`, then
/// the union at 16 (`si_addr` for faults, `si_pid` for kill/tkill/sigqueue).
pub(crate) fn parse_siginfo(desc: &[u8], big_endian: bool) -> Option<SignalInfo> {
    let fields = Fields::new(desc, big_endian);
    let number = fields.i32(0)?;
    let errno = fields.i32(4)?;
    let code = fields.i32(8)?;
    let is_fault = matches!(number, SIGILL | SIGTRAP | SIGBUS | SIGFPE | SIGSEGV) && code > 0;
    let is_sent = matches!(code, SI_USER | SI_QUEUE | SI_TKILL);
    Some(SignalInfo {
        number,
        code: Some(code),
        address: if is_fault { fields.u64(16) } else { None },
        sender_pid: if is_sent { fields.i32(16) } else { None },
        errno: Some(errno),
    })
}

/// `(type, value)` pairs up to `AT_NULL`.
pub(crate) fn parse_auxv(desc: &[u8], big_endian: bool) -> Vec<(u64, u64)> {
    let fields = Fields::new(desc, big_endian);
    let mut entries = Vec::with_capacity(desc.len() / 16);
    let mut offset = 0;
    while let (Some(kind), Some(value)) = (fields.u64(offset), fields.u64(offset + 8)) {
        if kind == crate::auxv::AT_NULL {
            break;
        }
        entries.push((kind, value));
        offset += 16;
    }
    entries
}

/// One `NT_FILE` entry: a file-backed range of the address space.
#[derive(Clone, Debug)]
pub(crate) struct FileNoteEntry {
    pub start: u64,
    pub end: u64,
    pub file_offset: u64,
    pub path: String,
}

/// `NT_FILE`: count, page size, `count` (start, end, page offset) triples, then `count`
/// NUL-terminated names. Entries the payload cannot hold are dropped with a warning.
pub(crate) fn parse_nt_file(
    desc: &[u8],
    big_endian: bool,
    warnings: &mut Vec<String>,
) -> Vec<FileNoteEntry> {
    let fields = Fields::new(desc, big_endian);
    let (Some(count), Some(page_size)) = (fields.u64(0), fields.u64(8)) else {
        warnings.push("The NT_FILE note is too short to hold its header.".into());
        return Vec::new();
    };
    let room = (desc.len().saturating_sub(16) / 24) as u64;
    let usable = count.min(room) as usize;
    if (usable as u64) < count {
        warnings.push(format!(
            "The NT_FILE note claims {count} mapped files but has room for only {usable}."
        ));
    }
    let names_start = 16 + usable * 24;
    let mut names = desc.get(names_start..).unwrap_or(&[]).split(|&b| b == 0);
    let mut entries = Vec::with_capacity(usable);
    for index in 0..usable {
        let base = 16 + index * 24;
        let (Some(start), Some(end), Some(page_offset)) = (
            fields.u64(base),
            fields.u64(base + 8),
            fields.u64(base + 16),
        ) else {
            break;
        };
        let Some(name) = names.next().filter(|n| !n.is_empty()) else {
            warnings.push(format!(
                "The NT_FILE note lists {usable} mapped files but names only {index}."
            ));
            break;
        };
        let Some(file_offset) = page_offset.checked_mul(page_size) else {
            warnings.push(format!(
                "The NT_FILE entry for {} has an impossible file offset.",
                String::from_utf8_lossy(name)
            ));
            continue;
        };
        if end <= start {
            continue;
        }
        entries.push(FileNoteEntry {
            start,
            end,
            file_offset,
            path: String::from_utf8_lossy(name).into_owned(),
        });
    }
    entries
}

/// `struct user_pac_mask { data_mask, insn_mask }`.
pub(crate) fn parse_pac_mask(desc: &[u8], big_endian: bool) -> Option<PacMask> {
    let fields = Fields::new(desc, big_endian);
    Some(PacMask {
        data: fields.u64(0)?,
        insn: fields.u64(8)?,
    })
}
