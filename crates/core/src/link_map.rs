//! ELF files seen through the process's memory, and the dynamic linker's list of loaded
//! modules (`r_debug.r_map` → `link_map`), for cores that do not list their mapped files.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use object::elf::{self, FileHeader64, ProgramHeader64};
use object::read::elf::{ElfFile64, FileHeader, NoteIterator, ProgramHeader};
use object::{Endianness, Object, ReadRef};

use crate::core_file::{FileRange, Warnings};
use crate::{auxv, Arch, ProcessImage};

/// More program headers than any real module has; bounds what garbage can make us read.
const MAX_PROGRAM_HEADERS: usize = 512;
/// More modules than any real process has; also ends a `link_map` list that loops.
const MAX_LINK_MAP_ENTRIES: usize = 65_536;
const MAX_DYNAMIC_ENTRIES: u64 = 4096;
const MAX_NOTE_SEGMENT: u64 = 64 * 1024;
const MAX_PATH: usize = 4096;

/// The program-header fields this crate uses.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Phdr {
    pub p_type: elf::ProgramType,
    pub flags: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub align: u64,
}

impl Phdr {
    fn from_raw(raw: &ProgramHeader64<Endianness>, endian: Endianness) -> Phdr {
        Phdr {
            p_type: raw.p_type(endian),
            flags: raw.p_flags(endian).0,
            offset: raw.p_offset(endian),
            vaddr: raw.p_vaddr(endian),
            filesz: raw.p_filesz(endian),
            memsz: raw.p_memsz(endian),
            align: raw.p_align(endian),
        }
    }
}

/// An ELF header and program headers read from the process's memory.
struct ElfInMemory {
    endian: Endianness,
    phdrs: Vec<Phdr>,
    section_table_end: Option<u64>,
}

fn read_elf_in_memory(read: &impl Fn(u64, &mut [u8]) -> bool, base: u64) -> Option<ElfInMemory> {
    let mut header_bytes = [0u8; std::mem::size_of::<FileHeader64<Endianness>>()];
    if !read(base, &mut header_bytes) {
        return None;
    }
    let header = FileHeader64::<Endianness>::parse(&header_bytes[..]).ok()?;
    let endian = header.endian().ok()?;
    let entry_size = std::mem::size_of::<ProgramHeader64<Endianness>>();
    if usize::from(header.e_phentsize(endian)) != entry_size {
        return None;
    }
    let count = usize::from(header.e_phnum(endian)).min(MAX_PROGRAM_HEADERS);
    let mut table = vec![0u8; count * entry_size];
    if !read(base.checked_add(header.e_phoff(endian))?, &mut table) {
        return None;
    }
    let raw: &[ProgramHeader64<Endianness>] = table.as_slice().read_slice_at(0, count).ok()?;
    let section_table_end = header
        .e_shoff(endian)
        .checked_add(u64::from(header.e_shnum(endian)) * u64::from(header.e_shentsize(endian)));
    Some(ElfInMemory {
        endian,
        phdrs: raw.iter().map(|p| Phdr::from_raw(p, endian)).collect(),
        section_table_end,
    })
}

/// `avma - svma` for a module whose ELF header (file offset 0) is at `base`.
fn bias_from_base(phdrs: &[Phdr], base: u64) -> Option<u64> {
    let mut loads = phdrs.iter().filter(|p| p.p_type == elf::PT_LOAD);
    let first = loads
        .clone()
        .find(|p| p.offset == 0)
        .or_else(|| loads.next())?;
    Some(base.wrapping_sub(first.vaddr.wrapping_sub(first.offset)))
}

pub(crate) fn build_id_in_memory(
    read: impl Fn(u64, &mut [u8]) -> bool,
    _big_endian: bool,
    module_base: u64,
) -> Option<Vec<u8>> {
    let elf = read_elf_in_memory(&read, module_base)?;
    let bias = bias_from_base(&elf.phdrs, module_base)?;
    for phdr in elf.phdrs.iter().filter(|p| p.p_type == elf::PT_NOTE) {
        if phdr.filesz == 0 || phdr.filesz > MAX_NOTE_SEGMENT {
            continue;
        }
        let mut notes = vec![0u8; phdr.filesz as usize];
        if !read(bias.wrapping_add(phdr.vaddr), &mut notes) {
            continue;
        }
        let Ok(mut iterator) =
            NoteIterator::<FileHeader64<Endianness>>::new(elf.endian, phdr.align, &notes)
        else {
            continue;
        };
        while let Ok(Some(note)) = iterator.next() {
            if note.name() == elf::ELF_NOTE_GNU && note.n_type(elf.endian) == elf::NT_GNU_BUILD_ID {
                return Some(note.desc().to_vec());
            }
        }
    }
    None
}

/// How many bytes an ELF image mapped at `base` spans in its file: up to the end of its
/// section headers or of its last segment's data, whichever is further.
pub(crate) fn elf_image_size(
    read: impl Fn(u64, &mut [u8]) -> bool,
    _big_endian: bool,
    base: u64,
) -> Option<u64> {
    let elf = read_elf_in_memory(&read, base)?;
    let mut size = elf.section_table_end?;
    for phdr in elf.phdrs.iter().filter(|p| p.p_type == elf::PT_LOAD) {
        size = size.max(phdr.offset.checked_add(phdr.filesz)?);
    }
    Some(size)
}

/// An ELF file on disk, as far as mapping it goes.
pub(crate) struct ElfOnDisk {
    pub path: PathBuf,
    pub machine: u16,
    pub entry: u64,
    pub phdrs: Vec<Phdr>,
    pub interpreter: Option<String>,
    pub build_id: Option<Vec<u8>>,
}

pub(crate) fn read_elf_on_disk(path: PathBuf) -> Result<ElfOnDisk, String> {
    let file = File::open(&path).map_err(|e| e.to_string())?;
    // SAFETY: read-only mapping of a file we only parse.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| e.to_string())?;
    let data: &[u8] = &map;
    let header = FileHeader64::<Endianness>::parse(data)
        .map_err(|_| "it is not a 64-bit ELF file".to_string())?;
    let endian = header
        .endian()
        .map_err(|_| "its byte order is unknown".to_string())?;
    let raw = header
        .program_headers(endian, data)
        .map_err(|_| "its program headers cannot be read".to_string())?;
    let interpreter = raw
        .iter()
        .find_map(|p| p.interpreter(endian, data).ok().flatten())
        .map(|bytes| String::from_utf8_lossy(bytes).into_owned());
    let build_id = ElfFile64::<Endianness>::parse(data)
        .ok()
        .and_then(|f| f.build_id().ok().flatten().map(<[u8]>::to_vec));
    Ok(ElfOnDisk {
        machine: header.e_machine(endian).0,
        entry: header.e_entry(endian),
        phdrs: raw.iter().map(|p| Phdr::from_raw(p, endian)).collect(),
        interpreter,
        build_id,
        path,
    })
}

fn machine_of(arch: Arch) -> u16 {
    match arch {
        Arch::X86_64 => elf::EM_X86_64.0,
        Arch::Aarch64 => elf::EM_AARCH64.0,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn page_size(image: &ProcessImage) -> u64 {
    image
        .auxv_value(auxv::AT_PAGESZ)
        .filter(|p| p.is_power_of_two() && (4096..=1 << 20).contains(p))
        .unwrap_or(4096)
}

/// The ranges a module's `PT_LOAD` segments occupy once loaded with `bias`, page-aligned as the
/// dynamic linker maps them (a page two segments share goes to the first).
fn module_ranges(phdrs: &[Phdr], bias: u64, page: u64, path: &str) -> Vec<FileRange> {
    let mut ranges: Vec<FileRange> = Vec::new();
    for phdr in phdrs
        .iter()
        .filter(|p| p.p_type == elf::PT_LOAD && p.filesz > 0)
    {
        let address = bias.wrapping_add(phdr.vaddr);
        // Only the part backed by the file: the rest (.bss) is anonymous memory.
        let Some(end) = address
            .checked_add(phdr.filesz.min(phdr.memsz))
            .and_then(|e| e.checked_add(page - 1))
            .map(|e| e & !(page - 1))
        else {
            continue;
        };
        let mut start = address & !(page - 1);
        let mut file_offset = phdr.offset & !(page - 1);
        if let Some(previous) = ranges.last() {
            if start < previous.end {
                file_offset = file_offset.saturating_add(previous.end - start);
                start = previous.end;
            }
        }
        if start < end {
            ranges.push(FileRange {
                start,
                end,
                file_offset,
                path: path.to_string(),
                flags: Some(phdr.flags),
            });
        }
    }
    ranges
}

/// Opens a module the core names, under the sysroot; says why not in a warning.
fn open_module(
    image: &ProcessImage,
    name: &str,
    core_directory: Option<&Path>,
    warnings: &mut Warnings,
) -> Option<ElfOnDisk> {
    let mut candidates = vec![image.resolve_path(name)];
    if !name.starts_with('/') {
        candidates.extend(core_directory.map(|dir| dir.join(name)));
        candidates.push(PathBuf::from(name));
    }
    let mut failure = String::new();
    for candidate in candidates {
        match read_elf_on_disk(candidate.clone()) {
            Ok(module) if module.machine == machine_of(image.arch) => return Some(module),
            Ok(module) => {
                failure = format!(
                    "{} is for another architecture (e_machine {}); is the sysroot right?",
                    candidate.display(),
                    module.machine
                );
            }
            Err(error) => failure = format!("{}: {error}", candidate.display()),
        }
    }
    warnings.push(format!(
        "The module {name} cannot be read ({failure}), so its mapping is unknown."
    ));
    None
}

/// The executable's program headers as the process had them (`AT_PHDR`), when the core kept
/// that page.
fn executable_phdrs_in_memory(image: &ProcessImage) -> Option<Vec<Phdr>> {
    let address = image.auxv_value(auxv::AT_PHDR)?;
    let entry_size = std::mem::size_of::<ProgramHeader64<Endianness>>();
    if image.auxv_value(auxv::AT_PHENT)? != entry_size as u64 {
        return None;
    }
    let count = (image.auxv_value(auxv::AT_PHNUM)? as usize).min(MAX_PROGRAM_HEADERS);
    let mut table = vec![0u8; count * entry_size];
    if !image.read_memory_dumped(address, &mut table) {
        return None;
    }
    let endian = if image.big_endian {
        Endianness::Big
    } else {
        Endianness::Little
    };
    let raw: &[ProgramHeader64<Endianness>] = table.as_slice().read_slice_at(0, count).ok()?;
    Some(raw.iter().map(|p| Phdr::from_raw(p, endian)).collect())
}

/// Rebuilds the file-backed ranges from the executable's program headers, its dynamic
/// section's `DT_DEBUG` → `r_debug` → `link_map` list, `AT_BASE` (the dynamic linker) and the
/// files on disk. Uses only memory the core holds (the file backing does not exist yet).
pub(crate) fn rebuild_from_link_map(
    image: &ProcessImage,
    core_directory: Option<&Path>,
    warnings: &mut Warnings,
) -> (Vec<FileRange>, Option<PathBuf>) {
    let Some(exe_name) = image.process.executable_path.clone() else {
        warnings.push(
            "The core has no NT_FILE note and does not name its executable; pass the executable to find the loaded modules."
                .into(),
        );
        return (Vec::new(), None);
    };
    let exe_on_disk = open_module(image, &exe_name, core_directory, warnings);
    let ranges = rebuild_with_executable(image, &exe_name, exe_on_disk.as_ref(), warnings);
    (ranges, exe_on_disk.map(|e| e.path))
}

fn rebuild_with_executable(
    image: &ProcessImage,
    exe_name: &str,
    exe_on_disk: Option<&ElfOnDisk>,
    warnings: &mut Warnings,
) -> Vec<FileRange> {
    let page = page_size(image);
    let mut ranges = Vec::new();
    let Some(phdrs) =
        executable_phdrs_in_memory(image).or_else(|| exe_on_disk.map(|e| e.phdrs.clone()))
    else {
        return ranges;
    };

    let at_entry = image.auxv_value(auxv::AT_ENTRY);
    let from_phdr = phdrs
        .iter()
        .find(|p| p.p_type == elf::PT_PHDR)
        .zip(image.auxv_value(auxv::AT_PHDR))
        .map(|(p, at_phdr)| at_phdr.wrapping_sub(p.vaddr));
    let from_entry = exe_on_disk
        .zip(at_entry)
        .map(|(exe, at_entry)| at_entry.wrapping_sub(exe.entry));
    let Some(bias) = from_phdr.or(from_entry) else {
        warnings.push(format!(
            "Where the executable {exe_name} was loaded cannot be told (no PT_PHDR, no AT_ENTRY)."
        ));
        return ranges;
    };
    if let (Some(exe), Some(at_entry)) = (exe_on_disk, at_entry) {
        if exe.entry.wrapping_add(bias) != at_entry {
            warnings.push(format!(
                "The executable {} does not match the core: its entry point would be {:#x}, the core's AT_ENTRY is {at_entry:#x}.",
                exe.path.display(),
                exe.entry.wrapping_add(bias)
            ));
        }
    }
    ranges.extend(module_ranges(&phdrs, bias, page, exe_name));

    let mut interpreter = exe_on_disk.and_then(|e| e.interpreter.clone());
    if interpreter.is_none() {
        interpreter = phdrs
            .iter()
            .find(|p| p.p_type == elf::PT_INTERP)
            .and_then(|p| image.read_c_string(bias.wrapping_add(p.vaddr), MAX_PATH));
    }

    if let Some(dynamic) = phdrs.iter().find(|p| p.p_type == elf::PT_DYNAMIC) {
        walk_link_map(
            image,
            bias.wrapping_add(dynamic.vaddr),
            dynamic.memsz,
            page,
            &mut ranges,
            warnings,
        );
    }

    // The dynamic linker is in the list too, but only once it has set itself up.
    let at_base = image.auxv_value(auxv::AT_BASE).filter(|&b| b != 0);
    if let (Some(base), Some(name)) = (at_base, interpreter) {
        if !ranges.iter().any(|r| r.start <= base && base < r.end) {
            if let Some(module) = open_module(image, &name, None, warnings) {
                ranges.extend(module_ranges(&module.phdrs, base, page, &name));
            }
        }
    }
    ranges
}

fn walk_link_map(
    image: &ProcessImage,
    dynamic_address: u64,
    dynamic_size: u64,
    page: u64,
    ranges: &mut Vec<FileRange>,
    warnings: &mut Warnings,
) {
    const DT_NULL: u64 = 0;
    const DT_DEBUG: u64 = 21;
    let mut r_debug = None;
    for index in 0..(dynamic_size / 16).min(MAX_DYNAMIC_ENTRIES) {
        let entry = dynamic_address.wrapping_add(index * 16);
        let (Some(tag), Some(value)) =
            (image.read_u64(entry), image.read_u64(entry.wrapping_add(8)))
        else {
            warnings.push(format!(
                "The executable's dynamic section at {dynamic_address:#x} is not in the core."
            ));
            return;
        };
        match tag {
            DT_NULL => break,
            DT_DEBUG => r_debug = Some(value),
            _ => {}
        }
    }
    let Some(r_debug) = r_debug.filter(|&r| r != 0) else {
        warnings.push(
            "DT_DEBUG is not set (a static program, or the dynamic linker had not run yet), so only the executable's mappings are known."
                .into(),
        );
        return;
    };
    // struct r_debug { int r_version; struct link_map *r_map; ... }
    let Some(mut node) = image.read_u64(r_debug.wrapping_add(8)) else {
        warnings.push(format!("r_debug at {r_debug:#x} is not in the core."));
        return;
    };
    let vdso = image.vdso_base();
    let mut seen = HashSet::new();
    let mut first = true;
    while node != 0 && seen.len() < MAX_LINK_MAP_ENTRIES && seen.insert(node) {
        // struct link_map { l_addr; char *l_name; l_ld; l_next; l_prev; }
        let (Some(l_addr), Some(l_name), Some(l_ld), Some(l_next)) = (
            image.read_u64(node),
            image.read_u64(node.wrapping_add(8)),
            image.read_u64(node.wrapping_add(16)),
            image.read_u64(node.wrapping_add(24)),
        ) else {
            warnings.push(format!(
                "The link_map entry at {node:#x} is not in the core; the modules after it are unknown."
            ));
            return;
        };
        let name = if l_name == 0 {
            String::new()
        } else {
            image.read_c_string(l_name, MAX_PATH).unwrap_or_default()
        };
        let is_executable = first && name.is_empty();
        first = false;
        let is_vdso = name.starts_with("linux-vdso")
            || name.starts_with("linux-gate")
            || vdso.is_some_and(|v| l_ld >= v && l_ld - v < 1 << 20 && !name.starts_with('/'));
        if !name.is_empty() && !is_executable && !is_vdso {
            if let Some(module) = open_module(image, &name, None, warnings) {
                ranges.extend(module_ranges(&module.phdrs, l_addr, page, &name));
            }
        }
        node = l_next;
    }
}

/// Compares the caller's executable with what the core holds of it.
pub(crate) fn check_executable_matches(image: &ProcessImage, warnings: &mut Warnings) {
    let Some(path) = image.executable_override.clone() else {
        return;
    };
    let exe = match read_elf_on_disk(path.clone()) {
        Ok(exe) => exe,
        Err(error) => {
            warnings.push(format!(
                "The executable {} cannot be read: {error}.",
                path.display()
            ));
            return;
        }
    };
    if exe.machine != machine_of(image.arch) {
        warnings.push(format!(
            "The executable {} is for another architecture (e_machine {}) than the core.",
            path.display(),
            exe.machine
        ));
        return;
    }
    let base = image.mappings.iter().find(|m| {
        m.file_offset == 0 && m.path.is_some() && m.path == image.process.executable_path
    });
    let Some(base) = base.map(|m| m.start) else {
        return;
    };
    if let (Some(in_memory), Some(on_disk)) = (image.build_id_in_memory(base), &exe.build_id) {
        if &in_memory != on_disk {
            warnings.push(format!(
                "The executable {} does not match the core: its build-id is {}, the core's is {}.",
                path.display(),
                hex(on_disk),
                hex(&in_memory)
            ));
        }
        return;
    }
    // The core did not keep the ELF header: the entry point is all there is to compare.
    let expected_entry = bias_from_base(&exe.phdrs, base).map(|bias| exe.entry.wrapping_add(bias));
    if let (Some(expected), Some(at_entry)) = (expected_entry, image.auxv_value(auxv::AT_ENTRY)) {
        if expected != at_entry && image.process.executable_path.is_some() {
            warnings.push(format!(
                "The executable {} does not match the core: its entry point would be {expected:#x}, the core's AT_ENTRY is {at_entry:#x}.",
                path.display()
            ));
        }
    }
}
