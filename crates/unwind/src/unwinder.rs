//! The walk: one step per frame, trying CFI, then the frame pointer, then a stack scan.

use std::cell::OnceCell;
use std::ops::Range;

use foldhash::HashSet;

use crate::cfi::{self, CfiCache, CfiError, ExpressionContext, Row, Rule};
use crate::{
    aarch64, x86_64, Arch, Frame, FrameKind, Memory, ModuleUnwindInfo, Regs, StopReason, Trust,
    UnwindOptions, Unwound,
};

/// A walk may cross at most this many signal frames whose interrupted stack pointer does not
/// grow; nested signals are rare, and the bound keeps hostile memory from looping forever.
const MAX_SIGNAL_JUMPS: usize = 256;

/// There is no depth limit for frames that unwind information vouches for. Guesses are
/// different: over memory that is garbage (or hostile) a scan, or a frame-pointer chain, can
/// always find one more plausible word a few bytes higher and walk for millions of frames. A
/// run of this many scanned frames, or this many frames without CFI, ends the walk.
const MAX_CONSECUTIVE_SCANNED: usize = 1_000;
const MAX_CONSECUTIVE_GUESSED: usize = 100_000;

/// Walks thread stacks of one process. Build it once per process: it caches CFI lookups.
pub struct Unwinder {
    arch: Arch,
    modules: Vec<ModuleUnwindInfo>,
    /// `(start, end, module index)`, sorted by start, for a binary search by address.
    module_ranges: Vec<(u64, u64, usize)>,
    extra_executable: Vec<Range<u64>>,
    options: UnwindOptions,
    cfi: CfiCache,
}

/// A caller frame one method proposes, before validation.
struct Candidate {
    regs: Regs,
    trust: Trust,
    /// The current frame's CFA, as this method computed it.
    callee_cfa: Option<u64>,
}

/// The `(pc, sp)` of every frame of a walk, to stop at the first repeat.
///
/// While each frame's stack pointer is above every one before it, which is how a walk almost
/// always goes, a candidate above the highest cannot repeat a frame; the pairs are then only
/// listed, and indexed in a hash set the first time a candidate at or below that height asks
/// (a leaf at frame 0, a signal frame on another stack). A 10,000-frame recursion so keeps 16
/// bytes a frame instead of a hash table it never needs.
#[derive(Default)]
struct SeenFrames {
    highest_sp: u64,
    listed: Vec<(u64, u64)>,
    indexed: OnceCell<HashSet<(u64, u64)>>,
}

impl SeenFrames {
    fn contains(&self, pair: &(u64, u64)) -> bool {
        if self.indexed.get().is_none() && pair.1 > self.highest_sp {
            return false;
        }
        self.indexed
            .get_or_init(|| self.listed.iter().copied().collect())
            .contains(pair)
    }

    fn insert(&mut self, pair: (u64, u64)) {
        self.highest_sp = self.highest_sp.max(pair.1);
        match self.indexed.get_mut() {
            Some(indexed) => {
                indexed.insert(pair);
            }
            None => self.listed.push(pair),
        }
    }
}

/// What one method concluded.
enum Attempt {
    Found(Box<Candidate>),
    /// The method proves there is no caller.
    EndOfStack,
    NotApplicable,
    Failed(StopReason, String),
}

impl Unwinder {
    pub fn new(arch: Arch, modules: Vec<ModuleUnwindInfo>, options: UnwindOptions) -> Self {
        let mut module_ranges: Vec<(u64, u64, usize)> = modules
            .iter()
            .enumerate()
            .filter(|(_, module)| module.avma_range.start < module.avma_range.end)
            .map(|(index, module)| (module.avma_range.start, module.avma_range.end, index))
            .collect();
        module_ranges.sort_unstable();
        let cfi = CfiCache::new(modules.len());
        Unwinder {
            arch,
            modules,
            module_ranges,
            extra_executable: Vec::new(),
            options,
            cfi,
        }
    }

    /// Extra executable ranges without unwind info (JIT code, anonymous r-x mappings) that a
    /// scan or the frame pointer may land in.
    pub fn add_executable_range(&mut self, avma_range: Range<u64>) {
        if avma_range.start < avma_range.end {
            self.extra_executable.push(avma_range);
        }
    }

    /// Walks one thread from `regs`.
    pub fn unwind(&mut self, regs: &Regs, memory: &dyn Memory) -> Unwound {
        let Some(pc) = regs.pc() else {
            return Unwound {
                frames: Vec::new(),
                stop_reason: StopReason::NoUnwindMethod,
            };
        };
        let sp = regs.sp().unwrap_or(0);
        let mut warnings = Vec::new();
        if regs.arch() != self.arch {
            warnings.push(format!(
                "the registers are {:?} but the unwinder walks {:?}; they are read as {:?}",
                regs.arch(),
                self.arch,
                self.arch
            ));
        }
        let kind = if self.is_signal_trampoline(memory, pc) {
            FrameKind::Signal
        } else {
            FrameKind::Normal
        };
        let mut frames = vec![Frame {
            pc,
            lookup_pc: pc,
            sp,
            cfa: None,
            regs: regs.clone(),
            trust: Trust::Context,
            kind,
            warnings,
        }];
        let mut seen = SeenFrames::default();
        seen.insert((pc, sp));
        let mut signal_jumps = 0usize;
        let mut consecutive_scanned = 0usize;
        let mut consecutive_guessed = 0usize;

        let stop_reason = loop {
            let Some(current) = frames.last() else {
                break StopReason::NoUnwindMethod;
            };
            let step = if current.kind == FrameKind::Signal {
                self.step_out_of_signal(current, memory, &seen, &mut signal_jumps)
            } else {
                self.step(current, memory, &seen)
            };
            match step {
                Ok((mut frame, callee_cfa)) => {
                    let guessed = matches!(frame.trust, Trust::Scan | Trust::FramePointer);
                    consecutive_guessed = if guessed { consecutive_guessed + 1 } else { 0 };
                    consecutive_scanned = if frame.trust == Trust::Scan {
                        consecutive_scanned + 1
                    } else {
                        0
                    };
                    if consecutive_scanned > MAX_CONSECUTIVE_SCANNED
                        || consecutive_guessed > MAX_CONSECUTIVE_GUESSED
                    {
                        if let Some(last) = frames.last_mut() {
                            last.warnings.push(format!(
                                "the walk stopped after {consecutive_guessed} frames found without CFI \
                                 ({consecutive_scanned} in a row by scanning): what lies beyond is not trusted"
                            ));
                        }
                        break StopReason::NoUnwindMethod;
                    }
                    if let Some(current) = frames.last_mut() {
                        current.cfa = callee_cfa;
                    }
                    seen.insert((frame.pc, frame.sp));
                    frame.warnings.shrink_to_fit();
                    frames.push(frame);
                }
                Err(reason) => break reason,
            }
        };
        Unwound {
            frames,
            stop_reason,
        }
    }

    /// The caller of a signal trampoline: the interrupted frame, from the saved `ucontext`.
    fn step_out_of_signal(
        &self,
        current: &Frame,
        memory: &dyn Memory,
        seen: &SeenFrames,
        signal_jumps: &mut usize,
    ) -> Result<(Frame, Option<u64>), StopReason> {
        let restored = match self.arch {
            Arch::X86_64 => x86_64::restore_signal_context(memory, current.sp),
            Arch::Aarch64 => aarch64::restore_signal_context(memory, current.sp),
        };
        let regs = restored.map_err(StopReason::MemoryUnreadable)?;
        // The context always has both; the fallbacks only keep this total.
        let pc = regs.pc().unwrap_or(0);
        let sp = regs.sp().unwrap_or(0);
        if seen.contains(&(pc, sp)) {
            return Err(StopReason::Loop);
        }
        if sp <= current.sp {
            // An alternate signal stack may lie anywhere; allow the jump, but not forever.
            *signal_jumps += 1;
            if *signal_jumps > MAX_SIGNAL_JUMPS {
                return Err(StopReason::StackNotGrowing);
            }
        }
        // The interrupted pc is kept even when it is outside any mapping (a call through a bad
        // pointer): it is the truth about where the thread was.
        let kind = if self.is_signal_trampoline(memory, pc) {
            FrameKind::Signal
        } else {
            FrameKind::Normal
        };
        let frame = Frame {
            pc,
            lookup_pc: pc,
            sp,
            cfa: None,
            regs,
            trust: Trust::Context,
            kind,
            warnings: Vec::new(),
        };
        Ok((frame, None))
    }

    /// The caller of an ordinary frame: the first method whose answer passes validation.
    fn step(
        &mut self,
        current: &Frame,
        memory: &dyn Memory,
        seen: &SeenFrames,
    ) -> Result<(Frame, Option<u64>), StopReason> {
        let mut warnings: Vec<String> = Vec::new();
        let mut first_failure: Option<StopReason> = None;
        let mut note = |reason: StopReason, message: String, warnings: &mut Vec<String>| {
            warnings.push(message);
            if first_failure.is_none() {
                first_failure = Some(reason);
            }
        };

        let cfi_attempt = self.cfi_attempt(current, memory);
        let cfi_applied = !matches!(cfi_attempt, Attempt::NotApplicable);
        // A leaf function's caller has the same stack pointer (aarch64 keeps the return address
        // in lr), and only a frame whose registers came from a context can be a leaf.
        let may_be_leaf = current.trust == Trust::Context;
        match cfi_attempt {
            Attempt::Found(candidate) => {
                match self.validate(&candidate, current, memory, seen, may_be_leaf) {
                    Ok(()) => return Ok(self.make_frame(*candidate, memory, warnings)),
                    // A CFI-recovered zero return address is how some outermost frames end.
                    Err(StopReason::ZeroPc) => return Err(StopReason::ZeroPc),
                    Err(reason) => note(
                        reason.clone(),
                        format!("CFI gave a caller that was rejected: {reason}"),
                        &mut warnings,
                    ),
                }
            }
            Attempt::EndOfStack => return Err(StopReason::EndOfStack),
            Attempt::Failed(reason, message) => note(reason, message, &mut warnings),
            Attempt::NotApplicable => {}
        }

        if !self.is_executable(current.pc) && may_be_leaf {
            // A call through a bad pointer: the return address is still where the call left it.
            if let Attempt::Found(candidate) = self.bad_pc_attempt(current, memory) {
                if self
                    .validate(&candidate, current, memory, seen, true)
                    .is_ok()
                {
                    warnings.push(format!(
                        "pc {:#x} is in no executable mapping; the caller was taken from where the call left its return address",
                        current.pc
                    ));
                    return Ok(self.make_frame(*candidate, memory, warnings));
                }
            }
        }

        if self.options.allow_frame_pointer
            && self.arch == Arch::X86_64
            && may_be_leaf
            && !cfi_applied
        {
            // A leaf often never sets up a frame (gcc skips it even with
            // -fno-omit-frame-pointer): rbp is still the caller's, so the chain would skip the
            // caller. If [sp] is a return address just after a call, it is this leaf's.
            if let Attempt::Found(candidate) = self.bad_pc_attempt(current, memory) {
                if self
                    .validate(&candidate, current, memory, seen, false)
                    .is_ok()
                {
                    warnings.push("no CFI: frame 0 was taken to be a leaf that has not pushed a frame, as [sp] is a return address".to_string());
                    return Ok(self.make_frame(*candidate, memory, warnings));
                }
            }
        }

        if self.options.allow_frame_pointer {
            match self.frame_pointer_attempt(current, memory, cfi_applied) {
                Attempt::Found(candidate) => {
                    match self.validate(&candidate, current, memory, seen, false) {
                        Ok(()) => return Ok(self.make_frame(*candidate, memory, warnings)),
                        Err(reason) => note(
                            reason.clone(),
                            format!("the frame pointer gave a caller that was rejected: {reason}"),
                            &mut warnings,
                        ),
                    }
                }
                Attempt::EndOfStack => return Err(StopReason::EndOfStack),
                Attempt::Failed(reason, message) => note(reason, message, &mut warnings),
                Attempt::NotApplicable => {}
            }
        }

        if self.options.allow_scan {
            match self.scan_attempt(current, memory, seen) {
                Attempt::Found(candidate) => {
                    if self
                        .validate(&candidate, current, memory, seen, false)
                        .is_ok()
                    {
                        return Ok(self.make_frame(*candidate, memory, warnings));
                    }
                }
                Attempt::Failed(reason, message) => note(reason, message, &mut warnings),
                Attempt::EndOfStack | Attempt::NotApplicable => {}
            }
        }

        Err(first_failure.unwrap_or(StopReason::NoUnwindMethod))
    }

    fn make_frame(
        &self,
        candidate: Candidate,
        memory: &dyn Memory,
        warnings: Vec<String>,
    ) -> (Frame, Option<u64>) {
        let pc = candidate.regs.pc().unwrap_or(0);
        let sp = candidate.regs.sp().unwrap_or(0);
        // A trampoline's pc was planted by the kernel, not pushed by a call: pc-1 would land in
        // the function before it.
        let (kind, lookup_pc) = if self.is_signal_trampoline(memory, pc) {
            (FrameKind::Signal, pc)
        } else {
            (FrameKind::Normal, pc.wrapping_sub(1))
        };
        let frame = Frame {
            pc,
            lookup_pc,
            sp,
            cfa: None,
            regs: candidate.regs,
            trust: candidate.trust,
            kind,
            warnings,
        };
        (frame, candidate.callee_cfa)
    }

    /// Checks a proposed caller: non-zero pc, growing stack, pc in code, not seen before.
    fn validate(
        &self,
        candidate: &Candidate,
        current: &Frame,
        memory: &dyn Memory,
        seen: &SeenFrames,
        allow_equal_sp: bool,
    ) -> Result<(), StopReason> {
        let pc = candidate.regs.pc().unwrap_or(0);
        if pc == 0 {
            return Err(StopReason::ZeroPc);
        }
        let Some(sp) = candidate.regs.sp() else {
            return Err(StopReason::StackNotGrowing);
        };
        let grows = if allow_equal_sp {
            sp >= current.sp
        } else {
            sp > current.sp
        };
        if !grows {
            return Err(StopReason::StackNotGrowing);
        }
        if !self.is_executable(pc) && !self.is_signal_trampoline(memory, pc) {
            return Err(StopReason::NoExecutableMapping(pc));
        }
        if seen.contains(&(pc, sp)) {
            return Err(StopReason::Loop);
        }
        Ok(())
    }

    fn cfi_attempt(&mut self, current: &Frame, memory: &dyn Memory) -> Attempt {
        let Some(module_index) = self.module_for(current.lookup_pc) else {
            return Attempt::NotApplicable;
        };
        let Some(module) = self.modules.get(module_index) else {
            return Attempt::NotApplicable;
        };
        let svma = current.lookup_pc.wrapping_sub(module.bias);
        let row = match self.cfi.row(self.arch, module_index, module, svma) {
            Ok(Some(row)) => row,
            Ok(None) => return Attempt::NotApplicable,
            Err(error) => {
                return Attempt::Failed(
                    StopReason::NoUnwindMethod,
                    format!(
                        "CFI for {:#x} in {} failed: {error}",
                        current.lookup_pc, module.name
                    ),
                )
            }
        };
        match self.evaluate_row(&row, current, memory, module.bias) {
            Ok(Some(candidate)) => Attempt::Found(Box::new(candidate)),
            Ok(None) => Attempt::EndOfStack,
            Err(error) => {
                let reason = match error {
                    CfiError::MemoryUnreadable(address) => StopReason::MemoryUnreadable(address),
                    CfiError::ReturnAddressUnchanged => StopReason::Loop,
                    _ => StopReason::NoUnwindMethod,
                };
                Attempt::Failed(
                    reason,
                    format!(
                        "CFI for {:#x} in {} failed: {error}",
                        current.lookup_pc, module.name
                    ),
                )
            }
        }
    }

    /// Applies a CFI row to the current frame's registers. `Ok(None)`: the return address is
    /// undefined, this is the outermost frame.
    fn evaluate_row(
        &self,
        row: &Row,
        current: &Frame,
        memory: &dyn Memory,
        bias: u64,
    ) -> Result<Option<Candidate>, CfiError> {
        let arch = self.arch;
        let mut context = ExpressionContext {
            arch,
            regs: &current.regs,
            memory,
            cfa: None,
            bias,
        };
        let cfa = match &row.cfa {
            cfi::CfaRule::RegisterOffset { register, offset } => current
                .regs
                .get(*register)
                .ok_or(CfiError::UnknownCfaRegister(crate::register_name(
                    arch, *register,
                )))?
                .wrapping_add(*offset as u64),
            cfi::CfaRule::Expression(bytes) => cfi::evaluate(bytes, None, &context)?,
        };
        context.cfa = Some(cfa);

        let return_address_register = arch.return_address_register();
        // With no rule for it, the return address is still in its register (an aarch64 leaf
        // keeps it in lr); an explicit Undefined ends the stack.
        let return_address = match row.rule(return_address_register) {
            None => current.regs.get(return_address_register),
            Some(Rule::Undefined) => return Ok(None),
            Some(rule) => self.apply_rule(return_address_register, rule, cfa, &context)?,
        };
        let Some(return_address) = return_address else {
            return Err(CfiError::UnknownReturnAddress(crate::register_name(
                arch,
                return_address_register,
            )));
        };
        // A return address read from the stack moves with it: deep recursion repeats its pc
        // legitimately. One taken from a register (or kept unchanged: x86_64 rip) that repeats
        // the pc means the rule recovers nothing, and following it would climb the stack
        // forever without reading it.
        let from_memory = matches!(
            row.rule(return_address_register),
            Some(Rule::Offset(_) | Rule::Expression(_))
        );
        if !from_memory && self.strip_return_address(return_address) == current.pc {
            return Err(CfiError::ReturnAddressUnchanged);
        }

        let mut caller = Regs::new(arch);
        for (dwarf, value) in current.regs.iter() {
            if arch.is_callee_saved(dwarf) {
                caller.set(dwarf, value);
            }
        }
        for (dwarf, rule) in &row.rules {
            if arch == Arch::Aarch64 && *dwarf == gimli::AArch64::RA_SIGN_STATE.0 {
                // A pseudo-register: whether lr was signed. Stripping below covers both states.
                continue;
            }
            // A register that cannot be recovered is unknown in the caller, nothing worse.
            caller.set_or_clear(
                *dwarf,
                self.apply_rule(*dwarf, rule, cfa, &context).ok().flatten(),
            );
        }
        let sp_register = arch.sp_register();
        let explicit_sp = row.rule(sp_register).and_then(|rule| {
            self.apply_rule(sp_register, rule, cfa, &context)
                .ok()
                .flatten()
        });
        caller.set(sp_register, explicit_sp.unwrap_or(cfa));
        caller.set(return_address_register, return_address);
        caller.set(
            arch.pc_register(),
            self.strip_return_address(return_address),
        );
        Ok(Some(Candidate {
            regs: caller,
            trust: Trust::Cfi,
            callee_cfa: Some(cfa),
        }))
    }

    fn apply_rule(
        &self,
        dwarf: u16,
        rule: &Rule,
        cfa: u64,
        context: &ExpressionContext<'_>,
    ) -> Result<Option<u64>, CfiError> {
        let read = |address: u64| {
            context
                .memory
                .read_u64(address)
                .ok_or(CfiError::MemoryUnreadable(address))
        };
        Ok(match rule {
            Rule::Undefined | Rule::Unsupported => None,
            Rule::SameValue => context.regs.get(dwarf),
            Rule::Offset(offset) => Some(read(cfa.wrapping_add(*offset as u64))?),
            Rule::ValOffset(offset) => Some(cfa.wrapping_add(*offset as u64)),
            Rule::Register(other) => context.regs.get(*other),
            Rule::Expression(bytes) => Some(read(cfi::evaluate(bytes, Some(cfa), context)?)?),
            Rule::ValExpression(bytes) => Some(cfi::evaluate(bytes, Some(cfa), context)?),
            Rule::Constant(value) => Some(*value),
        })
    }

    /// For a context frame that has not pushed anything yet (a call through a bad pointer, a
    /// leaf without a frame): x86_64 finds the return address the call pushed at `[sp]`,
    /// aarch64 keeps it in lr.
    fn bad_pc_attempt(&self, current: &Frame, memory: &dyn Memory) -> Attempt {
        let mut caller = Regs::new(self.arch);
        let return_address = match self.arch {
            Arch::X86_64 => {
                let Some(value) = memory.read_u64(current.sp) else {
                    return Attempt::NotApplicable;
                };
                caller.set(x86_64::RSP, current.sp.wrapping_add(8));
                value
            }
            Arch::Aarch64 => {
                let Some(lr) = current.regs.get(aarch64::LR) else {
                    return Attempt::NotApplicable;
                };
                caller.set(aarch64::SP, current.sp);
                lr
            }
        };
        let pc = self.strip_return_address(return_address);
        if !self.follows_call(memory, pc) {
            return Attempt::NotApplicable;
        }
        let fp = self.arch.fp_register();
        caller.set_or_clear(fp, current.regs.get(fp));
        for (dwarf, value) in current.regs.iter() {
            if self.arch.is_callee_saved(dwarf) {
                caller.set(dwarf, value);
            }
        }
        caller.set(self.arch.pc_register(), pc);
        Attempt::Found(Box::new(Candidate {
            regs: caller,
            trust: Trust::Scan,
            callee_cfa: None,
        }))
    }

    fn frame_pointer_attempt(
        &self,
        current: &Frame,
        memory: &dyn Memory,
        cfi_applied: bool,
    ) -> Attempt {
        let fp_register = self.arch.fp_register();
        let Some(fp) = current.regs.get(fp_register) else {
            return Attempt::NotApplicable;
        };
        if fp == 0 {
            // The ABI's outermost-frame marker (`_start` zeroes it). Frame 0 may be in code
            // that uses the register for data, so only trust the marker above it.
            if !cfi_applied && current.trust != Trust::Context {
                return Attempt::EndOfStack;
            }
            return Attempt::NotApplicable;
        }
        if fp % 8 != 0 || fp < current.sp {
            return Attempt::NotApplicable;
        }
        let Some(caller_fp) = memory.read_u64(fp) else {
            return Attempt::Failed(
                StopReason::MemoryUnreadable(fp),
                format!("the frame pointer {fp:#x} points at unreadable memory"),
            );
        };
        let ra_address = fp.wrapping_add(8);
        let Some(return_address) = memory.read_u64(ra_address) else {
            return Attempt::Failed(
                StopReason::MemoryUnreadable(ra_address),
                format!("the frame pointer {fp:#x} points at unreadable memory"),
            );
        };
        let Some(caller_sp) = fp.checked_add(16) else {
            return Attempt::NotApplicable;
        };
        let mut caller = Regs::new(self.arch);
        caller.set(fp_register, caller_fp);
        caller.set(self.arch.sp_register(), caller_sp);
        if self.arch == Arch::Aarch64 {
            caller.set(aarch64::LR, return_address);
        }
        caller.set(
            self.arch.pc_register(),
            self.strip_return_address(return_address),
        );
        Attempt::Found(Box::new(Candidate {
            regs: caller,
            trust: Trust::FramePointer,
            callee_cfa: Some(caller_sp),
        }))
    }

    fn scan_attempt(&self, current: &Frame, memory: &dyn Memory, seen: &SeenFrames) -> Attempt {
        let fp_register = self.arch.fp_register();
        for index in 0..self.options.scan_words {
            let Some(address) = (index as u64)
                .checked_mul(8)
                .and_then(|offset| current.sp.checked_add(offset))
            else {
                break;
            };
            let Some(word) = memory.read_u64(address) else {
                if index == 0 {
                    return Attempt::Failed(
                        StopReason::MemoryUnreadable(address),
                        format!("the stack at {address:#x} could not be read for a scan"),
                    );
                }
                break;
            };
            let pc = self.strip_return_address(word);
            if pc == 0 || !self.is_scan_target(pc) || !self.follows_call(memory, pc) {
                continue;
            }
            let Some(caller_sp) = address.checked_add(8) else {
                break;
            };
            if seen.contains(&(pc, caller_sp)) {
                continue;
            }
            let mut caller = Regs::new(self.arch);
            caller.set(self.arch.sp_register(), caller_sp);
            caller.set(self.arch.pc_register(), pc);
            // A function found by scanning did not keep a frame pointer (or the frame-pointer
            // step would have found it), so the register still holds its caller's value.
            if let Some(fp) = current.regs.get(fp_register) {
                if fp >= caller_sp {
                    caller.set(fp_register, fp);
                }
            }
            return Attempt::Found(Box::new(Candidate {
                regs: caller,
                trust: Trust::Scan,
                callee_cfa: None,
            }));
        }
        Attempt::NotApplicable
    }

    fn strip_return_address(&self, address: u64) -> u64 {
        match self.arch {
            Arch::X86_64 => address,
            Arch::Aarch64 => aarch64::strip_pac(address, self.options.pac_mask),
        }
    }

    fn is_signal_trampoline(&self, memory: &dyn Memory, pc: u64) -> bool {
        match self.arch {
            Arch::X86_64 => x86_64::is_signal_trampoline(memory, pc),
            Arch::Aarch64 => aarch64::is_signal_trampoline(memory, pc),
        }
    }

    fn follows_call(&self, memory: &dyn Memory, return_address: u64) -> bool {
        match self.arch {
            Arch::X86_64 => x86_64::follows_call(memory, return_address),
            Arch::Aarch64 => aarch64::follows_call(memory, return_address),
        }
    }

    fn module_for(&self, avma: u64) -> Option<usize> {
        let after = self
            .module_ranges
            .partition_point(|(start, _, _)| *start <= avma);
        let (_, end, index) = self.module_ranges.get(after.checked_sub(1)?)?;
        if avma < *end {
            return Some(*index);
        }
        // Overlapping ranges (rare): an earlier, longer module may still contain it.
        self.module_ranges
            .get(..after)?
            .iter()
            .rev()
            .find(|(start, end, _)| *start <= avma && avma < *end)
            .map(|(_, _, index)| *index)
    }

    fn in_extra_range(&self, avma: u64) -> bool {
        self.extra_executable
            .iter()
            .any(|range| range.contains(&avma))
    }

    fn is_executable(&self, avma: u64) -> bool {
        self.module_for(avma).is_some() || self.in_extra_range(avma)
    }

    /// Stricter than `is_executable`: the byte before a return address must be in a text
    /// section, when the module lists them.
    fn is_scan_target(&self, return_address: u64) -> bool {
        if self.in_extra_range(return_address) {
            return true;
        }
        let Some(module) = self
            .module_for(return_address)
            .and_then(|index| self.modules.get(index))
        else {
            return false;
        };
        if module.text_svma_ranges.is_empty() {
            return true;
        }
        let svma = return_address.wrapping_sub(module.bias).wrapping_sub(1);
        module
            .text_svma_ranges
            .iter()
            .any(|range| range.contains(&svma))
    }
}

#[cfg(test)]
mod tests {
    use super::SeenFrames;

    #[test]
    fn seen_frames_index_only_when_a_walk_stops_climbing() {
        let mut seen = SeenFrames::default();
        for sp in 1..=100u64 {
            seen.insert((0x1000 + sp, sp * 16));
        }
        assert!(!seen.contains(&(0x1001, 10_000)), "above every frame");
        assert!(
            seen.indexed.get().is_none(),
            "a climbing walk needs no index"
        );
        assert!(seen.contains(&(0x1001, 16)));
        assert!(!seen.contains(&(0x1001, 32)));
        assert!(seen.indexed.get().is_some());
        // A frame lower down (a signal handler's stack), then climbing past it again.
        seen.insert((0x9000, 8));
        seen.insert((0x9001, 5000));
        assert!(seen.contains(&(0x9000, 8)));
        assert!(seen.contains(&(0x9001, 5000)));
        assert!(seen.contains(&(0x1064, 1600)));
        assert!(!seen.contains(&(0x9001, 5001)));
    }
}
