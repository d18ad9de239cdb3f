//! Just enough ELF and core reading (with `object`) to feed the walker in tests: PT_LOAD
//! memory, NT_PRSTATUS registers, NT_FILE mappings, unwind sections and symbols. The real
//! core reader lives in coresnap-core; this one only serves these tests.
#![allow(dead_code)]

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use coresnap_unwind::{
    Arch, Frame, Memory, ModuleUnwindInfo, Regs, SectionBytes, Trust, UnwindOptions, UnwindSection,
    Unwinder, Unwound,
};
use object::elf;
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
use object::{Object, ObjectSection, ObjectSymbol, SectionKind, SymbolKind};

type Le = object::LittleEndian;

/// The process memory a core describes: dumped segments first, then the mapped files for
/// pages the kernel left out (text).
pub struct CoreMemory {
    core: Arc<Vec<u8>>,
    /// `(vaddr, file offset in core, filesz)` of PT_LOADs with dumped bytes.
    dumped: Vec<(u64, u64, u64)>,
    /// `(start, end, file offset, file bytes)` of file-backed mappings.
    files: Vec<(u64, u64, u64, Arc<Vec<u8>>)>,
}

impl CoreMemory {
    pub fn add_file_mapping(&mut self, range: Range<u64>, file_offset: u64, bytes: Arc<Vec<u8>>) {
        self.files
            .push((range.start, range.end, file_offset, bytes));
    }

    fn chunk(&self, address: u64) -> Option<&[u8]> {
        for (vaddr, offset, size) in &self.dumped {
            if address >= *vaddr && address < vaddr + size {
                let start = (offset + (address - vaddr)) as usize;
                let end = (offset + size) as usize;
                return self.core.get(start..end);
            }
        }
        for (start, end, file_offset, bytes) in &self.files {
            if address >= *start && address < *end {
                let from = (file_offset + (address - start)) as usize;
                let to = (file_offset + (end - start)) as usize;
                return bytes.get(from..to.min(bytes.len()));
            }
        }
        None
    }
}

impl Memory for CoreMemory {
    fn read(&self, avma: u64, buf: &mut [u8]) -> bool {
        let mut done = 0usize;
        while done < buf.len() {
            let Some(chunk) = self.chunk(avma.wrapping_add(done as u64)) else {
                return false;
            };
            if chunk.is_empty() {
                return false;
            }
            let n = chunk.len().min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&chunk[..n]);
            done += n;
        }
        true
    }
}

pub struct FileMapping {
    pub start: u64,
    pub end: u64,
    pub file_offset: u64,
    pub path: String,
}

pub struct Core {
    pub arch: Arch,
    /// `(tid, registers)` in NT_PRSTATUS order: the crashing thread first.
    pub threads: Vec<(u32, Regs)>,
    pub memory: CoreMemory,
    pub file_mappings: Vec<FileMapping>,
    /// aarch64 `NT_ARM_PAC_MASK` instruction mask.
    pub pac_mask: Option<u64>,
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(bytes[offset..offset + 8].try_into().unwrap())
}

pub fn load_core(path: &Path) -> Core {
    let core =
        Arc::new(std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display())));
    let header = elf::FileHeader64::<Le>::parse(&core[..]).expect("an ELF core");
    let endian = header.endian().expect("endian");
    let arch = match header.e_machine(endian) {
        elf::EM_X86_64 => Arch::X86_64,
        elf::EM_AARCH64 => Arch::Aarch64,
        other => panic!("unexpected machine {other}"),
    };
    let mut threads = Vec::new();
    let mut file_mappings = Vec::new();
    let mut dumped = Vec::new();
    let mut pac_mask = None;
    for ph in header
        .program_headers(endian, &core[..])
        .expect("program headers")
    {
        if ph.p_type(endian) == elf::PT_LOAD && ph.p_filesz(endian) > 0 {
            dumped.push((ph.p_vaddr(endian), ph.p_offset(endian), ph.p_filesz(endian)));
        }
        let Some(mut notes) = ph.notes(endian, &core[..]).expect("notes") else {
            continue;
        };
        while let Some(note) = notes.next().expect("a note") {
            let desc = note.desc();
            if note.n_type(endian) == elf::NT_PRSTATUS {
                let tid = u32::from_le_bytes(desc[32..36].try_into().unwrap());
                let mut regs = Regs::new(arch);
                match arch {
                    Arch::X86_64 => {
                        // user_regs_struct order → DWARF numbers.
                        let order: [(usize, u16); 17] = [
                            (0, 15),
                            (1, 14),
                            (2, 13),
                            (3, 12),
                            (4, 6),
                            (5, 3),
                            (6, 11),
                            (7, 10),
                            (8, 9),
                            (9, 8),
                            (10, 0),
                            (11, 2),
                            (12, 1),
                            (13, 4),
                            (14, 5),
                            (16, 16),
                            (19, 7),
                        ];
                        for (index, dwarf) in order {
                            regs.set(dwarf, u64_at(desc, 112 + index * 8));
                        }
                    }
                    Arch::Aarch64 => {
                        for dwarf in 0..33u16 {
                            regs.set(dwarf, u64_at(desc, 112 + usize::from(dwarf) * 8));
                        }
                    }
                }
                threads.push((tid, regs));
            } else if note.n_type(endian).0 == 0x406 && desc.len() >= 16 {
                // NT_ARM_PAC_MASK: data mask, then instruction mask.
                pac_mask = Some(u64_at(desc, 8));
            } else if note.n_type(endian) == elf::NT_FILE {
                let count = u64_at(desc, 0) as usize;
                let page = u64_at(desc, 8);
                let mut names = desc[16 + count * 24..].split(|b| *b == 0);
                for i in 0..count {
                    let at = 16 + i * 24;
                    let name = names
                        .next()
                        .map(|n| String::from_utf8_lossy(n).into_owned())
                        .unwrap_or_default();
                    file_mappings.push(FileMapping {
                        start: u64_at(desc, at),
                        end: u64_at(desc, at + 8),
                        file_offset: u64_at(desc, at + 16) * page,
                        path: name,
                    });
                }
            }
        }
    }
    let memory = CoreMemory {
        core,
        dumped,
        files: Vec::new(),
    };
    Core {
        arch,
        threads,
        memory,
        file_mappings,
        pac_mask,
    }
}

/// One ELF file, ready to be a module: unwind sections, executable range, function symbols.
pub struct LoadedModule {
    pub info: ModuleUnwindInfo,
    pub bytes: Arc<Vec<u8>>,
    /// `(avma start, avma end, name)`, sorted.
    pub functions: Vec<(u64, u64, String)>,
}

pub fn load_module(path: &Path, bias: u64) -> LoadedModule {
    let bytes =
        Arc::new(std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display())));
    let file = ElfFile64::<Le>::parse(&bytes[..]).expect("an ELF file");
    let endian = file.endian();
    let (mut low, mut high) = (u64::MAX, 0);
    for ph in file.elf_program_headers() {
        if ph.p_type(endian) == elf::PT_LOAD && ph.p_flags(endian).0 & elf::PF_X.0 != 0 {
            let start = ph.p_vaddr(endian).wrapping_add(bias);
            low = low.min(start);
            high = high.max(start + ph.p_memsz(endian));
        }
    }
    let avma_range = low..high;
    let owner: Arc<dyn AsRef<[u8]> + Send + Sync> = bytes.clone();
    let section = |name: &str| -> Option<UnwindSection> {
        let section = file.section_by_name(name)?;
        let range = section.compressed_file_range().ok()?;
        let data = if range.format == object::CompressionFormat::None {
            SectionBytes::new(
                owner.clone(),
                range.offset as usize..(range.offset + range.compressed_size) as usize,
            )
        } else {
            SectionBytes::from_vec(section.uncompressed_data().ok()?.into_owned())
        };
        Some(UnwindSection {
            svma: section.address(),
            data,
        })
    };
    let text_svma_ranges = file
        .sections()
        .filter(|s| s.kind() == SectionKind::Text)
        .map(|s| s.address()..s.address() + s.size())
        .collect();
    let mut functions: Vec<(u64, u64, String)> = file
        .symbols()
        .chain(file.dynamic_symbols())
        .filter(|s| s.kind() == SymbolKind::Text && s.address() != 0)
        .filter_map(|s| {
            let name = s.name().ok()?.to_string();
            let start = s.address().wrapping_add(bias);
            Some((start, start + s.size().max(1), name))
        })
        .collect();
    functions.sort();
    functions.dedup_by(|a, b| a.0 == b.0);
    let info = ModuleUnwindInfo {
        name: path.display().to_string(),
        avma_range,
        bias,
        eh_frame: section(".eh_frame"),
        eh_frame_hdr: section(".eh_frame_hdr"),
        debug_frame: section(".debug_frame"),
        text_svma_ranges,
    };
    LoadedModule {
        info,
        bytes,
        functions,
    }
}

/// The bias of an ELF file mapped with its offset-0 page at `base`.
pub fn bias_for_base(bytes: &[u8], base: u64) -> u64 {
    let file = ElfFile64::<Le>::parse(bytes).expect("an ELF file");
    let endian = file.endian();
    let first = file
        .elf_program_headers()
        .iter()
        .find(|ph| ph.p_type(endian) == elf::PT_LOAD && ph.p_offset(endian) == 0)
        .map(|ph| ph.p_vaddr(endian) & !0xfff)
        .unwrap_or(0);
    base.wrapping_sub(first)
}

/// Modules from a kernel core's NT_FILE: every mapped ELF file, its text from disk.
pub fn modules_from_core(core: &mut Core) -> Vec<LoadedModule> {
    modules_from_core_with(core, |path| PathBuf::from(path))
}

/// Like `modules_from_core`, with `resolve` saying where each NT_FILE path is on this disk
/// (a corpus executable has moved since it crashed).
pub fn modules_from_core_with(
    core: &mut Core,
    resolve: impl Fn(&str) -> PathBuf,
) -> Vec<LoadedModule> {
    let mut modules = Vec::new();
    let mut paths: Vec<String> = core.file_mappings.iter().map(|m| m.path.clone()).collect();
    paths.sort();
    paths.dedup();
    for path in paths {
        let Some(base) = core
            .file_mappings
            .iter()
            .find(|m| m.path == path && m.file_offset == 0)
            .map(|m| m.start)
        else {
            continue;
        };
        let on_disk = resolve(&path);
        let Ok(bytes) = std::fs::read(&on_disk) else {
            continue;
        };
        if !bytes.starts_with(b"\x7fELF") {
            continue;
        }
        let bias = bias_for_base(&bytes, base);
        let module = load_module(&on_disk, bias);
        for mapping in core.file_mappings.iter().filter(|m| m.path == path) {
            core.memory.add_file_mapping(
                mapping.start..mapping.end,
                mapping.file_offset,
                module.bytes.clone(),
            );
        }
        modules.push(module);
    }
    modules
}

pub fn function_name(modules: &[LoadedModule], avma: u64) -> Option<String> {
    for module in modules {
        let index = module
            .functions
            .partition_point(|(start, _, _)| *start <= avma);
        if let Some((start, end, name)) = index.checked_sub(1).and_then(|i| module.functions.get(i))
        {
            if avma >= *start && avma < *end {
                return Some(name.clone());
            }
        }
    }
    None
}

/// `$CORESNAP_CORPUS_DIR`, or /tmp/coresnap-corpus where the corpus scripts put it.
pub fn corpus_root() -> String {
    std::env::var("CORESNAP_CORPUS_DIR").unwrap_or_else(|_| "/tmp/coresnap-corpus".to_string())
}

/// One case of the corpus make-corpus.sh builds (its core and executable); a missing case
/// fails the test with how to build it.
pub fn corpus_case_dir(case: &str) -> PathBuf {
    let corpus = corpus_root();
    let dir = Path::new(&corpus).join("corpus").join(case);
    assert!(
        dir.join("core").exists() && dir.join("exe").exists(),
        "the corpus case {} is missing: build it with /work/shared/corpus/make-corpus.sh (CORPUS_DIR={corpus}) or set CORESNAP_CORPUS_DIR",
        dir.display()
    );
    dir
}

/// A walker over every module's unwind sections.
pub fn unwinder_for(arch: Arch, modules: &[LoadedModule], options: UnwindOptions) -> Unwinder {
    Unwinder::new(
        arch,
        modules.iter().map(|m| m.info.clone()).collect(),
        options,
    )
}

/// The function of each frame, or what `unnamed` says for a frame no symbol covers.
pub fn frame_names(
    modules: &[LoadedModule],
    unwound: &Unwound,
    unnamed: impl Fn(&Frame) -> String,
) -> Vec<String> {
    unwound
        .frames
        .iter()
        .map(|f| function_name(modules, f.lookup_pc).unwrap_or_else(|| unnamed(f)))
        .collect()
}

/// `[names] trust [trusts] stop: reason`, for assertion messages.
pub fn names_and_trust(names: &[String], unwound: &Unwound) -> String {
    format!(
        "{names:?} trust {:?} stop: {}",
        unwound
            .frames
            .iter()
            .map(|f| f.trust.as_str())
            .collect::<Vec<_>>(),
        unwound.stop_reason
    )
}

/// Every frame above the leaf (whose registers come from the core) was recovered with CFI.
#[track_caller]
pub fn assert_cfi_above_leaf(unwound: &Unwound, report: &str) {
    assert!(
        unwound.frames[1..].iter().all(|f| f.trust == Trust::Cfi),
        "{report}"
    );
}

/// The outermost frame is `_start`: the walk reached the bottom of the stack.
#[track_caller]
pub fn assert_ends_at_start(names: &[String], report: &str) {
    assert_eq!(names.last().map(String::as_str), Some("_start"), "{report}");
}

/// A fresh scratch directory for one test.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("coresnap-unwind-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Compiles `source` with gcc and `flags` into `dir/name`.
pub fn compile(dir: &Path, name: &str, source: &str, flags: &[&str]) -> PathBuf {
    let source_path = dir.join(format!("{name}.c"));
    std::fs::write(&source_path, source).expect("write source");
    let exe = dir.join(name);
    let output = Command::new("gcc")
        .args(flags)
        .arg("-o")
        .arg(&exe)
        .arg(&source_path)
        .output()
        .expect("gcc runs");
    assert!(
        output.status.success(),
        "gcc failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    exe
}

/// Runs `exe` in its directory with core dumps enabled and returns the core (core_pattern is
/// `core`, so it lands in the working directory).
pub fn crash(exe: &Path) -> PathBuf {
    let dir = exe.parent().expect("exe dir");
    let core = dir.join("core");
    let _ = std::fs::remove_file(&core);
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -c unlimited && exec '{}'", exe.display()))
        .current_dir(dir)
        .status()
        .expect("sh runs");
    assert!(!status.success(), "{} was expected to crash", exe.display());
    assert!(
        core.exists(),
        "no core in {} (is core_pattern `core`, ulimit -c allowed?)",
        dir.display()
    );
    core
}

/// Backs every PT_LOAD of an ELF file (at `bias`) with the file's bytes, for cores that
/// have no NT_FILE (qemu-user) and left text out.
pub fn map_file_segments(memory: &mut CoreMemory, bytes: &Arc<Vec<u8>>, bias: u64) {
    let file = ElfFile64::<Le>::parse(&bytes[..]).expect("an ELF file");
    let endian = file.endian();
    for ph in file.elf_program_headers() {
        if ph.p_type(endian) == elf::PT_LOAD {
            let start = ph.p_vaddr(endian).wrapping_add(bias);
            memory.add_file_mapping(
                start..start + ph.p_filesz(endian),
                ph.p_offset(endian),
                bytes.clone(),
            );
        }
    }
}

/// `(l_addr, l_name)` of every object on the dynamic linker's list, found through the
/// executable's `DT_DEBUG` → `r_debug.r_map` → `link_map` chain in the core's memory.
pub fn link_map(memory: &CoreMemory, exe: &LoadedModule) -> Vec<(u64, String)> {
    let file = ElfFile64::<Le>::parse(&exe.bytes[..]).expect("an ELF file");
    let dynamic = file
        .section_by_name(".dynamic")
        .expect("a dynamic executable")
        .address()
        .wrapping_add(exe.info.bias);
    let mut r_debug = 0;
    for i in 0..256u64 {
        let tag = memory
            .read_u64(dynamic + i * 16)
            .expect("readable .dynamic");
        if tag == 0 {
            break;
        }
        if tag == 21 {
            r_debug = memory
                .read_u64(dynamic + i * 16 + 8)
                .expect("DT_DEBUG value");
        }
    }
    assert_ne!(r_debug, 0, "DT_DEBUG is not filled in");
    let mut objects = Vec::new();
    let mut link = memory.read_u64(r_debug + 8).expect("r_map");
    while link != 0 && objects.len() < 512 {
        let l_addr = memory.read_u64(link).expect("l_addr");
        let name_at = memory.read_u64(link + 8).expect("l_name");
        let mut name = Vec::new();
        let mut byte = [0u8; 1];
        while name.len() < 4096
            && memory.read(name_at + name.len() as u64, &mut byte)
            && byte[0] != 0
        {
            name.push(byte[0]);
        }
        objects.push((l_addr, String::from_utf8_lossy(&name).into_owned()));
        link = memory.read_u64(link + 24).expect("l_next");
    }
    objects
}
