//! `ptrace`: write one snapshot of a core dump or a live process.

use coresnap_cli::{fail, parse_args, run_engine, write_output, USAGE_COMMON};
use std::path::PathBuf;

fn main() {
    std::process::exit(run());
}

fn run() -> i32 {
    let inv = match parse_args(std::env::args().skip(1)) {
        Ok(inv) => inv,
        Err(e) => return fail("ptrace", &format!("{}\nusage: ptrace [--core] CORE [EXE] [options] | ptrace PID [options]", e.0)),
    };
    if inv.help {
        print!("usage: ptrace [--core] CORE [EXE] [options]\n       ptrace PID [options]\n\nWrites one crash snapshot (JSON, docs/snapshot-format.md).\n\n{USAGE_COMMON}");
        return 0;
    }
    if inv.version {
        println!("ptrace (coresnap) {}", env!("CARGO_PKG_VERSION"));
        return 0;
    }
    let snapshot = match run_engine(&inv.request) {
        Ok(s) => s,
        Err(e) => return fail("ptrace", &e),
    };
    for w in &snapshot.warnings {
        eprintln!("ptrace: warning: {w}");
    }
    let output = match (&inv.output, &inv.output_prefix) {
        (Some(o), _) => o.clone(),
        (None, Some(prefix)) => PathBuf::from(format!("{prefix}{}.btt", snapshot.uuid)),
        (None, None) => PathBuf::from(format!("{}.btt", snapshot.uuid)),
    };
    let bytes = match serde_json::to_vec(&snapshot) {
        Ok(b) => b,
        Err(e) => return fail("ptrace", &format!("cannot encode the snapshot: {e}")),
    };
    if let Err(e) = write_output(&output, &bytes) {
        return fail("ptrace", &format!("cannot write {}: {e}", output.display()));
    }
    if inv.output.is_none() {
        eprintln!("ptrace: wrote {}", output.display());
    }
    0
}
