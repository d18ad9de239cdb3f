//! DWARF line and inline information through addr2line, read straight from the mapped file
//! (or from decompressed copies of compressed sections).

use std::fmt;
use std::ops::{Deref, Range};

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
pub(crate) type DwarfContext = addr2line::Context<Reader>;

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

/// Builds the addr2line context over the DWARF of the file in `owner`. Only unit headers and
/// ranges are read now; each unit's lines and functions are parsed on first use.
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
    let dwarf = gimli::Dwarf::load(|id| -> Result<Reader, String> {
        if !NEEDED.contains(&id) {
            return Ok(empty.clone());
        }
        let section = elf::section_ref(&file, owner, id.name())
            .map_err(|e| format!("section {}: {e}", id.name()))?;
        Ok(match section {
            Some(s) => Reader::new(
                SectionBytes {
                    owner: s.owner,
                    range: s.range,
                },
                endian,
            ),
            None => empty.clone(),
        })
    })?;
    addr2line::Context::from_dwarf(dwarf).map_err(|e| e.to_string())
}

/// The frames DWARF knows at `svma`, innermost first, and the error that cut the list short,
/// if any.
pub(crate) fn find_frames(context: &DwarfContext, svma: u64) -> (Vec<SourceFrame>, Option<String>) {
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
