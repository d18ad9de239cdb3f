//! Reading an ELF core file into a `ProcessImage`.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use object::elf::{self, FileHeader32, FileHeader64, ProgramHeader64};
use object::read::elf::{FileHeader, NoteIterator, ProgramHeader};
use object::{Endianness, ReadRef};

use crate::memory::{CoreBytes, FileBacking, MemorySource, Segment};
use crate::notes::{self, FileNoteEntry};
use crate::{
    auxv, link_map, Arch, CoreError, CoreOptions, Mapping, PacMask, ProcessImage, ProcessInfo,
    SignalInfo, ThreadState,
};

/// A flood of warnings from a garbage file helps no one.
const MAX_WARNINGS: usize = 100;

pub(crate) const PF_X: u32 = 1;
pub(crate) const PF_W: u32 = 2;
pub(crate) const PF_R: u32 = 4;

pub(crate) fn open_core(path: &Path, options: &CoreOptions) -> Result<ProcessImage, CoreError> {
    let io = |source| CoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let metadata = file.metadata().map_err(io)?;
    if metadata.is_dir() {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "it is a directory",
        )));
    }
    if metadata.len() == 0 {
        return Err(CoreError::Empty);
    }
    // coresnapd keeps cores zstd-compressed once their snapshot is made; such a core is
    // decompressed into an unlinked temporary file first, so it is read like any other.
    let file = if is_zstd(&file) { decompress_zstd(file).map_err(io)? } else { file };
    // SAFETY: read-only mapping; a core rewritten while we read it gives wrong bytes, as with
    // every other core reader.
    let map = unsafe { Mmap::map(&file) }.map_err(io)?;
    build(CoreBytes::mapped(map, file), options, path.parent())
}

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

fn is_zstd(file: &File) -> bool {
    use std::os::unix::fs::FileExt;
    let mut magic = [0u8; 4];
    file.read_exact_at(&mut magic, 0).is_ok() && magic == ZSTD_MAGIC
}

/// Decompresses every zstd frame of `file` into a temporary file that is unlinked at once (it
/// lives as long as the returned handle), in `$TMPDIR`.
fn decompress_zstd(file: File) -> std::io::Result<File> {
    use std::io::{BufRead, BufReader, Error, ErrorKind};
    use std::os::unix::fs::OpenOptionsExt;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = std::env::temp_dir().join(format!(".coresnap-core-{}-{nanos}", std::process::id()));
    let mut out = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&name)?;
    let _ = std::fs::remove_file(&name);
    let mut input = BufReader::new(file);
    while !input.fill_buf()?.is_empty() {
        let mut frame = ruzstd::decoding::StreamingDecoder::new(&mut input)
            .map_err(|e| Error::new(ErrorKind::InvalidData, format!("the zstd-compressed core is damaged: {e}")))?;
        std::io::copy(&mut frame, &mut out)
            .map_err(|e| Error::new(e.kind(), format!("the zstd-compressed core cannot be decompressed: {e}")))?;
    }
    Ok(out)
}

pub(crate) fn from_core_bytes(
    bytes: Vec<u8>,
    options: &CoreOptions,
) -> Result<ProcessImage, CoreError> {
    if bytes.is_empty() {
        return Err(CoreError::Empty);
    }
    build(CoreBytes::Owned(bytes), options, None)
}

/// What the notes said, before memory is available.
#[derive(Default)]
struct NoteContents {
    threads: Vec<ThreadState>,
    prpsinfo: Option<notes::PrPsInfo>,
    siginfo: Option<SignalInfo>,
    auxv: Option<Vec<(u64, u64)>>,
    nt_file: Option<Vec<FileNoteEntry>>,
    pac_mask: Option<PacMask>,
}

pub(crate) struct Warnings(pub Vec<String>);

impl Warnings {
    pub(crate) fn push(&mut self, warning: String) {
        if self.0.len() < MAX_WARNINGS {
            self.0.push(warning);
        } else if self.0.len() == MAX_WARNINGS {
            self.0
                .push("More problems were found; the rest are not listed.".into());
        }
    }
}

fn file_type_name(e_type: u16) -> String {
    match e_type {
        0 => "ET_NONE".into(),
        1 => "ET_REL".into(),
        2 => "ET_EXEC".into(),
        3 => "ET_DYN".into(),
        other => other.to_string(),
    }
}

/// `core_directory`: where the core file is. A relative `core_pattern` (and qemu-user) writes
/// the core into the crashing process's working directory, which is where a relative
/// `AT_EXECFN` such as `./exe` points.
fn build(
    bytes: CoreBytes,
    options: &CoreOptions,
    core_directory: Option<&Path>,
) -> Result<ProcessImage, CoreError> {
    let mut warnings = Warnings(Vec::new());
    let data = bytes.as_slice();
    if data.get(..4) != Some(&elf::ELFMAG[..]) {
        return Err(CoreError::NotElf);
    }
    let header = match data.get(4).copied() {
        Some(class) if class == elf::ELFCLASS64.0 => FileHeader64::<Endianness>::parse(data)
            .map_err(|_| {
                CoreError::BadHeader(
                    "the file ends before the header does, or the header is garbage".into(),
                )
            })?,
        Some(class) if class == elf::ELFCLASS32.0 => {
            let header = FileHeader32::<Endianness>::parse(data).map_err(|_| {
                CoreError::BadHeader(
                    "the file ends before the header does, or the header is garbage".into(),
                )
            })?;
            let endian = header
                .endian()
                .map_err(|_| CoreError::BadHeader("its byte order is unknown".into()))?;
            let e_type = header.e_type(endian);
            if e_type != elf::ET_CORE {
                return Err(CoreError::NotCore(file_type_name(e_type.0)));
            }
            return Err(CoreError::UnsupportedArch(header.e_machine(endian).0));
        }
        Some(class) => {
            return Err(CoreError::BadHeader(format!(
                "its class ({class}) is unknown"
            )));
        }
        None => return Err(CoreError::NotElf),
    };
    let endian = header
        .endian()
        .map_err(|_| CoreError::BadHeader("its byte order is unknown".into()))?;
    let big_endian = endian == Endianness::Big;
    let e_type = header.e_type(endian);
    if e_type != elf::ET_CORE {
        return Err(CoreError::NotCore(file_type_name(e_type.0)));
    }
    let arch = match header.e_machine(endian) {
        elf::EM_X86_64 => Arch::X86_64,
        elf::EM_AARCH64 => Arch::Aarch64,
        other => return Err(CoreError::UnsupportedArch(other.0)),
    };

    let program_headers = read_program_headers(header, endian, data, &mut warnings)?;

    let mut contents = NoteContents::default();
    let mut segments = Vec::new();
    let mut short_segments = 0usize;
    for phdr in program_headers {
        match phdr.p_type(endian) {
            elf::PT_NOTE => read_notes(phdr, endian, data, arch, &mut contents, &mut warnings),
            elf::PT_LOAD => {
                let start = phdr.p_vaddr(endian);
                let size = phdr.p_memsz(endian);
                let Some(end) = start.checked_add(size) else {
                    warnings.push(format!(
                        "A PT_LOAD segment at {start:#x} claims an impossible size ({size:#x})."
                    ));
                    continue;
                };
                if size == 0 {
                    continue;
                }
                let offset = phdr.p_offset(endian);
                let claimed = phdr.p_filesz(endian).min(size);
                let present = (data.len() as u64).saturating_sub(offset);
                let data_len = claimed.min(present);
                if data_len < claimed {
                    short_segments += 1;
                }
                segments.push(Segment {
                    start,
                    end,
                    data_offset: if data_len == 0 { 0 } else { offset },
                    data_len,
                    flags: phdr.p_flags(endian).0,
                });
            }
            _ => {}
        }
    }
    if short_segments > 0 {
        warnings.push(format!(
            "The core file is truncated: {short_segments} memory segments are missing some or all of their bytes."
        ));
    }
    segments.sort_by_key(|s| s.start);

    if contents.threads.is_empty() {
        return Err(CoreError::NoThreads);
    }

    let NoteContents {
        threads,
        prpsinfo,
        siginfo,
        auxv,
        nt_file,
        pac_mask,
    } = contents;

    let signal_number = siginfo
        .as_ref()
        .map(|s| s.number)
        .filter(|&n| n != 0)
        .or_else(|| threads.iter().map(|t| t.pending_signal).find(|&s| s != 0));
    let crashing_thread = signal_number
        .and_then(|n| threads.iter().position(|t| t.pending_signal == n))
        .or(Some(0));
    let signal = siginfo.or_else(|| {
        let thread = threads.get(crashing_thread?)?;
        (thread.pending_signal != 0).then_some(SignalInfo {
            number: thread.pending_signal,
            code: None,
            address: None,
            sender_pid: None,
            errno: None,
        })
    });
    if auxv.is_none() {
        warnings.push("The core has no NT_AUXV note.".into());
    }

    let pid = prpsinfo
        .as_ref()
        .map(|p| p.pid)
        .or_else(|| threads.first().map(|t| t.tid))
        .unwrap_or(0);
    let process = ProcessInfo {
        command: prpsinfo
            .as_ref()
            .map(|p| p.fname.clone())
            .filter(|s| !s.is_empty()),
        args: prpsinfo
            .as_ref()
            .map(|p| p.psargs.clone())
            .filter(|s| !s.is_empty()),
        uid: prpsinfo.as_ref().map(|p| p.uid),
        gid: prpsinfo.as_ref().map(|p| p.gid),
        ppid: prpsinfo.as_ref().map(|p| p.ppid),
        executable_path: None,
    };

    let mut image = ProcessImage {
        arch,
        pid,
        threads,
        crashing_thread,
        signal,
        process,
        auxv: auxv.unwrap_or_default(),
        mappings: Vec::new(),
        pac_mask,
        warnings: Vec::new(),
        memory: MemorySource::Core {
            bytes,
            segments: segments.clone(),
        },
        files: FileBacking::default(),
        sysroot: options.sysroot.clone(),
        executable_override: options.executable.clone(),
        big_endian,
    };

    let file_ranges = match nt_file {
        Some(entries) => {
            image.process.executable_path = executable_in_nt_file(&image, &entries);
            entries
                .into_iter()
                .map(|e| FileRange {
                    start: e.start,
                    end: e.end,
                    file_offset: e.file_offset,
                    path: e.path,
                    flags: None,
                })
                .collect()
        }
        None => {
            image.process.executable_path = executable_named_without_nt_file(&image, options);
            let (ranges, found) =
                link_map::rebuild_from_link_map(&image, core_directory, &mut warnings);
            // The file found (next to the core, say) is the one to read the executable from.
            if image.executable_override.is_none() {
                image.executable_override = found;
            }
            ranges
        }
    };
    if image.process.executable_path.is_none() {
        if let Some(exe) = &options.executable {
            image.process.executable_path = Some(exe.to_string_lossy().into_owned());
        }
    }
    image.mappings = merge_mappings(file_ranges, &segments, &mut warnings);
    if let Some(vdso) = image.vdso_base() {
        for mapping in &mut image.mappings {
            if mapping.start == vdso && mapping.path.is_none() {
                mapping.path = Some("[vdso]".into());
            }
        }
    }
    image.files = file_backing(&image);
    if image.executable_override.is_some() {
        link_map::check_executable_matches(&image, &mut warnings);
    }
    image.warnings = warnings.0;
    Ok(image)
}

/// The program headers that fit in the file; a truncated table is a warning, not an error.
fn read_program_headers<'data>(
    header: &FileHeader64<Endianness>,
    endian: Endianness,
    data: &'data [u8],
    warnings: &mut Warnings,
) -> Result<&'data [ProgramHeader64<Endianness>], CoreError> {
    let phoff = header.e_phoff(endian);
    if phoff == 0 {
        return Ok(&[]);
    }
    let phnum = match header.phnum(endian, data) {
        Ok(n) => u64::from(n),
        Err(_) => {
            warnings.push("The number of program headers cannot be read.".into());
            return Ok(&[]);
        }
    };
    let entry_size = std::mem::size_of::<ProgramHeader64<Endianness>>() as u64;
    if u64::from(header.e_phentsize(endian)) != entry_size {
        return Err(CoreError::BadHeader(format!(
            "its program header size is {} bytes, not {entry_size}",
            header.e_phentsize(endian)
        )));
    }
    let fit = (data.len() as u64).saturating_sub(phoff) / entry_size;
    let count = phnum.min(fit);
    if count < phnum {
        warnings.push(format!(
            "The core file is truncated: only {count} of its {phnum} program headers are present."
        ));
    }
    data.read_slice_at(phoff, count as usize)
        .map_err(|_| CoreError::BadHeader("its program headers cannot be read".into()))
}

fn read_notes(
    phdr: &ProgramHeader64<Endianness>,
    endian: Endianness,
    data: &[u8],
    arch: Arch,
    contents: &mut NoteContents,
    warnings: &mut Warnings,
) {
    let offset = phdr.p_offset(endian);
    let size = phdr.p_filesz(endian);
    let available = (data.len() as u64).saturating_sub(offset).min(size);
    if available < size {
        warnings.push(format!(
            "The core file is truncated: its notes at offset {offset:#x} are missing {} bytes.",
            size - available
        ));
    }
    if available == 0 {
        return;
    }
    let Some(bytes) = data.get(offset as usize..(offset + available) as usize) else {
        return;
    };
    let align = match phdr.p_align(endian) {
        a @ (0..=4 | 8) => a,
        _ => 4,
    };
    let Ok(mut iterator) = NoteIterator::<FileHeader64<Endianness>>::new(endian, align, bytes)
    else {
        return;
    };
    let big_endian = endian == Endianness::Big;
    loop {
        let note = match iterator.next() {
            Ok(Some(note)) => note,
            Ok(None) => break,
            Err(error) => {
                warnings.push(format!(
                    "A note in the segment at offset {offset:#x} cannot be read ({error}); the notes after it are skipped."
                ));
                break;
            }
        };
        if note.name() != b"CORE" && note.name() != b"LINUX" {
            continue;
        }
        let desc = note.desc();
        match note.n_type(endian).0 {
            notes::NT_PRSTATUS => match notes::parse_prstatus(desc, arch, big_endian) {
                Some(status) => contents.threads.push(ThreadState {
                    tid: status.tid,
                    pending_signal: status.cursig,
                    registers: status.registers,
                    has_fp_registers: false,
                }),
                None => warnings.push(format!(
                    "An NT_PRSTATUS note is too short ({} bytes) to hold the registers; its thread is skipped.",
                    desc.len()
                )),
            },
            notes::NT_FPREGSET | notes::NT_X86_XSTATE | notes::NT_ARM_SVE => {
                // These follow the NT_PRSTATUS of the thread they belong to.
                if let Some(thread) = contents.threads.last_mut() {
                    thread.has_fp_registers = true;
                }
            }
            notes::NT_PRPSINFO if contents.prpsinfo.is_none() => {
                contents.prpsinfo = notes::parse_prpsinfo(desc, big_endian);
                if contents.prpsinfo.is_none() {
                    warnings.push("The NT_PRPSINFO note is too short.".into());
                }
            }
            notes::NT_SIGINFO if contents.siginfo.is_none() => {
                contents.siginfo = notes::parse_siginfo(desc, big_endian);
                if contents.siginfo.is_none() {
                    warnings.push("The NT_SIGINFO note is too short.".into());
                }
            }
            notes::NT_AUXV if contents.auxv.is_none() => {
                contents.auxv = Some(notes::parse_auxv(desc, big_endian));
            }
            notes::NT_FILE if contents.nt_file.is_none() => {
                contents.nt_file = Some(notes::parse_nt_file(desc, big_endian, &mut warnings.0));
            }
            notes::NT_ARM_PAC_MASK if contents.pac_mask.is_none() => {
                contents.pac_mask = notes::parse_pac_mask(desc, big_endian);
            }
            _ => {}
        }
    }
}

/// The executable is the `NT_FILE` file that holds the program headers (`AT_PHDR`) or the
/// entry point.
fn executable_in_nt_file(image: &ProcessImage, entries: &[FileNoteEntry]) -> Option<String> {
    [auxv::AT_PHDR, auxv::AT_ENTRY]
        .iter()
        .filter_map(|&kind| image.auxv_value(kind))
        .find_map(|address| {
            entries
                .iter()
                .find(|e| e.start <= address && address < e.end)
                .map(|e| e.path.clone())
        })
}

/// Without `NT_FILE` the core names the executable only loosely: the caller's path first, then
/// `AT_EXECFN`, then the command line, then the command name.
fn executable_named_without_nt_file(image: &ProcessImage, options: &CoreOptions) -> Option<String> {
    if let Some(exe) = &options.executable {
        return Some(exe.to_string_lossy().into_owned());
    }
    let execfn = image
        .auxv_value(auxv::AT_EXECFN)
        .and_then(|address| image.read_c_string(address, 4096))
        .filter(|s| !s.is_empty());
    execfn
        .or_else(|| {
            image
                .process
                .args
                .as_deref()
                .and_then(|args| args.split(' ').next())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        })
        .or_else(|| image.process.command.clone())
}

/// A file-backed range of the address space before it is cut along the core's segments.
pub(crate) struct FileRange {
    pub start: u64,
    pub end: u64,
    pub file_offset: u64,
    pub path: String,
    /// `p_flags` of the segment in the file, for ranges the core has no segment for.
    pub flags: Option<u32>,
}

fn mapping_from_flags(
    start: u64,
    end: u64,
    file_offset: u64,
    path: Option<String>,
    flags: u32,
) -> Mapping {
    Mapping {
        start,
        end,
        file_offset,
        path,
        readable: flags & PF_R != 0,
        writable: flags & PF_W != 0,
        executable: flags & PF_X != 0,
    }
}

/// Cuts the file ranges along the core's `PT_LOAD` segments (which carry the permissions) and
/// adds what the segments hold beyond them as anonymous mappings. Overlapping input (only a
/// damaged core has it) is dropped, so the result is sorted and non-overlapping.
fn merge_mappings(
    mut files: Vec<FileRange>,
    segments: &[Segment],
    warnings: &mut Warnings,
) -> Vec<Mapping> {
    files.sort_by_key(|f| f.start);
    let mut dropped = 0usize;
    let mut kept_files: Vec<FileRange> = Vec::with_capacity(files.len());
    for file in files {
        if kept_files.last().is_some_and(|last| file.start < last.end) {
            dropped += 1;
        } else {
            kept_files.push(file);
        }
    }
    let mut loads: Vec<&Segment> = Vec::with_capacity(segments.len());
    for segment in segments {
        if loads.last().is_some_and(|last| segment.start < last.end) {
            dropped += 1;
        } else {
            loads.push(segment);
        }
    }
    if dropped > 0 {
        warnings.push(format!(
            "{dropped} mapped ranges overlap others and are left out of the mappings."
        ));
    }

    let mut mappings = Vec::with_capacity(loads.len() + kept_files.len());
    let mut covered = vec![false; kept_files.len()];
    let mut next_file = 0usize;
    for load in loads {
        while kept_files
            .get(next_file)
            .is_some_and(|f| f.end <= load.start)
        {
            next_file += 1;
        }
        let mut cursor = load.start;
        let mut index = next_file;
        while let Some(file) = kept_files.get(index).filter(|f| f.start < load.end) {
            if cursor < file.start {
                mappings.push(mapping_from_flags(cursor, file.start, 0, None, load.flags));
                cursor = file.start;
            }
            let end = file.end.min(load.end);
            if let Some(offset) = file.file_offset.checked_add(cursor - file.start) {
                mappings.push(mapping_from_flags(
                    cursor,
                    end,
                    offset,
                    Some(file.path.clone()),
                    load.flags,
                ));
                if let Some(flag) = covered.get_mut(index) {
                    *flag = true;
                }
            }
            cursor = end;
            if file.end > load.end {
                break;
            }
            index += 1;
        }
        if cursor < load.end {
            mappings.push(mapping_from_flags(cursor, load.end, 0, None, load.flags));
        }
    }
    // File ranges the core has no segment for still tell where a module is.
    for (file, covered) in kept_files.into_iter().zip(covered) {
        if !covered {
            mappings.push(mapping_from_flags(
                file.start,
                file.end,
                file.file_offset,
                Some(file.path),
                file.flags.unwrap_or(0),
            ));
        }
    }
    mappings.sort_by_key(|m| m.start);
    mappings
}

/// The files behind the file-backed mappings, resolved once per path.
fn file_backing(image: &ProcessImage) -> FileBacking {
    let mut resolved: HashMap<&str, PathBuf> = HashMap::new();
    let mut ranges = Vec::new();
    for mapping in &image.mappings {
        let Some(path) = mapping.path.as_deref() else {
            continue;
        };
        if path.starts_with('[') {
            continue;
        }
        let on_disk = resolved
            .entry(path)
            .or_insert_with(|| image.resolve_path(path))
            .clone();
        ranges.push((mapping.start, mapping.end, mapping.file_offset, on_disk));
    }
    FileBacking::new(ranges)
}
