//! One mapped ELF file: its build-id, where it lands in a process, its unwind sections, and
//! what its code addresses mean in source terms.
//!
//! What the caller does: names an ELF file on disk whose path is already resolved (under a
//! sysroot when there is one), or hands over the bytes of an image that only exists in memory
//! (the vDSO), and says where separate debug files may live ([`DebugSearch`]). Addresses given
//! to [`ModuleInfo`] are SVMAs, addresses as the file states them; the caller converts from the
//! process's addresses with the bias from [`ModuleInfo::bias_for`] (`avma = svma + bias`,
//! wrapping).
//!
//! What the crate does:
//!
//! - maps the file (memmap2; nothing is copied except decompressed sections), reads its
//!   build-id, machine, `PT_LOAD` segments, executable sections, `.eh_frame`,
//!   `.eh_frame_hdr` and `.debug_frame`;
//! - when the file has no `.debug_info` of its own, finds its separate debug file: by build-id
//!   in every search root (`<root>/.build-id/xx/rest.debug`), then by `.gnu_debuglink` (beside
//!   the file, in `.debug/` beside it, and in `<root>/<directory of the file>/`). A candidate is
//!   used only when its build-id matches (or, without build-ids on both sides, when the
//!   debuglink CRC32 matches); every rejected candidate leaves a warning;
//! - symbolizes with DWARF first (addr2line, parsed lazily one compilation unit at a time, with
//!   inlined frames innermost first), then with `.symtab` (own or from the debug file) and
//!   `.dynsym`; names are demangled (C++ and Rust, legacy and v0);
//! - rebuilds the frames tail calls left off the stack from DWARF call-site information, as
//!   gdb does ([`ModuleInfo::tail_call_frames`]);
//! - never panics on malformed input: what cannot be read becomes a warning
//!   ([`ModuleInfo::warnings`]) and an empty answer.
//!
//! A [`ModuleInfo`] is `Send + Sync`; share it in an `Arc`. Symbolication results are cached
//! per address.

mod cache;
mod dwarf;
mod elf;
mod search;
mod symtab;
mod tailcall;

use std::fmt;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use crate::dwarf::DwarfContext;
use crate::elf::LoadSegment;
use crate::search::DebugFile;
use crate::symtab::SymbolTable;

/// Bytes shared between a [`ModuleInfo`], the sections it hands out and the DWARF reader:
/// a memory map of a file, or an owned buffer (a decompressed section, the vDSO).
pub type SharedBytes = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// Where separate debug files may be found.
#[derive(Clone, Debug, Default)]
pub struct DebugSearch {
    /// The root the process's paths were resolved under, if any. Its `usr/lib/debug` is
    /// searched instead of the host's `/usr/lib/debug`.
    pub sysroot: Option<PathBuf>,
    /// Extra debug roots (each laid out like `/usr/lib/debug`: a `.build-id` tree and/or
    /// a mirror of the file system), searched first, in order.
    pub debug_dirs: Vec<PathBuf>,
}

impl DebugSearch {
    /// The debug roots in search order: `debug_dirs`, then `<sysroot>/usr/lib/debug` when a
    /// sysroot is set, else `/usr/lib/debug`.
    pub fn roots(&self) -> Vec<PathBuf> {
        let mut roots = self.debug_dirs.clone();
        match &self.sysroot {
            Some(sysroot) => roots.push(sysroot.join("usr/lib/debug")),
            None => roots.push(PathBuf::from("/usr/lib/debug")),
        }
        roots
    }
}

/// One section's bytes, shared with the module that holds them.
#[derive(Clone)]
pub struct SectionRef {
    /// The section's address as the file states it (`sh_addr`; 0 for unallocated sections
    /// such as `.debug_frame`).
    pub svma: u64,
    /// What keeps the bytes alive: the file's memory map, or a decompressed copy.
    pub owner: SharedBytes,
    /// Where the section's bytes are inside `owner`.
    pub range: Range<usize>,
}

impl SectionRef {
    /// The section's bytes (empty if `range` does not fit `owner`, which this crate never
    /// produces).
    pub fn data(&self) -> &[u8] {
        let owner: &(dyn AsRef<[u8]> + Send + Sync) = &*self.owner;
        owner.as_ref().get(self.range.clone()).unwrap_or(&[])
    }

    /// The section's SVMA range (`svma .. svma + len`).
    pub fn svma_range(&self) -> Range<u64> {
        let len = self.range.end.saturating_sub(self.range.start) as u64;
        self.svma..self.svma.saturating_add(len)
    }
}

impl fmt::Debug for SectionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SectionRef")
            .field("svma", &format_args!("{:#x}", self.svma))
            .field("range", &self.range)
            .finish()
    }
}

/// What coresnap-unwind needs from a module.
#[derive(Clone, Default, Debug)]
pub struct UnwindSections {
    /// `.eh_frame` of the mapped file.
    pub eh_frame: Option<SectionRef>,
    /// `.eh_frame_hdr` of the mapped file (from `PT_GNU_EH_FRAME` when section headers are
    /// missing).
    pub eh_frame_hdr: Option<SectionRef>,
    /// `.debug_frame` of the mapped file, else of its debug file.
    pub debug_frame: Option<SectionRef>,
    /// SVMA ranges of executable code: `SHF_EXECINSTR` sections, else `PF_X` segments.
    /// Sorted and merged.
    pub text_svma_ranges: Vec<Range<u64>>,
}

/// One frame of source for an address; a real function and the functions inlined into it
/// at that address each give one.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceFrame {
    /// The function name, demangled.
    pub function: Option<String>,
    /// The function name as DWARF or the symbol table states it (for C, the same as
    /// `function`).
    pub mangled: Option<String>,
    /// `svma - start of the symbol`, for the outermost (real, not inlined) frame when a
    /// symbol covers the address.
    pub symbol_offset: Option<u64>,
    /// The source file, as a full path when DWARF gives one.
    pub file: Option<String>,
    /// The source line (never 0).
    pub line: Option<u32>,
    /// The source column (never 0).
    pub column: Option<u32>,
    /// This frame is a function inlined into the next one.
    pub inlined: bool,
}

/// A frame that a tail call left off the stack, rebuilt from DWARF call-site information
/// (see [`ModuleInfo::tail_call_frames`]).
#[derive(Clone, Debug, PartialEq)]
pub struct TailCallFrame {
    /// The address just after the tail-call jump, as a return address would be (what gdb shows
    /// for such a frame).
    pub svma: u64,
    /// The source frames at the jump itself, innermost (most inlined) first, the function that
    /// made the tail call last.
    pub frames: Vec<SourceFrame>,
}

/// Why a module could not be opened at all. Anything less severe becomes a warning.
#[derive(Debug, thiserror::Error)]
pub enum SymbolError {
    /// The file could not be opened or mapped.
    #[error("could not read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not an ELF file this crate can read.
    #[error("{path} is not a readable ELF file: {reason}")]
    NotElf {
        /// The file (or the name given to [`ModuleInfo::from_bytes`]).
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

/// One ELF file, mapped, with everything needed to unwind through it and symbolize it.
pub struct ModuleInfo {
    path: PathBuf,
    bytes: SharedBytes,
    build_id: Option<Vec<u8>>,
    e_machine: u16,
    loads: Vec<LoadSegment>,
    unwind: UnwindSections,
    own_symbols: bool,
    debug: Option<DebugFile>,
    /// Which file's DWARF is used: the module's own, or the debug file's.
    dwarf_owner: Option<SharedBytes>,
    symbols: OnceLock<SymbolTable>,
    dwarf: OnceLock<Option<Mutex<DwarfContext>>>,
    cache: Mutex<foldhash::HashMap<u64, Vec<SourceFrame>>>,
    call_sites: Mutex<tailcall::CallSiteCache>,
    tail_calls: Mutex<foldhash::HashMap<(u64, u64), Vec<TailCallFrame>>>,
    warnings: Mutex<Vec<String>>,
}

impl fmt::Debug for ModuleInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModuleInfo")
            .field("path", &self.path)
            .field("build_id", &self.build_id_hex())
            .field("debug_file", &self.debug_file())
            .finish_non_exhaustive()
    }
}

impl ModuleInfo {
    /// Maps the ELF file at `path` and finds its debug file.
    pub fn open(path: &Path, search: &DebugSearch) -> Result<ModuleInfo, SymbolError> {
        let io_error = |source| SymbolError::Io {
            path: path.to_path_buf(),
            source,
        };
        let map = elf::map_file(path).map_err(io_error)?;
        Self::build(path.to_path_buf(), map, search, true)
    }

    /// Reads an ELF image that exists only in memory (the vDSO). `name` stands for the path
    /// in messages; debug files are looked for by build-id only.
    pub fn from_bytes(
        name: &str,
        bytes: Vec<u8>,
        search: &DebugSearch,
    ) -> Result<ModuleInfo, SymbolError> {
        Self::build(PathBuf::from(name), Arc::new(bytes), search, false)
    }

    fn build(
        path: PathBuf,
        bytes: SharedBytes,
        search: &DebugSearch,
        on_disk: bool,
    ) -> Result<ModuleInfo, SymbolError> {
        let mut warnings = Vec::new();
        let facts =
            elf::read_facts(&bytes, &mut warnings).map_err(|reason| SymbolError::NotElf {
                path: path.clone(),
                reason,
            })?;

        let debug = if facts.has_debug_info {
            None
        } else {
            let debuglink = facts
                .debuglink
                .as_ref()
                .map(|(name, crc)| (name.as_slice(), *crc));
            search::find_debug_file(
                on_disk.then_some(path.as_path()),
                facts.build_id.as_deref(),
                debuglink,
                search,
                &mut warnings,
            )
        };

        let mut unwind = facts.unwind;
        if unwind.debug_frame.is_none() {
            unwind.debug_frame = debug.as_ref().and_then(|d| d.debug_frame.clone());
        }
        let dwarf_owner = if facts.has_debug_info {
            Some(bytes.clone())
        } else {
            debug
                .as_ref()
                .filter(|d| d.has_debug_info)
                .map(|d| d.bytes.clone())
        };

        Ok(ModuleInfo {
            path,
            bytes,
            build_id: facts.build_id,
            e_machine: facts.e_machine,
            loads: facts.loads,
            unwind,
            own_symbols: facts.has_symbols,
            debug,
            dwarf_owner,
            symbols: OnceLock::new(),
            dwarf: OnceLock::new(),
            cache: Mutex::default(),
            call_sites: Mutex::new(tailcall::CallSiteCache::default()),
            tail_calls: Mutex::default(),
            warnings: Mutex::new(warnings),
        })
    }

    /// The path given to [`ModuleInfo::open`] (or the name given to
    /// [`ModuleInfo::from_bytes`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `NT_GNU_BUILD_ID` note, if the file has one.
    pub fn build_id(&self) -> Option<&[u8]> {
        self.build_id.as_deref()
    }

    /// The build-id in lowercase hex.
    pub fn build_id_hex(&self) -> Option<String> {
        self.build_id.as_deref().map(hex)
    }

    /// The separate debug file in use, if any.
    pub fn debug_file(&self) -> Option<&Path> {
        self.debug.as_ref().map(|d| d.path.as_path())
    }

    /// Whether DWARF `.debug_info` is available (the file's own or its debug file's).
    pub fn has_debug_info(&self) -> bool {
        self.dwarf_owner.is_some()
    }

    /// Whether a symbol table is available: `.symtab` or `.dynsym` of the file, or `.symtab`
    /// of its debug file.
    pub fn has_symbols(&self) -> bool {
        self.own_symbols || self.debug.as_ref().is_some_and(|d| d.has_symtab)
    }

    /// The SVMA of a named symbol of any kind (functions and data, e.g. glibc's `__abort_msg`),
    /// from `.dynsym` and `.symtab` of the file and `.symtab` of its debug file; `None` when no
    /// table names it. A name is looked up rarely, so this reads the tables instead of indexing.
    pub fn symbol_address(&self, name: &str) -> Option<u64> {
        use object::{Object, ObjectSymbol};
        let lookup = |data: &[u8]| -> Option<u64> {
            let file = crate::elf::parse(data).ok()?;
            let found = file
                .dynamic_symbols()
                .chain(file.symbols())
                .find(|s| s.name() == Ok(name) && s.address() != 0 && !s.is_undefined())
                .map(|s| s.address());
            found
        };
        catch_unwind(AssertUnwindSafe(|| {
            lookup(crate::elf::bytes_of(&self.bytes))
                .or_else(|| self.debug.as_ref().and_then(|d| lookup(crate::elf::bytes_of(&d.bytes))))
        }))
        .ok()
        .flatten()
    }

    /// `e_machine` of the ELF header (62 for x86_64, 183 for aarch64).
    pub fn e_machine(&self) -> u16 {
        self.e_machine
    }

    /// The SVMA span of the `PT_LOAD` segments (empty when there are none).
    pub fn svma_range(&self) -> Range<u64> {
        let start = self.loads.iter().map(|l| l.vaddr).min().unwrap_or(0);
        let end = self
            .loads
            .iter()
            .map(|l| l.vaddr.saturating_add(l.memsz))
            .max()
            .unwrap_or(0);
        start..end.max(start)
    }

    /// The bias (`avma - svma`, wrapping) of this module, given that the mapping of the file
    /// at `file_offset` starts at `mapping_start`. `None` when no `PT_LOAD` segment covers
    /// that offset.
    ///
    /// Exact for the mapping of file offset 0 and for any page only one segment covers. A
    /// file page shared by two segments (read-only data and the RELRO start of the data
    /// segment, typically) is mapped twice and the two mappings cannot be told apart from
    /// `(start, offset)` alone; then the segment that starts on that page is assumed. Prefer
    /// the mapping with the lowest file offset, or [`ModuleInfo::bias_from_mappings`].
    pub fn bias_for(&self, mapping_start: u64, file_offset: u64) -> Option<u64> {
        elf::candidate_biases(&self.loads, mapping_start, file_offset)
            .first()
            .copied()
    }

    /// The bias that explains the most of this module's mappings, each given as
    /// `(mapping_start, file_offset)`; robust against the shared-page ambiguity of
    /// [`ModuleInfo::bias_for`]. Ties go to the mapping listed first.
    pub fn bias_from_mappings(&self, mappings: &[(u64, u64)]) -> Option<u64> {
        elf::bias_from_mappings(&self.loads, mappings)
    }

    /// The unwind sections; cheap to call (the bytes are shared, not copied).
    pub fn unwind_sections(&self) -> UnwindSections {
        self.unwind.clone()
    }

    /// What went wrong so far without stopping the module from being used: rejected debug
    /// files, unreadable DWARF or symbol tables.
    pub fn warnings(&self) -> Vec<String> {
        lock(&self.warnings).clone()
    }

    /// The source frames at `svma`, innermost (most inlined) first, the real function last.
    /// Empty when nothing is known about the address.
    pub fn symbolize(&self, svma: u64) -> Vec<SourceFrame> {
        if let Some(frames) = lock(&self.cache).get(&svma) {
            return frames.clone();
        }
        // gimli and the demanglers are not supposed to panic, but they read untrusted bytes;
        // one bad unit must not take the whole snapshot down.
        let frames = catch_unwind(AssertUnwindSafe(|| self.symbolize_uncached(svma)))
            .unwrap_or_else(|_| {
                self.warn(format!(
                    "{}: symbolizing {svma:#x} failed on malformed data",
                    self.path.display()
                ));
                Vec::new()
            });
        lock(&self.cache).insert(svma, frames.clone());
        frames
    }

    fn symbolize_uncached(&self, svma: u64) -> Vec<SourceFrame> {
        let mut frames = self.dwarf_frames(svma);
        let symbol = self.symbol_table().lookup(svma);
        match (frames.last_mut(), symbol) {
            (Some(outermost), Some(symbol)) => {
                let dwarf_name = outermost.mangled.as_deref();
                let is_alias = dwarf_name.is_some_and(|name| symbol.is_alias(name));
                if outermost.function.is_none() || is_alias {
                    // DWARF may name a function by an internal alias of it (glibc's
                    // `__GI_abort` for `abort`); the symbol table knows which of the names
                    // at that address is the public one.
                    outermost.function = Some(symtab::demangle(symbol.name));
                    outermost.mangled = Some(symbol.name.to_string());
                    outermost.symbol_offset = Some(symbol.offset);
                } else if symbol.contains {
                    outermost.symbol_offset = Some(symbol.offset);
                }
            }
            (None, Some(symbol)) => frames.push(SourceFrame {
                function: Some(symtab::demangle(symbol.name)),
                mangled: Some(symbol.name.to_string()),
                symbol_offset: Some(symbol.offset),
                file: None,
                line: None,
                column: None,
                inlined: false,
            }),
            (_, None) => {}
        }
        frames
    }

    /// The frames that tail calls left out between a caller and its callee, both in this
    /// module, innermost (nearest the callee) first; each is to be shown between the two.
    ///
    /// `caller_return_svma` is the caller's return address (the pc of the caller's frame, not
    /// pc minus one); `callee_svma` is any address inside the callee (its pc, or its return
    /// address minus one). This is gdb's reconstruction: the `DW_TAG_call_site` at the caller's return
    /// address names the function called; when that is not the callee's function, the
    /// `DW_AT_call_tail_call` call sites in it (and up to a few levels below) that reach the
    /// callee are the missing frames. Empty when the module has no call-site information, when
    /// the call is indirect, when no chain or more than one chain fits. Answers are cached.
    pub fn tail_call_frames(
        &self,
        caller_return_svma: u64,
        callee_svma: u64,
    ) -> Vec<TailCallFrame> {
        let key = (caller_return_svma, callee_svma);
        if let Some(frames) = lock(&self.tail_calls).get(&key) {
            return frames.clone();
        }
        let chain = catch_unwind(AssertUnwindSafe(|| {
            self.tail_call_chain(caller_return_svma, callee_svma)
        }))
        .unwrap_or_else(|_| {
            self.warn(format!(
                "{}: reading call sites at {caller_return_svma:#x} failed on malformed data",
                self.path.display()
            ));
            Vec::new()
        });
        let frames: Vec<TailCallFrame> = chain
            .into_iter()
            .map(|(svma, lookup_svma)| TailCallFrame {
                svma,
                frames: self.symbolize(lookup_svma),
            })
            .collect();
        lock(&self.tail_calls).insert(key, frames.clone());
        frames
    }

    /// The call sites of the missing frames as (return address, address of the jump).
    fn tail_call_chain(&self, caller_return_svma: u64, callee_svma: u64) -> Vec<(u64, u64)> {
        let Some(context) = self.dwarf_context() else {
            return Vec::new();
        };
        let symbols = self.symbol_table();
        let callee_entry = symbols
            .lookup(callee_svma)
            .filter(|hit| hit.contains)
            .map(|hit| callee_svma.wrapping_sub(hit.offset));
        let address_of = |name: &str| symbols.address_of(name);
        let context = lock(context);
        let mut cache = lock(&self.call_sites);
        tailcall::find_chain(
            &context,
            &mut cache,
            &address_of,
            callee_entry,
            caller_return_svma,
            callee_svma,
        )
    }

    fn dwarf_context(&self) -> Option<&Mutex<DwarfContext>> {
        self.dwarf
            .get_or_init(|| {
                let owner = self.dwarf_owner.as_ref()?;
                let label = self.debug_file().unwrap_or(&self.path).to_path_buf();
                match dwarf::load_context(owner) {
                    Ok(context) => Some(Mutex::new(context)),
                    Err(reason) => {
                        self.warn(format!("{}: DWARF not usable: {reason}", label.display()));
                        None
                    }
                }
            })
            .as_ref()
    }

    fn dwarf_frames(&self, svma: u64) -> Vec<SourceFrame> {
        let Some(context) = self.dwarf_context() else {
            return Vec::new();
        };
        let (frames, error) = dwarf::find_frames(&lock(context), svma);
        if let Some(error) = error {
            self.warn(format!(
                "{}: DWARF error at {svma:#x}: {error}",
                self.debug_file().unwrap_or(&self.path).display()
            ));
        }
        frames
    }

    fn symbol_table(&self) -> &SymbolTable {
        self.symbols.get_or_init(|| {
            let mut warnings = Vec::new();
            let debug = self.debug.as_ref().map(|d| &d.bytes);
            let table = SymbolTable::build(
                &self.bytes,
                debug,
                &self.unwind.text_svma_ranges,
                &mut warnings,
            );
            for warning in warnings {
                self.warn(format!("{}: {warning}", self.path.display()));
            }
            table
        })
    }

    fn warn(&self, warning: String) {
        let mut warnings = lock(&self.warnings);
        // Per-address DWARF errors tend to repeat; keep one of each.
        if !warnings.contains(&warning) {
            warnings.push(warning);
        }
    }
}

/// Locks a mutex, going on with the data when a panic poisoned it: the data is a cache or a
/// list of warnings, never left half-updated in a way that matters.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn module_info_is_send_and_sync() {
        assert_send_sync::<ModuleInfo>();
    }

    #[test]
    fn roots_follow_the_sysroot() {
        let host = DebugSearch {
            sysroot: None,
            debug_dirs: vec![PathBuf::from("/a")],
        };
        assert_eq!(
            host.roots(),
            vec![PathBuf::from("/a"), PathBuf::from("/usr/lib/debug")]
        );
        let sysroot = DebugSearch {
            sysroot: Some(PathBuf::from("/s")),
            debug_dirs: vec![],
        };
        assert_eq!(sysroot.roots(), vec![PathBuf::from("/s/usr/lib/debug")]);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let search = DebugSearch::default();
        for bytes in [Vec::new(), b"\x7fELF".to_vec(), vec![0xff; 4096]] {
            let error = ModuleInfo::from_bytes("junk", bytes, &search).unwrap_err();
            assert!(
                error
                    .to_string()
                    .starts_with("junk is not a readable ELF file"),
                "{error}"
            );
        }
        let missing = ModuleInfo::open(Path::new("/nonexistent/coresnap"), &search).unwrap_err();
        assert!(
            missing.to_string().contains("/nonexistent/coresnap"),
            "{missing}"
        );
    }
}
