//! The host's libc and CPython with their Debian debug packages (libc6-dbg, python3.11-dbg),
//! and the arm64 corpus sysroot, checked against binutils.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use coresnap_symbols::{DebugSearch, ModuleInfo};

/// Exported functions checked in every libc, mid-function so inlined code shows up too.
const LIBC_FUNCTIONS: [&str; 5] = ["abort", "malloc", "printf", "qsort", "raise"];

/// What a path to a file under `.build-id` looks like for `build_id` in `root`.
fn build_id_path(root: &Path, build_id: &str) -> PathBuf {
    root.join(".build-id")
        .join(&build_id[..2])
        .join(format!("{}.debug", &build_id[2..]))
}

fn require(path: &Path, why: &str) {
    assert!(path.exists(), "{} is missing: {why}", path.display());
}

/// Checks `module` against binutils' `addr2line` run on the debug file, for the middle of each
/// exported function, and that each function's start symbolizes to its own name.
fn check_against_binutils(module: &ModuleInfo, library: &Path, debug_file: &Path, tools: &str) {
    for function in LIBC_FUNCTIONS {
        let (start, size) = nm_symbol_with(tools, library, function);
        let frames = module.symbolize(start);
        let real = frames
            .last()
            .unwrap_or_else(|| panic!("{function}: nothing at its start"));
        // DWARF names the function as its source does (`__libc_malloc` for `malloc`): any
        // public name at that address will do, an internal `__GI_` alias will not.
        let aliases = names_at(tools, library, debug_file, start);
        let name = real.function.as_deref().unwrap_or_default();
        assert!(
            aliases.iter().any(|a| a == name),
            "{function}: {name} not in {aliases:?}"
        );
        assert!(!name.starts_with("__GI_"), "{function}: {name}");
        assert_eq!(real.symbol_offset, Some(0), "{function}");
        assert!(
            real.file.is_some() && real.line.is_some(),
            "{function}: {real:?}"
        );

        // binutils names the real function as DWARF does (`__GI_abort`, `__printf`); this
        // crate gives the public name the symbol table has at that address. Any name at the
        // function's start is the same function; inlined frames and lines must agree exactly.
        let middle = start + size / 2;
        let ours = module.symbolize(middle);
        let theirs = binutils_frames_with(tools, debug_file, middle);
        let context = format!(
            "{function}+{:#x} in {}: {ours:#?} vs {theirs:?}",
            size / 2,
            library.display()
        );
        assert_eq!(ours.len(), theirs.len(), "{context}");
        for (i, (our, their)) in ours.iter().zip(&theirs).enumerate() {
            assert_eq!(our.line, their.1, "{context}");
            let our_name = our.function.as_deref().unwrap_or_default();
            if i + 1 == ours.len() {
                assert!(aliases.iter().any(|a| a == our_name), "{context}");
                assert!(aliases.contains(&their.0), "{context}");
            } else {
                assert_eq!(our_name, their.0, "{context}");
            }
        }
    }
}

/// Every name `nm` gives at `address` in the library's `.dynsym` and the debug file's
/// `.symtab`.
fn names_at(tools: &str, library: &Path, debug_file: &Path, address: u64) -> Vec<String> {
    let nm = format!("{tools}nm");
    let dynamic = run(&nm, &["-D", "--defined-only", &s(library)]);
    let full = run(&nm, &["--defined-only", &s(debug_file)]);
    dynamic
        .lines()
        .chain(full.lines())
        .filter_map(
            |line| match line.split_whitespace().collect::<Vec<_>>()[..] {
                [at, _, name] if u64::from_str_radix(at, 16).ok() == Some(address) => {
                    Some(name.split('@').next().unwrap_or(name).to_string())
                }
                _ => None,
            },
        )
        .collect()
}

fn nm_symbol_with(tools: &str, file: &Path, name: &str) -> (u64, u64) {
    if tools.is_empty() {
        return nm_symbol(file, name, true);
    }
    let out = run(
        &format!("{tools}nm"),
        &["-S", "-D", "--defined-only", &s(file)],
    );
    out.lines()
        .find_map(
            |line| match line.split_whitespace().collect::<Vec<_>>()[..] {
                [address, size, _, symbol] if symbol.split('@').next() == Some(name) => Some((
                    u64::from_str_radix(address, 16).ok()?,
                    u64::from_str_radix(size, 16).ok()?,
                )),
                _ => None,
            },
        )
        .unwrap_or_else(|| panic!("{name} not in {}", file.display()))
}

fn binutils_frames_with(tools: &str, file: &Path, address: u64) -> Vec<(String, Option<u32>)> {
    if tools.is_empty() {
        return binutils_frames(file, address);
    }
    let out = run(
        &format!("{tools}addr2line"),
        &["-f", "-i", "-C", "-e", &s(file), &format!("{address:#x}")],
    );
    out.lines()
        .collect::<Vec<_>>()
        .chunks(2)
        .map(|pair| {
            let line = pair
                .get(1)
                .and_then(|l| l.rsplit(':').next())
                .and_then(|l| l.split_whitespace().next())
                .and_then(|l| l.parse().ok());
            (pair[0].to_string(), line)
        })
        .collect()
}

#[test]
fn host_libc_with_libc6_dbg() {
    let libc = Path::new("/lib/x86_64-linux-gnu/libc.so.6");
    require(libc, "this test needs the host's glibc");
    let build_id = readelf_build_id(libc).expect("libc has a build-id");
    let debug_file = build_id_path(Path::new("/usr/lib/debug"), &build_id);
    require(&debug_file, "install libc6-dbg (the corpus generator does)");

    let opened = Instant::now();
    let module = ModuleInfo::open(libc, &DebugSearch::default()).expect("open libc");
    assert_eq!(module.e_machine(), 62);
    assert_eq!(module.build_id_hex().as_deref(), Some(build_id.as_str()));
    assert_eq!(module.debug_file(), Some(debug_file.as_path()));
    assert!(module.has_debug_info() && module.has_symbols());
    let sections = module.unwind_sections();
    assert!(sections.eh_frame.is_some() && sections.eh_frame_hdr.is_some());

    let (abort, _) = nm_symbol(libc, "abort", true);
    let frames = module.symbolize(abort + 4);
    let first_lookup = opened.elapsed();
    let real = frames.last().expect("a frame for abort");
    assert_eq!(real.function.as_deref(), Some("abort"), "{frames:#?}");
    assert_eq!(real.symbol_offset, Some(4));
    assert!(
        real.file.as_deref().is_some_and(|f| f.ends_with("abort.c")),
        "{real:?}"
    );
    // Opening plus the first lookup decompresses and indexes the DWARF of a 4 MB debug file;
    // the bound is loose because tests run unoptimized.
    assert!(
        first_lookup < Duration::from_secs(20),
        "first lookup took {first_lookup:?}"
    );

    check_against_binutils(&module, libc, &debug_file, "");
    assert!(module.warnings().is_empty(), "{:?}", module.warnings());
}

#[test]
fn cpython_with_python3_dbg() {
    let python = Path::new("/usr/bin/python3.11");
    require(python, "this test needs python3.11");
    let build_id = readelf_build_id(python).expect("python has a build-id");
    let debug_file = build_id_path(Path::new("/usr/lib/debug"), &build_id);
    require(
        &debug_file,
        "install python3.11-dbg (the corpus generator does)",
    );

    let started = Instant::now();
    let module = ModuleInfo::open(python, &DebugSearch::default()).expect("open python");
    assert_eq!(module.debug_file(), Some(debug_file.as_path()));
    let (start, size) = nm_symbol(python, "_PyEval_EvalFrameDefault", true);
    let frames = module.symbolize(start + size / 3);
    let first_lookup = started.elapsed();
    let real = frames.last().expect("frames");
    assert_eq!(
        real.function.as_deref(),
        Some("_PyEval_EvalFrameDefault"),
        "{frames:#?}"
    );
    assert!(
        real.file.as_deref().is_some_and(|f| f.ends_with("ceval.c")),
        "{real:?}"
    );
    assert!(
        first_lookup < Duration::from_secs(30),
        "first lookup took {first_lookup:?}"
    );

    // Later lookups in other units are parsed lazily, one unit at a time.
    let (main, _) = nm_symbol(python, "Py_BytesMain", true);
    let started = Instant::now();
    let frames = module.symbolize(main);
    assert_eq!(
        frames.last().and_then(|f| f.function.as_deref()),
        Some("Py_BytesMain")
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn arm64_corpus_libc_with_its_sysroot_debug_tree() {
    let sysroot = corpus_dir().join("arm64/corpus/sysroot");
    require(
        &sysroot,
        "the arm64 corpus is needed (set CORESNAP_CORPUS_DIR or build /tmp/coresnap-corpus)",
    );
    let libc = sysroot.join("usr/lib/aarch64-linux-gnu/libc.so.6");
    require(&libc, "the arm64 sysroot should hold libc");
    let build_id = readelf_build_id(&libc).expect("libc has a build-id");
    let debug_file = build_id_path(&sysroot.join("usr/lib/debug"), &build_id);
    require(
        &debug_file,
        "the arm64 sysroot should hold libc6-dbg's debug file",
    );

    let search = DebugSearch {
        sysroot: Some(sysroot.clone()),
        debug_dirs: Vec::new(),
    };
    let module = ModuleInfo::open(&libc, &search).expect("open arm64 libc");
    assert_eq!(module.e_machine(), 183);
    assert_eq!(module.debug_file(), Some(debug_file.as_path()));
    assert!(module.has_debug_info());
    assert!(module.unwind_sections().eh_frame_hdr.is_some());

    let (abort, _) = nm_symbol_with("aarch64-linux-gnu-", &libc, "abort");
    let frames = module.symbolize(abort + 8);
    let real = frames.last().expect("a frame for abort");
    assert_eq!(real.function.as_deref(), Some("abort"), "{frames:#?}");
    assert_eq!(real.symbol_offset, Some(8));
    assert!(
        real.file.as_deref().is_some_and(|f| f.ends_with("abort.c")),
        "{real:?}"
    );

    check_against_binutils(&module, &libc, &debug_file, "aarch64-linux-gnu-");
    assert!(module.warnings().is_empty(), "{:?}", module.warnings());
}

#[test]
fn corpus_stripped_case_uses_its_build_id_tree() {
    let case = corpus_dir().join("corpus/stripped");
    require(
        &case,
        "the x86_64 corpus is needed (set CORESNAP_CORPUS_DIR or build /tmp/coresnap-corpus)",
    );
    let exe = case.join("exe");
    let root = case.join("usr/lib/debug");
    let build_id = readelf_build_id(&exe).expect("the case's exe has a build-id");
    let debug_file = build_id_path(&root, &build_id);
    require(&debug_file, "the stripped case ships its debug file");

    let search = DebugSearch {
        sysroot: None,
        debug_dirs: vec![root],
    };
    let module = ModuleInfo::open(&exe, &search).expect("open the case's exe");
    assert_eq!(module.debug_file(), Some(debug_file.as_path()));
    // Every function the ground truth names is found at its own address, with a line.
    let expected = std::fs::read_to_string(case.join("expected.json")).expect("expected.json");
    for function in ["level3", "level2", "level1", "main"] {
        assert!(
            expected.contains(&format!("\"{function}\"")),
            "{function} in expected.json"
        );
        let (start, size) = nm_symbol(&debug_file, function, false);
        let frames = module.symbolize(start + size / 2);
        let real = frames
            .last()
            .unwrap_or_else(|| panic!("nothing for {function}"));
        assert_eq!(real.function.as_deref(), Some(function), "{frames:#?}");
        assert_eq!(real.symbol_offset, Some(size / 2));
        assert!(
            real.file.as_deref().is_some_and(|f| f.ends_with("crash.c")),
            "{real:?}"
        );
    }
}
