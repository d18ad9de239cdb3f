//! Walks of real x86_64 cores: small C programs compiled here with gcc in several ways,
//! crashed with core dumps enabled, and walked with their own unwind sections and libc's.
#![cfg(target_arch = "x86_64")]

mod common;

use std::process::Command;
use std::time::Instant;

use common::{
    assert_ends_at_start, compile, crash, frame_names, load_core, modules_from_core, scratch_dir,
    unwinder_for, LoadedModule,
};
use coresnap_unwind::{FrameKind, StopReason, Trust, UnwindOptions, Unwound};

const THREE_LEVELS: &str = r#"
volatile int sink;
int *volatile target;
__attribute__((noinline, noipa)) int crash_here(int x) { *target = x; return x + 1; }
__attribute__((noinline, noipa)) int middle(int x) { int r = crash_here(x * 2); sink = r; return r + 2; }
__attribute__((noinline, noipa)) int outer(int x) { int r = middle(x + 1); sink = r; return r + 3; }
int main(void) { sink = outer(7); return 0; }
"#;

struct Walk {
    unwound: Unwound,
    names: Vec<String>,
    modules: Vec<LoadedModule>,
}

fn walk_core(
    core_path: &std::path::Path,
    options: UnwindOptions,
    adjust: impl FnOnce(&mut Vec<LoadedModule>),
) -> Walk {
    let core = load_core(core_path);
    let mut modules = modules_from_core(&core);
    adjust(&mut modules);
    let mut unwinder = unwinder_for(core.arch, &modules, options);
    let (_, regs) = core.threads.first().expect("a thread");
    let unwound = unwinder.unwind(regs, &core.memory);
    let names = frame_names(&modules, &unwound, |f| format!("{:#x}", f.pc));
    Walk {
        unwound,
        names,
        modules,
    }
}

/// Crashes `exe` and walks the crashing thread with its own modules as they are on disk; the
/// walk and its description for assertion messages.
fn crash_and_walk(exe: &std::path::Path, options: UnwindOptions) -> (Walk, String) {
    let walk = walk_core(&crash(exe), options, |_| {});
    let report = describe(&walk);
    (walk, report)
}

/// Neither frame pointers nor stack scanning: only unwind tables can move the walk.
fn cfi_only() -> UnwindOptions {
    UnwindOptions {
        allow_frame_pointer: false,
        allow_scan: false,
        ..UnwindOptions::default()
    }
}

fn describe(walk: &Walk) -> String {
    let mut text = format!("stop: {}\n", walk.unwound.stop_reason);
    for (frame, name) in walk.unwound.frames.iter().zip(&walk.names) {
        text += &format!(
            "  {:#014x} {:<28} {:<13} {:?} {:?}\n",
            frame.pc,
            name,
            frame.trust.as_str(),
            frame.kind,
            frame.warnings
        );
    }
    text
}

/// THREE_LEVELS's own functions, innermost first, down to main.
#[track_caller]
fn assert_three_levels_to_main(walk: &Walk, report: &str) {
    assert_eq!(
        walk.names[..4],
        ["crash_here", "middle", "outer", "main"],
        "{report}"
    );
}

/// Compiles THREE_LEVELS into `dir/built_name`, then copies it to `dir/stripped_name` without
/// .eh_frame and .eh_frame_hdr, so that only other methods can leave its functions.
fn compile_three_levels_without_cfi(
    dir: &std::path::Path,
    built_name: &str,
    stripped_name: &str,
    flags: &[&str],
) -> std::path::PathBuf {
    let built = compile(dir, built_name, THREE_LEVELS, flags);
    let exe = dir.join(stripped_name);
    let status = Command::new("objcopy")
        .args([
            "--remove-section",
            ".eh_frame",
            "--remove-section",
            ".eh_frame_hdr",
        ])
        .arg(&built)
        .arg(&exe)
        .status()
        .expect("objcopy runs");
    assert!(status.success());
    exe
}

fn is_exe(walk: &Walk, index: usize, exe: &std::path::Path) -> bool {
    let pc = walk.unwound.frames[index].lookup_pc;
    walk.modules
        .iter()
        .any(|m| m.info.name == exe.display().to_string() && m.info.avma_range.contains(&pc))
}

#[test]
fn cfi_from_eh_frame_walks_to_start() {
    let dir = scratch_dir("cfi");
    let exe = compile(&dir, "three", THREE_LEVELS, &["-O2"]);
    let (walk, report) = crash_and_walk(&exe, UnwindOptions::default());
    assert_three_levels_to_main(&walk, &report);
    assert_eq!(walk.unwound.stop_reason, StopReason::EndOfStack, "{report}");
    assert_ends_at_start(&walk.names, &report);
    assert!(
        walk.unwound.frames.len() >= 6,
        "main's callers in libc are missing\n{report}"
    );
    assert_eq!(walk.unwound.frames[0].trust, Trust::Context);
    for frame in &walk.unwound.frames[1..] {
        assert_eq!(frame.trust, Trust::Cfi, "{report}");
        assert!(frame.warnings.is_empty(), "{report}");
    }
    // Callee-saved registers travel up: main's frame knows rbx, rsp, rip; not rax.
    let main = &walk.unwound.frames[3];
    assert!(
        main.regs.get(3).is_some() && main.regs.get(0).is_none(),
        "{report}"
    );
    assert!(main.cfa.is_some());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cfi_from_debug_frame_only() {
    let dir = scratch_dir("debug-frame");
    let exe = compile(
        &dir,
        "three",
        THREE_LEVELS,
        &[
            "-O2",
            "-g",
            "-fno-asynchronous-unwind-tables",
            "-fno-unwind-tables",
        ],
    );
    let core = crash(&exe);

    // .eh_frame alone (crt's FDEs only) cannot leave crash_here.
    let without = walk_core(&core, cfi_only(), |modules| {
        for module in modules.iter_mut() {
            module.info.debug_frame = None;
        }
    });
    assert_eq!(without.unwound.frames.len(), 1, "{}", describe(&without));

    let exe_name = exe.display().to_string();
    let walk = walk_core(&core, cfi_only(), |modules| {
        let exe_module = modules
            .iter()
            .find(|m| m.info.name == exe_name)
            .expect("the exe is mapped");
        assert!(
            exe_module.info.debug_frame.is_some(),
            "gcc -g without unwind tables should emit .debug_frame"
        );
    });
    let report = describe(&walk);
    assert_three_levels_to_main(&walk, &report);
    for frame in &walk.unwound.frames[1..4] {
        assert_eq!(frame.trust, Trust::Cfi, "{report}");
    }
    assert_eq!(walk.unwound.stop_reason, StopReason::EndOfStack, "{report}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn frame_pointers_when_the_exe_has_no_cfi() {
    let dir = scratch_dir("frame-pointer");
    let exe = compile_three_levels_without_cfi(
        &dir,
        "three-fp",
        "three-nocfi",
        &["-O2", "-fno-omit-frame-pointer"],
    );
    let (walk, report) = crash_and_walk(
        &exe,
        UnwindOptions {
            allow_scan: false,
            ..UnwindOptions::default()
        },
    );
    let exe_module = walk
        .modules
        .iter()
        .find(|m| m.info.name == exe.display().to_string())
        .expect("exe mapped");
    assert!(
        exe_module.info.eh_frame.is_none() && exe_module.info.debug_frame.is_none(),
        "CFI was not stripped"
    );
    assert_three_levels_to_main(&walk, &report);
    // gcc gives the leaf no frame even with -fno-omit-frame-pointer: its caller comes from [sp].
    assert_eq!(walk.unwound.frames[1].trust, Trust::Scan, "{report}");
    for frame in &walk.unwound.frames[2..4] {
        assert_eq!(frame.trust, Trust::FramePointer, "{report}");
    }
    // main's caller is in libc, which has CFI again.
    assert!(!is_exe(&walk, 4, &exe), "{report}");
    assert_eq!(
        walk.unwound.frames[4].trust,
        Trust::FramePointer,
        "{report}"
    );
    assert!(
        walk.unwound.frames[5..]
            .iter()
            .any(|f| f.trust == Trust::Cfi),
        "{report}"
    );
    assert_ends_at_start(&walk.names, &report);
    assert_eq!(walk.unwound.stop_reason, StopReason::EndOfStack, "{report}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn stack_scan_without_cfi_or_frame_pointers() {
    let dir = scratch_dir("scan");
    let exe = compile_three_levels_without_cfi(
        &dir,
        "three-omit",
        "three-scan",
        &["-O2", "-fomit-frame-pointer"],
    );
    let (walk, report) = crash_and_walk(
        &exe,
        UnwindOptions {
            allow_frame_pointer: false,
            ..UnwindOptions::default()
        },
    );
    assert_three_levels_to_main(&walk, &report);
    for frame in &walk.unwound.frames[1..4] {
        assert_eq!(frame.trust, Trust::Scan, "{report}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

const SIGNAL: &str = r#"
#include <signal.h>
#include <string.h>
volatile int sink;
int *volatile target;
__attribute__((noinline, noipa)) void crash_in_handler(int sig) { *target = sig; }
__attribute__((noinline, noipa)) void on_segv(int sig, siginfo_t *info, void *context) {
    (void)info; (void)context;
    crash_in_handler(sig);
    sink = 1;
}
__attribute__((noinline, noipa)) int interrupted(int x) { *target = x; return x + 1; }
__attribute__((noinline, noipa)) int caller(int x) { int r = interrupted(x); sink = r; return r + 1; }
int main(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_segv;
    action.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &action, 0);
    sink = caller(3);
    return 0;
}
"#;

#[test]
fn signal_handler_mid_stack() {
    let dir = scratch_dir("signal");
    let exe = compile(&dir, "signal", SIGNAL, &["-O2"]);
    let (walk, report) = crash_and_walk(&exe, UnwindOptions::default());
    let frames = &walk.unwound.frames;
    assert_eq!(walk.names[..2], ["crash_in_handler", "on_segv"], "{report}");
    assert_eq!(frames[2].kind, FrameKind::Signal, "{report}");
    assert_eq!(frames[2].lookup_pc, frames[2].pc, "{report}");
    // __restore_rt is in libc (which has no .symtab to name it).
    let libc = walk
        .modules
        .iter()
        .find(|m| m.info.name.contains("libc.so"))
        .expect("libc mapped");
    assert!(libc.info.avma_range.contains(&frames[2].pc), "{report}");
    assert_eq!(
        walk.names[3..6],
        ["interrupted", "caller", "main"],
        "{report}"
    );
    assert_eq!(frames[3].trust, Trust::Context, "{report}");
    assert_eq!(
        frames[3].lookup_pc, frames[3].pc,
        "the interrupted pc is not a return address\n{report}"
    );
    assert_eq!(frames[4].trust, Trust::Cfi, "{report}");
    assert_eq!(walk.unwound.stop_reason, StopReason::EndOfStack, "{report}");
    assert_ends_at_start(&walk.names, &report);
    let _ = std::fs::remove_dir_all(&dir);
}

const RECURSION: &str = r#"
volatile int sink;
int *volatile target;
__attribute__((noinline, noipa)) int recurse(int n) {
    if (n == 0) { *target = 1; return 0; }
    int r = recurse(n - 1);
    sink = r;
    return r + 1;
}
int main(void) { sink = recurse(10000); return 0; }
"#;

#[test]
fn ten_thousand_frames() {
    let dir = scratch_dir("recursion");
    let exe = compile(&dir, "recurse", RECURSION, &["-O2"]);
    let core_path = crash(&exe);
    let core = load_core(&core_path);
    let modules = modules_from_core(&core);
    let mut unwinder = unwinder_for(core.arch, &modules, UnwindOptions::default());
    let regs = &core.threads[0].1;

    let started = Instant::now();
    let unwound = unwinder.unwind(regs, &core.memory);
    let first = started.elapsed();
    let started = Instant::now();
    let again = unwinder.unwind(regs, &core.memory);
    let cached = started.elapsed();

    let names = frame_names(&modules, &unwound, |_| String::new());
    let recursions = names.iter().filter(|n| *n == "recurse").count();
    assert_eq!(recursions, 10_001, "stop: {}", unwound.stop_reason);
    assert!(names[..10_001].iter().all(|n| n == "recurse"));
    assert_eq!(names[10_001], "main");
    assert_eq!(unwound.stop_reason, StopReason::EndOfStack);
    assert!(unwound.frames[1..].iter().all(|f| f.trust == Trust::Cfi));
    assert_eq!(again.frames.len(), unwound.frames.len());
    eprintln!("10,000 frames: first walk {first:?}, cached walk {cached:?}");
    // Generous even for a debug build: the point is that a row is evaluated once, not per frame.
    assert!(
        cached.as_secs_f64() < 2.0,
        "a cached 10,000-frame walk took {cached:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
