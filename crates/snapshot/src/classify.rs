//! Classifiers: short labels that say what kind of crash this is, for grouping and queries.

use crate::report::Thread;

/// What the classifier needs to know about the crash.
pub struct CrashFacts<'a> {
    pub signal: Option<i32>,
    pub fault_address: Option<u64>,
    pub stack_pointer: Option<u64>,
    /// Whether the fault address lies in any readable mapping.
    pub fault_address_mapped: bool,
    pub crashing_thread: Option<&'a Thread>,
    pub abort_message: Option<&'a str>,
}

/// The labels for a crash, most general first: the signal name, then what we recognised.
pub fn classify(facts: &CrashFacts) -> Vec<String> {
    let mut labels = Vec::new();
    let names: Vec<&str> = facts
        .crashing_thread
        .map(|t| t.stack.iter().filter_map(|f| f.func_name.as_deref()).collect())
        .unwrap_or_default();
    let has = |pred: &dyn Fn(&str) -> bool| names.iter().any(|n| pred(n));

    if let Some(signal) = facts.signal {
        labels.push(crate::signals::signal_name(signal));
    }
    let memory_fault = matches!(facts.signal, Some(11) | Some(7));
    if memory_fault {
        if let Some(addr) = facts.fault_address {
            if addr < 0x1000 {
                labels.push("null-dereference".into());
            } else if let Some(sp) = facts.stack_pointer {
                // A push or call just below the stack pointer that hits an unmapped page is the
                // guard page of an exhausted stack.
                let near_sp = addr <= sp.saturating_add(256) && addr >= sp.saturating_sub(64 * 1024);
                if near_sp && !facts.fault_address_mapped {
                    labels.push("stack-overflow".into());
                }
            }
        }
    }
    if facts.signal == Some(6) || has(&|n| n == "abort" || n.ends_with("::abort")) {
        labels.push("abort".into());
    }
    let assert_frame = has(&|n| n.starts_with("__assert_fail") || n == "__assert_perror_fail");
    let assert_message = facts.abort_message.is_some_and(|m| m.contains("Assertion"));
    if assert_frame || assert_message {
        labels.push("assert".into());
    }
    if has(&|n| n.contains("__cxa_throw") || n == "std::terminate" || n.contains("__cxa_rethrow")) {
        labels.push("uncaught-exception".into());
    }
    if has(&|n| n.starts_with("runtime.fatalpanic") || n.starts_with("runtime.gopanic")) {
        labels.push("go-panic".into());
    }
    if has(&|n| n.starts_with("std::panicking::") || n.starts_with("core::panicking::") || n == "rust_panic") {
        labels.push("rust-panic".into());
    }
    labels.dedup();
    labels
}
