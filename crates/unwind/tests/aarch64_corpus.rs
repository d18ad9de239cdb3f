//! A real aarch64 core from the corpus (written by qemu-user: no NT_FILE, no NT_SIGINFO),
//! walked with the executable's CFI and the libraries under /usr/aarch64-linux-gnu.

mod common;

use std::path::Path;

use common::{
    assert_cfi_above_leaf, assert_ends_at_start, corpus_case_dir, frame_names, link_map, load_core,
    load_module, map_file_segments, names_and_trust, unwinder_for, LoadedModule,
};
use coresnap_unwind::{Arch, StopReason, UnwindOptions};

fn expected_crash_tid(dir: &Path) -> u32 {
    let text = std::fs::read_to_string(dir.join("expected.json")).expect("expected.json");
    let at = text
        .find("\"crash_tid\":")
        .expect("crash_tid in expected.json")
        + "\"crash_tid\":".len();
    text[at..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a tid")
}

#[test]
fn aarch64_segv_from_qemu_user() {
    let dir = corpus_case_dir("aarch64-segv");
    let sysroot = Path::new("/usr/aarch64-linux-gnu/lib");
    let mut core = load_core(&dir.join("core"));
    assert_eq!(core.arch, Arch::Aarch64);

    // -no-pie: the executable's bias is 0.
    let exe = load_module(&dir.join("exe"), 0);
    map_file_segments(&mut core.memory, &exe.bytes, 0);
    let mut modules: Vec<LoadedModule> = Vec::new();
    for (l_addr, name) in link_map(&core.memory, &exe) {
        let Some(file_name) = Path::new(&name).file_name() else {
            continue;
        };
        let path = sysroot.join(file_name);
        if name.is_empty() || !path.exists() {
            continue;
        }
        let module = load_module(&path, l_addr);
        map_file_segments(&mut core.memory, &module.bytes, l_addr);
        modules.push(module);
    }
    assert!(
        modules.iter().any(|m| m.info.name.ends_with("libc.so.6")),
        "libc not found on the link map"
    );
    modules.insert(0, exe);

    let mut unwinder = unwinder_for(Arch::Aarch64, &modules, UnwindOptions::default());
    let crash_tid = expected_crash_tid(&dir);
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
