//! coresnapd keeps cores zstd-compressed once their snapshot is made; they read like the original.

use coresnap_core::{CoreOptions, ProcessImage};
use std::path::PathBuf;
use std::process::Command;

fn corpus_case(name: &str) -> PathBuf {
    let root = std::env::var("CORESNAP_CORPUS_DIR").unwrap_or_else(|_| "/tmp/coresnap-corpus".into());
    let dir = PathBuf::from(root).join("corpus").join(name);
    assert!(dir.join("core").exists(), "no corpus case at {} (build it with scripts/corpus.sh)", dir.display());
    dir
}

#[test]
fn a_zstd_compressed_core_reads_like_the_original_and_a_damaged_one_is_a_clear_error() {
    let case = corpus_case("c-segv-O2");
    let scratch = std::env::temp_dir().join(format!("coresnap-zstd-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let compressed = scratch.join("core.zst");
    let status = Command::new("zstd")
        .args(["-q", "-f", "-3", "-o"])
        .arg(&compressed)
        .arg(case.join("core"))
        .status()
        .expect("the zstd command runs (Debian package zstd)");
    assert!(status.success());

    let options = CoreOptions::default();
    let plain = ProcessImage::open_core(&case.join("core"), &options).unwrap();
    let packed = ProcessImage::open_core(&compressed, &options).unwrap();
    assert_eq!(plain.pid, packed.pid);
    assert_eq!(plain.threads.len(), packed.threads.len());
    assert_eq!(plain.signal.as_ref().map(|s| s.number), packed.signal.as_ref().map(|s| s.number));
    assert_eq!(plain.mappings.len(), packed.mappings.len());
    let sp = plain.threads[0].sp(plain.arch).unwrap();
    let (mut a, mut b) = ([0u8; 256], [0u8; 256]);
    assert!(plain.read_memory(sp, &mut a) && packed.read_memory(sp, &mut b));
    assert_eq!(a, b, "the stack reads the same through the compressed core");

    let bytes = std::fs::read(&compressed).unwrap();
    let truncated = scratch.join("cut.zst");
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let err = ProcessImage::open_core(&truncated, &options).err().expect("a damaged zstd core is refused");
    assert!(err.to_string().contains("zstd"), "{err}");
    std::fs::remove_dir_all(&scratch).unwrap();
}
