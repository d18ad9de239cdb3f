//! Classifiers and the glibc abort message on real cores that this test makes: a failed
//! assert(), a stack overflow, a NULL write and a SIGBUS-free division by zero.

use coresnap_snapshot::{snapshot, SnapshotRequest};
use std::path::{Path, PathBuf};
use std::process::Command;

const PROGRAM: &str = r#"
#include <assert.h>
#include <stdio.h>
#include <string.h>
volatile int depth_sink;
__attribute__((noinline)) int overflow(int n) {
    volatile char pad[512];
    memset((char *)pad, n, sizeof pad);
    depth_sink = overflow(n + 1) + pad[3];
    return depth_sink;
}
__attribute__((noinline)) void check_invariant(int value) {
    assert(value == 42 && "the invariant holds");
}
int *volatile nowhere = 0;
int main(int argc, char **argv) {
    (void)argc;
    switch (argv[1][0]) {
    case 'a': check_invariant(7); break;
    case 'o': overflow(1); break;
    case 'n': *nowhere = 1; break;
    }
    return 0;
}
"#;

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn build(dir: &Path) -> PathBuf {
    std::fs::write(dir.join("prog.c"), PROGRAM).unwrap();
    let exe = dir.join("prog");
    let status = Command::new("gcc")
        .args(["-O1", "-g", "-o"])
        .arg(&exe)
        .arg(dir.join("prog.c"))
        .status()
        .expect("gcc runs");
    assert!(status.success(), "gcc failed");
    exe
}

/// Runs the program in its own folder with core dumps enabled and returns the core's path.
fn crash(dir: &Path, exe: &Path, how: &str) -> PathBuf {
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default();
    assert!(
        !pattern.starts_with('|'),
        "core_pattern pipes cores to a program ('{}'): this test needs cores written as files",
        pattern.trim()
    );
    let case = dir.join(how);
    std::fs::create_dir_all(&case).unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -c unlimited; ulimit -s 8192; exec {} {how}", exe.display()))
        .current_dir(&case)
        .status()
        .expect("the program runs");
    assert!(!status.success(), "the program was meant to crash");
    let core = std::fs::read_dir(&case)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("core")))
        .unwrap_or_else(|| panic!("no core file in {} (core_pattern '{}')", case.display(), pattern.trim()));
    core
}

fn classify(how: &str) -> coresnap_snapshot::report::Snapshot {
    let dir = std::env::temp_dir().join(format!("coresnap-classifiers-{}-{how}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let scratch = Scratch(dir.clone());
    let exe = build(&scratch.0);
    let core = crash(&scratch.0, &exe, how);
    let request = SnapshotRequest { core: Some(core), executable: Some(exe), faulted: true, ..Default::default() };
    snapshot(&request).expect("a snapshot")
}

#[test]
fn a_failed_assert_is_classified_and_carries_glibcs_message() {
    let s = classify("a");
    assert!(s.classifiers.contains(&"SIGABRT".to_string()), "{:?}", s.classifiers);
    assert!(s.classifiers.contains(&"abort".to_string()), "{:?}", s.classifiers);
    assert!(s.classifiers.contains(&"assert".to_string()), "{:?}", s.classifiers);
    let message = s.attributes.get("error.message").and_then(|v| v.as_str()).expect("error.message attribute");
    assert!(message.contains("Assertion"), "{message}");
    assert!(message.contains("the invariant holds"), "{message}");
    assert!(message.contains("prog.c"), "{message}");
    let names: Vec<_> = s.threads[&s.main_thread].stack.iter().filter_map(|f| f.func_name.as_deref()).collect();
    assert!(names.contains(&"check_invariant"), "{names:?}");
}

#[test]
fn a_stack_overflow_is_told_apart_from_a_null_write() {
    let overflow = classify("o");
    assert!(overflow.classifiers.contains(&"SIGSEGV".to_string()), "{:?}", overflow.classifiers);
    assert!(overflow.classifiers.contains(&"stack-overflow".to_string()), "{:?}", overflow.classifiers);
    assert!(!overflow.classifiers.contains(&"null-dereference".to_string()));
    let deep = &overflow.threads[&overflow.main_thread].stack;
    assert!(deep.len() > 1000, "the overflowing stack is walked whole: {} frames", deep.len());
    assert!(deep.iter().filter(|f| f.func_name.as_deref() == Some("overflow")).count() > 1000);

    let null = classify("n");
    assert!(null.classifiers.contains(&"null-dereference".to_string()), "{:?}", null.classifiers);
    assert!(!null.classifiers.contains(&"stack-overflow".to_string()));
    assert_eq!(null.signal.as_ref().and_then(|s| s.code_name.as_deref()), Some("SEGV_MAPERR"));
    assert_eq!(null.signal.as_ref().and_then(|s| s.address.as_deref()), Some("0x0"));
    assert!(null.attributes.get("error.message").is_none(), "no abort message for a plain segfault");
}
