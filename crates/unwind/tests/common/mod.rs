//! What the walker needs in tests: cores read by coresnap-core, and ELF files read (with
//! `object`) into unwind sections and symbols.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use coresnap_core::{CoreOptions, ProcessImage};
use coresnap_unwind::{
    Arch, Frame, Memory, ModuleUnwindInfo, Regs, SectionBytes, Trust, UnwindOptions, UnwindSection,
    Unwinder, Unwound,
};
use object::elf;
use object::read::elf::{ElfFile64, ProgramHeader};
use object::{Object, ObjectSection, ObjectSymbol, SectionKind, SymbolKind};

type Le = object::LittleEndian;

/// A core as coresnap-core reads it, behind the walker's `Memory`.
pub struct CoreMemory(ProcessImage);

impl Memory for CoreMemory {
    fn read(&self, avma: u64, buf: &mut [u8]) -> bool {
        self.0.read_memory(avma, buf)
    }
}

pub struct Core {
    pub arch: Arch,
    /// `(tid, registers)` in NT_PRSTATUS order: the crashing thread first.
    pub threads: Vec<(u32, Regs)>,
    pub memory: CoreMemory,
    /// aarch64 `NT_ARM_PAC_MASK` instruction mask.
    pub pac_mask: Option<u64>,
}

/// A core whose files are where it says, on this machine.
pub fn load_core(path: &Path) -> Core {
    load_core_with(path, &CoreOptions::default())
}

/// A core whose files are found as `options` say (a sysroot, a moved executable).
pub fn load_core_with(path: &Path, options: &CoreOptions) -> Core {
    let image = ProcessImage::open_core(path, options)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let arch = match image.arch {
        coresnap_core::Arch::X86_64 => Arch::X86_64,
        coresnap_core::Arch::Aarch64 => Arch::Aarch64,
    };
    let threads = image
        .threads
        .iter()
        .map(|thread| (thread.tid as u32, Regs::with_values(arch, thread.dwarf_registers(image.arch))))
        .collect();
    Core {
        arch,
        threads,
        pac_mask: image.pac_mask.map(|mask| mask.insn),
        memory: CoreMemory(image),
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

/// Every mapped ELF file of the core as a module, read from where the core's options put it.
pub fn modules_from_core(core: &Core) -> Vec<LoadedModule> {
    let image = &core.memory.0;
    let mut paths: Vec<&str> = image
        .mappings
        .iter()
        .filter_map(|m| m.path.as_deref())
        .collect();
    paths.sort();
    paths.dedup();
    let mut modules = Vec::new();
    for path in paths {
        let Some(base) = image
            .mappings
            .iter()
            .find(|m| m.path.as_deref() == Some(path) && m.file_offset == 0)
            .map(|m| m.start)
        else {
            continue;
        };
        let on_disk = image.resolve_path(path);
        let Ok(bytes) = std::fs::read(&on_disk) else {
            continue;
        };
        if !bytes.starts_with(b"\x7fELF") {
            continue;
        }
        modules.push(load_module(&on_disk, bias_for_base(&bytes, base)));
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

/// A corpus case's ground truth, `expected.json`.
pub fn expected_json(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("expected.json parses")
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
