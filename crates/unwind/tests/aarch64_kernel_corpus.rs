//! aarch64 cores written by a real arm64 kernel (NT_FILE, NT_ARM_PAC_MASK present), walked
//! with the libraries of the corpus sysroot, checked frame by frame against gdb's walk of the
//! same cores.

mod common;

use std::path::{Path, PathBuf};

use common::{
    assert_cfi_above_leaf, assert_ends_at_start, corpus_root, expected_json, frame_names,
    load_core_with, modules_from_core, names_and_trust, unwinder_for,
};
use coresnap_core::CoreOptions;
use coresnap_unwind::{Arch, StopReason, UnwindOptions};

fn arm64_corpus() -> PathBuf {
    let corpus = corpus_root();
    let dir = Path::new(&corpus).join("arm64").join("corpus");
    assert!(
        dir.join("sysroot").is_dir(),
        "the arm64 corpus is missing at {}: build it with /work/shared/corpus/make-arm64-cores.sh (CORPUS_DIR={corpus}) or set CORESNAP_CORPUS_DIR",
        dir.display()
    );
    dir
}

/// gdb's frames per thread (`gdb-frames-nodebug.json`): the pcs of the real (not inlined,
/// not synthesized) frames, innermost first.
fn gdb_pcs(dir: &Path) -> Vec<(u64, Vec<u64>)> {
    let text = std::fs::read_to_string(dir.join("gdb-frames-nodebug.json"))
        .expect("gdb-frames-nodebug.json");
    let threads: serde_json::Value = serde_json::from_str(&text).expect("json");
    threads
        .as_array()
        .expect("threads")
        .iter()
        .map(|thread| {
            let lwp = thread["lwp"].as_u64().expect("lwp");
            let pcs = thread["frames"]
                .as_array()
                .expect("frames")
                .iter()
                .filter(|f| {
                    f["inline"] != serde_json::Value::Bool(true)
                        && f["type"].as_str() == Some("NORMAL")
                })
                .map(|f| {
                    u64::from_str_radix(f["pc"].as_str().expect("pc").trim_start_matches("0x"), 16)
                        .expect("hex pc")
                })
                .collect();
            (lwp, pcs)
        })
        .collect()
}

fn walk_case(case: &str) {
    let root = arm64_corpus();
    let dir = root.join(case);
    let expected = expected_json(&dir);
    // The corpus's files are under the sysroot, as they were on the arm64 machine.
    let core_options = CoreOptions {
        sysroot: Some(root.join("sysroot")),
        executable: Some(dir.join("exe")),
    };
    let core = load_core_with(&dir.join("core"), &core_options);
    assert_eq!(core.arch, Arch::Aarch64);
    assert!(
        core.pac_mask.is_some(),
        "a real arm64 kernel writes NT_ARM_PAC_MASK"
    );
    let modules = modules_from_core(&core);
    assert!(
        modules.iter().any(|m| m.info.name.ends_with("libc.so.6")),
        "libc not mapped"
    );
    let options = UnwindOptions {
        pac_mask: core.pac_mask,
        ..UnwindOptions::default()
    };
    let mut unwinder = unwinder_for(Arch::Aarch64, &modules, options);

    let gdb = gdb_pcs(&dir);
    for (index, (tid, regs)) in core.threads.iter().enumerate() {
        let unwound = unwinder.unwind(regs, &core.memory);
        let names = frame_names(&modules, &unwound, |_| "?".into());
        let pcs: Vec<u64> = unwound.frames.iter().map(|f| f.pc).collect();
        let report = format!("{case} thread {tid}: {}", names_and_trust(&names, &unwound));
        eprintln!("{report}");
        assert_cfi_above_leaf(&unwound, &report);
        assert_eq!(unwound.stop_reason, StopReason::EndOfStack, "{report}");
        let (_, want) = gdb
            .iter()
            .find(|(lwp, _)| *lwp == u64::from(*tid))
            .expect("gdb walked every thread");
        // gdb stops at main (no backtrace past-main); everything it shows must match.
        assert!(want.len() >= 3, "gdb saw too little to compare against");
        assert_eq!(
            pcs.iter()
                .take(want.len())
                .map(|pc| format!("{pc:#x}"))
                .collect::<Vec<_>>(),
            want.iter().map(|pc| format!("{pc:#x}")).collect::<Vec<_>>(),
            "the frames differ from gdb's\n{report}"
        );
        if index == 0 {
            let top = expected["crashing_thread"]["frames"]
                .as_array()
                .expect("frames");
            let last_named = top.last().and_then(|v| v.as_str()).expect("a name");
            assert!(names.iter().any(|n| n == last_named), "{report}");
            assert_ends_at_start(&names, &report);
        }
    }
}

#[test]
fn threads_null_o0() {
    walk_case("threads_null_O0");
}

#[test]
fn threads_null_o2() {
    walk_case("threads_null_O2");
}

#[test]
fn abort_nested() {
    walk_case("abort_nested");
}

#[test]
fn cxx_exception() {
    walk_case("cxx_exception");
}
