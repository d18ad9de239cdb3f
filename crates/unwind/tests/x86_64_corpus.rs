//! The corpus's x86_64 cases that stress the walker: 201 threads at known recursion depths, a
//! 10,000-frame recursion (both checked against expected.json and timed), and CPython with 33
//! modules and a signal frame mid-stack.
#![cfg(target_arch = "x86_64")]

mod common;

use std::path::Path;
use std::time::Instant;

use common::{
    assert_cfi_above_leaf, corpus_case_dir, expected_json, frame_names, load_core_with,
    modules_from_core, unwinder_for, Core, LoadedModule,
};
use coresnap_core::CoreOptions;
use coresnap_unwind::{FrameKind, StopReason, Trust, UnwindOptions};

/// The core and its modules; the executable has moved into the case folder since it ran.
fn open_case(dir: &Path) -> (Core, Vec<LoadedModule>) {
    let options = CoreOptions {
        sysroot: None,
        executable: Some(dir.join("exe")),
    };
    let core = load_core_with(&dir.join("core"), &options);
    let modules = modules_from_core(&core);
    (core, modules)
}

#[test]
fn many_threads_at_known_depths() {
    let dir = corpus_case_dir("many-threads");
    let expected = expected_json(&dir);
    let (core, modules) = open_case(&dir);
    let crash_tid = expected["crash_tid"].as_u64().expect("crash_tid") as u32;
    let depths = expected["thread_depths"]["by_tid"]
        .as_object()
        .expect("thread_depths");
    assert_eq!(core.threads.len(), 201);

    let started = Instant::now();
    let mut unwinder = unwinder_for(core.arch, &modules, UnwindOptions::default());
    let walks: Vec<_> = core
        .threads
        .iter()
        .map(|(tid, regs)| (*tid, unwinder.unwind(regs, &core.memory)))
        .collect();
    let elapsed = started.elapsed();
    let frames: usize = walks.iter().map(|(_, w)| w.frames.len()).sum();
    eprintln!("201 threads, {frames} frames: {elapsed:?}");

    for (tid, unwound) in &walks {
        let names = frame_names(&modules, unwound, |_| String::new());
        let report = format!("thread {tid}: {names:?} stop: {}", unwound.stop_reason);
        assert_cfi_above_leaf(unwound, &report);
        assert_eq!(unwound.stop_reason, StopReason::EndOfStack, "{report}");
        if *tid == crash_tid {
            assert_eq!(names[..2], ["crash_now", "main"], "{report}");
            continue;
        }
        let depth = depths
            .get(&tid.to_string())
            .and_then(|d| d.as_u64())
            .expect("a depth for every worker");
        let recursions = names.iter().filter(|n| *n == "recurse").count() as u64;
        assert_eq!(recursions, depth, "{report}");
        assert!(
            names.iter().any(|n| n == "block_here") && names.iter().any(|n| n == "worker"),
            "{report}"
        );
    }
    // eu-stack needs ~3 s for this core on this machine; a debug build of the walk alone must
    // stay far below.
    assert!(
        elapsed.as_secs_f64() < 3.0,
        "walking 201 threads took {elapsed:?}"
    );
}

#[test]
fn deep_recursion_of_ten_thousand_frames() {
    let dir = corpus_case_dir("deep-recursion");
    let (core, modules) = open_case(&dir);
    let mut unwinder = unwinder_for(core.arch, &modules, UnwindOptions::default());
    let started = Instant::now();
    let unwound = unwinder.unwind(&core.threads[0].1, &core.memory);
    let elapsed = started.elapsed();
    eprintln!("{} frames: {elapsed:?}", unwound.frames.len());
    let names = frame_names(&modules, &unwound, |_| String::new());
    assert_eq!(names[0], "crash_leaf");
    assert!(
        names[1..10_001].iter().all(|n| n == "recurse"),
        "stop: {}",
        unwound.stop_reason
    );
    assert_eq!(names[10_001], "main");
    assert_eq!(unwound.stop_reason, StopReason::EndOfStack);
    assert!(
        elapsed.as_secs_f64() < 2.0,
        "10,000 frames took {elapsed:?}"
    );
}

#[test]
fn big_python_with_a_signal_frame() {
    let dir = corpus_case_dir("big-python");
    let expected = expected_json(&dir);
    let (core, modules) = open_case(&dir);
    assert!(modules.len() >= 20, "only {} modules mapped", modules.len());
    let crash_tid = expected["crash_tid"].as_u64().expect("crash_tid") as u32;
    let mut unwinder = unwinder_for(core.arch, &modules, UnwindOptions::default());
    for (tid, regs) in &core.threads {
        let unwound = unwinder.unwind(regs, &core.memory);
        let names = frame_names(&modules, &unwound, |_| "?".into());
        let report = format!(
            "thread {tid}: {:?} stop: {}",
            names
                .iter()
                .zip(&unwound.frames)
                .map(|(n, f)| format!("{n}/{}/{:?}", f.trust.as_str(), f.kind))
                .collect::<Vec<_>>(),
            unwound.stop_reason
        );
        eprintln!("{report}");
        assert_eq!(unwound.stop_reason, StopReason::EndOfStack, "{report}");
        assert!(
            unwound.frames[1..]
                .iter()
                .all(|f| f.trust == Trust::Cfi || f.trust == Trust::Context),
            "{report}"
        );
        if *tid == crash_tid {
            // os_abort and friends are static in a stripped python: only exported names show.
            for name in ["abort", "PyEval_EvalCode", "Py_RunMain", "Py_BytesMain"] {
                assert!(names.iter().any(|n| n == name), "{name} missing\n{report}");
            }
            // faulthandler caught SIGABRT and re-raised it: a signal frame, then the
            // interrupted raise, restored from the ucontext.
            let signal = unwound
                .frames
                .iter()
                .position(|f| f.kind == FrameKind::Signal)
                .expect("a signal frame");
            let interrupted = &unwound.frames[signal + 1];
            assert_eq!(interrupted.trust, Trust::Context, "{report}");
            assert_eq!(interrupted.lookup_pc, interrupted.pc, "{report}");
            assert!(names[signal + 1..].iter().any(|n| n == "abort"), "{report}");
        }
    }
}
