//! aarch64: register numbers, pointer authentication, the vDSO signal trampoline and its
//! `rt_sigframe`, call instructions.

use crate::{Arch, Memory, Regs};

pub(crate) const FP: u16 = 29;
pub(crate) const LR: u16 = 30;
pub(crate) const SP: u16 = 31;
pub(crate) const PC: u16 = 32;
/// The CFI column of the return address.
pub(crate) const RETURN_ADDRESS: u16 = LR;

const NAMES: [&str; 33] = [
    "x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11", "x12", "x13", "x14",
    "x15", "x16", "x17", "x18", "x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26", "x27",
    "x28", "x29", "x30", "sp", "pc",
];

pub(crate) fn register_name(dwarf: u16) -> &'static str {
    match dwarf {
        34 => "ra_sign_state",
        _ => NAMES.get(usize::from(dwarf)).copied().unwrap_or("unknown"),
    }
}

/// Registers a callee must preserve (AAPCS64): x19–x29.
pub(crate) fn is_callee_saved(dwarf: u16) -> bool {
    (19..=29).contains(&dwarf)
}

/// Removes pointer-authentication bits from a code address. With the kernel's
/// `NT_ARM_PAC_MASK` instruction mask those bits are cleared; without it everything above the
/// 48-bit user address space is. Bits 63..55 are never part of a user code address, so they are
/// cleared either way.
pub(crate) fn strip_pac(address: u64, pac_mask: Option<u64>) -> u64 {
    const ABOVE_BIT_54: u64 = 0xff80_0000_0000_0000;
    const ABOVE_48_BITS: u64 = 0xffff_0000_0000_0000;
    match pac_mask {
        Some(mask) => address & !(mask | ABOVE_BIT_54),
        None => address & !ABOVE_48_BITS,
    }
}

/// The vDSO's `__kernel_rt_sigreturn` (and qemu-user's copy): `mov x8, #139; svc #0`.
const RT_SIGRETURN: [u32; 2] = [0xd280_1168, 0xd400_0001];

pub(crate) fn is_signal_trampoline(memory: &dyn Memory, pc: u64) -> bool {
    let mut code = [0u8; 8];
    if !pc.is_multiple_of(4) || !memory.read(pc, &mut code) {
        return false;
    }
    let first = u32::from_le_bytes([code[0], code[1], code[2], code[3]]);
    let second = u32::from_le_bytes([code[4], code[5], code[6], code[7]]);
    [first, second] == RT_SIGRETURN
}

/// `struct rt_sigframe` = `siginfo` (128 bytes), then `struct ucontext`, whose `uc_mcontext`
/// (`struct sigcontext`, 16-aligned) follows `uc_flags` 8, `uc_link` 8, `uc_stack` 24,
/// `uc_sigmask` 8 and `__unused` 120: offset 176.
const SIGCONTEXT_OFFSET: u64 = 128 + 176;
/// `struct sigcontext`: `fault_address`, then `regs[31]`, `sp`, `pc`, `pstate`.
const SIGCONTEXT_REGS_OFFSET: u64 = SIGCONTEXT_OFFSET + 8;

/// Restores the interrupted registers from the `rt_sigframe` at `sp` (the stack pointer of the
/// `__kernel_rt_sigreturn` frame). Errors with the unreadable address.
pub(crate) fn restore_signal_context(memory: &dyn Memory, sp: u64) -> Result<Regs, u64> {
    let base = sp.wrapping_add(SIGCONTEXT_REGS_OFFSET);
    // x0..x30, sp, pc
    let mut raw = [0u8; 33 * 8];
    if !memory.read(base, &mut raw) {
        return Err(base);
    }
    let mut regs = Regs::new(Arch::Aarch64);
    for (dwarf, bytes) in (0u16..).zip(raw.chunks_exact(8)) {
        let mut word = [0u8; 8];
        word.copy_from_slice(bytes);
        regs.set(dwarf, u64::from_le_bytes(word));
    }
    Ok(regs)
}

/// Whether the instruction before `return_address` is a call: `bl`, `blr`, or one of the
/// pointer-authenticating `blraa`/`blrab`/`blraaz`/`blrabz`.
pub(crate) fn follows_call(memory: &dyn Memory, return_address: u64) -> bool {
    if !return_address.is_multiple_of(4) {
        return false;
    }
    let Some(address) = return_address.checked_sub(4) else {
        return false;
    };
    let mut code = [0u8; 4];
    if !memory.read(address, &mut code) {
        return false;
    }
    let insn = u32::from_le_bytes(code);
    let is_bl = insn & 0xfc00_0000 == 0x9400_0000;
    let is_blr = insn & 0xffff_fc1f == 0xd63f_0000;
    let is_blra = insn & 0xfeff_f800 == 0xd63f_0800;
    is_bl || is_blr || is_blra
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Words(Vec<(u64, u32)>);
    impl Memory for Words {
        fn read(&self, avma: u64, buf: &mut [u8]) -> bool {
            for (i, byte) in buf.iter_mut().enumerate() {
                let address = avma.wrapping_add(i as u64);
                let Some((start, word)) = self
                    .0
                    .iter()
                    .find(|(start, _)| address >= *start && address < start + 4)
                else {
                    return false;
                };
                *byte = word.to_le_bytes()[(address - start) as usize];
            }
            true
        }
    }

    #[test]
    fn strips_pointer_authentication() {
        let signed = 0x0035_0000_0040_0a14u64;
        assert_eq!(strip_pac(signed, Some(0x007f_0000_0000_0000)), 0x40_0a14);
        assert_eq!(strip_pac(signed, None), 0x40_0a14);
        assert_eq!(
            strip_pac(0x0000_ffff_8000_1234, None),
            0x0000_ffff_8000_1234
        );
    }

    #[test]
    fn recognises_calls_and_trampoline() {
        let memory = Words(vec![
            (0x1000, 0x9400_0010), // bl
            (0x1008, 0xd63f_0020), // blr x1
            (0x1010, 0xd63f_083f), // blraaz x1
            (0x1018, 0xd65f_03c0), // ret
            (0x2000, 0xd280_1168),
            (0x2004, 0xd400_0001),
        ]);
        assert!(follows_call(&memory, 0x1004));
        assert!(follows_call(&memory, 0x100c));
        assert!(follows_call(&memory, 0x1014));
        assert!(!follows_call(&memory, 0x101c));
        assert!(!follows_call(&memory, 0x1006));
        assert!(!follows_call(&memory, 0));
        assert!(is_signal_trampoline(&memory, 0x2000));
        assert!(!is_signal_trampoline(&memory, 0x2004));
        assert!(!is_signal_trampoline(&memory, 0x1000));
    }
}
