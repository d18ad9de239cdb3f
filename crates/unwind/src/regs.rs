//! Register sets in DWARF numbering.

use crate::Arch;

/// How many DWARF register numbers a [`Regs`] can hold: x86_64 uses 0–16, aarch64 0–32 plus
/// the pseudo-register 34 (`RA_SIGN_STATE`).
pub(crate) const REGISTER_SLOTS: usize = 35;

/// How many known registers a [`Regs`] holds without allocating: every x86_64 register, and
/// what CFI recovers for an aarch64 caller (x19–x30, sp, pc); only a full aarch64 context
/// spills.
const INLINE_VALUES: usize = 17;

/// The registers known in one frame, in DWARF numbering.
///
/// A register is either known (it has a value) or unknown: the walker never invents values.
/// Numbers at or above 35 (vector registers and the like) are ignored by `set` and unknown to
/// `get`: the walker does not track them.
#[derive(Clone, Debug)]
pub struct Regs {
    arch: Arch,
    known: u64,
    /// The values of the known registers only, lowest number first: every frame of a walk
    /// keeps its registers, and most know a third of them (10,000 frames of a recursion
    /// would otherwise carry 1.4 MB of empty slots).
    values: smallvec::SmallVec<[u64; INLINE_VALUES]>,
}

impl Regs {
    /// An empty register set: every register unknown.
    pub fn new(arch: Arch) -> Self {
        Regs {
            arch,
            known: 0,
            values: smallvec::SmallVec::new(),
        }
    }

    /// A register set holding `values` (DWARF number, value), as a core or a live thread gives them.
    pub fn with_values(arch: Arch, values: impl IntoIterator<Item = (u16, u64)>) -> Self {
        let mut regs = Regs::new(arch);
        for (dwarf, value) in values {
            regs.set(dwarf, value);
        }
        regs
    }

    /// Where register `index` (known or not) sits in `values`: after every known lower one.
    fn slot(&self, index: usize) -> usize {
        let below = (1u64 << index) - 1;
        (self.known & below).count_ones() as usize
    }

    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// The value of DWARF register `dwarf`, if it is known.
    pub fn get(&self, dwarf: u16) -> Option<u64> {
        let index = usize::from(dwarf);
        if index < REGISTER_SLOTS && self.known & (1u64 << index) != 0 {
            self.values.get(self.slot(index)).copied()
        } else {
            None
        }
    }

    /// Makes `dwarf` known with `value`; numbers the walker does not track are ignored.
    pub fn set(&mut self, dwarf: u16, value: u64) {
        let index = usize::from(dwarf);
        if index >= REGISTER_SLOTS {
            return;
        }
        let slot = self.slot(index);
        if self.known & (1u64 << index) != 0 {
            if let Some(known) = self.values.get_mut(slot) {
                *known = value;
            }
        } else {
            self.values.insert(slot.min(self.values.len()), value);
            self.known |= 1u64 << index;
        }
    }

    /// Makes `dwarf` unknown.
    pub(crate) fn clear(&mut self, dwarf: u16) {
        let index = usize::from(dwarf);
        if index < REGISTER_SLOTS && self.known & (1u64 << index) != 0 {
            let slot = self.slot(index);
            if slot < self.values.len() {
                self.values.remove(slot);
            }
            self.known &= !(1u64 << index);
        }
    }

    /// Sets `dwarf` to `value` when it is `Some`, makes it unknown otherwise.
    pub(crate) fn set_or_clear(&mut self, dwarf: u16, value: Option<u64>) {
        match value {
            Some(value) => self.set(dwarf, value),
            None => self.clear(dwarf),
        }
    }

    /// The instruction pointer: x86_64 `rip` (16), aarch64 `pc` (32).
    pub fn pc(&self) -> Option<u64> {
        self.get(self.arch.pc_register())
    }

    /// The stack pointer: x86_64 `rsp` (7), aarch64 `sp` (31).
    pub fn sp(&self) -> Option<u64> {
        self.get(self.arch.sp_register())
    }

    /// The known registers, lowest DWARF number first.
    pub fn iter(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        (0..REGISTER_SLOTS as u16)
            .filter(move |&dwarf| self.known & (1u64 << dwarf) != 0)
            .zip(self.values.iter().copied())
    }
}

/// The conventional name of a DWARF register: `rax`…`r15`, `rip` on x86_64; `x0`…`x30`, `sp`,
/// `pc` on aarch64. Numbers without a name give `"unknown"`.
pub fn register_name(arch: Arch, dwarf: u16) -> &'static str {
    match arch {
        Arch::X86_64 => crate::x86_64::register_name(dwarf),
        Arch::Aarch64 => crate::aarch64::register_name(dwarf),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_and_iterate() {
        let mut regs = Regs::new(Arch::X86_64);
        assert_eq!(regs.pc(), None);
        regs.set(16, 0x401000);
        regs.set(7, 0x7ffc0000);
        regs.set(3, 42);
        regs.set(200, 1); // untracked: ignored
        assert_eq!(regs.pc(), Some(0x401000));
        assert_eq!(regs.sp(), Some(0x7ffc0000));
        assert_eq!(regs.get(200), None);
        assert_eq!(
            regs.iter().collect::<Vec<_>>(),
            vec![(3, 42), (7, 0x7ffc0000), (16, 0x401000)]
        );
        regs.clear(3);
        assert_eq!(regs.get(3), None);

        let mut arm = Regs::new(Arch::Aarch64);
        arm.set(32, 0x400500);
        arm.set(31, 0xfff0);
        assert_eq!(arm.pc(), Some(0x400500));
        assert_eq!(arm.sp(), Some(0xfff0));
    }

    #[test]
    fn a_full_context_in_any_order_reads_back() {
        // Every slot (more than fit inline), odd numbers downwards then even ones upwards,
        // then one overwritten and a third cleared.
        let mut regs = Regs::new(Arch::Aarch64);
        let slots = REGISTER_SLOTS as u16;
        let order: Vec<u16> = (0..slots)
            .rev()
            .filter(|d| d % 2 == 1)
            .chain((0..slots).filter(|d| d % 2 == 0))
            .collect();
        for &dwarf in &order {
            regs.set(dwarf, 1000 + u64::from(dwarf));
        }
        for dwarf in 0..REGISTER_SLOTS as u16 {
            assert_eq!(regs.get(dwarf), Some(1000 + u64::from(dwarf)), "r{dwarf}");
        }
        regs.set(20, 7);
        assert_eq!(regs.get(20), Some(7));
        for dwarf in (0..REGISTER_SLOTS as u16).step_by(3) {
            regs.clear(dwarf);
        }
        regs.clear(3); // already unknown
        let expected: Vec<(u16, u64)> = (0..REGISTER_SLOTS as u16)
            .filter(|d| d % 3 != 0)
            .map(|d| (d, if d == 20 { 7 } else { 1000 + u64::from(d) }))
            .collect();
        assert_eq!(regs.iter().collect::<Vec<_>>(), expected);
        let copy = regs.clone();
        assert_eq!(copy.iter().collect::<Vec<_>>(), expected);
        assert_eq!(copy.get(34), Some(1034));
        assert_eq!(copy.get(33), None);
    }

    #[test]
    fn names() {
        assert_eq!(register_name(Arch::X86_64, 0), "rax");
        assert_eq!(register_name(Arch::X86_64, 1), "rdx");
        assert_eq!(register_name(Arch::X86_64, 6), "rbp");
        assert_eq!(register_name(Arch::X86_64, 7), "rsp");
        assert_eq!(register_name(Arch::X86_64, 15), "r15");
        assert_eq!(register_name(Arch::X86_64, 16), "rip");
        assert_eq!(register_name(Arch::Aarch64, 0), "x0");
        assert_eq!(register_name(Arch::Aarch64, 29), "x29");
        assert_eq!(register_name(Arch::Aarch64, 30), "x30");
        assert_eq!(register_name(Arch::Aarch64, 31), "sp");
        assert_eq!(register_name(Arch::Aarch64, 32), "pc");
        assert_eq!(register_name(Arch::Aarch64, 99), "unknown");
    }
}
