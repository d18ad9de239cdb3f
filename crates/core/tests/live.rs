//! A real process, stopped and read with ptrace, then let go: it must still run afterwards.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use coresnap_core::{attach_live, Arch, CoreError, CoreOptions};
use object::{Object, ObjectSymbol};

const PROGRAM: &str = r#"
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

uint64_t marker = 0x5AFEC0DE12345678ull;
static int never_written[2];
static volatile uint64_t spins;

__attribute__((noinline)) void *blocked_in_read(void *arg) {
    char c;
    printf("thread %ld\n", (long)syscall(SYS_gettid));
    fflush(stdout);
    read(never_written[0], &c, 1);
    return arg;
}

__attribute__((noinline)) void *blocked_in_sleep(void *arg) {
    printf("thread %ld\n", (long)syscall(SYS_gettid));
    fflush(stdout);
    for (;;) {
        struct timespec t = {100, 0};
        nanosleep(&t, 0);
    }
    return arg;
}

__attribute__((noinline)) void *spinning(void *arg) {
    printf("thread %ld\n", (long)syscall(SYS_gettid));
    fflush(stdout);
    for (;;) spins++;
    return arg;
}

static void *short_lived(void *arg) { return arg; }

/* Threads come and go all the time: attaching must cope. */
__attribute__((noinline)) void *spawner(void *arg) {
    printf("thread %ld\n", (long)syscall(SYS_gettid));
    fflush(stdout);
    for (;;) {
        pthread_t t;
        if (pthread_create(&t, 0, short_lived, 0) == 0) pthread_join(t, 0);
    }
    return arg;
}

int main(void) {
    pthread_t threads[4];
    char line[64];
    pipe(never_written);
    printf("main %ld %p\n", (long)syscall(SYS_gettid), (void *)&marker);
    fflush(stdout);
    pthread_create(&threads[0], 0, blocked_in_read, 0);
    pthread_create(&threads[1], 0, blocked_in_sleep, 0);
    pthread_create(&threads[2], 0, spinning, 0);
    pthread_create(&threads[3], 0, spawner, 0);
    usleep(100000);
    printf("ready\n");
    fflush(stdout);
    while (fgets(line, sizeof line, stdin)) {
        printf("pong %s", line);
        fflush(stdout);
    }
    return 0;
}
"#;

fn build(dir: &Path) -> PathBuf {
    std::fs::write(dir.join("live.c"), PROGRAM).unwrap();
    let exe = dir.join("live");
    let status = Command::new("gcc")
        .args(["-O1", "-g", "-pthread", "-o"])
        .arg(&exe)
        .arg(dir.join("live.c"))
        .status()
        .expect("gcc runs");
    assert!(status.success());
    exe
}

/// Kills the child however the test ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The scheduler state letter of every thread (`t` = stopped by the tracer).
fn thread_states(pid: i32) -> Vec<char> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|entry| {
            let stat = std::fs::read_to_string(entry.ok()?.path().join("stat")).ok()?;
            // The state follows the parenthesised command name.
            stat.rsplit_once(") ")?.1.chars().next()
        })
        .collect()
}

fn ping(stdin: &mut std::process::ChildStdin, stdout: &mut BufReader<ChildStdout>, word: &str) {
    writeln!(stdin, "{word}").unwrap();
    stdin.flush().unwrap();
    let mut answer = String::new();
    stdout.read_line(&mut answer).unwrap();
    assert_eq!(answer, format!("pong {word}\n"));
}

fn symbol_range(exe: &Path, name: &str) -> (u64, u64) {
    let data = std::fs::read(exe).unwrap();
    let file = object::File::parse(&data[..]).unwrap();
    let symbol = file.symbols().find(|s| s.name() == Ok(name)).unwrap();
    (symbol.address(), symbol.address() + symbol.size())
}

#[test]
fn attach_read_and_let_go() {
    let dir = std::env::temp_dir().join(format!("coresnap-core-live-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let exe = build(&dir);
    let mut child = Running(
        Command::new(&exe)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id() as i32;
    let mut stdin = child.0.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    let mut known_tids = BTreeSet::new();
    let mut marker_address = 0u64;
    loop {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "the program ended early"
        );
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["main", tid, address] => {
                known_tids.insert(tid.parse::<i32>().unwrap());
                marker_address = u64::from_str_radix(address.trim_start_matches("0x"), 16).unwrap();
            }
            ["thread", tid] => {
                known_tids.insert(tid.parse::<i32>().unwrap());
            }
            ["ready"] => break,
            _ => panic!("unexpected line {line:?}"),
        }
    }
    assert_eq!(known_tids.len(), 5);
    ping(&mut stdin, &mut stdout, "before");

    let started = Instant::now();
    let (image, attachment) = attach_live(pid, &CoreOptions::default()).unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(attachment.pid(), pid);

    // Every thread is held: the tracer-stop state, the 5 long-lived ones among them.
    // (A short-lived thread may be caught exiting: Z or X.)
    let states = thread_states(pid);
    assert!(
        states.iter().all(|&s| matches!(s, 't' | 'Z' | 'X')),
        "{states:?}"
    );
    assert!(
        states.iter().filter(|&&s| s == 't').count() >= 5,
        "{states:?}"
    );
    let tids: BTreeSet<i32> = image.threads.iter().map(|t| t.tid).collect();
    assert!(
        tids.is_superset(&known_tids),
        "{tids:?} lacks some of {known_tids:?}"
    );
    assert!(
        tids.len() <= 8,
        "a few short-lived threads at most: {tids:?}"
    );
    assert_eq!(image.threads[0].tid, pid, "the main thread comes first");
    assert_eq!(image.pid, pid);
    assert_eq!(image.arch, Arch::X86_64);
    assert_eq!((image.crashing_thread, image.signal.clone()), (None, None));
    assert!(image.warnings.is_empty(), "{:?}", image.warnings);

    // The process, from /proc.
    assert_eq!(image.process.command.as_deref(), Some("live"));
    assert_eq!(image.process.args.as_deref(), Some(exe.to_str().unwrap()));
    assert_eq!(
        image.process.executable_path.as_deref(),
        Some(exe.to_str().unwrap())
    );
    assert_eq!(image.process.ppid, Some(std::process::id() as i32));
    assert_eq!(image.process.uid, Some(unsafe { libc::getuid() }));
    assert_eq!(image.auxv_value(coresnap_core::auxv::AT_PAGESZ), Some(4096));

    // Mappings from /proc/pid/maps.
    let exe_base = image
        .mappings
        .iter()
        .find(|m| m.path.as_deref() == Some(exe.to_str().unwrap()) && m.file_offset == 0)
        .expect("the executable mapped")
        .start;
    assert!(image
        .mappings
        .iter()
        .any(|m| m.path.as_deref().is_some_and(|p| p.ends_with("libc.so.6"))));
    for pair in image.mappings.windows(2) {
        assert!(pair[0].end <= pair[1].start);
    }

    // Memory through /proc/pid/mem: a global, every stack, the code, the build-id, the vDSO.
    assert_eq!(image.read_u64(marker_address), Some(0x5AFE_C0DE_1234_5678));
    for thread in &image.threads {
        let sp = thread.sp(Arch::X86_64).unwrap();
        assert!(
            image.read_u64(sp).is_some(),
            "thread {} sp {sp:#x}",
            thread.tid
        );
        let pc = thread.pc(Arch::X86_64).unwrap();
        assert!(image.mapping_at(pc).unwrap().executable);
        assert_eq!(thread.dwarf_registers(Arch::X86_64).len(), 17);
        assert!(thread.has_fp_registers);
    }
    // The spinning thread is stopped inside `spinning` (it makes no calls).
    let (start, end) = symbol_range(&exe, "spinning");
    assert!(
        image
            .threads
            .iter()
            .any(|t| (exe_base + start..exe_base + end).contains(&t.pc(Arch::X86_64).unwrap())),
        "no thread stopped in spinning()"
    );
    let file = std::fs::read(&exe).unwrap();
    let expected_id = object::File::parse(&file[..])
        .unwrap()
        .build_id()
        .unwrap()
        .unwrap()
        .to_vec();
    assert_eq!(image.build_id_in_memory(exe_base), Some(expected_id));
    let vdso = image.read_vdso_image().unwrap();
    assert!(object::File::parse(&vdso[..]).is_ok());
    assert!(!image.read_memory(0, &mut [0u8; 8]));

    // Let go: nothing stays stopped, and the program answers again.
    drop(attachment);
    let deadline = Instant::now() + Duration::from_secs(5);
    while thread_states(pid).iter().any(|&s| s == 't' || s == 'T') {
        assert!(
            Instant::now() < deadline,
            "still stopped: {:?}",
            thread_states(pid)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    ping(&mut stdin, &mut stdout, "after");

    // Attaching again works (nothing was left traced).
    let (again, attachment) = attach_live(pid, &CoreOptions::default()).unwrap();
    assert!(again.threads.len() >= 5);
    drop(attachment);
    ping(&mut stdin, &mut stdout, "again");

    drop(child);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn attaching_to_nothing_is_an_error() {
    // Pid numbers wrap far below this on a default system.
    let error = attach_live(i32::MAX - 1, &CoreOptions::default()).unwrap_err();
    assert!(matches!(error, CoreError::Attach { .. }));
    assert!(error
        .to_string()
        .starts_with(&format!("cannot attach to process {}", i32::MAX - 1)));
    let error = attach_live(-1, &CoreOptions::default()).unwrap_err();
    assert!(
        error.to_string().contains("not a valid process id"),
        "{error}"
    );
}
