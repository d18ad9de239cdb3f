//! Walks over hand-built CFI (written with `gimli::write`) and synthetic memory, where every
//! register and stack word is chosen so each rule kind, fallback and stop reason is pinned.

use std::collections::HashMap;

use coresnap_unwind::{
    Arch, FrameKind, Memory, ModuleUnwindInfo, Regs, SectionBytes, StopReason, Trust,
    UnwindOptions, UnwindSection, Unwinder,
};
use gimli::write::{
    Address, CallFrameInstruction as Cfi, CommonInformationEntry, EndianVec, Expression,
    FrameDescriptionEntry, FrameTable,
};
use gimli::{AArch64, Encoding, Format, LittleEndian, UnwindSection as _, X86_64};

#[derive(Default)]
struct TestMemory {
    bytes: HashMap<u64, u8>,
}

impl TestMemory {
    fn put(&mut self, address: u64, data: &[u8]) {
        for (i, byte) in data.iter().enumerate() {
            self.bytes.insert(address + i as u64, *byte);
        }
    }
    fn put_u64(&mut self, address: u64, value: u64) {
        self.put(address, &value.to_le_bytes());
    }
    fn put_u32(&mut self, address: u64, value: u32) {
        self.put(address, &value.to_le_bytes());
    }
}

impl Memory for TestMemory {
    fn read(&self, avma: u64, buf: &mut [u8]) -> bool {
        for (i, byte) in buf.iter_mut().enumerate() {
            match self.bytes.get(&avma.wrapping_add(i as u64)) {
                Some(value) => *byte = *value,
                None => return false,
            }
        }
        true
    }
}

const ENCODING: Encoding = Encoding {
    format: Format::Dwarf32,
    version: 1,
    address_size: 8,
};

fn x86_64_cie() -> CommonInformationEntry {
    let mut cie = CommonInformationEntry::new(ENCODING, 1, -8, X86_64::RA);
    cie.add_instruction(Cfi::Cfa(X86_64::RSP, 8));
    cie.add_instruction(Cfi::Offset(X86_64::RA, -8));
    cie
}

fn aarch64_cie() -> CommonInformationEntry {
    let mut cie = CommonInformationEntry::new(ENCODING, 4, -8, AArch64::X30);
    cie.add_instruction(Cfi::Cfa(AArch64::SP, 0));
    cie
}

struct Function {
    start: u64,
    length: u32,
    instructions: Vec<(u32, Cfi)>,
}

fn frame_table(cie: CommonInformationEntry, functions: &[Function]) -> FrameTable {
    let mut table = FrameTable::default();
    let cie_id = table.add_cie(cie);
    for function in functions {
        let mut fde =
            FrameDescriptionEntry::new(Address::Constant(function.start), function.length);
        for (offset, instruction) in &function.instructions {
            fde.add_instruction(*offset, instruction.clone());
        }
        table.add_fde(cie_id, fde);
    }
    table
}

fn eh_frame_bytes(table: &FrameTable) -> Vec<u8> {
    let mut section = gimli::write::EhFrame(EndianVec::new(LittleEndian));
    table.write_eh_frame(&mut section).expect("writable");
    let mut bytes = section.0.into_vec();
    bytes.extend_from_slice(&[0, 0, 0, 0]); // the terminator linkers add
    bytes
}

fn debug_frame_bytes(table: &FrameTable) -> Vec<u8> {
    let mut section = gimli::write::DebugFrame(EndianVec::new(LittleEndian));
    table.write_debug_frame(&mut section).expect("writable");
    section.0.into_vec()
}

/// An `.eh_frame_hdr` as linkers write it: pcrel/sdata4 pointer, udata4 count, datarel/sdata4
/// table sorted by initial location.
fn eh_frame_hdr_bytes(eh_frame: &[u8], eh_frame_svma: u64, hdr_svma: u64) -> Vec<u8> {
    let mut section = gimli::EhFrame::new(eh_frame, LittleEndian);
    section.set_address_size(8);
    let bases = gimli::BaseAddresses::default().set_eh_frame(eh_frame_svma);
    let mut entries = section.entries(&bases);
    let mut table = Vec::new();
    while let Some(entry) = entries.next().expect("parsable") {
        if let gimli::CieOrFde::Fde(partial) = entry {
            let fde = partial
                .parse(gimli::EhFrame::cie_from_offset)
                .expect("parsable");
            table.push((fde.initial_address(), eh_frame_svma + fde.offset() as u64));
        }
    }
    table.sort();
    let mut hdr = vec![1u8, 0x1b, 0x03, 0x3b];
    hdr.extend_from_slice(&((eh_frame_svma as i64 - (hdr_svma + 4) as i64) as i32).to_le_bytes());
    hdr.extend_from_slice(&(table.len() as u32).to_le_bytes());
    for (initial, fde) in table {
        hdr.extend_from_slice(&((initial as i64 - hdr_svma as i64) as i32).to_le_bytes());
        hdr.extend_from_slice(&((fde as i64 - hdr_svma as i64) as i32).to_le_bytes());
    }
    hdr
}

fn section(svma: u64, bytes: Vec<u8>) -> UnwindSection {
    UnwindSection {
        svma,
        data: SectionBytes::from_vec(bytes),
    }
}

fn module(name: &str, svma_range: std::ops::Range<u64>, bias: u64) -> ModuleUnwindInfo {
    ModuleUnwindInfo {
        name: name.to_string(),
        avma_range: svma_range.start + bias..svma_range.end + bias,
        bias,
        eh_frame: None,
        eh_frame_hdr: None,
        debug_frame: None,
        text_svma_ranges: Vec::new(),
    }
}

fn no_fallbacks() -> UnwindOptions {
    UnwindOptions {
        allow_frame_pointer: false,
        allow_scan: false,
        ..UnwindOptions::default()
    }
}

// ---------------------------------------------------------------------------------------------
// x86_64 CFI: every rule kind

const STACK: u64 = 0x7ffd_0000_1000;

/// Three functions: `leaf` saves rbx; `middle` has an expression CFA and expression,
/// val-expression and register rules; `outer` marks the return address undefined.
fn x86_64_functions() -> Vec<Function> {
    let mut cfa = Expression::new();
    cfa.op_breg(X86_64::RSP, 24);
    // Expression rules start with the CFA pushed: address = CFA - 24.
    let mut rbp_at = Expression::new();
    rbp_at.op_constu(24);
    rbp_at.op(gimli::DW_OP_minus);
    let mut r12_value = Expression::new();
    r12_value.op_breg(X86_64::RBX, 5);
    vec![
        Function {
            start: 0x1000,
            length: 0x100,
            instructions: vec![(4, Cfi::CfaOffset(16)), (4, Cfi::Offset(X86_64::RBX, -16))],
        },
        Function {
            start: 0x1100,
            length: 0x100,
            instructions: vec![
                (1, Cfi::CfaExpression(cfa)),
                (1, Cfi::Expression(X86_64::RBP, rbp_at)),
                (1, Cfi::ValExpression(X86_64::R12, r12_value)),
                (1, Cfi::Register(X86_64::R13, X86_64::R14)),
                (1, Cfi::Undefined(X86_64::R15)),
            ],
        },
        Function {
            start: 0x1200,
            length: 0x100,
            instructions: vec![(0, Cfi::Undefined(X86_64::RA))],
        },
    ]
}

fn x86_64_stack(bias: u64) -> (Regs, TestMemory) {
    let mut memory = TestMemory::default();
    memory.put_u64(STACK, 0x1111); // leaf's saved rbx
    memory.put_u64(STACK + 8, 0x1150 + bias); // into middle
    memory.put_u64(STACK + 16, 0xbbbb); // middle's saved rbp
    memory.put_u64(STACK + 24, 0);
    memory.put_u64(STACK + 32, 0x1250 + bias); // into outer
    let mut regs = Regs::new(Arch::X86_64);
    regs.set(16, 0x1010 + bias);
    regs.set(7, STACK);
    regs.set(0, 0xaaaa); // rax: caller-saved, unknown above frame 0
    regs.set(3, 0x3333); // rbx: saved by leaf
    regs.set(6, 0x6666); // rbp
    regs.set(14, 0x1414);
    regs.set(15, 0x1515);
    (regs, memory)
}

fn check_x86_64_walk(unwinder: &mut Unwinder, bias: u64) {
    let (regs, memory) = x86_64_stack(bias);
    let unwound = unwinder.unwind(&regs, &memory);
    assert_eq!(unwound.stop_reason, StopReason::EndOfStack, "{unwound:#?}");
    let frames = &unwound.frames;
    assert_eq!(frames.len(), 3, "{unwound:#?}");
    assert_eq!(
        frames.iter().map(|f| f.pc).collect::<Vec<_>>(),
        vec![0x1010 + bias, 0x1150 + bias, 0x1250 + bias]
    );
    assert_eq!(
        frames.iter().map(|f| f.lookup_pc).collect::<Vec<_>>(),
        vec![0x1010 + bias, 0x114f + bias, 0x124f + bias]
    );
    assert_eq!(
        frames.iter().map(|f| f.trust).collect::<Vec<_>>(),
        vec![Trust::Context, Trust::Cfi, Trust::Cfi]
    );
    assert_eq!(
        frames.iter().map(|f| f.sp).collect::<Vec<_>>(),
        vec![STACK, STACK + 16, STACK + 40]
    );
    assert_eq!(frames[0].cfa, Some(STACK + 16));
    assert_eq!(frames[1].cfa, Some(STACK + 40));

    let middle = &frames[1].regs;
    assert_eq!(
        middle.get(3),
        Some(0x1111),
        "rbx restored from the stack (Offset)"
    );
    assert_eq!(
        middle.get(6),
        Some(0x6666),
        "rbp callee-saved, no rule: same value"
    );
    assert_eq!(
        middle.get(0),
        None,
        "rax is caller-saved: unknown in the caller"
    );
    assert_eq!(middle.get(14), Some(0x1414));

    let outer = &frames[2].regs;
    assert_eq!(outer.get(6), Some(0xbbbb), "rbp from an Expression rule");
    assert_eq!(
        outer.get(12),
        Some(0x1111 + 5),
        "r12 from a ValExpression rule"
    );
    assert_eq!(outer.get(13), Some(0x1414), "r13 from a Register rule");
    assert_eq!(outer.get(15), None, "r15 Undefined");
    assert_eq!(outer.get(3), Some(0x1111), "rbx same value");
    assert_eq!(outer.sp(), Some(STACK + 40));
}

#[test]
fn x86_64_cfi_from_eh_frame_scan() {
    let bias = 0x5555_0000_0000;
    let eh_frame = eh_frame_bytes(&frame_table(x86_64_cie(), &x86_64_functions()));
    let mut info = module("synthetic", 0x1000..0x2000, bias);
    info.eh_frame = Some(section(0x3000, eh_frame));
    let mut unwinder = Unwinder::new(Arch::X86_64, vec![info], no_fallbacks());
    check_x86_64_walk(&mut unwinder, bias);
    // A second walk is served from the row cache and must not differ.
    check_x86_64_walk(&mut unwinder, bias);
}

#[test]
fn x86_64_cfi_through_eh_frame_hdr() {
    let eh_frame = eh_frame_bytes(&frame_table(x86_64_cie(), &x86_64_functions()));
    let hdr = eh_frame_hdr_bytes(&eh_frame, 0x3000, 0x2800);
    let mut info = module("synthetic", 0x1000..0x2000, 0);
    info.eh_frame = Some(section(0x3000, eh_frame));
    info.eh_frame_hdr = Some(section(0x2800, hdr));
    let mut unwinder = Unwinder::new(Arch::X86_64, vec![info], no_fallbacks());
    check_x86_64_walk(&mut unwinder, 0);
}

#[test]
fn x86_64_cfi_from_debug_frame() {
    let debug_frame = debug_frame_bytes(&frame_table(x86_64_cie(), &x86_64_functions()));
    let mut info = module("synthetic", 0x1000..0x2000, 0x1000_0000);
    info.debug_frame = Some(section(0, debug_frame));
    let mut unwinder = Unwinder::new(Arch::X86_64, vec![info], no_fallbacks());
    check_x86_64_walk(&mut unwinder, 0x1000_0000);
}

#[test]
fn eh_frame_without_an_fde_falls_through_to_debug_frame() {
    // .eh_frame covers only `outer`; .debug_frame has everything.
    let functions = x86_64_functions();
    let eh_frame = eh_frame_bytes(&frame_table(x86_64_cie(), &functions[2..]));
    let debug_frame = debug_frame_bytes(&frame_table(x86_64_cie(), &functions));
    let mut info = module("synthetic", 0x1000..0x2000, 0);
    info.eh_frame = Some(section(0x3000, eh_frame));
    info.debug_frame = Some(section(0, debug_frame));
    let mut unwinder = Unwinder::new(Arch::X86_64, vec![info], no_fallbacks());
    check_x86_64_walk(&mut unwinder, 0);
}

#[test]
fn cfi_that_does_not_grow_the_stack_stops() {
    let functions = vec![Function {
        start: 0x1000,
        length: 0x100,
        instructions: vec![
            (0, Cfi::Cfa(X86_64::RSP, 0)),
            (0, Cfi::Offset(X86_64::RA, 0)),
        ],
    }];
    let mut info = module("synthetic", 0x1000..0x2000, 0);
    info.eh_frame = Some(section(
        0x3000,
        eh_frame_bytes(&frame_table(x86_64_cie(), &functions)),
    ));
    let mut unwinder = Unwinder::new(Arch::X86_64, vec![info], no_fallbacks());
    let mut memory = TestMemory::default();
    memory.put_u64(STACK, 0x1020);
    let mut regs = Regs::new(Arch::X86_64);
    regs.set(16, 0x1010);
    regs.set(7, STACK);
    // Frame 0 may be a leaf whose caller shares its stack pointer; frame 1 may not.
    let unwound = unwinder.unwind(&regs, &memory);
    assert_eq!(
        unwound
            .frames
            .iter()
            .map(|f| (f.pc, f.sp))
            .collect::<Vec<_>>(),
        vec![(0x1010, STACK), (0x1020, STACK)]
    );
    assert_eq!(unwound.stop_reason, StopReason::StackNotGrowing);

    // The same frame twice is a loop.
    memory.put_u64(STACK, 0x1010);
    let unwound = unwinder.unwind(&regs, &memory);
    assert_eq!(unwound.frames.len(), 1);
    assert_eq!(unwound.stop_reason, StopReason::Loop);
}

#[test]
fn a_return_address_that_is_never_saved_is_a_loop() {
    // No rule for rip beyond "same value": every frame would be this one, higher up.
    let mut cie = CommonInformationEntry::new(ENCODING, 1, -8, X86_64::RA);
    cie.add_instruction(Cfi::Cfa(X86_64::RSP, 16));
    cie.add_instruction(Cfi::SameValue(X86_64::RA));
    let functions = vec![Function {
        start: 0x1000,
        length: 0x100,
        instructions: vec![],
    }];
    let mut info = module("synthetic", 0x1000..0x2000, 0);
    info.eh_frame = Some(section(
        0x3000,
        eh_frame_bytes(&frame_table(cie, &functions)),
    ));
    let mut unwinder = Unwinder::new(Arch::X86_64, vec![info], no_fallbacks());
    let mut regs = Regs::new(Arch::X86_64);
    regs.set(16, 0x1010);
    regs.set(7, STACK);
    let unwound = unwinder.unwind(&regs, &TestMemory::default());
    assert_eq!(unwound.frames.len(), 1);
    assert_eq!(unwound.stop_reason, StopReason::Loop);
    assert!(unwound.stop_reason.to_string().contains("twice"));
}

#[test]
fn unreadable_return_address_is_reported() {
    let functions = x86_64_functions();
    let mut info = module("synthetic", 0x1000..0x2000, 0);
    info.eh_frame = Some(section(
        0x3000,
        eh_frame_bytes(&frame_table(x86_64_cie(), &functions)),
    ));
    let mut unwinder = Unwinder::new(Arch::X86_64, vec![info], no_fallbacks());
    let mut regs = Regs::new(Arch::X86_64);
    regs.set(16, 0x1010);
    regs.set(7, STACK);
    let unwound = unwinder.unwind(&regs, &TestMemory::default());
    assert_eq!(unwound.stop_reason, StopReason::MemoryUnreadable(STACK + 8));
    assert!(unwound.stop_reason.to_string().contains("0x7ffd00001008"));
    assert_eq!(unwound.frames.len(), 1);
}

#[test]
fn return_address_outside_code_stops() {
    let mut info = module("synthetic", 0x1000..0x2000, 0);
    info.eh_frame = Some(section(
        0x3000,
        eh_frame_bytes(&frame_table(x86_64_cie(), &x86_64_functions())),
    ));
    let mut unwinder = Unwinder::new(Arch::X86_64, vec![info], no_fallbacks());
    let (regs, mut memory) = x86_64_stack(0);
    memory.put_u64(STACK + 8, 0xdead_0000);
    let unwound = unwinder.unwind(&regs, &memory);
    assert_eq!(
        unwound.stop_reason,
        StopReason::NoExecutableMapping(0xdead_0000)
    );
    assert_eq!(
        unwound.stop_reason.to_string(),
        "the return address 0xdead0000 is in no executable mapping"
    );
    memory.put_u64(STACK + 8, 0);
    assert_eq!(
        unwinder.unwind(&regs, &memory).stop_reason,
        StopReason::ZeroPc
    );
}

// ---------------------------------------------------------------------------------------------
// aarch64 CFI: leaf (lr same value), pointer authentication

fn aarch64_functions() -> Vec<Function> {
    vec![
        // A leaf: no rules at all, lr still holds the return address.
        Function {
            start: 0x40_0000,
            length: 0x100,
            instructions: vec![],
        },
        // paciasp; stp x29, x30, [sp, #-32]!
        Function {
            start: 0x40_0100,
            length: 0x100,
            instructions: vec![
                (4, Cfi::NegateRaState),
                (8, Cfi::CfaOffset(32)),
                (8, Cfi::Offset(AArch64::X29, -32)),
                (8, Cfi::Offset(AArch64::X30, -24)),
                (8, Cfi::Offset(AArch64::X19, -16)),
            ],
        },
        Function {
            start: 0x40_0200,
            length: 0x100,
            instructions: vec![(0, Cfi::Undefined(AArch64::X30))],
        },
    ]
}

fn aarch64_walk(options: UnwindOptions, signed_lr: u64) {
    let mut info = module("synthetic", 0x40_0000..0x41_0000, 0);
    info.eh_frame = Some(section(
        0x42_0000,
        eh_frame_bytes(&frame_table(aarch64_cie(), &aarch64_functions())),
    ));
    let mut unwinder = Unwinder::new(Arch::Aarch64, vec![info], options);
    let sp = 0xffff_f000_0000u64;
    let mut memory = TestMemory::default();
    memory.put_u64(sp, 0xf0f0);
    memory.put_u64(sp + 8, signed_lr);
    memory.put_u64(sp + 16, 0x1919);
    let mut regs = Regs::new(Arch::Aarch64);
    regs.set(32, 0x40_0010);
    regs.set(31, sp);
    regs.set(30, 0x40_0124); // the leaf's return address, into the middle function
    regs.set(29, sp);
    regs.set(19, 0x4242);
    regs.set(0, 0x99);
    let unwound = unwinder.unwind(&regs, &memory);
    assert_eq!(unwound.stop_reason, StopReason::EndOfStack, "{unwound:#?}");
    let frames = &unwound.frames;
    assert_eq!(
        frames.iter().map(|f| f.pc).collect::<Vec<_>>(),
        vec![0x40_0010, 0x40_0124, 0x40_0208]
    );
    assert_eq!(
        frames.iter().map(|f| f.lookup_pc).collect::<Vec<_>>(),
        vec![0x40_0010, 0x40_0123, 0x40_0207]
    );
    assert_eq!(
        frames.iter().map(|f| f.trust).collect::<Vec<_>>(),
        vec![Trust::Context, Trust::Cfi, Trust::Cfi]
    );
    assert_eq!(frames[1].sp, sp, "a leaf's CFA is sp+0");
    assert_eq!(
        frames[1].regs.get(19),
        Some(0x4242),
        "x19 callee-saved: same value"
    );
    assert_eq!(frames[1].regs.get(0), None);
    assert_eq!(frames[2].sp, sp + 32);
    assert_eq!(frames[2].regs.get(29), Some(0xf0f0));
    assert_eq!(frames[2].regs.get(19), Some(0x1919));
    assert_eq!(frames[2].regs.pc(), Some(0x40_0208));
}

#[test]
fn aarch64_cfi_with_pac_mask() {
    let options = UnwindOptions {
        pac_mask: Some(0x007f_0000_0000_0000),
        ..no_fallbacks()
    };
    aarch64_walk(options, 0x0023_0000_0040_0208);
}

#[test]
fn aarch64_cfi_strips_to_48_bits_without_a_mask() {
    aarch64_walk(no_fallbacks(), 0x0041_0000_0040_0208);
    aarch64_walk(no_fallbacks(), 0x40_0208);
}

// ---------------------------------------------------------------------------------------------
// Frame pointers and stack scanning

#[test]
fn x86_64_frame_pointer_chain() {
    // No unwind sections at all.
    let info = module("no-cfi", 0x1000..0x2000, 0);
    let mut unwinder = Unwinder::new(
        Arch::X86_64,
        vec![info],
        UnwindOptions {
            allow_scan: false,
            ..UnwindOptions::default()
        },
    );
    let mut memory = TestMemory::default();
    memory.put_u64(STACK + 16, STACK + 48); // [rbp] = caller rbp
    memory.put_u64(STACK + 24, 0x1234); // [rbp+8] = return address
    memory.put_u64(STACK + 48, 0); // outermost: rbp 0
    memory.put_u64(STACK + 56, 0x1300);
    let mut regs = Regs::new(Arch::X86_64);
    regs.set(16, 0x1010);
    regs.set(7, STACK);
    regs.set(6, STACK + 16);
    let unwound = unwinder.unwind(&regs, &memory);
    assert_eq!(
        unwound.frames.iter().map(|f| f.pc).collect::<Vec<_>>(),
        vec![0x1010, 0x1234, 0x1300]
    );
    assert_eq!(
        unwound.frames.iter().map(|f| f.trust).collect::<Vec<_>>(),
        vec![Trust::Context, Trust::FramePointer, Trust::FramePointer]
    );
    assert_eq!(unwound.frames[1].sp, STACK + 32);
    assert_eq!(unwound.frames[2].sp, STACK + 64);
    assert_eq!(
        unwound.stop_reason,
        StopReason::EndOfStack,
        "rbp 0 marks the outermost frame"
    );

    // A chain into non-code is refused.
    memory.put_u64(STACK + 24, 0x9999_0000);
    let unwound = unwinder.unwind(&regs, &memory);
    assert_eq!(unwound.frames.len(), 1);
    assert_eq!(
        unwound.stop_reason,
        StopReason::NoExecutableMapping(0x9999_0000)
    );
}

#[test]
fn aarch64_frame_pointer_chain_strips_pac() {
    let info = module("no-cfi", 0x40_0000..0x41_0000, 0);
    let mut unwinder = Unwinder::new(
        Arch::Aarch64,
        vec![info],
        UnwindOptions {
            allow_scan: false,
            ..UnwindOptions::default()
        },
    );
    let sp = 0xffff_f000_0000u64;
    let mut memory = TestMemory::default();
    memory.put_u64(sp + 32, sp + 96);
    memory.put_u64(sp + 40, 0x0012_0000_0040_0500);
    memory.put_u64(sp + 96, sp + 200); // unreadable: next step fails
    memory.put_u64(sp + 104, 0x40_0600);
    let mut regs = Regs::new(Arch::Aarch64);
    regs.set(32, 0x40_0010);
    regs.set(31, sp);
    regs.set(29, sp + 32);
    let unwound = unwinder.unwind(&regs, &memory);
    assert_eq!(
        unwound.frames.iter().map(|f| f.pc).collect::<Vec<_>>(),
        vec![0x40_0010, 0x40_0500, 0x40_0600]
    );
    assert_eq!(unwound.frames[1].trust, Trust::FramePointer);
    assert_eq!(unwound.frames[1].cfa, Some(sp + 112));
    assert_eq!(unwound.frames[0].cfa, Some(sp + 48));
    assert_eq!(unwound.stop_reason, StopReason::MemoryUnreadable(sp + 200));
}

#[test]
fn x86_64_scan_accepts_only_return_addresses_after_calls() {
    let mut info = module("code", 0x1000..0x2000, 0);
    info.text_svma_ranges = std::iter::once(0x1000..0x1800).collect();
    let mut unwinder = Unwinder::new(
        Arch::X86_64,
        vec![info],
        UnwindOptions {
            allow_frame_pointer: false,
            ..UnwindOptions::default()
        },
    );
    let mut memory = TestMemory::default();
    memory.put(0x1000, &[0u8; 0x1000]);
    memory.put(0x1200 - 5, &[0xe8, 0x10, 0x20, 0x30, 0x40]); // call rel32
    memory.put(0x1900 - 2, &[0xff, 0xd0]); // call *%rax, but outside .text
    memory.put(0x1400 - 6, &[0xff, 0x15, 1, 2, 3, 4]); // call *disp(%rip)
    memory.put(STACK, &[0u8; 0x200]);
    memory.put_u64(STACK, 0x7777); // not code
    memory.put_u64(STACK + 8, 0x1100); // code, but no call before it
    memory.put_u64(STACK + 16, 0x1900); // call before it, but not in a text section
    memory.put_u64(STACK + 24, 0x1200); // accepted
    memory.put_u64(STACK + 64, 0x1400); // accepted next
    let mut regs = Regs::new(Arch::X86_64);
    regs.set(16, 0x1010);
    regs.set(7, STACK);
    let unwound = unwinder.unwind(&regs, &memory);
    assert_eq!(
        unwound.frames.iter().map(|f| f.pc).collect::<Vec<_>>(),
        vec![0x1010, 0x1200, 0x1400]
    );
    assert_eq!(
        unwound.frames.iter().map(|f| f.sp).collect::<Vec<_>>(),
        vec![STACK, STACK + 32, STACK + 72]
    );
    assert_eq!(unwound.frames[1].trust, Trust::Scan);
    assert_eq!(unwound.frames[2].trust, Trust::Scan);
    assert_eq!(unwound.stop_reason, StopReason::NoUnwindMethod);
}

#[test]
fn aarch64_scan_finds_bl_return_addresses() {
    let info = module("code", 0x40_0000..0x41_0000, 0);
    let mut unwinder = Unwinder::new(
        Arch::Aarch64,
        vec![info],
        UnwindOptions {
            allow_frame_pointer: false,
            ..UnwindOptions::default()
        },
    );
    let sp = 0xffff_f000_0000u64;
    let mut memory = TestMemory::default();
    memory.put(sp, &[0u8; 0x100]);
    memory.put_u32(0x40_0300, 0x9400_0040); // bl
    memory.put_u32(0x40_0400, 0xd503_201f); // nop
    memory.put_u64(sp + 8, 0x40_0404); // after a nop: refused
    memory.put_u64(sp + 16, 0x0055_0000_0040_0304); // after bl, signed: accepted and stripped
    let mut regs = Regs::new(Arch::Aarch64);
    regs.set(32, 0x40_0010);
    regs.set(31, sp);
    let unwound = unwinder.unwind(&regs, &memory);
    assert_eq!(
        unwound.frames.iter().map(|f| f.pc).collect::<Vec<_>>(),
        vec![0x40_0010, 0x40_0304]
    );
    assert_eq!(unwound.frames[1].trust, Trust::Scan);
    assert_eq!(unwound.frames[1].sp, sp + 24);
}

#[test]
fn x86_64_call_through_a_null_pointer() {
    // pc 0: the return address the call pushed is at [sp].
    let mut info = module("code", 0x1000..0x2000, 0);
    info.eh_frame = Some(section(
        0x3000,
        eh_frame_bytes(&frame_table(x86_64_cie(), &x86_64_functions())),
    ));
    let mut unwinder = Unwinder::new(Arch::X86_64, vec![info], UnwindOptions::default());
    let (mut regs, mut memory) = x86_64_stack(0);
    memory.put(0x1000, &[0u8; 0x20]);
    memory.put(0x1010 - 2, &[0xff, 0xd0]);
    memory.put_u64(STACK - 8, 0x1010);
    regs.set(16, 0);
    regs.set(7, STACK - 8);
    let unwound = unwinder.unwind(&regs, &memory);
    assert_eq!(
        unwound.frames.iter().map(|f| f.pc).collect::<Vec<_>>(),
        vec![0, 0x1010, 0x1150, 0x1250]
    );
    assert_eq!(unwound.frames[1].trust, Trust::Scan);
    assert_eq!(unwound.frames[2].trust, Trust::Cfi);
    assert_eq!(unwound.stop_reason, StopReason::EndOfStack);
}

// ---------------------------------------------------------------------------------------------
// Signal frames

#[test]
fn x86_64_signal_frame_restores_the_interrupted_context() {
    // handler [0x1000, 0x1100), interrupted [0x1100, 0x1200), outer [0x1200, 0x1300) with an
    // undefined return address, `before` [0x1f00, 0x2000) right before __restore_rt at 0x2000:
    // its CFI must not be used for the trampoline (pc-1 would land in it).
    let functions = vec![
        Function {
            start: 0x1000,
            length: 0x100,
            instructions: vec![],
        },
        Function {
            start: 0x1100,
            length: 0x100,
            instructions: vec![(1, Cfi::CfaOffset(16))],
        },
        Function {
            start: 0x1200,
            length: 0x100,
            instructions: vec![(0, Cfi::Undefined(X86_64::RA))],
        },
        Function {
            start: 0x1f00,
            length: 0x100,
            instructions: vec![(0, Cfi::Cfa(X86_64::RSP, 4096))],
        },
    ];
    let mut info = module("libc", 0x1000..0x3000, 0);
    info.eh_frame = Some(section(
        0x4000,
        eh_frame_bytes(&frame_table(x86_64_cie(), &functions)),
    ));
    let mut unwinder = Unwinder::new(Arch::X86_64, vec![info], no_fallbacks());

    let handler_sp = 0x7ffd_0000_0000u64;
    let interrupted_sp = 0x7ffd_0000_2000u64;
    let mut memory = TestMemory::default();
    memory.put(
        0x2000,
        &[0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05],
    );
    memory.put_u64(handler_sp, 0x2000); // the handler returns into __restore_rt
    let uc = handler_sp + 8;
    let sigcontext = [
        0x808,
        0x909,
        0x1010,
        0x1111,
        0x1212,
        0x1313,
        0x1414,
        0x1515, // r8..r15
        0xd1,
        0x51,
        interrupted_sp + 0x40,
        0xb0,
        0xd0,
        0xa0,
        0xc0, // rdi rsi rbp rbx rdx rax rcx
        interrupted_sp,
        0x1150u64, // rsp rip
    ];
    for (i, value) in sigcontext.iter().enumerate() {
        memory.put_u64(uc + 40 + 8 * i as u64, *value);
    }
    memory.put_u64(interrupted_sp + 8, 0x1280);

    let mut regs = Regs::new(Arch::X86_64);
    regs.set(16, 0x1010);
    regs.set(7, handler_sp);
    let unwound = unwinder.unwind(&regs, &memory);
    assert_eq!(unwound.stop_reason, StopReason::EndOfStack, "{unwound:#?}");
    let frames = &unwound.frames;
    assert_eq!(
        frames.iter().map(|f| f.pc).collect::<Vec<_>>(),
        vec![0x1010, 0x2000, 0x1150, 0x1280]
    );
    assert_eq!(
        frames.iter().map(|f| f.kind).collect::<Vec<_>>(),
        vec![
            FrameKind::Normal,
            FrameKind::Signal,
            FrameKind::Normal,
            FrameKind::Normal
        ]
    );
    assert_eq!(
        frames.iter().map(|f| f.trust).collect::<Vec<_>>(),
        vec![Trust::Context, Trust::Cfi, Trust::Context, Trust::Cfi]
    );
    assert_eq!(
        frames[1].lookup_pc, 0x2000,
        "the trampoline is looked up at its pc"
    );
    assert_eq!(
        frames[2].lookup_pc, 0x1150,
        "the interrupted frame is looked up at its pc"
    );
    assert_eq!(frames[3].lookup_pc, 0x127f);
    let interrupted = &frames[2].regs;
    assert_eq!(interrupted.get(0), Some(0xa0));
    assert_eq!(interrupted.get(2), Some(0xc0));
    assert_eq!(interrupted.get(5), Some(0xd1));
    assert_eq!(interrupted.get(8), Some(0x808));
    assert_eq!(interrupted.sp(), Some(interrupted_sp));
    assert_eq!(frames[3].sp, interrupted_sp + 16);
}

#[test]
fn aarch64_signal_frame_outside_any_module() {
    // qemu-user puts its trampoline in a page no module covers.
    let functions = vec![
        Function {
            start: 0x40_0000,
            length: 0x100,
            instructions: vec![],
        }, // leaf handler
        Function {
            start: 0x40_0100,
            length: 0x100,
            instructions: vec![(0, Cfi::Undefined(AArch64::X30))],
        },
    ];
    let mut info = module("exe", 0x40_0000..0x41_0000, 0);
    info.eh_frame = Some(section(
        0x42_0000,
        eh_frame_bytes(&frame_table(aarch64_cie(), &functions)),
    ));
    let mut unwinder = Unwinder::new(Arch::Aarch64, vec![info], no_fallbacks());

    let trampoline = 0x5500_0000u64;
    let frame_sp = 0xffff_e000_0000u64;
    let mut memory = TestMemory::default();
    memory.put_u32(trampoline, 0xd280_1168);
    memory.put_u32(trampoline + 4, 0xd400_0001);
    let regs_at = frame_sp + 128 + 176 + 8;
    for i in 0..31u64 {
        memory.put_u64(regs_at + 8 * i, 0x1000 + i);
    }
    memory.put_u64(regs_at + 31 * 8, frame_sp + 0x1000); // sp
    memory.put_u64(regs_at + 32 * 8, 0x40_0120); // pc

    let mut regs = Regs::new(Arch::Aarch64);
    regs.set(32, 0x40_0010);
    regs.set(31, frame_sp);
    regs.set(30, trampoline);
    let unwound = unwinder.unwind(&regs, &memory);
    assert_eq!(unwound.stop_reason, StopReason::EndOfStack, "{unwound:#?}");
    let frames = &unwound.frames;
    assert_eq!(
        frames.iter().map(|f| f.pc).collect::<Vec<_>>(),
        vec![0x40_0010, trampoline, 0x40_0120]
    );
    assert_eq!(frames[1].kind, FrameKind::Signal);
    assert_eq!(frames[1].lookup_pc, trampoline);
    assert_eq!(frames[2].trust, Trust::Context);
    assert_eq!(frames[2].lookup_pc, 0x40_0120);
    assert_eq!(frames[2].regs.get(0), Some(0x1000));
    assert_eq!(frames[2].regs.get(30), Some(0x1000 + 30));
    assert_eq!(frames[2].sp, frame_sp + 0x1000);
}

// ---------------------------------------------------------------------------------------------
// Hostile input

/// Memory that answers every read with pseudo-random bytes derived from the address.
struct NoiseMemory(u64);

impl Memory for NoiseMemory {
    fn read(&self, avma: u64, buf: &mut [u8]) -> bool {
        if avma % 7 == 3 {
            return false;
        }
        for (i, byte) in buf.iter_mut().enumerate() {
            let mut x = avma.wrapping_add(i as u64) ^ self.0;
            x ^= x >> 33;
            x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
            x ^= x >> 29;
            *byte = x as u8;
        }
        true
    }
}

#[test]
fn garbage_never_panics_or_loops() {
    for seed in 0..64u64 {
        for arch in [Arch::X86_64, Arch::Aarch64] {
            // Random section bytes, random registers, memory full of noise, code everywhere.
            let noise = NoiseMemory(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut random = vec![0u8; 512];
            noise.read(0x1000 * seed, &mut random);
            let mut info = module("noise", 0..u64::MAX / 2, 0);
            info.eh_frame = Some(section(0x1000, random.clone()));
            info.eh_frame_hdr = Some(section(0x800, random[..64].to_vec()));
            info.debug_frame = Some(section(0, random[64..].to_vec()));
            let mut unwinder = Unwinder::new(
                arch,
                vec![info],
                UnwindOptions {
                    scan_words: 64,
                    ..UnwindOptions::default()
                },
            );
            let mut regs = Regs::new(arch);
            for dwarf in 0..33 {
                regs.set(
                    dwarf,
                    noise.read_u64(dwarf as u64 * 8 + seed).unwrap_or(seed),
                );
            }
            let unwound = unwinder.unwind(&regs, &noise);
            assert!(!unwound.frames.is_empty());
            for pair in unwound.frames.windows(2) {
                let grew = pair[1].sp > pair[0].sp;
                let leaf = pair[0].trust == Trust::Context && pair[1].sp == pair[0].sp;
                assert!(
                    grew || leaf || pair[0].kind == FrameKind::Signal,
                    "{unwound:#?}"
                );
            }
        }
    }
}

#[test]
fn a_self_referencing_frame_pointer_terminates() {
    let info = module("code", 0x1000..0x2000, 0);
    let mut unwinder = Unwinder::new(Arch::X86_64, vec![info], UnwindOptions::default());
    let mut memory = TestMemory::default();
    memory.put(0x1000, &[0u8; 0x1000]);
    memory.put(STACK, &[0u8; 0x100]);
    memory.put_u64(STACK + 16, STACK + 16);
    memory.put_u64(STACK + 24, 0x1234);
    let mut regs = Regs::new(Arch::X86_64);
    regs.set(16, 0x1010);
    regs.set(7, STACK);
    regs.set(6, STACK + 16);
    let unwound = unwinder.unwind(&regs, &memory);
    assert_eq!(unwound.frames.len(), 2, "{unwound:#?}");
    assert_ne!(unwound.stop_reason, StopReason::EndOfStack);
}

#[test]
fn a_thread_without_a_pc_has_no_frames() {
    let mut unwinder = Unwinder::new(Arch::X86_64, vec![], UnwindOptions::default());
    let unwound = unwinder.unwind(&Regs::new(Arch::X86_64), &TestMemory::default());
    assert!(unwound.frames.is_empty());
    assert_eq!(unwound.stop_reason, StopReason::NoUnwindMethod);
}
