//! Turns a core dump (or a live process) into one Backtrace-shaped crash snapshot.
//!
//! Placeholder API, filled in by the integration work: see docs/engine.md.

use std::path::PathBuf;

/// What to snapshot and how.
#[derive(Debug, Clone, Default)]
pub struct SnapshotRequest {
    /// A core file, or `None` with `pid` set for a live process.
    pub core: Option<PathBuf>,
    /// A live process to attach to with ptrace(2).
    pub pid: Option<i32>,
    /// The crashed executable; the core names it when absent.
    pub executable: Option<PathBuf>,
    /// Every mapped file (and its debug tree `usr/lib/debug`) is looked up under this folder.
    pub sysroot: Option<PathBuf>,
    /// Extra build-id debug trees (`DIR/.build-id/xx/rest.debug`).
    pub debug_dirs: Vec<PathBuf>,
    /// `--kv key:value` attributes, in order.
    pub attributes: Vec<(String, String)>,
    /// Files attached to the snapshot (`--resource`).
    pub resources: Vec<PathBuf>,
    /// `--faulted`: the process crashed (as opposed to a hang snapshot of a live process).
    pub faulted: bool,
}

/// Why no snapshot could be made at all.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{0}")]
    Input(String),
}

/// Makes the snapshot and returns it as the JSON document described in docs/snapshot-format.md.
pub fn snapshot_json(request: &SnapshotRequest) -> Result<serde_json::Value, SnapshotError> {
    let _ = request;
    Err(SnapshotError::Input("the snapshot engine is not built yet".into()))
}
