//! The on-disk cache of decompressed debug sections, over the host's libc and its compressed
//! libc6-dbg debug file: a cold cache, a warm one and no cache give the same answers, and the
//! cache holds private files named by build-id.
//!
//! One test in this file: it sets `CORESNAP_CACHE_DIR` for the whole process.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use coresnap_symbols::{DebugSearch, ModuleInfo, SourceFrame};

const FUNCTIONS: [&str; 5] = ["abort", "malloc", "printf", "qsort", "raise"];

fn symbolize_all(libc: &Path, addresses: &[u64]) -> Vec<Vec<SourceFrame>> {
    let module = ModuleInfo::open(libc, &DebugSearch::default()).expect("open libc");
    assert!(module.has_debug_info(), "libc6-dbg's DWARF is found");
    assert!(module.warnings().is_empty(), "{:?}", module.warnings());
    addresses.iter().map(|&a| module.symbolize(a)).collect()
}

#[test]
fn cold_warm_and_no_cache_agree() {
    let libc = Path::new("/lib/x86_64-linux-gnu/libc.so.6");
    assert!(libc.exists(), "this test needs the host's glibc");
    let build_id = readelf_build_id(libc).expect("libc has a build-id");
    let addresses: Vec<u64> = FUNCTIONS
        .iter()
        .map(|f| {
            let (start, size) = nm_symbol(libc, f, true);
            start + size / 2
        })
        .collect();

    let scratch = Scratch::new("section-cache");
    std::env::set_var("CORESNAP_CACHE_DIR", "off");
    let uncached = symbolize_all(libc, &addresses);
    assert!(
        uncached.iter().all(|frames| !frames.is_empty()),
        "{uncached:#?}"
    );

    std::env::set_var("CORESNAP_CACHE_DIR", &scratch.dir);
    let cold = symbolize_all(libc, &addresses);
    let folder = scratch.dir.join(&build_id);
    let files: Vec<_> = std::fs::read_dir(&folder)
        .unwrap_or_else(|e| panic!("{} was not made: {e}", folder.display()))
        .map(|e| e.expect("entry").path())
        .collect();
    assert!(
        files.iter().any(|f| f
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("debug_info-"))),
        "{files:?}"
    );
    assert_eq!(
        std::fs::metadata(&folder).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for file in &files {
        assert_eq!(
            std::fs::metadata(file).unwrap().permissions().mode() & 0o777,
            0o600,
            "{}",
            file.display()
        );
        assert!(
            !file.to_string_lossy().contains(".tmp."),
            "left behind: {}",
            file.display()
        );
    }

    let warm = symbolize_all(libc, &addresses);
    assert_eq!(cold, uncached);
    assert_eq!(warm, uncached);

    // A damaged cache file is ignored, not believed: the answers stay the same.
    for file in &files {
        let bytes = std::fs::read(file).expect("read cache file");
        std::fs::write(file, &bytes[..bytes.len() / 2]).expect("truncate cache file");
    }
    assert_eq!(symbolize_all(libc, &addresses), uncached);
}
