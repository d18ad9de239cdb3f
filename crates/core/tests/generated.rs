//! Cores this test makes itself: a C program compiled with gcc crashes in a known way
//! (`ulimit -c unlimited`; this machine's core_pattern is `core`), and the image must say so.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use coresnap_core::{Arch, CoreOptions, ProcessImage};
use object::{Object, ObjectSymbol};

const PROGRAM: &str = r#"
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

static pthread_barrier_t ready;

static void *worker(void *arg) {
    (void)arg;
    printf("worker %ld\n", (long)syscall(SYS_gettid));
    fflush(stdout);
    pthread_barrier_wait(&ready);
    for (;;) pause();
    return 0;
}

__attribute__((noinline)) void crash_here(volatile uint64_t *marker, const char *how) {
    marker[0] = 0xC0FFEE0123456789ull;
    if (how[0] == 's') *(volatile int *)0x1234 = 42;
    if (how[0] == 'a') abort();
    if (how[0] == 'q') kill(getpid(), SIGQUIT);
    if (how[0] == 'f') { volatile int zero = 0; printf("%d\n", 1000 / zero); }
    for (;;) pause();
}

int main(int argc, char **argv) {
    pthread_t threads[3];
    volatile uint64_t marker[4] = {0};
    pthread_barrier_init(&ready, 0, 4);
    printf("main %ld %d\n", (long)syscall(SYS_gettid), getpid());
    fflush(stdout);
    for (int i = 0; i < 3; i++) pthread_create(&threads[i], 0, worker, 0);
    pthread_barrier_wait(&ready);
    crash_here(marker, argc > 1 ? argv[1] : "s");
    return 0;
}
"#;

struct Crash {
    dir: PathBuf,
    exe: PathBuf,
    core: PathBuf,
    main_tid: i32,
    pid: i32,
    worker_tids: Vec<i32>,
}

fn build(dir: &Path) -> PathBuf {
    std::fs::write(dir.join("crash.c"), PROGRAM).unwrap();
    let exe = dir.join("crash");
    let status = Command::new("gcc")
        .args(["-O0", "-g", "-pthread", "-o"])
        .arg(&exe)
        .arg(dir.join("crash.c"))
        .status()
        .expect("gcc runs");
    assert!(status.success(), "gcc failed");
    exe
}

fn crash(name: &str, how: &str) -> Crash {
    let dir = std::env::temp_dir().join(format!("coresnap-core-gen-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let exe = build(&dir);
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -c unlimited && exec ./crash {how} > out.txt"
        ))
        .current_dir(&dir)
        .spawn()
        .expect("sh runs");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the program did not crash within a minute");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success(), "the program was meant to crash");
    let stdout = std::fs::read_to_string(dir.join("out.txt")).unwrap();
    let mut main_tid = 0;
    let mut pid = 0;
    let mut worker_tids = Vec::new();
    for line in stdout.lines() {
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["main", tid, p] => {
                main_tid = tid.parse().unwrap();
                pid = p.parse().unwrap();
            }
            ["worker", tid] => worker_tids.push(tid.parse().unwrap()),
            _ => {}
        }
    }
    let core = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n == "core" || n.starts_with("core."))
        })
        .unwrap_or_else(|| {
            panic!(
                "no core file in {} (is /proc/sys/kernel/core_pattern `core`? it is {:?})",
                dir.display(),
                std::fs::read_to_string("/proc/sys/kernel/core_pattern")
            )
        });
    Crash {
        dir,
        exe,
        core,
        main_tid,
        pid,
        worker_tids,
    }
}

/// `crash_here`'s address range in the running process.
fn crash_here_range(image: &ProcessImage, exe: &Path) -> (u64, u64) {
    let data = std::fs::read(exe).unwrap();
    let file = object::File::parse(&data[..]).unwrap();
    let symbol = file
        .symbols()
        .find(|s| s.name() == Ok("crash_here"))
        .unwrap();
    let exe_name = exe.to_str().unwrap();
    let base = image
        .mappings
        .iter()
        .find(|m| m.path.as_deref() == Some(exe_name) && m.file_offset == 0)
        .unwrap()
        .start;
    // A PIE's first segment is at 0: the bias is where the file's start landed.
    (
        base + symbol.address(),
        base + symbol.address() + symbol.size(),
    )
}

fn check_common(crash: &Crash, image: &ProcessImage) {
    assert_eq!(image.arch, Arch::X86_64);
    assert!(image.warnings.is_empty(), "{:?}", image.warnings);
    assert_eq!(image.pid, crash.pid);
    assert_eq!(image.threads.len(), 4);
    let mut tids: Vec<i32> = image.threads.iter().map(|t| t.tid).collect();
    tids.sort();
    let mut expected = crash.worker_tids.clone();
    expected.push(crash.main_tid);
    expected.sort();
    assert_eq!(tids, expected);
    assert_eq!(image.process.command.as_deref(), Some("crash"));
    assert_eq!(
        image.process.executable_path.as_deref(),
        Some(crash.exe.to_str().unwrap())
    );
    assert_eq!(image.process.uid, Some(unsafe { libc::getuid() }));
    let ppid = image.process.ppid.unwrap();
    assert!(ppid > 0 && ppid != crash.pid);
    assert!(image.auxv_value(coresnap_core::auxv::AT_PAGESZ) == Some(4096));
}

/// The marker `crash_here` stored in its caller's frame is found just above the stack pointer.
fn check_marker_on_stack(image: &ProcessImage, thread_index: usize) {
    let sp = image.threads[thread_index].sp(Arch::X86_64).unwrap();
    let found = (0..512u64).any(|i| image.read_u64(sp + i * 8) == Some(0xC0FF_EE01_2345_6789));
    assert!(found, "the marker is not within 4 KiB above sp {sp:#x}");
}

#[test]
fn segfault_at_a_known_address() {
    let crash = crash("segv", "s");
    let image = ProcessImage::open_core(&crash.core, &CoreOptions::default()).unwrap();
    check_common(&crash, &image);
    let signal = image.signal.clone().unwrap();
    assert_eq!(signal.number, libc::SIGSEGV);
    assert_eq!(signal.code, Some(1)); // SEGV_MAPERR
    assert_eq!(signal.address, Some(0x1234));
    assert_eq!(signal.sender_pid, None);
    let crashed = image.crashing_thread.unwrap();
    assert_eq!(image.threads[crashed].tid, crash.main_tid);
    let pc = image.threads[crashed].pc(Arch::X86_64).unwrap();
    let (start, end) = crash_here_range(&image, &crash.exe);
    assert!(
        (start..end).contains(&pc),
        "pc {pc:#x} not in crash_here {start:#x}..{end:#x}"
    );
    check_marker_on_stack(&image, crashed);
    std::fs::remove_dir_all(&crash.dir).unwrap();
}

#[test]
fn abort_names_its_sender() {
    let crash = crash("abort", "a");
    let image = ProcessImage::open_core(&crash.core, &CoreOptions::default()).unwrap();
    check_common(&crash, &image);
    let signal = image.signal.clone().unwrap();
    assert_eq!(signal.number, libc::SIGABRT);
    assert_eq!(signal.code, Some(-6)); // SI_TKILL
    assert_eq!(signal.sender_pid, Some(crash.pid));
    assert_eq!(signal.address, None);
    let crashed = image.crashing_thread.unwrap();
    assert_eq!(image.threads[crashed].tid, crash.main_tid);
    // abort() runs in libc.
    let pc = image.threads[crashed].pc(Arch::X86_64).unwrap();
    let mapping = image.mapping_at(pc).unwrap();
    assert!(
        mapping.path.as_deref().unwrap().ends_with("libc.so.6"),
        "{mapping:?}"
    );
    check_marker_on_stack(&image, crashed);
    std::fs::remove_dir_all(&crash.dir).unwrap();
}

#[test]
fn kill_and_divide_by_zero() {
    let crash = crash("quit", "q");
    let image = ProcessImage::open_core(&crash.core, &CoreOptions::default()).unwrap();
    check_common(&crash, &image);
    let signal = image.signal.clone().unwrap();
    assert_eq!(signal.number, libc::SIGQUIT);
    assert_eq!(signal.code, Some(0)); // SI_USER
    assert_eq!(signal.sender_pid, Some(crash.pid));
    let crashed = image.crashing_thread.unwrap();
    assert_eq!(image.threads[crashed].pending_signal, libc::SIGQUIT);
    std::fs::remove_dir_all(&crash.dir).unwrap();

    let crash = crash_fpe();
    let image = ProcessImage::open_core(&crash.core, &CoreOptions::default()).unwrap();
    check_common(&crash, &image);
    let signal = image.signal.clone().unwrap();
    assert_eq!(signal.number, libc::SIGFPE);
    assert_eq!(signal.code, Some(1)); // FPE_INTDIV
                                      // The faulting instruction is the address, inside crash_here.
    let (start, end) = crash_here_range(&image, &crash.exe);
    assert!((start..end).contains(&signal.address.unwrap()));
    assert_eq!(signal.address, image.threads[0].pc(Arch::X86_64));
    std::fs::remove_dir_all(&crash.dir).unwrap();
}

fn crash_fpe() -> Crash {
    crash("fpe", "f")
}

#[test]
fn executable_option_replaces_the_path() {
    let crash = crash("moved", "s");
    let moved = crash.dir.join("moved-exe");
    std::fs::rename(&crash.exe, &moved).unwrap();
    let options = CoreOptions {
        sysroot: None,
        executable: Some(moved.clone()),
    };
    let image = ProcessImage::open_core(&crash.core, &options).unwrap();
    assert!(image.warnings.is_empty(), "{:?}", image.warnings);
    // The process's own name for it stays; the file is read from where the caller said.
    let exe = image.process.executable_path.clone().unwrap();
    assert_eq!(exe, crash.exe.to_str().unwrap());
    assert_eq!(image.resolve_path(&exe), moved);
    let pc = image.threads[0].pc(Arch::X86_64).unwrap();
    let mut code = [0u8; 8];
    assert!(
        image.read_memory(pc, &mut code),
        "code comes from the moved executable"
    );

    // Without the option the text of the (now missing) executable cannot be read...
    let image = ProcessImage::open_core(&crash.core, &CoreOptions::default()).unwrap();
    assert!(!image.read_memory(pc, &mut code));
    // ...but what the core holds still can.
    assert!(image
        .read_u64(image.threads[0].sp(Arch::X86_64).unwrap())
        .is_some());
    std::fs::remove_dir_all(&crash.dir).unwrap();
}
