//! DWARF CFI: finding the unwind row for an address (`.eh_frame_hdr`, `.eh_frame`,
//! `.debug_frame`), caching it, and evaluating its rules against a frame's registers.

use std::collections::HashMap;
use std::sync::Arc;

use gimli::{
    BaseAddresses, CieOrFde, CommonInformationEntry, DebugFrame, EhFrame, EhFrameHdr,
    EhFrameOffset, EndianSlice, LittleEndian, UnwindContext, UnwindOffset,
};

use crate::{Arch, Memory, ModuleUnwindInfo, Regs, UnwindSection};

type Reader<'a> = EndianSlice<'a, LittleEndian>;

/// Why CFI could not produce a caller frame.
#[derive(Clone, Debug, thiserror::Error)]
pub(crate) enum CfiError {
    #[error("the unwind information could not be parsed: {0}")]
    Parse(gimli::Error),
    #[error("the CFA is based on register {0}, whose value is unknown")]
    UnknownCfaRegister(&'static str),
    #[error("the return address register {0} could not be recovered")]
    UnknownReturnAddress(&'static str),
    #[error("the DWARF expression could not be evaluated: {0}")]
    Expression(gimli::Error),
    #[error("the DWARF expression needs {0}, which a stack walker does not have")]
    UnsupportedExpression(&'static str),
    #[error("the DWARF expression reads register {0}, whose value is unknown")]
    ExpressionRegister(&'static str),
    #[error("the memory at {0:#x} could not be read")]
    MemoryUnreadable(u64),
    #[error("the return address is not saved anywhere: it would be this frame's own")]
    ReturnAddressUnchanged,
}

/// A CFA rule, owning its expression bytes so cached rows outlive the section borrow.
#[derive(Clone, Debug)]
pub(crate) enum CfaRule {
    RegisterOffset { register: u16, offset: i64 },
    Expression(Box<[u8]>),
}

#[derive(Clone, Debug)]
pub(crate) enum Rule {
    Undefined,
    SameValue,
    Offset(i64),
    ValOffset(i64),
    Register(u16),
    Expression(Box<[u8]>),
    ValExpression(Box<[u8]>),
    Constant(u64),
    /// `Architectural`: defined by an augmenter we do not know.
    Unsupported,
}

/// One row of the unwind table: how to find the caller's registers for a range of addresses.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    pub cfa: CfaRule,
    pub rules: Vec<(u16, Rule)>,
}

impl Row {
    pub fn rule(&self, register: u16) -> Option<&Rule> {
        self.rules
            .iter()
            .find(|(number, _)| *number == register)
            .map(|(_, rule)| rule)
    }
}

/// An FDE's address range and where it starts in its section, for a binary search.
#[derive(Clone, Copy, Debug)]
struct FdeRange {
    start: u64,
    end: u64,
    offset: usize,
}

type RowLookup = Result<Option<Arc<Row>>, CfiError>;

/// Per-module caches: sorted FDE indexes (built once, only when needed) and rows by address.
#[derive(Default)]
struct ModuleCache {
    eh_frame_index: Option<Vec<FdeRange>>,
    debug_frame_index: Option<Vec<FdeRange>>,
    rows: foldhash::HashMap<u64, RowLookup>,
}

/// CFI state shared by every walk of one `Unwinder`.
pub(crate) struct CfiCache {
    context: Box<UnwindContext<usize>>,
    modules: Vec<ModuleCache>,
}

impl CfiCache {
    pub fn new(module_count: usize) -> Self {
        CfiCache {
            context: Box::new(UnwindContext::new()),
            modules: (0..module_count).map(|_| ModuleCache::default()).collect(),
        }
    }

    /// The unwind row covering `svma` in `module`, `Ok(None)` when the module has no CFI for it.
    pub fn row(
        &mut self,
        arch: Arch,
        module_index: usize,
        module: &ModuleUnwindInfo,
        svma: u64,
    ) -> RowLookup {
        let Some(cache) = self.modules.get_mut(module_index) else {
            return Ok(None);
        };
        if let Some(found) = cache.rows.get(&svma) {
            return found.clone();
        }
        let found =
            find_row(arch, cache, &mut self.context, module, svma).map(|row| row.map(Arc::new));
        cache.rows.insert(svma, found.clone());
        found
    }
}

fn eh_frame_section(arch: Arch, section: &UnwindSection) -> EhFrame<Reader<'_>> {
    let mut eh_frame = EhFrame::new(section.data.bytes(), LittleEndian);
    eh_frame.set_address_size(8);
    if arch == Arch::Aarch64 {
        eh_frame.set_vendor(gimli::Vendor::AArch64);
    }
    eh_frame
}

fn debug_frame_section(arch: Arch, section: &UnwindSection) -> DebugFrame<Reader<'_>> {
    let mut debug_frame = DebugFrame::new(section.data.bytes(), LittleEndian);
    debug_frame.set_address_size(8);
    if arch == Arch::Aarch64 {
        debug_frame.set_vendor(gimli::Vendor::AArch64);
    }
    debug_frame
}

fn find_row(
    arch: Arch,
    cache: &mut ModuleCache,
    context: &mut UnwindContext<usize>,
    module: &ModuleUnwindInfo,
    svma: u64,
) -> Result<Option<Row>, CfiError> {
    let mut first_error = None;
    if let Some(eh_frame_info) = &module.eh_frame {
        let eh_frame = eh_frame_section(arch, eh_frame_info);
        let mut bases = BaseAddresses::default().set_eh_frame(eh_frame_info.svma);
        if let Some(text) = module.text_svma_ranges.first() {
            bases = bases.set_text(text.start);
        }
        if let Some(hdr) = &module.eh_frame_hdr {
            bases = bases.set_eh_frame_hdr(hdr.svma);
        }
        let offset = match module
            .eh_frame_hdr
            .as_ref()
            .and_then(|hdr| hdr_lookup(hdr, &bases, eh_frame_info.svma, svma))
        {
            Some(from_table) => from_table,
            None => {
                let index = cache
                    .eh_frame_index
                    .get_or_insert_with(|| build_index(&eh_frame, &bases));
                index_lookup(index, svma)
            }
        };
        if let Some(offset) = offset {
            match row_at(&eh_frame, &bases, context, EhFrameOffset(offset), svma) {
                Ok(Some(row)) => return Ok(Some(row)),
                Ok(None) => {}
                Err(error) => first_error = Some(error),
            }
        }
    }
    if let Some(debug_frame_info) = &module.debug_frame {
        let debug_frame = debug_frame_section(arch, debug_frame_info);
        let bases = BaseAddresses::default();
        let index = cache
            .debug_frame_index
            .get_or_insert_with(|| build_index(&debug_frame, &bases));
        if let Some(offset) = index_lookup(index, svma) {
            match row_at(
                &debug_frame,
                &bases,
                context,
                gimli::DebugFrameOffset(offset),
                svma,
            ) {
                Ok(Some(row)) => return Ok(Some(row)),
                Ok(None) => {}
                Err(error) => first_error = first_error.or(Some(error)),
            }
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(None),
    }
}

/// Parses the FDE at `offset` and evaluates its row for `svma`; `Ok(None)` when the FDE does
/// not cover `svma`.
fn row_at<'a, S>(
    section: &S,
    bases: &BaseAddresses,
    context: &mut UnwindContext<usize>,
    offset: S::Offset,
    svma: u64,
) -> Result<Option<Row>, CfiError>
where
    S: gimli::UnwindSection<Reader<'a>>,
{
    let fde = section
        .fde_from_offset(bases, offset, S::cie_from_offset)
        .map_err(CfiError::Parse)?;
    if !fde.contains(svma) {
        return Ok(None);
    }
    let row = fde
        .unwind_info_for_address(section, bases, context, svma)
        .map_err(CfiError::Parse)?;
    convert_row(section, row).map(Some)
}

fn expression_bytes<'a, S>(
    section: &S,
    expression: &gimli::UnwindExpression<usize>,
) -> Result<Box<[u8]>, CfiError>
where
    S: gimli::UnwindSection<Reader<'a>>,
{
    let expression = expression.get(section).map_err(CfiError::Parse)?;
    Ok(expression.0.slice().into())
}

fn convert_row<'a, S>(section: &S, row: &gimli::UnwindTableRow<usize>) -> Result<Row, CfiError>
where
    S: gimli::UnwindSection<Reader<'a>>,
{
    let cfa = match row.cfa() {
        gimli::CfaRule::RegisterAndOffset { register, offset } => CfaRule::RegisterOffset {
            register: register.0,
            offset: *offset,
        },
        gimli::CfaRule::Expression(expression) => {
            CfaRule::Expression(expression_bytes(section, expression)?)
        }
    };
    let mut rules = Vec::new();
    for (register, rule) in row.registers() {
        let rule = match rule {
            gimli::RegisterRule::Undefined => Rule::Undefined,
            gimli::RegisterRule::SameValue => Rule::SameValue,
            gimli::RegisterRule::Offset(offset) => Rule::Offset(*offset),
            gimli::RegisterRule::ValOffset(offset) => Rule::ValOffset(*offset),
            gimli::RegisterRule::Register(other) => Rule::Register(other.0),
            gimli::RegisterRule::Expression(expression) => {
                Rule::Expression(expression_bytes(section, expression)?)
            }
            gimli::RegisterRule::ValExpression(expression) => {
                Rule::ValExpression(expression_bytes(section, expression)?)
            }
            gimli::RegisterRule::Constant(value) => Rule::Constant(*value),
            _ => Rule::Unsupported,
        };
        rules.push((register.0, rule));
    }
    Ok(Row { cfa, rules })
}

/// Every FDE of a section, sorted by start address. Parsing stops at the first damaged entry:
/// what precedes it is still usable.
fn build_index<'a, S>(section: &S, bases: &BaseAddresses) -> Vec<FdeRange>
where
    S: gimli::UnwindSection<Reader<'a>>,
{
    let mut cies: HashMap<usize, CommonInformationEntry<Reader<'a>>> = HashMap::new();
    let mut index = Vec::new();
    let mut entries = section.entries(bases);
    while let Ok(Some(entry)) = entries.next() {
        let CieOrFde::Fde(partial) = entry else {
            continue;
        };
        let parsed = partial.parse(|section, bases, offset| {
            let key = UnwindOffset::into(offset);
            if let Some(cie) = cies.get(&key) {
                return Ok(cie.clone());
            }
            let cie = section.cie_from_offset(bases, offset)?;
            cies.insert(key, cie.clone());
            Ok(cie)
        });
        if let Ok(fde) = parsed {
            let start = fde.initial_address();
            if let Some(end) = start.checked_add(fde.len()) {
                if end > start {
                    index.push(FdeRange {
                        start,
                        end,
                        offset: fde.offset(),
                    });
                }
            }
        }
    }
    index.sort_by_key(|entry| entry.start);
    index
}

fn index_lookup(index: &[FdeRange], svma: u64) -> Option<usize> {
    let after = index.partition_point(|entry| entry.start <= svma);
    let candidate = index.get(after.checked_sub(1)?)?;
    (svma < candidate.end).then_some(candidate.offset)
}

/// Looks `svma` up in the `.eh_frame_hdr` binary-search table. `None` when the table is
/// absent, malformed or uses encodings gimli cannot search (the caller then indexes
/// `.eh_frame` itself); `Some(None)` when the table has no FDE for `svma`.
fn hdr_lookup(
    hdr: &UnwindSection,
    bases: &BaseAddresses,
    eh_frame_svma: u64,
    svma: u64,
) -> Option<Option<usize>> {
    let bytes = hdr.data.bytes();
    if !hdr_table_is_sane(bytes) {
        return None;
    }
    let parsed = EhFrameHdr::new(bytes, LittleEndian).parse(bases, 8).ok()?;
    let table = parsed.table()?;
    let pointer = table.lookup(svma, bases).ok()?;
    let gimli::Pointer::Direct(fde_svma) = pointer else {
        return None;
    };
    // The table's nearest entry may still end before `svma`; `row_at` checks the range.
    let offset = fde_svma.checked_sub(eh_frame_svma)?;
    Some(usize::try_from(offset).ok())
}

/// gimli's binary search trusts `fde_count`; refuse a table that claims more entries than the
/// section holds, so a damaged count cannot overflow the search's arithmetic.
fn hdr_table_is_sane(bytes: &[u8]) -> bool {
    fn encoded_size(encoding: u8) -> Option<usize> {
        match encoding & 0x0f {
            0x00 => Some(8), // absptr (64-bit)
            0x02 | 0x0a => Some(2),
            0x03 | 0x0b => Some(4),
            0x04 | 0x0c => Some(8),
            _ => None,
        }
    }
    let (Some(&1), Some(&ptr_encoding), Some(&count_encoding), Some(&table_encoding)) =
        (bytes.first(), bytes.get(1), bytes.get(2), bytes.get(3))
    else {
        return false;
    };
    let (Some(ptr_size), Some(count_size), Some(entry_size)) = (
        encoded_size(ptr_encoding),
        encoded_size(count_encoding),
        encoded_size(table_encoding),
    ) else {
        return false;
    };
    let count_start = 4 + ptr_size;
    let Some(count_bytes) = bytes.get(count_start..count_start + count_size) else {
        return false;
    };
    let mut raw = [0u8; 8];
    for (slot, byte) in raw.iter_mut().zip(count_bytes) {
        *slot = *byte;
    }
    let count = u64::from_le_bytes(raw);
    let table_bytes = (bytes.len() - count_start - count_size) as u64;
    count
        .checked_mul(2 * entry_size as u64)
        .is_some_and(|needed| needed <= table_bytes)
}

/// What an expression can read while it runs.
pub(crate) struct ExpressionContext<'a> {
    pub arch: Arch,
    pub regs: &'a Regs,
    pub memory: &'a dyn Memory,
    pub cfa: Option<u64>,
    pub bias: u64,
}

/// Runs a CFI expression (`push` is pushed first: the CFA for register rules) and returns the
/// value it leaves: an address for `Expression`/CFA rules, a value for `ValExpression`.
pub(crate) fn evaluate(
    bytes: &[u8],
    push: Option<u64>,
    context: &ExpressionContext<'_>,
) -> Result<u64, CfiError> {
    use gimli::{EvaluationResult, Location, Value};
    let encoding = gimli::Encoding {
        address_size: 8,
        format: gimli::Format::Dwarf32,
        version: 4,
    };
    let mut evaluation = gimli::Evaluation::new(EndianSlice::new(bytes, LittleEndian), encoding);
    // CFI expressions are a handful of operations; a bound keeps a hostile loop finite.
    evaluation.set_max_iterations(10_000);
    if let Some(value) = push {
        evaluation.set_initial_value(value);
    }
    let mut state = evaluation.evaluate().map_err(CfiError::Expression)?;
    loop {
        state = match state {
            EvaluationResult::Complete => break,
            EvaluationResult::RequiresMemory { address, size, .. } => {
                let size = usize::from(size).min(8);
                let mut raw = [0u8; 8];
                let Some(buf) = raw.get_mut(..size) else {
                    return Err(CfiError::MemoryUnreadable(address));
                };
                if !context.memory.read(address, buf) {
                    return Err(CfiError::MemoryUnreadable(address));
                }
                evaluation.resume_with_memory(Value::Generic(u64::from_le_bytes(raw)))
            }
            EvaluationResult::RequiresRegister { register, .. } => {
                let Some(value) = context.regs.get(register.0) else {
                    return Err(CfiError::ExpressionRegister(crate::register_name(
                        context.arch,
                        register.0,
                    )));
                };
                evaluation.resume_with_register(Value::Generic(value))
            }
            EvaluationResult::RequiresCallFrameCfa => match context.cfa {
                Some(cfa) => evaluation.resume_with_call_frame_cfa(cfa),
                None => {
                    return Err(CfiError::UnsupportedExpression(
                        "the CFA while computing the CFA",
                    ))
                }
            },
            EvaluationResult::RequiresRelocatedAddress(address) => {
                evaluation.resume_with_relocated_address(address.wrapping_add(context.bias))
            }
            EvaluationResult::RequiresFrameBase => {
                return Err(CfiError::UnsupportedExpression("a frame base"))
            }
            EvaluationResult::RequiresTls(_) => {
                return Err(CfiError::UnsupportedExpression("thread-local storage"))
            }
            _ => {
                return Err(CfiError::UnsupportedExpression(
                    "debugging information entries",
                ))
            }
        }
        .map_err(CfiError::Expression)?;
    }
    let pieces = evaluation.as_result();
    let Some(piece) = pieces.first() else {
        return Err(CfiError::UnsupportedExpression(
            "a result, but it left none",
        ));
    };
    match &piece.location {
        Location::Address { address } => Ok(*address),
        Location::Value { value } => value.to_u64(u64::MAX).map_err(CfiError::Expression),
        Location::Register { register } => {
            context
                .regs
                .get(register.0)
                .ok_or(CfiError::ExpressionRegister(crate::register_name(
                    context.arch,
                    register.0,
                )))
        }
        _ => Err(CfiError::UnsupportedExpression(
            "a location kind CFI does not use",
        )),
    }
}
