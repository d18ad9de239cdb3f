//! A real aarch64 core from the corpus (written by qemu-user: no NT_FILE, no NT_SIGINFO),
//! walked with the executable's CFI and the libraries under /usr/aarch64-linux-gnu.

mod common;

use std::path::PathBuf;

use common::{
    assert_cfi_above_leaf, assert_ends_at_start, corpus_case_dir, expected_json, frame_names,
    load_core_with, modules_from_core, names_and_trust, unwinder_for,
};
use coresnap_core::CoreOptions;
use coresnap_unwind::{Arch, StopReason, UnwindOptions};

#[test]
fn aarch64_segv_from_qemu_user() {
    let dir = corpus_case_dir("aarch64-segv");
    // Without NT_FILE the modules come from the dynamic linker's list in the core's memory.
    let options = CoreOptions {
        sysroot: Some(PathBuf::from("/usr/aarch64-linux-gnu")),
        executable: Some(dir.join("exe")),
    };
    let core = load_core_with(&dir.join("core"), &options);
    assert_eq!(core.arch, Arch::Aarch64);
    let modules = modules_from_core(&core);
    assert!(
        modules.iter().any(|m| m.info.name.ends_with("libc.so.6")),
        "libc not found on the link map"
    );

    let mut unwinder = unwinder_for(Arch::Aarch64, &modules, UnwindOptions::default());
    let crash_tid = expected_json(&dir)["crash_tid"]
        .as_u64()
        .expect("crash_tid") as u32;
    assert_eq!(core.threads.len(), 4);
    for (tid, regs) in &core.threads {
        let unwound = unwinder.unwind(regs, &core.memory);
        let names = frame_names(&modules, &unwound, |f| format!("{:#x}", f.pc));
        let report = format!("thread {tid}: {}", names_and_trust(&names, &unwound));
        eprintln!("{report}");
        if *tid == crash_tid {
            assert_eq!(
                names[..4],
                ["level3", "level2", "level1", "main"],
                "{report}"
            );
            assert_cfi_above_leaf(&unwound, &report);
            assert_ends_at_start(&names, &report);
            assert_eq!(unwound.stop_reason, StopReason::EndOfStack, "{report}");
        } else {
            assert!(names.iter().any(|n| n == "idle_worker"), "{report}");
            assert_cfi_above_leaf(&unwound, &report);
        }
    }
}
