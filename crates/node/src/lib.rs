//! The Node face of the snapshot engine, and nothing more.
//!
//! What the caller (ts/native/index.ts) does: passes one plain options object. What this crate
//! does: maps it onto [`coresnap_snapshot::SnapshotRequest`], runs the engine (on libuv's thread
//! pool for the async face), and hands back the snapshot as a JS object, or throws a JS `Error`
//! whose message is the engine's own sentence. A panic anywhere in the engine becomes a JS error
//! too: it never aborts the Node process.
//!
//! Every exported function is a thin shell over a plain Rust `*_impl` function, so the mapping
//! and the panic guard are tested with `cargo test` without a Node runtime.
//!
//! The snapshot crosses the boundary as JSON text and is turned into an object by V8's own
//! `JSON.parse`: one call instead of a `napi_set_property` per node, and no cap on the node count
//! (a 201-thread or 10,000-frame snapshot has hundreds of thousands of nodes).

#![deny(clippy::all)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use coresnap_snapshot::SnapshotRequest;
use napi::bindgen_prelude::*;
use napi::{Env, ScopedTask, JSON};
use napi_derive::napi;

/// What `snapshotCore` accepts: the fields of [`SnapshotRequest`], named as in JavaScript.
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct SnapshotOptions {
    /// A core file.
    pub core: Option<String>,
    /// A live process to attach to.
    pub pid: Option<i32>,
    /// The crashed executable; the core names it when absent.
    pub executable: Option<String>,
    /// Mapped files and their debug trees are looked up under this folder.
    pub sysroot: Option<String>,
    /// Extra build-id debug trees.
    pub debug_dirs: Option<Vec<String>>,
    /// `key → value` attributes, kept in the object's own key order.
    #[napi(ts_type = "Record<string, string>")]
    pub attributes: Option<serde_json::Map<String, serde_json::Value>>,
    /// Files attached to the snapshot.
    pub resources: Option<Vec<String>>,
    /// The process crashed (as opposed to a hang snapshot of a live process).
    pub faulted: Option<bool>,
    /// Extra classifiers to add to the snapshot's own.
    pub classifiers: Option<Vec<String>>,
}

/// Why the binding could not produce a snapshot; the message is what the JS `Error` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingError {
    /// The options object was malformed.
    Options(String),
    /// The engine refused, with its own sentence.
    Engine(String),
    /// The engine panicked; the panic was caught.
    Panic(String),
}

impl std::fmt::Display for BindingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BindingError::Options(why) => write!(f, "invalid snapshot options: {why}"),
            BindingError::Engine(sentence) => f.write_str(sentence),
            BindingError::Panic(why) => write!(
                f,
                "the snapshot engine panicked (a bug in coresnap, please report it): {why}"
            ),
        }
    }
}

impl BindingError {
    /// The `code` property of the JS error, so TypeScript can tell the kinds apart.
    fn code(&self) -> &'static str {
        match self {
            BindingError::Options(_) => "CORESNAP_OPTIONS",
            BindingError::Engine(_) => "CORESNAP_ENGINE",
            BindingError::Panic(_) => "CORESNAP_PANIC",
        }
    }
}

impl From<BindingError> for napi::Error {
    fn from(err: BindingError) -> Self {
        // napi's `Status` names become the JS error's `code`; ours are more useful, so the code
        // travels as a prefix that ts/native strips back off (see `splitCode` there).
        napi::Error::new(Status::GenericFailure, format!("[{}] {}", err.code(), err))
    }
}

/// Maps the JS options onto the engine's request.
pub fn request_from_options(options: &SnapshotOptions) -> std::result::Result<SnapshotRequest, BindingError> {
    let mut attributes = Vec::new();
    for (key, value) in options.attributes.iter().flatten() {
        let text = match value {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            other => {
                return Err(BindingError::Options(format!(
                    "attribute {key:?} must be a string, number or boolean, not {other}"
                )))
            }
        };
        attributes.push((key.clone(), text));
    }
    if let Some(pid) = options.pid {
        if pid <= 0 {
            return Err(BindingError::Options(format!("pid must be a positive process id, not {pid}")));
        }
    }
    let paths = |list: &Option<Vec<String>>| list.iter().flatten().map(PathBuf::from).collect();
    // Fields the engine gains later keep their defaults until they are mapped here.
    #[allow(clippy::needless_update)]
    Ok(SnapshotRequest {
        core: options.core.as_ref().map(PathBuf::from),
        pid: options.pid,
        executable: options.executable.as_ref().map(PathBuf::from),
        sysroot: options.sysroot.as_ref().map(PathBuf::from),
        debug_dirs: paths(&options.debug_dirs),
        attributes,
        resources: paths(&options.resources),
        faulted: options.faulted.unwrap_or(false),
        classifiers: options.classifiers.clone().unwrap_or_default(),
        ..SnapshotRequest::default()
    })
}

/// Runs `work`, turning a panic into [`BindingError::Panic`] with the panic's message.
pub fn guard_panics<T>(
    work: impl FnOnce() -> std::result::Result<T, BindingError>,
) -> std::result::Result<T, BindingError> {
    match catch_unwind(AssertUnwindSafe(work)) {
        Ok(result) => result,
        Err(payload) => {
            let why = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_owned());
            Err(BindingError::Panic(why))
        }
    }
}

/// The whole job, without Node: options in, snapshot JSON text out.
pub fn snapshot_core_impl(options: &SnapshotOptions) -> std::result::Result<String, BindingError> {
    guard_panics(|| {
        let request = request_from_options(options)?;
        let snapshot = coresnap_snapshot::snapshot_json(&request)
            .map_err(|err| BindingError::Engine(err.to_string()))?;
        serde_json::to_string(&snapshot)
            .map_err(|err| BindingError::Engine(format!("the snapshot could not be written as JSON: {err}")))
    })
}

/// The engine's version (the workspace version).
pub fn engine_version_impl() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// Turns JSON text into a JS value with V8's `JSON.parse`.
fn parse_in_js<'env>(env: &'env Env, json: String) -> Result<Unknown<'env>> {
    let global = env.get_global()?;
    let json_object: JSON = global.get_named_property_unchecked("JSON")?;
    let parse: Function<String, Unknown> = json_object.get_named_property_unchecked("parse")?;
    parse.call(json)
}

/// `snapshotCore` on libuv's thread pool.
pub struct SnapshotTask {
    options: SnapshotOptions,
}

impl<'task> ScopedTask<'task> for SnapshotTask {
    type Output = String;
    type JsValue = Unknown<'task>;

    fn compute(&mut self) -> Result<Self::Output> {
        snapshot_core_impl(&self.options).map_err(napi::Error::from)
    }

    fn resolve(&mut self, env: &'task Env, output: Self::Output) -> Result<Self::JsValue> {
        parse_in_js(env, output)
    }
}

/// Makes a snapshot without blocking the event loop.
#[napi(ts_return_type = "Promise<Record<string, unknown>>")]
pub fn snapshot_core(options: SnapshotOptions) -> AsyncTask<SnapshotTask> {
    AsyncTask::new(SnapshotTask { options })
}

/// Makes a snapshot on the calling thread.
#[napi(ts_return_type = "Record<string, unknown>")]
pub fn snapshot_core_sync(env: &Env, options: SnapshotOptions) -> Result<Unknown<'_>> {
    let json = snapshot_core_impl(&options)?;
    parse_in_js(env, json)
}

/// The engine's version.
#[napi]
pub fn engine_version() -> String {
    engine_version_impl().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_map_onto_the_request_in_order() {
        let mut attributes = serde_json::Map::new();
        attributes.insert("zeta".into(), "1".into());
        attributes.insert("alpha".into(), serde_json::json!(2));
        attributes.insert("flag".into(), serde_json::json!(true));
        let options = SnapshotOptions {
            core: Some("/tmp/core".into()),
            executable: Some("/bin/true".into()),
            sysroot: Some("/sysroot".into()),
            debug_dirs: Some(vec!["/d1".into(), "/d2".into()]),
            attributes: Some(attributes),
            resources: Some(vec!["/r".into()]),
            faulted: Some(true),
            classifiers: Some(vec!["oom".into()]),
            ..Default::default()
        };
        let request = request_from_options(&options).unwrap();
        assert_eq!(request.core, Some(PathBuf::from("/tmp/core")));
        assert_eq!(request.pid, None);
        assert_eq!(request.executable, Some(PathBuf::from("/bin/true")));
        assert_eq!(request.sysroot, Some(PathBuf::from("/sysroot")));
        assert_eq!(request.debug_dirs, vec![PathBuf::from("/d1"), PathBuf::from("/d2")]);
        assert_eq!(
            request.attributes,
            vec![
                ("zeta".to_owned(), "1".to_owned()),
                ("alpha".to_owned(), "2".to_owned()),
                ("flag".to_owned(), "true".to_owned()),
            ]
        );
        assert_eq!(request.resources, vec![PathBuf::from("/r")]);
        assert!(request.faulted);
        assert_eq!(request.classifiers, vec!["oom".to_owned()]);
    }

    #[test]
    fn absent_options_are_empty_not_errors() {
        let request = request_from_options(&SnapshotOptions { pid: Some(1), ..Default::default() }).unwrap();
        assert_eq!(request.pid, Some(1));
        assert!(request.debug_dirs.is_empty() && request.attributes.is_empty() && !request.faulted);
    }

    #[test]
    fn bad_options_are_refused_with_a_sentence() {
        let mut attributes = serde_json::Map::new();
        attributes.insert("nested".into(), serde_json::json!({"a": 1}));
        let err = request_from_options(&SnapshotOptions { attributes: Some(attributes), ..Default::default() })
            .unwrap_err();
        assert!(matches!(&err, BindingError::Options(m) if m.contains("\"nested\"")), "{err}");
        let err = request_from_options(&SnapshotOptions { pid: Some(-4), ..Default::default() }).unwrap_err();
        assert!(err.to_string().contains("positive"), "{err}");
    }

    #[test]
    fn a_missing_core_is_an_engine_sentence_not_a_panic() {
        let options = SnapshotOptions { core: Some("/nonexistent/coresnap-test/core".into()), ..Default::default() };
        match snapshot_core_impl(&options) {
            Err(BindingError::Engine(sentence)) => assert!(!sentence.is_empty()),
            other => panic!("expected an engine error, got {other:?}"),
        }
    }

    #[test]
    fn panics_become_errors() {
        let err = guard_panics::<()>(|| panic!("boom {}", 42)).unwrap_err();
        assert_eq!(err, BindingError::Panic("boom 42".into()));
        let err = guard_panics::<()>(|| std::panic::panic_any(7u8)).unwrap_err();
        assert_eq!(err, BindingError::Panic("no message".into()));
        assert!(err.to_string().contains("panicked"));
    }
}
