//! The human-readable backtrace that `bt` prints: gdb's shape, every thread, faulting one first.

use crate::report::{Frame, Snapshot};
use std::fmt::Write as _;

fn location(frame: &Frame) -> String {
    let mut s = String::new();
    if let Some(path) = &frame.source_path {
        let _ = write!(s, " at {path}");
        if let Some(line) = frame.line {
            let _ = write!(s, ":{line}");
        }
    }
    s
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
        let mut number = 0usize;
        for frame in &thread.stack {
            let name = frame.func_name.as_deref().unwrap_or("??");
            let module = library_name(frame)
                .map(|l| format!(" from {l}"))
                .unwrap_or_default();
            let mut annotation = match frame.kind.as_deref() {
                Some("signal") => " <signal handler called>".to_string(),
                _ => String::new(),
            };
            if frame.tail_call {
                annotation.push_str(" [tail call]");
            }
            if frame.inlined {
                let _ = writeln!(out, "#{number:<3} {:>18} in {name}{}{module} [inlined]{annotation}", "", location(frame));
            } else {
                let _ = writeln!(
                    out,
                    "#{number:<3} {:>18} in {name}{}{module} [{}]{annotation}",
                    pad_address(&frame.address),
                    location(frame),
                    frame.trust
                );
            }
            number += 1;
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

fn pad_address(address: &str) -> String {
    let digits = address.trim_start_matches("0x");
    format!("0x{digits:0>16}")
}
