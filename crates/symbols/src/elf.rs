//! Reading what a module needs from its ELF headers, and handing out section bytes.

use std::fs::File;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use object::elf::{PF_X, PT_GNU_EH_FRAME, PT_LOAD, SHF_ALLOC, SHF_EXECINSTR};
use object::read::elf::{FileHeader, ProgramHeader};
use object::{CompressionFormat, Object, ObjectSection, SectionFlags};

use crate::cache::{self, SectionCache, SectionKey};
use crate::{SectionRef, SharedBytes, UnwindSections};

/// Decompressed sections larger than this are refused: the size comes from the file and
/// would otherwise be trusted blindly. Real DWARF sections stay far below.
const MAX_DECOMPRESSED: u64 = 4 << 30;
/// zlib cannot compress better than about 1032:1; zstd can, but DWARF never comes close.
const MAX_RATIO: u64 = 2048;

#[derive(Clone, Copy, Debug)]
pub(crate) struct LoadSegment {
    pub vaddr: u64,
    pub memsz: u64,
    pub offset: u64,
    pub filesz: u64,
    pub align: u64,
    pub flags: u32,
}

/// Everything read from an ELF file's headers when a module is opened.
pub(crate) struct ElfFacts {
    pub build_id: Option<Vec<u8>>,
    pub e_machine: u16,
    pub loads: Vec<LoadSegment>,
    pub unwind: UnwindSections,
    pub has_debug_info: bool,
    pub has_symbols: bool,
    pub debuglink: Option<(Vec<u8>, u32)>,
}

/// Maps a whole file read-only.
pub(crate) fn map_file(path: &Path) -> std::io::Result<Arc<memmap2::Mmap>> {
    let file = File::open(path)?;
    // SAFETY: the map is read-only and private. Another process truncating the file while it
    // is mapped would make reads fault; every symbolizer that maps files accepts that risk,
    // and copying whole debug files into memory instead would cost hundreds of megabytes.
    let map = unsafe { memmap2::Mmap::map(&file)? };
    Ok(Arc::new(map))
}

pub(crate) fn bytes_of(owner: &SharedBytes) -> &[u8] {
    let owner: &(dyn AsRef<[u8]> + Send + Sync) = &**owner;
    owner.as_ref()
}

/// Parses an ELF file (any class, either byte order); other formats are refused.
pub(crate) fn parse(data: &[u8]) -> Result<object::File<'_>, String> {
    let file = object::File::parse(data).map_err(|e| e.to_string())?;
    match file {
        object::File::Elf32(_) | object::File::Elf64(_) => Ok(file),
        _ => Err(format!("it is {:?}, not ELF", file.format())),
    }
}

pub(crate) fn read_facts(
    bytes: &SharedBytes,
    warnings: &mut Vec<String>,
) -> Result<ElfFacts, String> {
    let data = bytes_of(bytes);
    let file = parse(data)?;
    let (e_machine, headers) = match &file {
        object::File::Elf32(elf) => (
            elf.elf_header().e_machine(elf.endian()).0,
            program_headers(elf),
        ),
        object::File::Elf64(elf) => (
            elf.elf_header().e_machine(elf.endian()).0,
            program_headers(elf),
        ),
        _ => return Err("not ELF".to_string()),
    };
    let loads: Vec<LoadSegment> = headers
        .iter()
        .filter(|h| h.kind == PT_LOAD.0)
        .map(|h| h.segment)
        .collect();

    let build_id = match file.build_id() {
        Ok(id) => id.filter(|id| !id.is_empty()).map(<[u8]>::to_vec),
        Err(e) => {
            warnings.push(format!("unreadable build-id note: {e}"));
            None
        }
    };
    let debuglink = match file.gnu_debuglink() {
        Ok(link) => link.map(|(name, crc)| (name.to_vec(), crc)),
        Err(e) => {
            warnings.push(format!("unreadable .gnu_debuglink: {e}"));
            None
        }
    };

    let mut section = |name: &str| match section_ref(&file, bytes, name) {
        Ok(section) => section,
        Err(e) => {
            warnings.push(format!("section {name} unreadable: {e}"));
            None
        }
    };
    let eh_frame = section(".eh_frame");
    let eh_frame_hdr = section(".eh_frame_hdr");
    let debug_frame = section(".debug_frame");
    let mut unwind = UnwindSections {
        eh_frame,
        eh_frame_hdr,
        debug_frame,
        text_svma_ranges: text_ranges(&file, &loads),
    };
    if unwind.eh_frame_hdr.is_none() {
        // Without section headers (stripped to the bone, or a partial in-memory image) the
        // program headers still say where the lookup table is.
        unwind.eh_frame_hdr = headers
            .iter()
            .find(|h| h.kind == PT_GNU_EH_FRAME.0)
            .and_then(|h| segment_ref(bytes, &h.segment));
    }
    if unwind.eh_frame.is_none() {
        unwind.eh_frame = unwind.eh_frame_hdr.as_ref().and_then(|hdr| {
            eh_frame_from_hdr(hdr, &loads, bytes, file.is_little_endian(), file.is_64())
        });
    }

    Ok(ElfFacts {
        build_id,
        e_machine,
        loads,
        unwind,
        has_debug_info: has_contents(&file, ".debug_info"),
        has_symbols: file.symbol_table().is_some() || file.dynamic_symbol_table().is_some(),
        debuglink,
    })
}

struct Header {
    kind: u32,
    segment: LoadSegment,
}

fn program_headers<Elf: FileHeader<Endian = object::Endianness>>(
    elf: &object::read::elf::ElfFile<'_, Elf>,
) -> Vec<Header> {
    let endian = elf.endian();
    elf.elf_program_headers()
        .iter()
        .map(|h| Header {
            kind: h.p_type(endian).0,
            segment: LoadSegment {
                vaddr: h.p_vaddr(endian).into(),
                memsz: h.p_memsz(endian).into(),
                offset: h.p_offset(endian).into(),
                filesz: h.p_filesz(endian).into(),
                align: h.p_align(endian).into(),
                flags: h.p_flags(endian).0,
            },
        })
        .collect()
}

/// Whether a section exists with bytes in this file (debug files keep `.text` etc. as
/// `NOBITS`; stripped files have no `.debug_*` at all).
pub(crate) fn has_contents(file: &object::File<'_>, name: &str) -> bool {
    file.section_by_name(name)
        .is_some_and(|s| s.file_range().is_some_and(|(_, size)| size > 0))
}

/// The bytes of a named section: a range of the mapped file, or a decompressed copy when the
/// section is compressed (`SHF_COMPRESSED` zlib/zstd, or GNU `.zdebug_*`).
pub(crate) fn section_ref(
    file: &object::File<'_>,
    owner: &SharedBytes,
    name: &str,
) -> Result<Option<SectionRef>, String> {
    let Some(section) = file.section_by_name(name) else {
        return Ok(None);
    };
    if section.file_range().is_none() {
        return Ok(None); // NOBITS: the bytes are in the other file
    }
    let svma = section.address();
    let compressed = section.compressed_file_range().map_err(|e| e.to_string())?;
    if compressed.format == CompressionFormat::None {
        let range = file_range(owner, compressed.offset, compressed.compressed_size)
            .ok_or("its file range lies outside the file")?;
        return Ok(Some(SectionRef {
            svma,
            owner: owner.clone(),
            range,
        }));
    }
    let limit = compressed
        .compressed_size
        .saturating_mul(MAX_RATIO)
        .min(MAX_DECOMPRESSED);
    if compressed.uncompressed_size > limit {
        return Err(format!(
            "it claims to decompress to {} bytes from {}",
            compressed.uncompressed_size, compressed.compressed_size
        ));
    }
    let cache = (compressed.uncompressed_size >= cache::MIN_CACHED_SIZE)
        .then(SectionCache::from_env)
        .flatten();
    let build_id = file.build_id().ok().flatten().unwrap_or(&[]);
    let stream = file_range(owner, compressed.offset, compressed.compressed_size)
        .and_then(|range| bytes_of(owner).get(range))
        .unwrap_or(&[]);
    let key = SectionKey {
        build_id,
        name,
        compressed_offset: compressed.offset,
        compressed: stream,
        format: match compressed.format {
            CompressionFormat::Zlib => 1,
            CompressionFormat::Zstandard => 2,
            _ => 0,
        },
        size: compressed.uncompressed_size,
    };
    if let Some((owner, range)) = cache.as_ref().and_then(|c| c.load(&key)) {
        return Ok(Some(SectionRef { svma, owner, range }));
    }
    let data = section
        .compressed_data()
        .and_then(|c| c.decompress())
        .map_err(|e| format!("decompression failed: {e}"))?
        .into_owned();
    // The cached file replaces the inflated copy: its pages are only read in as the DWARF
    // reader touches them, where the copy would stay resident in full.
    if let Some((owner, range)) = cache.as_ref().and_then(|c| c.store(&key, &data)) {
        return Ok(Some(SectionRef { svma, owner, range }));
    }
    let range = 0..data.len();
    Ok(Some(SectionRef {
        svma,
        owner: Arc::new(data),
        range,
    }))
}

fn file_range(owner: &SharedBytes, offset: u64, size: u64) -> Option<Range<usize>> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(size).ok()?)?;
    (end <= bytes_of(owner).len()).then_some(start..end)
}

fn segment_ref(owner: &SharedBytes, segment: &LoadSegment) -> Option<SectionRef> {
    let range = file_range(owner, segment.offset, segment.filesz)?;
    Some(SectionRef {
        svma: segment.vaddr,
        owner: owner.clone(),
        range,
    })
}

/// Finds `.eh_frame` through the pointer in `.eh_frame_hdr`; its end is unknown, so the
/// section runs to the end of the segment holding it (the terminator stops readers).
fn eh_frame_from_hdr(
    hdr: &SectionRef,
    loads: &[LoadSegment],
    owner: &SharedBytes,
    little_endian: bool,
    is_64: bool,
) -> Option<SectionRef> {
    let endian = if little_endian {
        gimli::RunTimeEndian::Little
    } else {
        gimli::RunTimeEndian::Big
    };
    let bases = gimli::BaseAddresses::default().set_eh_frame_hdr(hdr.svma);
    let parsed = gimli::EhFrameHdr::new(hdr.data(), endian)
        .parse(&bases, if is_64 { 8 } else { 4 })
        .ok()?;
    let gimli::Pointer::Direct(svma) = parsed.eh_frame_ptr() else {
        return None;
    };
    let segment = loads
        .iter()
        .find(|l| svma >= l.vaddr && svma - l.vaddr < l.filesz)?;
    let start = segment.offset.checked_add(svma - segment.vaddr)?;
    let size = segment.filesz - (svma - segment.vaddr);
    let range = file_range(owner, start, size)?;
    Some(SectionRef {
        svma,
        owner: owner.clone(),
        range,
    })
}

/// Executable code ranges: allocated `SHF_EXECINSTR` sections, else `PF_X` segments.
fn text_ranges(file: &object::File<'_>, loads: &[LoadSegment]) -> Vec<Range<u64>> {
    let mut ranges: Vec<Range<u64>> = file
        .sections()
        .filter(|s| match s.flags() {
            SectionFlags::Elf { sh_flags, .. } => {
                sh_flags.0 & SHF_EXECINSTR.0 != 0 && sh_flags.0 & SHF_ALLOC.0 != 0
            }
            _ => false,
        })
        .filter(|s| s.size() > 0)
        .map(|s| s.address()..s.address().saturating_add(s.size()))
        .collect();
    if ranges.is_empty() {
        ranges = loads
            .iter()
            .filter(|l| l.flags & PF_X.0 != 0 && l.memsz > 0)
            .map(|l| l.vaddr..l.vaddr.saturating_add(l.memsz))
            .collect();
    }
    ranges.sort_by_key(|r| r.start);
    let mut merged: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
    for range in ranges {
        match merged.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => merged.push(range),
        }
    }
    merged
}

/// Every bias that could explain a mapping of `file_offset` starting at `mapping_start`,
/// most likely first.
///
/// The kernel maps each `PT_LOAD` from its offset rounded down to a page, so the mapping that
/// starts a segment has an offset at most one alignment below `p_offset`; a mapping split
/// later (RELRO `mprotect`) starts inside a segment. When two segments share a file page (the
/// read-only data and the RELRO start of the data segment, typically), both explain it.
pub(crate) fn candidate_biases(
    loads: &[LoadSegment],
    mapping_start: u64,
    file_offset: u64,
) -> Vec<u64> {
    let bias = |segment: &LoadSegment| {
        // avma(x) = mapping_start + (x - file_offset), svma(x) = p_vaddr + (x - p_offset).
        mapping_start
            .wrapping_sub(file_offset)
            .wrapping_add(segment.offset)
            .wrapping_sub(segment.vaddr)
    };
    let mut starting_here: Vec<&LoadSegment> = loads
        .iter()
        .filter(|l| l.offset >= file_offset && l.offset - file_offset < l.align.max(4096))
        .collect();
    starting_here.sort_by_key(|l| l.offset - file_offset);
    let containing = loads
        .iter()
        .filter(|l| file_offset >= l.offset && file_offset - l.offset < l.filesz.max(1));
    let mut biases: Vec<u64> = Vec::new();
    for segment in starting_here.into_iter().chain(containing) {
        let candidate = bias(segment);
        if !biases.contains(&candidate) {
            biases.push(candidate);
        }
    }
    biases
}

/// The one bias explaining the most of a module's mappings; ties go to the order given.
pub(crate) fn bias_from_mappings(loads: &[LoadSegment], mappings: &[(u64, u64)]) -> Option<u64> {
    let mut votes: Vec<(u64, usize)> = Vec::new();
    for &(start, offset) in mappings {
        for candidate in candidate_biases(loads, start, offset) {
            match votes.iter_mut().find(|(bias, _)| *bias == candidate) {
                Some((_, count)) => *count += 1,
                None => votes.push((candidate, 1)),
            }
        }
    }
    // max_by_key keeps the last of equals; reverse so the first-seen bias wins ties.
    votes
        .iter()
        .rev()
        .max_by_key(|(_, count)| *count)
        .map(|(bias, _)| *bias)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vaddr: u64, offset: u64, filesz: u64) -> LoadSegment {
        LoadSegment {
            vaddr,
            memsz: filesz,
            offset,
            filesz,
            align: 0x1000,
            flags: 0,
        }
    }

    #[test]
    fn bias_from_a_segment_that_starts_mid_page() {
        // A typical PIE: text at offset 0x1000, data at 0x2df0 mapped from page 0x2000.
        let loads = [
            load(0, 0, 0x600),
            load(0x1000, 0x1000, 0x200),
            load(0x3df0, 0x2df0, 0x220),
        ];
        let base = 0x5555_5555_4000;
        assert_eq!(candidate_biases(&loads, base, 0), [base]);
        assert_eq!(candidate_biases(&loads, base + 0x1000, 0x1000), [base]);
        assert_eq!(candidate_biases(&loads, base + 0x3000, 0x2000), [base]);
        assert!(candidate_biases(&loads, base, 0x9000).is_empty());
    }

    #[test]
    fn a_file_page_shared_by_two_segments_is_settled_by_the_other_mappings() {
        // rodata at 0x2000 and the RELRO start of the data segment (0x2e00 -> 0x3e00) are
        // both mapped from file page 0x2000.
        let loads = [
            load(0, 0, 0x5e0),
            load(0x1000, 0x1000, 0x13d),
            load(0x2000, 0x2000, 0xdc),
            load(0x3e00, 0x2e00, 0x210),
        ];
        let base = 0x5555_5555_4000;
        let relro = (base + 0x3000, 0x2000);
        assert_eq!(
            candidate_biases(&loads, relro.0, relro.1),
            [base + 0x1000, base]
        );
        let all = [
            (base, 0),
            (base + 0x1000, 0x1000),
            (base + 0x2000, 0x2000),
            relro,
        ];
        assert_eq!(bias_from_mappings(&loads, &all), Some(base));
        assert_eq!(bias_from_mappings(&loads, &[relro]), Some(base + 0x1000));
        assert_eq!(bias_from_mappings(&loads, &[]), None);
    }
}
