//! DWARF line and inline information through addr2line, read straight from the mapped file
//! (or from decompressed copies of compressed sections).

use std::fmt;
use std::ops::{Deref, Range};
use std::sync::{Arc, OnceLock};

use gimli::Reader as _;
use gimli::SectionId;
use object::Object;

use crate::elf::{self, bytes_of};
use crate::{SharedBytes, SourceFrame};

/// One DWARF section's bytes, kept alive by the buffer they live in.
#[derive(Clone)]
pub(crate) struct SectionBytes {
    owner: SharedBytes,
    range: Range<usize>,
}

impl Deref for SectionBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        bytes_of(&self.owner).get(self.range.clone()).unwrap_or(&[])
    }
}

// SAFETY: the bytes live in a memory map or a Vec behind an Arc that nobody mutates; moving
// or cloning a `SectionBytes` moves or clones the Arc pointer, never the bytes, so the slice
// handed out by `deref` stays where it is for as long as any clone lives.
unsafe impl gimli::StableDeref for SectionBytes {}
// SAFETY: as above; clones share the same Arc and so deref to the same address.
unsafe impl gimli::CloneStableDeref for SectionBytes {}

impl fmt::Debug for SectionBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SectionBytes")
            .field("range", &self.range)
            .finish()
    }
}

pub(crate) type Reader = gimli::EndianReader<gimli::RunTimeEndian, SectionBytes>;
type Addr2line = addr2line::Context<Reader>;

/// The sections addr2line reads. Location lists, macros and the rest are never decompressed
/// (for libc's debug file `.debug_loclists` alone is larger than everything needed here).
const NEEDED: [SectionId; 10] = [
    SectionId::DebugAbbrev,
    SectionId::DebugAddr,
    SectionId::DebugAranges,
    SectionId::DebugInfo,
    SectionId::DebugLine,
    SectionId::DebugLineStr,
    SectionId::DebugRanges,
    SectionId::DebugRngLists,
    SectionId::DebugStr,
    SectionId::DebugStrOffsets,
];

/// How many bytes the smallest unit header that addr2line skips unread takes: a DWARF 5 type
/// unit (length, version, unit type, address size, abbreviation offset, signature, type
/// offset) in the 32-bit format.
const SKIP_UNIT_32: usize = 4 + 2 + 1 + 1 + 4 + 8 + 4;

/// One arange: code addresses `begin..end` belong to `DwarfContext::units[unit]`.
#[derive(Clone, Copy, Debug)]
struct Arange {
    begin: u64,
    end: u64,
    unit: usize,
}

/// A unit that aranges name, and its addr2line context once built (`None` inside once the
/// unit is known to need the whole-file context). Kept small: libc has 4,000 of them.
struct UnitSlot {
    /// Where the unit starts in `.debug_info`.
    offset: usize,
    /// Where its arange set lies in `.debug_aranges` (empty when it has several).
    aranges: Range<usize>,
    context: OnceLock<Option<Box<Addr2line>>>,
}

/// The DWARF of one file, read one compilation unit at a time.
///
/// addr2line reads the header, abbreviations and line-program header of every unit before it
/// answers anything: for libc's 4,000 units that is most of the time and memory a backtrace
/// costs. Like libdw, this finds the unit that holds an address through `.debug_aranges` and
/// gives addr2line a view of `.debug_info` holding only that unit at its own offset; what lies
/// before it is one unit header addr2line skips without reading (a type unit), so offsets,
/// and everything keyed by them, stay those of the file. A unit that refers into other units
/// (`DW_FORM_ref_addr`, as LTO and dwz produce), an address no arange covers, and a file
/// without `.debug_aranges` are answered by one addr2line context over the whole section,
/// built on first need.
pub(crate) struct DwarfContext {
    endian: gimli::RunTimeEndian,
    /// The sections in `NEEDED` (empty readers for those the file lacks).
    sections: Vec<(SectionId, Reader)>,
    /// `.debug_info` as the file has it.
    debug_info: Reader,
    /// Sorted by `begin`; `reach[i]` is the largest `end` among `aranges[..=i]`.
    aranges: Vec<Arange>,
    reach: Vec<u64>,
    /// Every unit that aranges name, by offset.
    units: Vec<UnitSlot>,
    whole: OnceLock<Result<Addr2line, String>>,
}

impl fmt::Debug for DwarfContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DwarfContext")
            .field("aranges", &self.aranges.len())
            .field("units", &self.units.len())
            .finish_non_exhaustive()
    }
}

/// Builds the index over the DWARF of the file in `owner`. Only `.debug_aranges` is read now;
/// each unit is parsed on first use.
pub(crate) fn load_context(owner: &SharedBytes) -> Result<DwarfContext, String> {
    let file = elf::parse(bytes_of(owner))?;
    let endian = if file.is_little_endian() {
        gimli::RunTimeEndian::Little
    } else {
        gimli::RunTimeEndian::Big
    };
    let empty = Reader::new(
        SectionBytes {
            owner: owner.clone(),
            range: 0..0,
        },
        endian,
    );
    let mut sections = Vec::with_capacity(NEEDED.len());
    for id in NEEDED {
        let section = elf::section_ref(&file, owner, id.name())
            .map_err(|e| format!("section {}: {e}", id.name()))?;
        let reader = match section {
            Some(s) => Reader::new(
                SectionBytes {
                    owner: s.owner,
                    range: s.range,
                },
                endian,
            ),
            None => empty.clone(),
        };
        sections.push((id, reader));
    }
    let section = |id: SectionId| {
        sections
            .iter()
            .find(|(s, _)| *s == id)
            .map_or_else(|| empty.clone(), |(_, r)| r.clone())
    };
    let debug_info = section(SectionId::DebugInfo);
    // Unreadable aranges are no worse than none: every lookup then takes the whole-file path.
    let (mut aranges, units) = read_aranges(&section(SectionId::DebugAranges)).unwrap_or_default();
    aranges.sort_unstable_by_key(|a| (a.begin, a.end, a.unit));
    let reach = aranges
        .iter()
        .scan(0u64, |reach, a| {
            *reach = (*reach).max(a.end);
            Some(*reach)
        })
        .collect();
    Ok(DwarfContext {
        endian,
        sections,
        debug_info,
        aranges,
        reach,
        units,
        whole: OnceLock::new(),
    })
}

/// The aranges (`unit` indexing the units) and the units they name, sorted by offset.
fn read_aranges(section: &Reader) -> gimli::Result<(Vec<Arange>, Vec<UnitSlot>)> {
    let mut sets: Vec<(usize, Range<usize>)> = Vec::new();
    let mut aranges = Vec::new();
    let mut headers = gimli::DebugAranges::from(section.clone()).headers();
    while let Some(header) = headers.next()? {
        let unit = header.debug_info_offset().0;
        let start = header.offset().0;
        let end = start
            .checked_add(header.encoding().format.initial_length_size().into())
            .and_then(|s| s.checked_add(header.length()))
            .unwrap_or(start);
        sets.push((unit, start..end));
        let mut entries = header.entries();
        while let Some(entry) = entries.next()? {
            let range = entry.range();
            if range.begin < range.end {
                aranges.push(Arange {
                    begin: range.begin,
                    end: range.end,
                    unit,
                });
            }
        }
    }
    sets.sort_unstable_by_key(|(unit, set)| (*unit, set.start));
    let mut units: Vec<UnitSlot> = Vec::with_capacity(sets.len());
    for (offset, set) in sets {
        match units.last_mut() {
            // A unit with two sets: addr2line is given none and reads the unit's own ranges.
            Some(last) if last.offset == offset => last.aranges = 0..0,
            _ => units.push(UnitSlot {
                offset,
                aranges: set,
                context: OnceLock::new(),
            }),
        }
    }
    units.shrink_to_fit();
    for arange in &mut aranges {
        // Every arange's unit is in `units`: both come from the same headers.
        arange.unit = units
            .binary_search_by_key(&arange.unit, |u| u.offset)
            .unwrap_or(usize::MAX);
    }
    Ok((aranges, units))
}

impl DwarfContext {
    /// The addr2line contexts to ask about `svma`, best first: those of the units whose
    /// aranges cover it, else the whole-file one. An error when the whole-file context was
    /// needed and could not be built.
    fn contexts_for(&self, svma: u64) -> Result<Vec<&Addr2line>, String> {
        let end = self.aranges.partition_point(|a| a.begin <= svma);
        let mut units: Vec<usize> = Vec::new();
        for i in (0..end).rev() {
            // Nothing at or before `i` reaches past `svma`: no earlier arange can cover it.
            if self.reach.get(i).is_none_or(|&reach| reach <= svma) {
                break;
            }
            if let Some(a) = self.aranges.get(i) {
                if svma < a.end && !units.contains(&a.unit) {
                    units.push(a.unit);
                }
            }
        }
        units.sort_unstable();
        let mut contexts: Vec<&Addr2line> = Vec::new();
        let mut need_whole = units.is_empty();
        for unit in units {
            match self.unit_context(unit) {
                Some(context) => contexts.push(context),
                None => need_whole = true,
            }
        }
        if need_whole {
            contexts.push(self.whole()?);
        }
        Ok(contexts)
    }

    fn unit_context(&self, unit: usize) -> Option<&Addr2line> {
        let slot = self.units.get(unit)?;
        slot.context
            .get_or_init(|| self.build_unit_context(slot).map(Box::new))
            .as_deref()
    }

    fn build_unit_context(&self, slot: &UnitSlot) -> Option<Addr2line> {
        let unit = slot.offset;
        let header = gimli::DebugInfo::from(self.debug_info.clone())
            .header_from_offset(gimli::DebugInfoOffset(unit))
            .ok()?;
        let length = header.length_including_self();
        let abbrev = skipped_to(
            self.section(SectionId::DebugAbbrev),
            header.debug_abbrev_offset().0,
        )?;
        if may_refer_to_other_units(abbrev).unwrap_or(true) {
            return None;
        }
        let view = sparse_view(&self.debug_info, &[(unit, length)])?;
        // Only the unit's own arange set: addr2line reads every set it is given, and there are
        // as many as units.
        let mut aranges = self.section(SectionId::DebugAranges);
        if aranges.skip(slot.aranges.start).is_err()
            || aranges.truncate(slot.aranges.len()).is_err()
        {
            aranges = emptied(aranges);
        }
        let dwarf = self.dwarf_with(Reader::new(view, self.endian), aranges);
        Addr2line::from_dwarf(dwarf).ok()
    }

    fn whole(&self) -> Result<&Addr2line, String> {
        self.whole
            .get_or_init(|| {
                let aranges = self.section(SectionId::DebugAranges);
                Addr2line::from_dwarf(self.dwarf_with(self.debug_info.clone(), aranges))
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    fn section(&self, id: SectionId) -> Reader {
        self.sections
            .iter()
            .find(|(s, _)| *s == id)
            .map_or_else(|| emptied(self.debug_info.clone()), |(_, r)| r.clone())
    }

    fn dwarf_with(&self, debug_info: Reader, debug_aranges: Reader) -> gimli::Dwarf<Reader> {
        let empty = emptied(self.debug_info.clone());
        let loaded: Result<_, std::convert::Infallible> = gimli::Dwarf::load(|id| {
            Ok(match id {
                SectionId::DebugInfo => debug_info.clone(),
                SectionId::DebugAranges => debug_aranges.clone(),
                _ if NEEDED.contains(&id) => self.section(id),
                _ => empty.clone(),
            })
        });
        match loaded {
            Ok(dwarf) => dwarf,
            Err(never) => match never {},
        }
    }

    /// The unit of code at `svma`, for readers of DWARF beyond lines and names (call sites).
    pub(crate) fn find_dwarf_and_unit(&self, svma: u64) -> Option<gimli::UnitRef<'_, Reader>> {
        self.contexts_for(svma)
            .ok()?
            .into_iter()
            .find_map(|context| context.find_dwarf_and_unit(svma).skip_all_loads())
    }
}

/// `reader` with no bytes left, for sections the file lacks.
fn emptied(mut reader: Reader) -> Reader {
    reader.truncate(0).ok();
    reader
}

/// `reader` moved on to `offset`, if that lies inside it.
fn skipped_to(mut reader: Reader, offset: usize) -> Option<Reader> {
    gimli::Reader::skip(&mut reader, offset).ok()?;
    Some(reader)
}

/// Whether an abbreviation table (read from its start) has a form that can point into another
/// unit: `DW_FORM_ref_addr`, or `DW_FORM_indirect`, which can be anything.
fn may_refer_to_other_units(mut table: Reader) -> gimli::Result<bool> {
    loop {
        if table.read_uleb128()? == 0 {
            return Ok(false); // the end of the table
        }
        table.read_uleb128()?; // tag
        table.read_u8()?; // has children
        loop {
            let name = table.read_uleb128()?;
            let form = table.read_uleb128()?;
            if name == 0 && form == 0 {
                break;
            }
            match gimli::DwForm(u16::try_from(form).unwrap_or(u16::MAX)) {
                gimli::DW_FORM_ref_addr | gimli::DW_FORM_indirect => return Ok(true),
                gimli::DW_FORM_implicit_const => {
                    table.read_sleb128()?;
                }
                _ => {}
            }
        }
    }
}

/// A copy of `.debug_info` that holds only `units` (offset, length), each at its own offset.
/// Each gap becomes one type unit that addr2line skips unread; a gap too small for that
/// header is copied as it is (it is whole units too, only tiny ones). The copy is an
/// anonymous map: the pages of the gaps are never touched and cost nothing.
fn sparse_view(debug_info: &Reader, units: &[(usize, usize)]) -> Option<SectionBytes> {
    let section: &[u8] = debug_info.bytes();
    let size = units
        .iter()
        .map(|&(offset, length)| offset.checked_add(length))
        .try_fold(0usize, |end, unit_end| Some(end.max(unit_end?)))?;
    if size == 0 || size > section.len() {
        return None;
    }
    let mut view = memmap2::MmapMut::map_anon(size).ok()?;
    let mut at = 0usize;
    for &(offset, length) in units {
        let gap = offset.checked_sub(at)?;
        if gap > 0 {
            write_skip_unit(
                view.get_mut(at..offset)?,
                section.get(at..offset)?,
                debug_info.endian(),
            )?;
        }
        let end = offset.checked_add(length)?;
        view.get_mut(offset..end)?
            .copy_from_slice(section.get(offset..end)?);
        at = end;
    }
    let view = view.make_read_only().ok()?;
    Some(SectionBytes {
        owner: Arc::new(view),
        range: 0..size,
    })
}

/// Fills `gap` with one DWARF 5 type unit spanning all of it, or with `original` (the units
/// really there) when the gap is too small for the header.
fn write_skip_unit(gap: &mut [u8], original: &[u8], endian: gimli::RunTimeEndian) -> Option<()> {
    use gimli::Endianity as _;
    let big = endian.is_big_endian();
    let put = |value: u64, width: usize| -> Vec<u8> {
        let bytes = if big {
            value.to_be_bytes()
        } else {
            value.to_le_bytes()
        };
        if big {
            bytes.get(8 - width..).unwrap_or(&[]).to_vec()
        } else {
            bytes.get(..width).unwrap_or(&[]).to_vec()
        }
    };
    let length = gap.len();
    let header: Vec<u8> = if length < SKIP_UNIT_32 {
        gap.copy_from_slice(original.get(..length)?);
        return Some(());
    } else if length - 4 < 0xffff_fff0 {
        [
            put((length - 4) as u64, 4),
            put(5, 2),
            vec![gimli::DW_UT_type.0, 8],
            put(0, 4),
            put(0, 8),
            put(0, 4),
        ]
        .concat()
    } else {
        // Past what a 32-bit length can say (and so far longer than SKIP_UNIT_64).
        [
            put(0xffff_ffff, 4),
            put((length - 12) as u64, 8),
            put(5, 2),
            vec![gimli::DW_UT_type.0, 8],
            put(0, 8),
            put(0, 8),
            put(0, 8),
        ]
        .concat()
    };
    gap.get_mut(..header.len())?.copy_from_slice(&header);
    Some(())
}

/// The frames DWARF knows at `svma`, innermost first, and the error that cut the list short,
/// if any.
pub(crate) fn find_frames(context: &DwarfContext, svma: u64) -> (Vec<SourceFrame>, Option<String>) {
    let contexts = match context.contexts_for(svma) {
        Ok(contexts) => contexts,
        Err(e) => return (Vec::new(), Some(e)),
    };
    // As addr2line does over overlapping units: the first unit that knows the address wins.
    for unit in contexts {
        let (frames, error) = frames_in(unit, svma);
        if !frames.is_empty() || error.is_some() {
            return (frames, error);
        }
    }
    (Vec::new(), None)
}

fn frames_in(context: &Addr2line, svma: u64) -> (Vec<SourceFrame>, Option<String>) {
    let mut frames = Vec::new();
    let mut iter = match context.find_frames(svma).skip_all_loads() {
        Ok(iter) => iter,
        Err(e) => return (frames, Some(e.to_string())),
    };
    let mut error = None;
    loop {
        match iter.next() {
            Ok(Some(frame)) => {
                let (function, mangled) = match &frame.function {
                    // One demangler for DWARF and symbol-table names, so a function is named
                    // the same whichever source knew it.
                    Some(name) => {
                        let raw = name.raw_name().ok().map(|n| n.into_owned());
                        (raw.as_deref().map(crate::symtab::demangle), raw)
                    }
                    None => (None, None),
                };
                let location = frame.location.as_ref();
                frames.push(SourceFrame {
                    function,
                    mangled,
                    symbol_offset: None,
                    file: location.and_then(|l| l.file).map(str::to_string),
                    line: location.and_then(|l| l.line).filter(|&n| n != 0),
                    column: location.and_then(|l| l.column).filter(|&n| n != 0),
                    inlined: true,
                });
            }
            Ok(None) => break,
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    if let Some(outermost) = frames.last_mut() {
        outermost.inlined = false;
    }
    (frames, error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn le_reader(bytes: Vec<u8>) -> Reader {
        let range = 0..bytes.len();
        Reader::new(
            SectionBytes {
                owner: Arc::new(bytes),
                range,
            },
            gimli::RunTimeEndian::Little,
        )
    }

    /// A DWARF 4 compile unit of `total` bytes (length field included) with no DIEs.
    fn unit_bytes(total: usize, fill: u8) -> Vec<u8> {
        let mut bytes = ((total - 4) as u32).to_le_bytes().to_vec();
        bytes.extend_from_slice(&4u16.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.push(8);
        bytes.resize(total, fill);
        bytes
    }

    #[test]
    fn a_sparse_view_keeps_offsets_and_skips_the_rest() {
        // Units at 0 (100 bytes), 100 (11 bytes: a gap too small for a skip header), 111
        // (200 bytes) and 311 (50 bytes); keep the last one only, then the second and last.
        let mut section = unit_bytes(100, 0xa1);
        section.extend(unit_bytes(11, 0xa2));
        section.extend(unit_bytes(200, 0xa3));
        section.extend(unit_bytes(50, 0xa4));
        let reader = le_reader(section.clone());
        let headers = |view: SectionBytes| {
            let info = gimli::DebugInfo::from(Reader::new(view, gimli::RunTimeEndian::Little));
            let mut units = info.units();
            let mut seen = Vec::new();
            while let Some(header) = units.next().expect("the view parses") {
                let is_type = matches!(header.type_(), gimli::UnitType::Type { .. });
                seen.push((header.offset().0, is_type));
            }
            seen
        };

        let view = sparse_view(&reader, &[(311, 50)]).expect("view");
        assert_eq!(view.get(311..361), section.get(311..361));
        assert_eq!(headers(view), [(0, true), (311, false)]);

        let view = sparse_view(&reader, &[(100, 11), (311, 50)]).expect("view");
        assert_eq!(
            headers(view),
            [(0, true), (100, false), (111, true), (311, false)]
        );

        // A gap of under 24 bytes is copied as the units it holds.
        let view = sparse_view(&reader, &[(0, 100), (111, 200)]).expect("view");
        assert_eq!(view.get(100..111), section.get(100..111));
        assert_eq!(headers(view), [(0, false), (100, false), (111, false)]);

        // Units that do not fit the section give no view rather than a panic.
        assert!(sparse_view(&reader, &[(311, 51)]).is_none());
        assert!(sparse_view(&reader, &[(usize::MAX, 2)]).is_none());
    }

    #[test]
    fn ref_addr_forms_are_found_in_abbreviation_tables() {
        // code 1: DW_TAG_subprogram, no children, (DW_AT_name, strp), (DW_AT_abstract_origin,
        // ref_addr); end. Then a table without it, with an implicit_const.
        let with = vec![1, 0x2e, 0, 0x03, 0x0e, 0x31, 0x10, 0, 0, 0];
        let without = vec![1, 0x2e, 0, 0x3a, 0x21, 0x7f, 0x31, 0x13, 0, 0, 0];
        assert!(may_refer_to_other_units(le_reader(with)).unwrap());
        assert!(!may_refer_to_other_units(le_reader(without)).unwrap());
        assert!(may_refer_to_other_units(le_reader(vec![1, 0x2e])).is_err());
    }

    /// The host's libc debug file (libc6-dbg), with its aranges.
    fn libc_debug_file() -> SharedBytes {
        let libc = Path::new("/lib/x86_64-linux-gnu/libc.so.6");
        let module = crate::ModuleInfo::open(libc, &crate::DebugSearch::default())
            .expect("this test needs the host's glibc");
        let debug = module
            .debug_file()
            .expect("install libc6-dbg (the corpus generator does)");
        elf::map_file(debug).expect("map the debug file")
    }

    #[test]
    fn one_unit_at_a_time_answers_as_the_whole_file_does() {
        let context = load_context(&libc_debug_file()).expect("libc's DWARF");
        assert!(context.aranges.len() > 1000, "{:?}", context);
        let whole = context.whole().expect("the whole-file context");
        let mut compared = 0;
        for arange in context.aranges.iter().step_by(7) {
            for svma in [arange.begin, arange.begin + (arange.end - arange.begin) / 2] {
                let by_unit = find_frames(&context, svma);
                assert_eq!(by_unit, frames_in(whole, svma), "at {svma:#x}");
                let unit = context
                    .find_dwarf_and_unit(svma)
                    .map(|u| u.header.offset().0);
                let whole_unit = whole
                    .find_dwarf_and_unit(svma)
                    .skip_all_loads()
                    .map(|u| u.header.offset().0);
                assert_eq!(unit, whole_unit, "at {svma:#x}");
                compared += usize::from(!by_unit.0.is_empty());
            }
        }
        assert!(compared > 500, "only {compared} addresses had frames");
        // Each unit's own arange set, as handed to its context, is exactly one whole set.
        let mut sets = 0;
        for slot in context.units.iter().filter(|u| !u.aranges.is_empty()) {
            let mut set = context.section(SectionId::DebugAranges);
            set.skip(slot.aranges.start).unwrap();
            set.truncate(slot.aranges.len()).unwrap();
            let mut headers = gimli::DebugAranges::from(set).headers();
            let header = headers.next().unwrap().expect("one set");
            assert_eq!(header.debug_info_offset().0, slot.offset);
            let mut entries = header.entries();
            while entries.next().expect("entries parse").is_some() {}
            assert!(headers.next().unwrap().is_none(), "only one set");
            sets += 1;
        }
        assert!(sets > 1000, "{sets} units have their own set");
        let built = context
            .units
            .iter()
            .filter(|u| u.context.get().is_some())
            .count();
        assert!(built > 200, "{built} units were read one by one");
        assert!(
            context
                .units
                .iter()
                .all(|u| u.context.get().is_none_or(Option::is_some)),
            "no libc unit refers to another, so none needs the whole file"
        );
    }
}
