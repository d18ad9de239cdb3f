//! Frames that tail calls left off the stack, over real cores of the corpus: glibc's
//! `pthread_kill` (with `__pthread_kill_internal` inlined into it) tail-calls
//! `__pthread_kill_implementation`, so the stack goes straight from it to `raise`; gdb (the
//! corpus's ground truth) rebuilds the missing frame from DWARF call sites, and so must we.

use std::path::{Path, PathBuf};

use coresnap_snapshot::{snapshot, snapshot_json, SnapshotRequest};

fn corpus_dir() -> PathBuf {
    let dir = PathBuf::from(
        std::env::var("CORESNAP_CORPUS_DIR").unwrap_or_else(|_| "/tmp/coresnap-corpus".to_string()),
    );
    assert!(
        dir.join("corpus").is_dir(),
        "the corpus is missing: {} has no corpus/ (build it with scripts/corpus, or set CORESNAP_CORPUS_DIR)",
        dir.display()
    );
    dir
}

fn case(dir: &Path, sysroot: Option<PathBuf>) -> SnapshotRequest {
    for file in ["core", "exe"] {
        assert!(
            dir.join(file).is_file(),
            "corpus case {} has no {file}",
            dir.display()
        );
    }
    SnapshotRequest {
        core: Some(dir.join("core")),
        executable: Some(dir.join("exe")),
        sysroot,
        ..SnapshotRequest::default()
    }
}

/// Checks the crashing thread reads `__pthread_kill_implementation, __pthread_kill_internal,
/// raise` from the top, with the middle frame marked as a tail call in the JSON.
fn check_pthread_kill_tail_call(request: &SnapshotRequest) {
    let report = snapshot(request).expect("snapshot of the corpus core");
    let thread = report
        .threads
        .get(&report.main_thread)
        .expect("the crashing thread is in the snapshot");
    assert!(
        thread.fault,
        "the main thread of an abort is the faulting one"
    );
    let names: Vec<&str> = thread
        .stack
        .iter()
        .map(|f| f.func_name.as_deref().unwrap_or("??"))
        .collect();
    assert_eq!(
        names.get(..4),
        Some(
            &[
                "__pthread_kill_implementation",
                "__pthread_kill_internal",
                "raise",
                "abort"
            ][..]
        ),
        "{names:?}"
    );
    let tail = &thread.stack[1];
    assert!(tail.tail_call && !tail.inlined, "{tail:?}");
    assert!(
        tail.library
            .as_deref()
            .is_some_and(|l| l.ends_with("libc.so.6")),
        "{tail:?}"
    );
    assert_eq!(
        tail.trust, thread.stack[2].trust,
        "the rebuilt frame takes the caller's trust"
    );
    assert!(
        tail.source_path
            .as_deref()
            .is_some_and(|p| p.ends_with("pthread_kill.c")),
        "{tail:?}"
    );
    // Only that one frame was rebuilt in the crashing thread.
    let rebuilt = thread.stack.iter().filter(|f| f.tail_call).count();
    assert_eq!(rebuilt, 1, "{names:?}");

    let json = snapshot_json(request).expect("snapshot JSON");
    let stack = &json["threads"][&report.main_thread]["stack"];
    assert_eq!(
        stack[1]["tailCall"],
        serde_json::Value::Bool(true),
        "{}",
        stack[1]
    );
    assert!(
        stack[0].get("tailCall").is_none(),
        "false is left out: {}",
        stack[0]
    );
}

#[test]
fn x86_64_abort_rebuilds_pthread_kill_internal() {
    let dir = corpus_dir().join("corpus/c-abort");
    // The core was made on this machine, so the host's libc and its debug file are the ones.
    check_pthread_kill_tail_call(&case(&dir, None));
}

#[test]
fn arm64_abort_rebuilds_pthread_kill_internal() {
    let root = corpus_dir().join("arm64/corpus");
    let dir = root.join("abort_nested");
    if !dir.is_dir() {
        // The arm64 corpus comes from a slower emulated build and may not exist yet.
        eprintln!(
            "note: {} is not built; arm64 tail-call check not run",
            dir.display()
        );
        return;
    }
    check_pthread_kill_tail_call(&case(&dir, Some(root.join("sysroot"))));
}
