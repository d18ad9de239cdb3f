// Built as crate `app` with -C panic=abort: a panic in app::parse::inner runs the default
// hook (prints the message) and then aborts, so the core's crashing thread is in libc
// abort() with the Rust panic machinery below it:
//   abort ... core::panicking::panic_fmt, app::parse::inner, app::parse::outer, app::main,
//   ... std::rt::lang_start ..., main
// Symbols are mangled (legacy `_ZN3app5parse5inner17h...E`); a walker must demangle them.
// One idle thread (app::worker::idle) waits on a channel. Prints crash_tid=N.
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

mod parse {
    #[inline(never)]
    pub fn inner(input: &str) -> u32 {
        match input.parse::<u32>() {
            Ok(v) => v,
            Err(e) => panic!("app::parse::inner: cannot parse {input:?}: {e}"),
        }
    }

    #[inline(never)]
    pub fn outer(input: &str) -> u32 {
        let v = inner(std::hint::black_box(input));
        std::hint::black_box(v) + 1
    }
}

mod worker {
    use std::sync::mpsc::Receiver;

    #[inline(never)]
    pub fn idle(rx: Receiver<u32>) -> u32 {
        rx.recv().unwrap_or(0)
    }
}

fn current_tid() -> String {
    // /proc/thread-self -> "<pid>/task/<tid>"
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default()
}

fn main() {
    let (tx, rx) = mpsc::channel::<u32>();
    let idle = thread::Builder::new()
        .name("idle".into())
        .spawn(move || worker::idle(rx))
        .expect("spawn");
    thread::sleep(Duration::from_millis(200));
    println!("crash_tid={}", current_tid());
    let v = parse::outer(std::hint::black_box("12x"));
    tx.send(v).ok();
    idle.join().ok();
}
