//! The snapshot document: the Backtrace crash-report shape (backtrace-compat.md section 4) with
//! coresnap's own fields beside it. docs/snapshot-format.md is the written schema; keep the two
//! in step.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One crash (or hang) snapshot.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub uuid: String,
    /// Seconds since the epoch (UTC) when the snapshot was made.
    pub timestamp: u64,
    pub lang: String,
    pub lang_version: String,
    pub agent: String,
    pub agent_version: String,
    pub arch: ArchInfo,
    /// The faulting thread's id (a key of `threads`).
    pub main_thread: String,
    pub threads: BTreeMap<String, Thread>,
    /// Thread ids in the order the process listed them, the faulting one first.
    pub thread_order: Vec<String>,
    pub attributes: BTreeMap<String, serde_json::Value>,
    pub classifiers: Vec<String>,
    pub modules: Vec<Module>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<Signal>,
    pub process: Process,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    pub annotations: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArchInfo {
    pub name: String,
    /// Register name → type, as the schema declares them.
    pub registers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Thread {
    pub name: String,
    pub fault: bool,
    pub stack: Vec<Frame>,
    /// Why the walk ended, as a sentence.
    #[serde(rename = "stopReason", skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Frame {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub func_name: Option<Arc<str>>,
    /// Hex string: u64 addresses do not fit a JSON number that JavaScript reads exactly.
    pub address: Arc<str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub library: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub library_offset: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_path: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub inlined: bool,
    /// A frame that a tail call left off the stack, rebuilt from DWARF call-site information.
    #[serde(rename = "tailCall", skip_serializing_if = "std::ops::Not::not")]
    pub tail_call: bool,
    pub trust: Arc<str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<Arc<str>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub faulted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registers: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Module {
    /// Hex string of the lowest mapped address.
    pub start: String,
    pub size: u64,
    pub code_file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debug_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debug_identifier: Option<String>,
    pub debug_file_exists: bool,
    /// The path the file was read from (under the sysroot), when it was found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loaded_from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mismatch: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Signal {
    pub number: i32,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_pid: Option<i32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Process {
    pub pid: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// `core` for a core dump, `live` for an attached process.
    pub source: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Attachment {
    pub name: String,
    pub path: String,
    pub size: u64,
    /// Base64 of the file's bytes; absent when the file was too large to embed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}
