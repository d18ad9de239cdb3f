//! `bt`: print a readable backtrace of every thread of a core dump or a live process.

use coresnap_cli::{fail, parse_args, run_engine, write_output, USAGE_COMMON};

fn main() {
    std::process::exit(run());
}

fn run() -> i32 {
    let inv = match parse_args(std::env::args().skip(1)) {
        Ok(inv) => inv,
        Err(e) => return fail("bt", &format!("{}\nusage: bt [--core] CORE [EXE] [options] | bt PID [options]", e.0)),
    };
    if inv.help {
        print!("usage: bt [--core] CORE [EXE] [options]\n       bt PID [options]\n\nPrints every thread's backtrace, the faulting thread first.\n\n{USAGE_COMMON}");
        return 0;
    }
    if inv.version {
        println!("bt (coresnap) {}", env!("CARGO_PKG_VERSION"));
        return 0;
    }
    let snapshot = match run_engine(&inv.request) {
        Ok(s) => s,
        Err(e) => return fail("bt", &e),
    };
    let bytes = if inv.json {
        match serde_json::to_vec_pretty(&snapshot) {
            Ok(mut b) => {
                b.push(b'\n');
                b
            }
            Err(e) => return fail("bt", &format!("cannot encode the snapshot: {e}")),
        }
    } else {
        coresnap_snapshot::text::render(&snapshot).into_bytes()
    };
    let target = inv.output.clone().unwrap_or_else(|| "-".into());
    match write_output(&target, &bytes) {
        Ok(()) => 0,
        // A closed pipe (bt | head) is the reader's choice, not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => fail("bt", &format!("cannot write {}: {e}", target.display())),
    }
}
