//! Binaries compiled here with gcc, g++ and rustc, checked against binutils.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use coresnap_symbols::{DebugSearch, ModuleInfo, SourceFrame};

const INLINE_C: &str = r#"
static inline __attribute__((always_inline)) int leaf(volatile int *p) {
  return *p * 3; /* LEAF */
}
static inline __attribute__((always_inline)) int middle(volatile int *p) {
  return leaf(p) + 1; /* MIDDLE */
}
__attribute__((noinline)) int outer(volatile int *p) {
  return middle(p) + 2; /* OUTER */
}
int main(int argc, char **argv) {
  (void)argv;
  volatile int x = argc;
  return outer(&x);
}
"#;

/// A search that looks nowhere on the host, so tests see only the files they made.
fn isolated(scratch: &Scratch) -> DebugSearch {
    let sysroot = scratch.path("empty-sysroot");
    std::fs::create_dir_all(&sysroot).expect("create empty sysroot");
    DebugSearch {
        sysroot: Some(sysroot),
        debug_dirs: Vec::new(),
    }
}

fn gcc(scratch: &Scratch, source_name: &str, source: &str, out: &str, flags: &[&str]) -> PathBuf {
    let source_path = scratch.write(source_name, source);
    let out_path = scratch.path(out);
    let compiler = if source_name.ends_with(".cpp") {
        "g++"
    } else {
        "gcc"
    };
    let mut args: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
    args.extend([s(&source_path), "-o".to_string(), s(&out_path)]);
    run(compiler, &args);
    out_path
}

/// The first address in `outer` where DWARF shows leaf and middle inlined into it.
fn find_inlined_address(module: &ModuleInfo, start: u64, size: u64) -> (u64, Vec<SourceFrame>) {
    (start..start + size)
        .map(|a| (a, module.symbolize(a)))
        .find(|(_, frames)| frames.len() == 3)
        .unwrap_or_else(|| panic!("no address in outer has three frames"))
}

fn check_inlined(opt: &str) {
    let scratch = Scratch::new(&format!("inline{opt}"));
    let exe = gcc(&scratch, "inline.c", INLINE_C, "inline", &["-g", opt]);
    let module = ModuleInfo::open(&exe, &isolated(&scratch)).expect("open");
    assert!(module.has_debug_info() && module.has_symbols());
    assert_eq!(
        module.debug_file(),
        None,
        "the binary carries its own DWARF"
    );

    let (start, size) = nm_symbol(&exe, "outer", false);
    let (address, frames) = find_inlined_address(&module, start, size);
    let names: Vec<_> = frames.iter().map(|f| f.function.as_deref()).collect();
    assert_eq!(
        names,
        [Some("leaf"), Some("middle"), Some("outer")],
        "{opt}: {frames:#?}"
    );
    assert_eq!(
        frames.iter().map(|f| f.inlined).collect::<Vec<_>>(),
        [true, true, false]
    );
    let lines: Vec<_> = frames.iter().map(|f| f.line).collect();
    assert_eq!(
        lines,
        [
            Some(line_of(INLINE_C, "LEAF")),
            Some(line_of(INLINE_C, "MIDDLE")),
            Some(line_of(INLINE_C, "OUTER"))
        ],
        "{opt}: {frames:#?}"
    );
    for frame in &frames {
        assert!(
            frame
                .file
                .as_deref()
                .is_some_and(|f| f.ends_with("/inline.c")),
            "{frame:?}"
        );
    }
    assert_eq!(frames[2].symbol_offset, Some(address - start));
    assert_eq!(
        frames[0].symbol_offset, None,
        "only the real frame has a symbol offset"
    );

    // binutils agrees on the whole chain.
    let expected: Vec<(String, Option<u32>)> = binutils_frames(&exe, address);
    let ours: Vec<(String, Option<u32>)> = frames
        .iter()
        .map(|f| (f.function.clone().unwrap_or_default(), f.line))
        .collect();
    assert_eq!(ours, expected, "{opt} at {address:#x}");

    // A second lookup comes from the cache and is identical.
    assert_eq!(module.symbolize(address), frames);
    assert!(module.warnings().is_empty(), "{:?}", module.warnings());
}

#[test]
fn c_inlined_frames_at_o0() {
    check_inlined("-O0");
}

#[test]
fn c_inlined_frames_at_o2() {
    check_inlined("-O2");
}

const TEMPLATE_CPP: &str = r#"
namespace geo {
template <typename T> struct Box {
  T v;
  __attribute__((noinline)) T area(T w) const {
    return w * w + v; /* AREA */
  }
};
}
int main(int argc, char **) {
  geo::Box<long> b{argc};
  return (int)b.area(argc);
}
"#;

#[test]
fn cpp_templates_and_namespaces_are_demangled() {
    let scratch = Scratch::new("cpp");
    let search = isolated(&scratch);
    let mangled = "_ZNK3geo3BoxIlE4areaEl";
    // Frames are named the way gdb names them: without the parameter list (c++filt -p).
    let demangled = run("c++filt", &["-p", mangled]).trim().to_string();
    assert_eq!(demangled, "geo::Box<long>::area");

    for (flags, with_dwarf) in [(&["-g", "-O1"][..], true), (&["-O1"][..], false)] {
        let exe = gcc(&scratch, "box.cpp", TEMPLATE_CPP, "box", flags);
        let module = ModuleInfo::open(&exe, &search).expect("open");
        assert_eq!(module.has_debug_info(), with_dwarf);
        let (start, _) = nm_symbol(&exe, mangled, false);
        let frames = module.symbolize(start + 1);
        let real = frames.last().expect("a frame");
        assert_eq!(
            real.function.as_deref(),
            Some(demangled.as_str()),
            "{frames:#?}"
        );
        assert_eq!(real.mangled.as_deref(), Some(mangled));
        assert_eq!(real.symbol_offset, Some(1));
        if with_dwarf {
            assert_eq!(real.line, Some(line_of(TEMPLATE_CPP, "AREA")));
            assert!(real.file.as_deref().is_some_and(|f| f.ends_with("box.cpp")));
        } else {
            assert_eq!((real.file.as_deref(), real.line), (None, None));
        }
    }
}

const RUST_SOURCE: &str = r#"
mod shapes {
    #[inline(never)]
    pub fn area(w: u64) -> u64 {
        w * w + 1 // AREA
    }
}
fn main() {
    let n = std::env::args().count() as u64;
    std::process::exit(shapes::area(n) as i32);
}
"#;

#[test]
fn rust_legacy_and_v0_names_are_demangled() {
    let scratch = Scratch::new("rust");
    let search = isolated(&scratch);
    let source = scratch.write("crashy.rs", RUST_SOURCE);
    let cases: [(&str, &[&str], bool); 4] = [
        ("legacy-g", &["-g"], true),
        ("v0-g", &["-g", "-Csymbol-mangling-version=v0"], true),
        ("legacy-symtab", &["-Cdebuginfo=0"], false),
        (
            "v0-symtab",
            &["-Cdebuginfo=0", "-Csymbol-mangling-version=v0"],
            false,
        ),
    ];
    for (name, flags, with_dwarf) in cases {
        let exe = scratch.path(name);
        let mut args: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        args.extend([
            "--crate-name".into(),
            "crashy".into(),
            s(&source),
            "-o".into(),
            s(&exe),
        ]);
        run("rustc", &args);

        let (symbol, start, _) = nm_symbol_containing(&exe, "6shapes4area");
        let module = ModuleInfo::open(&exe, &search).expect("open");
        let frames = module.symbolize(start);
        let real = frames.last().unwrap_or_else(|| panic!("{name}: no frame"));
        assert_eq!(
            real.function.as_deref(),
            Some("crashy::shapes::area"),
            "{name}: {frames:#?}"
        );
        assert_eq!(real.mangled.as_deref(), Some(symbol.as_str()), "{name}");
        assert_eq!(real.symbol_offset, Some(0), "{name}");
        if with_dwarf {
            assert!(
                real.file
                    .as_deref()
                    .is_some_and(|f| f.ends_with("crashy.rs")),
                "{name}"
            );
        }
    }
}

/// A -g binary with a build-id, its debug file, and the stripped copy.
fn build_stripped(scratch: &Scratch, name: &str, source: &str) -> (PathBuf, PathBuf, PathBuf) {
    let exe = gcc(
        scratch,
        &format!("{name}.c"),
        source,
        name,
        &["-g", "-O2", "-Wl,--build-id"],
    );
    let debug = scratch.path(&format!("{name}.debug"));
    let stripped = scratch.path(&format!("{name}.stripped"));
    run("objcopy", &["--only-keep-debug", &s(&exe), &s(&debug)]);
    run("objcopy", &["--strip-all", &s(&exe), &s(&stripped)]);
    (exe, debug, stripped)
}

fn install_by_build_id(root: &Path, build_id: &str, debug: &Path) -> PathBuf {
    let target = root
        .join(".build-id")
        .join(&build_id[..2])
        .join(format!("{}.debug", &build_id[2..]));
    std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
    std::fs::copy(debug, &target).expect("copy debug file");
    target
}

#[test]
fn stripped_binary_uses_its_debug_file_from_a_build_id_tree() {
    let scratch = Scratch::new("buildid");
    let (exe, debug, stripped) = build_stripped(&scratch, "inline", INLINE_C);
    let build_id = readelf_build_id(&stripped).expect("build-id");
    let root = scratch.path("debugroot");
    let installed = install_by_build_id(&root, &build_id, &debug);

    let mut search = isolated(&scratch);
    let bare = ModuleInfo::open(&stripped, &search).expect("open stripped");
    assert!(
        !bare.has_debug_info() && bare.has_symbols(),
        ".dynsym is left"
    );
    assert_eq!(bare.build_id_hex().as_deref(), Some(build_id.as_str()));
    assert!(
        bare.symbolize(nm_symbol(&exe, "outer", false).0).is_empty(),
        "outer is not exported"
    );

    search.debug_dirs.push(root.clone());
    let module = ModuleInfo::open(&stripped, &search).expect("open stripped");
    assert_eq!(module.debug_file(), Some(installed.as_path()));
    assert!(module.has_debug_info());
    let (start, size) = nm_symbol(&exe, "outer", false);
    let (address, frames) = find_inlined_address(&module, start, size);
    let original = ModuleInfo::open(&exe, &search).expect("open original");
    assert_eq!(
        frames,
        original.symbolize(address),
        "same answer as the unstripped binary"
    );
    assert_eq!(
        frames[2].symbol_offset,
        Some(address - start),
        "from the debug file's .symtab"
    );

    // Another program's debug file at this build-id path is refused, with a warning.
    let (_, other_debug, _) = build_stripped(&scratch, "other", "int main(void) { return 7; }\n");
    std::fs::copy(&other_debug, &installed).expect("overwrite");
    let refused = ModuleInfo::open(&stripped, &search).expect("open stripped");
    assert_eq!(refused.debug_file(), None);
    assert!(!refused.has_debug_info());
    let warnings = refused.warnings();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains(&s(&installed)) && w.contains("build-id")),
        "{warnings:?}"
    );
}

#[test]
fn gnu_debuglink_beside_in_dot_debug_and_under_a_root() {
    let scratch = Scratch::new("debuglink");
    let sysroot = scratch.path("sysroot");
    let app_dir = sysroot.join("opt/app");
    std::fs::create_dir_all(&app_dir).expect("mkdir");
    // No build-ids: only the CRC identifies the debug file.
    let exe = gcc(
        &scratch,
        "prog.c",
        INLINE_C,
        "prog",
        &["-g", "-O2", "-Wl,--build-id=none"],
    );
    let debug = scratch.path("prog.debug");
    run("objcopy", &["--only-keep-debug", &s(&exe), &s(&debug)]);
    let linked = app_dir.join("prog");
    run(
        "objcopy",
        &[
            "--strip-all",
            &format!("--add-gnu-debuglink={}", s(&debug)),
            &s(&exe),
            &s(&linked),
        ],
    );

    let search = DebugSearch {
        sysroot: Some(sysroot.clone()),
        debug_dirs: Vec::new(),
    };
    let (start, size) = nm_symbol(&exe, "outer", false);
    let places = [
        app_dir.join("prog.debug"),
        app_dir.join(".debug/prog.debug"),
        sysroot.join("usr/lib/debug/opt/app/prog.debug"),
    ];
    for place in &places {
        std::fs::create_dir_all(place.parent().expect("parent")).expect("mkdir");
        std::fs::copy(&debug, place).expect("copy");
        let module = ModuleInfo::open(&linked, &search).expect("open");
        assert_eq!(module.build_id(), None);
        assert_eq!(module.debug_file(), Some(place.as_path()));
        let (_, frames) = find_inlined_address(&module, start, size);
        assert_eq!(frames[2].function.as_deref(), Some("outer"));
        std::fs::remove_file(place).expect("remove");
    }

    // A debug file of the same name from another build: the CRC differs, it is not used.
    let other = gcc(
        &scratch,
        "prog2.c",
        "int main(void) { return 3; }\n",
        "prog2",
        &["-g", "-Wl,--build-id=none"],
    );
    run(
        "objcopy",
        &["--only-keep-debug", &s(&other), &s(&places[0])],
    );
    let module = ModuleInfo::open(&linked, &search).expect("open");
    assert_eq!(module.debug_file(), None);
    let warnings = module.warnings();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("CRC32") && w.contains(&s(&places[0]))),
        "{warnings:?}"
    );
}

/// `ch_type` of the ELF compression header at the start of a section (1 zlib, 2 zstd).
fn compression_type(file: &Path, section: &str) -> u32 {
    let sections = readelf_sections(file);
    let (_, offset, _, flags) = sections
        .iter()
        .find(|(name, ..)| name == section)
        .unwrap_or_else(|| panic!("no {section}"));
    assert!(
        flags.contains('C'),
        "{section} is not SHF_COMPRESSED: {flags}"
    );
    let bytes = std::fs::read(file).expect("read");
    let at = usize::try_from(*offset).expect("offset");
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
}

#[test]
fn compressed_debug_sections_zlib_zstd_and_zdebug() {
    let scratch = Scratch::new("compressed");
    let search = isolated(&scratch);
    let plain = gcc(&scratch, "inline.c", INLINE_C, "plain", &["-g", "-O2"]);
    let gz = gcc(
        &scratch,
        "inline.c",
        INLINE_C,
        "gz",
        &["-g", "-O2", "-gz=zlib"],
    );
    assert_eq!(compression_type(&gz, ".debug_info"), 1);
    let zstd = scratch.path("zstd");
    run(
        "objcopy",
        &["--compress-debug-sections=zstd", &s(&plain), &s(&zstd)],
    );
    assert_eq!(compression_type(&zstd, ".debug_info"), 2);
    let gnu = scratch.path("zdebug");
    run(
        "objcopy",
        &["--compress-debug-sections=zlib-gnu", &s(&plain), &s(&gnu)],
    );
    assert!(readelf_sections(&gnu)
        .iter()
        .any(|(name, ..)| name == ".zdebug_info"));

    let (start, size) = nm_symbol(&plain, "outer", false);
    let reference = ModuleInfo::open(&plain, &search).expect("open");
    let (address, expected) = find_inlined_address(&reference, start, size);
    for exe in [&gz, &zstd, &gnu] {
        let module = ModuleInfo::open(exe, &search).expect("open");
        assert!(module.has_debug_info(), "{}", exe.display());
        assert_eq!(module.symbolize(address), expected, "{}", exe.display());
        assert!(module.warnings().is_empty(), "{:?}", module.warnings());
    }
}

const MAPS_C: &str = r#"
#include <stdio.h>
int main(void) {
  printf("main %p\n", (void *)main);
  FILE *maps = fopen("/proc/self/maps", "r");
  char line[4096];
  while (maps && fgets(line, sizeof line, maps)) fputs(line, stdout);
  return 0;
}
"#;

#[test]
fn bias_matches_the_running_process_for_pie_and_no_pie() {
    let scratch = Scratch::new("bias");
    let search = isolated(&scratch);
    for (name, flags) in [
        ("pie", &["-fPIE", "-pie"][..]),
        ("nopie", &["-fno-PIE", "-no-pie"][..]),
    ] {
        let exe = gcc(&scratch, "maps.c", MAPS_C, name, flags);
        let module = ModuleInfo::open(&exe, &search).expect("open");
        let (main_svma, _) = nm_symbol(&exe, "main", false);
        let output = run(&s(&exe), &[] as &[&str]);
        let main_avma = output
            .lines()
            .find_map(|l| l.strip_prefix("main 0x"))
            .and_then(|a| u64::from_str_radix(a, 16).ok())
            .expect("main's address");
        let expected_bias = main_avma.wrapping_sub(main_svma);
        if name == "nopie" {
            assert_eq!(expected_bias, 0);
        }
        let canonical = std::fs::canonicalize(&exe).expect("canonicalize");
        let loads = readelf_loads(&exe);
        let mut mappings = Vec::new();
        for line in output.lines().filter(|l| l.ends_with(&s(&canonical))) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let start = u64::from_str_radix(fields[0].split('-').next().expect("range"), 16)
                .expect("start");
            let offset = u64::from_str_radix(fields[2], 16).expect("offset");
            mappings.push((start, offset));
            // A page holding bytes of two segments is mapped twice; `(start, offset)` alone
            // cannot say which, so only pages of one segment are checked one by one.
            let sharing = loads
                .iter()
                .filter(|(p_offset, filesz)| {
                    p_offset & !0xfff <= offset && offset < p_offset + filesz
                })
                .count();
            if sharing == 1 {
                assert_eq!(
                    module.bias_for(start, offset),
                    Some(expected_bias),
                    "{name}: {line}"
                );
            }
        }
        assert!(
            mappings.len() >= 3,
            "{name}: only {mappings:x?} mapped in\n{output}"
        );
        assert!(mappings.iter().any(|&(_, offset)| offset == 0));
        assert_eq!(
            module.bias_from_mappings(&mappings),
            Some(expected_bias),
            "{name}: {mappings:x?}"
        );
        let range = module.svma_range();
        assert!(range.contains(&main_svma), "{name}: {range:x?}");
        let text = module.unwind_sections().text_svma_ranges;
        assert!(
            text.iter().any(|r| r.contains(&main_svma)),
            "{name}: {text:x?}"
        );
    }
}

#[test]
fn debug_frame_from_the_binary_or_from_its_debug_file() {
    let scratch = Scratch::new("debugframe");
    let flags = [
        "-g",
        "-O1",
        "-fno-asynchronous-unwind-tables",
        "-fno-exceptions",
        "-Wl,--build-id",
    ];
    let exe = gcc(&scratch, "inline.c", INLINE_C, "df", &flags);
    let sections = readelf_sections(&exe);
    let (_, offset, size, _) = sections
        .iter()
        .find(|(name, ..)| name == ".debug_frame")
        .expect("gcc emits .debug_frame")
        .clone();
    let bytes = std::fs::read(&exe).expect("read");
    let expected = &bytes[offset as usize..(offset + size) as usize];

    let search = isolated(&scratch);
    let own = ModuleInfo::open(&exe, &search)
        .expect("open")
        .unwind_sections();
    assert_eq!(own.debug_frame.as_ref().map(|d| d.data()), Some(expected));

    let debug = scratch.path("df.debug");
    let stripped = scratch.path("df.stripped");
    run("objcopy", &["--only-keep-debug", &s(&exe), &s(&debug)]);
    run("objcopy", &["--strip-debug", &s(&exe), &s(&stripped)]);
    let root = scratch.path("root");
    install_by_build_id(&root, &readelf_build_id(&exe).expect("build-id"), &debug);
    let search = DebugSearch {
        debug_dirs: vec![root],
        ..isolated(&scratch)
    };
    let module = ModuleInfo::open(&stripped, &search).expect("open");
    assert!(module.debug_file().is_some());
    let sections = module.unwind_sections();
    assert_eq!(
        sections.debug_frame.as_ref().map(|d| d.data()),
        Some(expected)
    );
    // .eh_frame (from crt files) still comes from the mapped file itself.
    if let Some(eh_frame) = &sections.eh_frame {
        let (_, offset, size, _) = readelf_sections(&stripped)
            .into_iter()
            .find(|(n, ..)| n == ".eh_frame")
            .expect("eh_frame");
        let stripped_bytes = std::fs::read(&stripped).expect("read");
        assert_eq!(
            eh_frame.data(),
            &stripped_bytes[offset as usize..(offset + size) as usize]
        );
    }
}

#[test]
fn vdso_from_memory() {
    // Our own vDSO, read from /proc/self/mem as the snapshot code reads it from a core.
    let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
    let line = maps
        .lines()
        .find(|l| l.ends_with("[vdso]"))
        .expect("a vDSO mapping");
    let (start, end) = line
        .split_whitespace()
        .next()
        .and_then(|r| r.split_once('-'))
        .expect("range");
    let start = u64::from_str_radix(start, 16).expect("start");
    let end = u64::from_str_radix(end, 16).expect("end");
    let mut bytes = vec![0; (end - start) as usize];
    {
        use std::os::unix::fs::FileExt;
        let mem = std::fs::File::open("/proc/self/mem").expect("open /proc/self/mem");
        mem.read_exact_at(&mut bytes, start).expect("read the vDSO");
    }
    let scratch = Scratch::new("vdso");
    let dumped = scratch.path("vdso.so");
    std::fs::write(&dumped, &bytes).expect("write");

    let module =
        ModuleInfo::from_bytes("[vdso]", bytes, &isolated(&scratch)).expect("parse the vDSO");
    assert_eq!(module.path(), Path::new("[vdso]"));
    assert!(module.has_symbols());
    assert_eq!(module.build_id_hex(), readelf_build_id(&dumped));
    assert_eq!(
        module.bias_for(start, 0),
        Some(start.wrapping_sub(module.svma_range().start))
    );
    let sections = module.unwind_sections();
    assert!(sections.eh_frame.is_some() && sections.eh_frame_hdr.is_some());

    let (address, _) = nm_symbol(&dumped, "__vdso_clock_gettime", true);
    let frames = module.symbolize(address + 2);
    assert_eq!(frames.len(), 1, "{frames:#?}");
    assert_eq!(
        frames[0].function.as_deref(),
        Some("__vdso_clock_gettime"),
        "global over weak alias"
    );
    assert_eq!(frames[0].symbol_offset, Some(2));
}

#[test]
fn malformed_files_give_errors_or_warnings_never_panics() {
    let scratch = Scratch::new("malformed");
    let search = isolated(&scratch);
    let exe = gcc(&scratch, "inline.c", INLINE_C, "ok", &["-g", "-O2"]);
    let bytes = std::fs::read(&exe).expect("read");
    let (start, size) = nm_symbol(&exe, "outer", false);

    for len in [0, 16, 52, 64] {
        let error = ModuleInfo::from_bytes("cut", bytes[..len].to_vec(), &search).unwrap_err();
        assert!(error.to_string().contains("cut"), "{error}");
    }
    // Cut short anywhere past the header: opening may fail, lookups must not panic.
    for len in (64..bytes.len()).step_by(bytes.len() / 97 + 1) {
        if let Ok(module) = ModuleInfo::from_bytes("cut", bytes[..len].to_vec(), &search) {
            for address in start..start + size {
                module.symbolize(address);
            }
            module.unwind_sections();
        }
    }

    // Garbage over .debug_info and .debug_abbrev: the symbol table still answers, and the
    // damage is reported.
    let mut damaged = bytes.clone();
    for (name, offset, size, _) in readelf_sections(&exe) {
        if name == ".debug_info" || name == ".debug_abbrev" || name == ".debug_line" {
            let range = offset as usize..(offset + size) as usize;
            for (i, byte) in damaged[range].iter_mut().enumerate() {
                *byte = (i as u8).wrapping_mul(151).wrapping_add(0x5a);
            }
        }
    }
    let module = ModuleInfo::from_bytes("damaged", damaged, &search).expect("headers are intact");
    let frames = module.symbolize(start + 1);
    assert_eq!(
        frames.last().and_then(|f| f.function.as_deref()),
        Some("outer"),
        "{frames:#?}"
    );
    assert_eq!(frames.last().and_then(|f| f.symbol_offset), Some(1));
    assert!(
        !module.warnings().is_empty(),
        "the damaged DWARF is reported"
    );
}
