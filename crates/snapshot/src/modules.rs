//! The modules of a process: each mapped ELF file opened once (under the sysroot), checked
//! against the build-id the process saw, and turned into unwind and symbol sources.

use coresnap_core::ProcessImage;
use coresnap_symbols::{DebugSearch, ModuleInfo, SectionRef};
use coresnap_unwind::{ModuleUnwindInfo, SectionBytes, UnwindSection};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One module as the process mapped it.
pub struct ProcessModule {
    /// The path the process knew the file by (`[vdso]` for the vDSO).
    pub name: String,
    /// The lowest and highest mapped addresses of the file.
    pub avma_range: Range<u64>,
    /// The file read for symbols and unwind info; `None` when it was missing or mismatched.
    pub info: Option<Arc<ModuleInfo>>,
    pub bias: u64,
    /// The build-id found in the process's memory (ELF notes of the mapped header page).
    pub memory_build_id: Option<Vec<u8>>,
    pub loaded_from: Option<PathBuf>,
    /// Why the file could not be used, as a sentence.
    pub problem: Option<String>,
    pub mismatch: Option<String>,
}

impl ProcessModule {
    pub fn build_id_hex(&self) -> Option<String> {
        match &self.info {
            Some(info) => info.build_id_hex(),
            None => self.memory_build_id.as_deref().map(hex),
        }
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Strips the kernel's ` (deleted)` suffix: the file was replaced after it was mapped.
fn live_path(path: &str) -> &str {
    path.strip_suffix(" (deleted)").unwrap_or(path)
}

/// Groups the process's file mappings by path and opens each file once.
pub fn load_modules(
    image: &ProcessImage,
    search: &DebugSearch,
    executable_override: Option<&Path>,
    warnings: &mut Vec<String>,
) -> Vec<ProcessModule> {
    struct Group {
        path: String,
        start: u64,
        end: u64,
        base_start: u64,
        base_offset: u64,
        /// (start, file offset) of every mapping of the file, for the bias.
        pieces: Vec<(u64, u64)>,
    }
    let mut groups: Vec<Group> = Vec::new();
    for m in &image.mappings {
        let Some(path) = m.path.as_deref() else { continue };
        if path.is_empty() || path.starts_with('[') || path.starts_with("/dev/") || path.starts_with("/memfd:") {
            continue;
        }
        let group = match groups.iter_mut().position(|g| g.path == path) {
            Some(i) => &mut groups[i],
            None => {
                groups.push(Group {
                    path: path.to_string(),
                    start: m.start,
                    end: m.end,
                    base_start: m.start,
                    base_offset: m.file_offset,
                    pieces: Vec::new(),
                });
                groups.last_mut().expect("just pushed")
            }
        };
        group.start = group.start.min(m.start);
        group.end = group.end.max(m.end);
        if m.file_offset < group.base_offset || (m.file_offset == group.base_offset && m.start < group.base_start) {
            group.base_offset = m.file_offset;
            group.base_start = m.start;
        }
        group.pieces.push((m.start, m.file_offset));
    }

    let executable_path = image.process.executable_path.as_deref();
    let mut modules = Vec::with_capacity(groups.len() + 1);
    for g in groups {
        let is_executable = executable_path.is_some_and(|e| e == g.path || live_path(&g.path) == e);
        let disk_path = match executable_override {
            Some(p) if is_executable => p.to_path_buf(),
            _ => image.resolve_path(live_path(&g.path)),
        };
        let memory_build_id = image.build_id_in_memory(g.base_start);
        let mut module = ProcessModule {
            name: g.path.clone(),
            avma_range: g.start..g.end,
            info: None,
            bias: 0,
            memory_build_id,
            loaded_from: None,
            problem: None,
            mismatch: None,
        };
        match ModuleInfo::open(&disk_path, search) {
            Ok(info) => {
                let file_id = info.build_id().map(<[u8]>::to_vec);
                match (&module.memory_build_id, &file_id) {
                    (Some(core_id), Some(file_id)) if core_id != file_id => {
                        let msg = format!(
                            "{} has build-id {} but the process mapped build-id {}: it was not used",
                            disk_path.display(),
                            hex(file_id),
                            hex(core_id)
                        );
                        warnings.push(msg.clone());
                        module.mismatch = Some(msg);
                        module.loaded_from = Some(disk_path);
                    }
                    _ => {
                        // Several segments can share one file page (RELRO after rodata), so the bias
                        // that explains the most mappings wins over the first mapping's alone.
                        match info.bias_from_mappings(&g.pieces).or_else(|| info.bias_for(g.base_start, g.base_offset)) {
                            Some(bias) => module.bias = bias,
                            None => warnings.push(format!(
                                "{}: no loadable segment holds file offset {:#x}; addresses in it are not symbolicated",
                                disk_path.display(),
                                g.base_offset
                            )),
                        }
                        for w in info.warnings() {
                            warnings.push(format!("{}: {w}", disk_path.display()));
                        }
                        module.loaded_from = Some(disk_path);
                        module.info = Some(Arc::new(info));
                    }
                }
            }
            Err(e) => {
                module.problem = Some(e.to_string());
                warnings.push(e.to_string());
            }
        }
        modules.push(module);
    }

    if let (Some(base), Some(bytes)) = (image.vdso_base(), image.read_vdso_image()) {
        let size = bytes.len() as u64;
        match ModuleInfo::from_bytes("[vdso]", bytes, search) {
            Ok(info) => {
                let bias = info.bias_for(base, 0).unwrap_or(base);
                modules.push(ProcessModule {
                    name: "[vdso]".into(),
                    avma_range: base..base.saturating_add(size),
                    memory_build_id: info.build_id().map(<[u8]>::to_vec),
                    info: Some(Arc::new(info)),
                    bias,
                    loaded_from: None,
                    problem: None,
                    mismatch: None,
                });
            }
            Err(e) => warnings.push(format!("the vDSO in the process's memory could not be read: {e}")),
        }
    }
    modules.sort_by_key(|m| m.avma_range.start);
    modules
}

fn section(s: &Option<SectionRef>) -> Option<UnwindSection> {
    s.as_ref().map(|s| UnwindSection { svma: s.svma, data: SectionBytes::new(s.owner.clone(), s.range.clone()) })
}

/// The unwind sources of every usable module.
pub fn unwind_infos(modules: &[ProcessModule]) -> Vec<ModuleUnwindInfo> {
    modules
        .iter()
        .filter_map(|m| {
            let info = m.info.as_ref()?;
            let sections = info.unwind_sections();
            Some(ModuleUnwindInfo {
                name: m.name.clone(),
                avma_range: m.avma_range.clone(),
                bias: m.bias,
                eh_frame: section(&sections.eh_frame),
                eh_frame_hdr: section(&sections.eh_frame_hdr),
                debug_frame: section(&sections.debug_frame),
                text_svma_ranges: sections.text_svma_ranges.clone(),
            })
        })
        .collect()
}

/// The module holding an address, by binary search over the sorted modules.
pub fn module_for(modules: &[ProcessModule], avma: u64) -> Option<&ProcessModule> {
    let i = modules.partition_point(|m| m.avma_range.start <= avma);
    let m = modules.get(i.checked_sub(1)?)?;
    (avma < m.avma_range.end).then_some(m)
}
