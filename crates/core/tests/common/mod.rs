//! Shared by the integration tests: where the corpus is, and its ground truth.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use coresnap_core::{CoreOptions, ProcessImage};
use serde_json::Value;

/// `$CORESNAP_CORPUS_DIR` (default /tmp/coresnap-corpus); a missing corpus fails the test.
pub fn corpus_root() -> PathBuf {
    let root = std::env::var_os("CORESNAP_CORPUS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/coresnap-corpus"));
    assert!(
        root.join("corpus").is_dir(),
        "the core-dump corpus is missing at {}: build it with \
         CORPUS_DIR={} /work/shared/corpus/make-corpus.sh, or set CORESNAP_CORPUS_DIR",
        root.display(),
        root.display()
    );
    root
}

pub fn case_dir(case: &str) -> PathBuf {
    let dir = corpus_root().join("corpus").join(case);
    assert!(
        dir.join("core").is_file(),
        "corpus case {} has no core",
        dir.display()
    );
    dir
}

pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

pub fn parse_hex(text: &str) -> u64 {
    u64::from_str_radix(text.trim_start_matches("0x"), 16).expect("a hex number")
}

/// The bytes of `path` at `offset`, as the test's independent view of a file.
pub fn file_bytes(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let data =
        std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    data[offset as usize..offset as usize + len].to_vec()
}

/// How this machine reads the corpus's qemu-user aarch64 cores: their libraries come from the
/// cross toolchain's sysroot.
pub fn qemu_user_options(executable: Option<PathBuf>) -> CoreOptions {
    CoreOptions {
        sysroot: Some(PathBuf::from("/usr/aarch64-linux-gnu")),
        executable,
    }
}

/// One of the image's warnings says what `says` looks for.
#[track_caller]
pub fn assert_some_warning(image: &ProcessImage, says: impl Fn(&str) -> bool) {
    assert!(
        image.warnings.iter().any(|w| says(w)),
        "{:?}",
        image.warnings
    );
}
