//! Turns unwound machine frames into report frames: symbolicated, with inlined frames expanded.

use crate::modules::{module_for, ProcessModule};
use crate::report::Frame;
use coresnap_symbols::SourceFrame;
use coresnap_unwind::{register_name, FrameKind, Trust};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Symbolicates addresses, remembering each answer: deep recursions and many threads repeat the
/// same few return addresses thousands of times.
#[derive(Default)]
pub struct Symbolicator {
    cache: HashMap<u64, Arc<Vec<SourceFrame>>>,
    /// The last machine frame expanded (without registers, fault or warnings) and the last
    /// tail-call answer: a recursion asks for the same frame, and the same pair, over and
    /// over in a row, and a copy is cheaper than formatting and looking up again.
    last_expansion: Option<(ExpansionKey, Vec<Frame>)>,
    last_tail_calls: Option<((u64, u64, u64), Vec<Frame>)>,
}

/// What an expansion depends on besides the modules, which stay the same for a snapshot.
#[derive(Clone, Copy, PartialEq, Eq)]
struct ExpansionKey {
    pc: u64,
    lookup_pc: u64,
    trust: Trust,
    kind: FrameKind,
}

impl Symbolicator {
    fn lookup(&mut self, module: &ProcessModule, lookup_pc: u64) -> Arc<Vec<SourceFrame>> {
        if let Some(hit) = self.cache.get(&lookup_pc) {
            return hit.clone();
        }
        let frames = match &module.info {
            Some(info) => info.symbolize(lookup_pc.wrapping_sub(module.bias)),
            None => Vec::new(),
        };
        let frames = Arc::new(frames);
        self.cache.insert(lookup_pc, frames.clone());
        frames
    }

    /// The frames that tail calls left off the stack between `callee` (frame N-1) and `caller`
    /// (frame N), innermost first, as gdb shows them: one frame per tail call, named after the
    /// innermost function at the jump, at the address after the jump, with the caller's trust.
    /// Only within one module (a tail call into another module goes through the PLT and leaves
    /// no call site), and never across a signal frame, whose "caller" was interrupted rather
    /// than making a call.
    pub fn tail_calls(
        &mut self,
        modules: &[ProcessModule],
        callee: &coresnap_unwind::Frame,
        caller: &coresnap_unwind::Frame,
    ) -> Vec<Frame> {
        if callee.kind == FrameKind::Signal || caller.kind == FrameKind::Signal || caller.lookup_pc == caller.pc {
            return Vec::new();
        }
        // The trust is the only part of the caller the frames take besides the two addresses.
        let key = (caller.pc, callee.lookup_pc, caller.trust as u64);
        if let Some((last, frames)) = &self.last_tail_calls {
            if *last == key {
                return frames.clone();
            }
        }
        let frames = Self::find_tail_calls(modules, callee, caller);
        self.last_tail_calls = Some((key, frames.clone()));
        frames
    }

    fn find_tail_calls(modules: &[ProcessModule], callee: &coresnap_unwind::Frame, caller: &coresnap_unwind::Frame) -> Vec<Frame> {
        let Some(module) = module_for(modules, caller.lookup_pc) else { return Vec::new() };
        let same_module = module_for(modules, callee.lookup_pc).is_some_and(|m| std::ptr::eq(m, module));
        let Some(info) = module.info.as_ref().filter(|_| same_module) else { return Vec::new() };
        let found = info.tail_call_frames(caller.pc.wrapping_sub(module.bias), callee.lookup_pc.wrapping_sub(module.bias));
        found
            .into_iter()
            .map(|tail| {
                let pc = tail.svma.wrapping_add(module.bias);
                let innermost = tail.frames.first();
                Frame {
                    func_name: innermost.and_then(|s| s.function.as_deref()).map(Arc::from),
                    address: format!("{pc:#x}").into(),
                    library: Some(module.name.as_str().into()),
                    library_offset: Some(format!("{:#x}", pc.wrapping_sub(module.avma_range.start)).into()),
                    source_path: innermost.and_then(|s| s.file.as_deref()).map(Arc::from),
                    line: innermost.and_then(|s| s.line),
                    column: innermost.and_then(|s| s.column),
                    inlined: false,
                    tail_call: true,
                    trust: caller.trust.as_str().into(),
                    kind: None,
                    faulted: false,
                    registers: None,
                    warnings: Vec::new(),
                }
            })
            .collect()
    }

    /// The report frames for one machine frame: inlined callees first, the real function last.
    pub fn expand(
        &mut self,
        modules: &[ProcessModule],
        frame: &coresnap_unwind::Frame,
        with_registers: bool,
        faulted: bool,
    ) -> Vec<Frame> {
        let key = ExpansionKey { pc: frame.pc, lookup_pc: frame.lookup_pc, trust: frame.trust, kind: frame.kind };
        let mut expanded = match &self.last_expansion {
            Some((last, expanded)) if *last == key => expanded.clone(),
            _ => {
                let expanded = self.expand_uncached(modules, frame);
                self.last_expansion = Some((key, expanded.clone()));
                expanded
            }
        };
        // Registers and the fault belong to the innermost frame shown; the warnings to the
        // machine frame, which is the outermost of the expansion.
        if let Some(innermost) = expanded.first_mut() {
            innermost.faulted = faulted;
            if with_registers {
                innermost.registers = Some(
                    frame
                        .regs
                        .iter()
                        .map(|(reg, value)| (register_name(frame.regs.arch(), reg).to_string(), format!("{value:#x}")))
                        .collect::<BTreeMap<_, _>>(),
                );
            }
        }
        if let Some(outermost) = expanded.last_mut() {
            outermost.warnings = frame.warnings.clone();
        }
        expanded
    }

    /// The expansion of a frame without its registers, fault or warnings.
    fn expand_uncached(&mut self, modules: &[ProcessModule], frame: &coresnap_unwind::Frame) -> Vec<Frame> {
        let module = module_for(modules, frame.lookup_pc);
        let library = module.map(|m| Arc::<str>::from(m.name.as_str()));
        let library_offset = module.map(|m| Arc::<str>::from(format!("{:#x}", frame.pc.wrapping_sub(m.avma_range.start))));
        let sources = match module {
            Some(m) => self.lookup(m, frame.lookup_pc),
            None => Arc::new(Vec::new()),
        };
        let mut base = Frame {
            func_name: None,
            address: format!("{:#x}", frame.pc).into(),
            library,
            library_offset,
            source_path: None,
            line: None,
            column: None,
            inlined: false,
            tail_call: false,
            trust: frame.trust.as_str().into(),
            kind: (frame.kind == FrameKind::Signal).then(|| "signal".into()),
            faulted: false,
            registers: None,
            warnings: Vec::new(),
        };
        if sources.is_empty() {
            return vec![base];
        }
        // The outermost takes `base` itself, the inlined ones a copy.
        let count = sources.len();
        let mut expanded = Vec::with_capacity(count);
        for (i, s) in sources.iter().enumerate() {
            let mut frame = if i + 1 == count {
                std::mem::replace(&mut base, placeholder())
            } else {
                base.clone()
            };
            frame.func_name = s.function.as_deref().map(Arc::from);
            frame.source_path = s.file.as_deref().map(Arc::from);
            frame.line = s.line;
            frame.column = s.column;
            frame.inlined = s.inlined;
            expanded.push(frame);
        }
        expanded
    }
}

/// An empty frame, left behind where a frame was moved out.
fn placeholder() -> Frame {
    Frame {
        func_name: None,
        address: Arc::from(""),
        library: None,
        library_offset: None,
        source_path: None,
        line: None,
        column: None,
        inlined: false,
        tail_call: false,
        trust: Arc::from(""),
        kind: None,
        faulted: false,
        registers: None,
        warnings: Vec::new(),
    }
}
