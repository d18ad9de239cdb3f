//! x86_64: register numbers, the signal trampoline and its `ucontext`, call instructions.

use crate::{Arch, Memory, Regs};

pub(crate) const RBP: u16 = 6;
pub(crate) const RSP: u16 = 7;
pub(crate) const RIP: u16 = 16;
/// The CFI column of the return address.
pub(crate) const RETURN_ADDRESS: u16 = RIP;

const NAMES: [&str; 17] = [
    "rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13",
    "r14", "r15", "rip",
];

pub(crate) fn register_name(dwarf: u16) -> &'static str {
    NAMES.get(usize::from(dwarf)).copied().unwrap_or("unknown")
}

/// Registers a callee must preserve (System V ABI): their values carry over into the caller
/// when CFI has no rule for them. The others are unknown in the caller.
pub(crate) fn is_callee_saved(dwarf: u16) -> bool {
    matches!(dwarf, 3 | 6 | 12..=15)
}

/// glibc's `__restore_rt`: `mov $15,%rax; syscall` (rt_sigreturn).
const RESTORE_RT: [u8; 9] = [0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05];

pub(crate) fn is_signal_trampoline(memory: &dyn Memory, pc: u64) -> bool {
    let mut code = [0u8; RESTORE_RT.len()];
    memory.read(pc, &mut code) && code == RESTORE_RT
}

/// Where the kernel's `struct sigcontext` starts inside `struct ucontext`:
/// `uc_flags` (8) + `uc_link` (8) + `uc_stack` (24).
const MCONTEXT_OFFSET: u64 = 40;

/// `struct sigcontext` begins with these general registers, in this order.
const SIGCONTEXT_ORDER: [u16; 17] = [
    8, 9, 10, 11, 12, 13, 14, 15, // r8..r15
    5, 4, 6, 3, 1, 0, 2, // rdi rsi rbp rbx rdx rax rcx
    RSP, RIP,
];

/// Restores the interrupted registers from the `ucontext` that `__restore_rt`'s stack pointer
/// points at (the handler's `ret` popped `pretcode`). Errors with the unreadable address.
pub(crate) fn restore_signal_context(memory: &dyn Memory, sp: u64) -> Result<Regs, u64> {
    let base = sp.wrapping_add(MCONTEXT_OFFSET);
    let mut raw = [0u8; SIGCONTEXT_ORDER.len() * 8];
    if !memory.read(base, &mut raw) {
        return Err(base);
    }
    let mut regs = Regs::new(Arch::X86_64);
    for (dwarf, bytes) in SIGCONTEXT_ORDER.iter().zip(raw.chunks_exact(8)) {
        let mut word = [0u8; 8];
        word.copy_from_slice(bytes);
        regs.set(*dwarf, u64::from_le_bytes(word));
    }
    Ok(regs)
}

/// Whether the bytes just before `return_address` are a call instruction: `call rel32` (e8)
/// or an indirect `call r/m64` (ff /2, 2 to 7 bytes with ModRM, SIB and displacement).
pub(crate) fn follows_call(memory: &dyn Memory, return_address: u64) -> bool {
    // Read the longest readable window: near the start of a mapping fewer bytes exist.
    let mut window = [0u8; 7];
    let mut length = 0usize;
    for candidate in (2..=window.len()).rev() {
        let Some(start) = return_address.checked_sub(candidate as u64) else {
            continue;
        };
        if let Some(buf) = window.get_mut(..candidate) {
            if memory.read(start, buf) {
                length = candidate;
                break;
            }
        }
    }
    if length == 0 {
        return false;
    }
    let code = window.get(..length).unwrap_or(&[]);
    // `call rel32`: e8 + 4 bytes.
    if length >= 5 && code.get(length - 5) == Some(&0xe8) {
        return true;
    }
    for size in 2..=length {
        let Some(&opcode) = code.get(length - size) else {
            continue;
        };
        if opcode != 0xff {
            continue;
        }
        let Some(&modrm) = code.get(length - size + 1) else {
            continue;
        };
        let sib = code.get(length - size + 2).copied();
        if indirect_call_length(modrm, sib) == Some(size) {
            return true;
        }
    }
    false
}

/// The length of `ff /2` given its ModRM (and SIB) byte, or None when it is not `call r/m64`.
fn indirect_call_length(modrm: u8, sib: Option<u8>) -> Option<usize> {
    if (modrm >> 3) & 7 != 2 {
        return None;
    }
    let mode = modrm >> 6;
    let rm = modrm & 7;
    let has_sib = mode != 3 && rm == 4;
    let sib_base_is_disp32 = has_sib && mode == 0 && sib.map(|sib| sib & 7) == Some(5);
    let displacement = match mode {
        0 if rm == 5 => 4, // rip-relative
        0 if sib_base_is_disp32 => 4,
        0 => 0,
        1 => 1,
        2 => 4,
        _ => 0,
    };
    Some(2 + usize::from(has_sib) + displacement)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Bytes(HashMap<u64, u8>);
    impl Memory for Bytes {
        fn read(&self, avma: u64, buf: &mut [u8]) -> bool {
            for (i, byte) in buf.iter_mut().enumerate() {
                match self.0.get(&avma.wrapping_add(i as u64)) {
                    Some(value) => *byte = *value,
                    None => return false,
                }
            }
            true
        }
    }

    fn code_ending_at(end: u64, bytes: &[u8]) -> Bytes {
        let start = end - bytes.len() as u64;
        Bytes(
            bytes
                .iter()
                .enumerate()
                .map(|(i, b)| (start + i as u64, *b))
                .collect(),
        )
    }

    #[test]
    fn recognises_call_forms() {
        let calls: &[&[u8]] = &[
            &[0xe8, 1, 2, 3, 4],             // call rel32
            &[0xff, 0xd0],                   // call *%rax
            &[0x41, 0xff, 0xd4],             // call *%r12
            &[0xff, 0x10],                   // call *(%rax)
            &[0xff, 0x15, 1, 2, 3, 4],       // call *disp(%rip)
            &[0xff, 0x50, 0x08],             // call *8(%rax)
            &[0xff, 0x54, 0x24, 0x08],       // call *8(%rsp)
            &[0xff, 0x90, 1, 2, 3, 4],       // call *disp32(%rax)
            &[0xff, 0x94, 0xc8, 1, 2, 3, 4], // call *disp32(%rax,%rcx,8)
            &[0xff, 0x14, 0xc5, 1, 2, 3, 4], // call *disp32(,%rax,8)
        ];
        for call in calls {
            let memory = code_ending_at(0x1000, call);
            assert!(
                follows_call(&memory, 0x1000),
                "{call:02x?} should be a call"
            );
        }
        let not_calls: &[&[u8]] = &[
            &[0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90],
            &[0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xe0], // jmp *%rax (ff /4)
            &[0x48, 0x89, 0xe5],                         // mov %rsp,%rbp
        ];
        for bytes in not_calls {
            let memory = code_ending_at(0x1000, bytes);
            assert!(!follows_call(&memory, 0x1000), "{bytes:02x?} is not a call");
        }
        assert!(!follows_call(&Bytes(HashMap::new()), 0x1000));
        assert!(!follows_call(&Bytes(HashMap::new()), 1));
    }

    #[test]
    fn restores_sigcontext() {
        let sp = 0x7000u64;
        let mut bytes = HashMap::new();
        for (i, _) in SIGCONTEXT_ORDER.iter().enumerate() {
            let value = 0x1000 + i as u64;
            for (k, b) in value.to_le_bytes().iter().enumerate() {
                bytes.insert(sp + 40 + i as u64 * 8 + k as u64, *b);
            }
        }
        let regs = restore_signal_context(&Bytes(bytes), sp).expect("readable");
        assert_eq!(regs.get(8), Some(0x1000)); // r8 first
        assert_eq!(regs.get(5), Some(0x1008)); // rdi
        assert_eq!(regs.get(0), Some(0x100d)); // rax
        assert_eq!(regs.sp(), Some(0x100f));
        assert_eq!(regs.pc(), Some(0x1010));
        assert_eq!(
            restore_signal_context(&Bytes(HashMap::new()), sp).err(),
            Some(sp + 40)
        );
    }
}
