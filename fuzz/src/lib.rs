//! What the fuzz targets check, as plain functions.
//!
//! `check_core_bytes` is the body of the `core_parser` target: any byte string is given to
//! [`ProcessImage::from_core_bytes`]; when it parses, every thread is walked with the unwinder the
//! snapshot uses, over the image's own memory, and the vDSO (whose bytes are in the core) is
//! opened as a module so that its unwind sections take part. Files on disk are kept out (the
//! sysroot is a folder that does not exist), so a run depends on the input alone. The only
//! assertion is the engine's contract: no panic, no abort, no hang, whatever the bytes.

use coresnap_core::{auxv, Arch, CoreOptions, ProcessImage};
use coresnap_symbols::{DebugSearch, ModuleInfo, SectionRef};
use coresnap_unwind::{Memory, ModuleUnwindInfo, Regs, SectionBytes, UnwindOptions, UnwindSection, Unwinder};
use std::path::PathBuf;

/// A sysroot that does not exist: pages left out of the core stay unreadable instead of being
/// read from whatever files this machine has at the paths the input names.
const NO_FILES: &str = "/nonexistent/coresnap-fuzz-sysroot";
/// The vDSO is a few pages; a fuzzed mapping may claim far more.
const MAX_VDSO_BYTES: u64 = 1 << 20;

struct ImageMemory<'a>(&'a ProcessImage);

impl Memory for ImageMemory<'_> {
    fn read(&self, avma: u64, buf: &mut [u8]) -> bool {
        self.0.read_memory(avma, buf)
    }
    fn read_u64(&self, avma: u64) -> Option<u64> {
        self.0.read_u64(avma)
    }
}

fn unwind_section(s: &Option<SectionRef>) -> Option<UnwindSection> {
    s.as_ref().map(|s| UnwindSection { svma: s.svma, data: SectionBytes::new(s.owner.clone(), s.range.clone()) })
}

/// The vDSO as an unwind module, when the auxiliary vector points at a readable ELF image.
fn vdso_module(image: &ProcessImage) -> Option<ModuleUnwindInfo> {
    let base = image.auxv.iter().find(|(kind, _)| *kind == auxv::AT_SYSINFO_EHDR)?.1;
    let mapping = image.mappings.iter().find(|m| m.start <= base && base < m.end)?;
    let len = mapping.end.checked_sub(base)?.min(MAX_VDSO_BYTES);
    let mut bytes = vec![0u8; usize::try_from(len).ok()?];
    if !image.read_memory_dumped(base, &mut bytes) {
        return None;
    }
    let search = DebugSearch { sysroot: Some(PathBuf::from(NO_FILES)), debug_dirs: Vec::new() };
    let info = ModuleInfo::from_bytes("[vdso]", bytes, &search).ok()?;
    let _ = info.symbolize(0);
    let sections = info.unwind_sections();
    Some(ModuleUnwindInfo {
        name: "[vdso]".into(),
        avma_range: base..base.saturating_add(len),
        bias: info.bias_for(base, 0).unwrap_or(0),
        eh_frame: unwind_section(&sections.eh_frame),
        eh_frame_hdr: unwind_section(&sections.eh_frame_hdr),
        debug_frame: unwind_section(&sections.debug_frame),
        text_svma_ranges: sections.text_svma_ranges.clone(),
    })
}

/// Parses `data` as a core and, if it parses, reads and unwinds everything in it.
pub fn check_core_bytes(data: &[u8]) {
    let options = CoreOptions { sysroot: Some(PathBuf::from(NO_FILES)), executable: None };
    let Ok(image) = ProcessImage::from_core_bytes(data.to_vec(), &options) else { return };

    for mapping in image.mappings.iter().take(64) {
        let mut word = [0u8; 8];
        let _ = image.read_memory(mapping.start, &mut word);
        let _ = image.read_memory(mapping.end.wrapping_sub(8), &mut word);
        let _ = image.build_id_in_memory(mapping.start);
    }

    let arch = match image.arch {
        Arch::X86_64 => coresnap_unwind::Arch::X86_64,
        Arch::Aarch64 => coresnap_unwind::Arch::Aarch64,
    };
    let options = UnwindOptions { pac_mask: image.pac_mask.as_ref().map(|m| m.insn), ..UnwindOptions::default() };
    let modules = vdso_module(&image).into_iter().collect();
    let mut unwinder = Unwinder::new(arch, modules, options);
    for m in image.mappings.iter().filter(|m| m.executable) {
        unwinder.add_executable_range(m.start..m.end);
    }
    let memory = ImageMemory(&image);
    for thread in &image.threads {
        let mut regs = Regs::new(arch);
        for (reg, value) in thread.dwarf_registers(image.arch) {
            regs.set(reg, value);
        }
        let _ = unwinder.unwind(&regs, &memory);
    }
}
