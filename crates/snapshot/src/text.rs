//! The human-readable backtrace that `bt` prints: gdb's shape, every thread, faulting one first.

use crate::report::{Frame, Snapshot};
use std::fmt::Write as _;

/// Appends ` at path:line` (nothing without a source path).
fn push_location(out: &mut String, frame: &Frame) {
    if let Some(path) = &frame.source_path {
        out.push_str(" at ");
        out.push_str(path);
        if let Some(line) = frame.line {
            let _ = write!(out, ":{line}");
        }
    }
}

fn library_name(frame: &Frame) -> Option<&str> {
    frame.library.as_deref().map(|l| l.rsplit('/').next().unwrap_or(l))
}

/// Renders the snapshot as text.
pub fn render(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    let process = &snapshot.process;
    let _ = write!(out, "Process {}", process.pid);
    if let Some(exe) = process.executable.as_deref().or(process.command.as_deref()) {
        let _ = write!(out, " ({exe})");
    }
    if let Some(sig) = &snapshot.signal {
        let _ = write!(out, " terminated by {}", sig.name);
        if let Some(code) = &sig.code_name {
            let _ = write!(out, " ({code})");
        }
        if let Some(addr) = &sig.address {
            let _ = write!(out, " at address {addr}");
        }
    }
    out.push('\n');
    if !snapshot.classifiers.is_empty() {
        let _ = writeln!(out, "Classifiers: {}", snapshot.classifiers.join(", "));
    }
    for tid in &snapshot.thread_order {
        let Some(thread) = snapshot.threads.get(tid) else { continue };
        let _ = writeln!(
            out,
            "\nThread {tid} \"{}\"{}:",
            thread.name,
            if thread.fault { " (crashed)" } else { "" }
        );
        // Ten thousand frames are common (deep recursion): each is appended in place, with no
        // string of its own.
        out.reserve(thread.stack.len() * 96);
        for (number, frame) in thread.stack.iter().enumerate() {
            let name = frame.func_name.as_deref().unwrap_or("??");
            let _ = write!(out, "#{number:<3} ");
            if frame.inlined {
                out.push_str("                  ");
            } else {
                push_padded_address(&mut out, &frame.address);
            }
            out.push_str(" in ");
            out.push_str(name);
            push_location(&mut out, frame);
            if let Some(library) = library_name(frame) {
                out.push_str(" from ");
                out.push_str(library);
            }
            if frame.inlined {
                out.push_str(" [inlined]");
            } else {
                let _ = write!(out, " [{}]", frame.trust);
            }
            if frame.kind.as_deref() == Some("signal") {
                out.push_str(" <signal handler called>");
            }
            if frame.tail_call {
                out.push_str(" [tail call]");
            }
            out.push('\n');
        }
        if let Some(reason) = &thread.stop_reason {
            let _ = writeln!(out, "    (walk ended: {reason})");
        }
    }
    if !snapshot.warnings.is_empty() {
        out.push_str("\nWarnings:\n");
        for w in &snapshot.warnings {
            let _ = writeln!(out, "  - {w}");
        }
    }
    out
}

/// Appends the address as `0x` and 16 hex digits (18 columns), as gdb prints it.
fn push_padded_address(out: &mut String, address: &str) {
    let digits = address.trim_start_matches("0x");
    let _ = write!(out, "0x{digits:0>16}");
}
