//! Helpers for tests that build real binaries with the host toolchain and check this crate
//! against binutils (nm, readelf, addr2line, objcopy) as the independent oracle.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A scratch directory removed when the test ends.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "coresnap-symbols-{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            name
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch directory");
        Scratch { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent");
        }
        std::fs::write(&path, contents).expect("write scratch file");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs a tool, panicking with its stderr when it fails; returns stdout.
pub fn run<S: AsRef<std::ffi::OsStr>>(program: &str, args: &[S]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("could not run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {:?} failed: {}",
        args.iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect::<Vec<_>>(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn s(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// `(address, size)` of a defined symbol, from `nm -S` (`dynamic` for `.dynsym`).
pub fn nm_symbol(file: &Path, name: &str, dynamic: bool) -> (u64, u64) {
    let mut args = vec!["-S".to_string(), "--defined-only".to_string()];
    if dynamic {
        args.push("-D".to_string());
    }
    args.push(s(file));
    let out = run("nm", &args);
    for line in out.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let [address, size, _kind, symbol] = fields[..] {
            if symbol == name || symbol.split('@').next() == Some(name) {
                return (
                    u64::from_str_radix(address, 16).expect("nm address"),
                    u64::from_str_radix(size, 16).expect("nm size"),
                );
            }
        }
    }
    panic!("{name} not found by nm in {}", file.display());
}

/// The first defined symbol whose name contains `fragment`.
pub fn nm_symbol_containing(file: &Path, fragment: &str) -> (String, u64, u64) {
    let out = run("nm", &["-S", "--defined-only", &s(file)]);
    for line in out.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let [address, size, _kind, symbol] = fields[..] {
            if symbol.contains(fragment) {
                return (
                    symbol.to_string(),
                    u64::from_str_radix(address, 16).expect("nm address"),
                    u64::from_str_radix(size, 16).expect("nm size"),
                );
            }
        }
    }
    panic!("no symbol containing {fragment} in {}", file.display());
}

/// The 1-based line of the source line containing `marker`.
pub fn line_of(source: &str, marker: &str) -> u32 {
    let index = source
        .lines()
        .position(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("marker {marker} not in source"));
    u32::try_from(index + 1).expect("line fits")
}

/// binutils `addr2line -f -i -C`: `(function, line)` innermost first.
pub fn binutils_frames(file: &Path, address: u64) -> Vec<(String, Option<u32>)> {
    let out = run(
        "addr2line",
        &["-f", "-i", "-C", "-e", &s(file), &format!("{address:#x}")],
    );
    let lines: Vec<&str> = out.lines().collect();
    lines
        .chunks(2)
        .filter_map(|pair| match pair {
            [function, location] => {
                let line = location
                    .rsplit(':')
                    .next()
                    .and_then(|l| l.split_whitespace().next())
                    .and_then(|l| l.parse().ok());
                Some((function.to_string(), line))
            }
            _ => None,
        })
        .collect()
}

/// `.build-id` hex from `readelf -n`.
pub fn readelf_build_id(file: &Path) -> Option<String> {
    let out = run("readelf", &["-n", &s(file)]);
    out.lines().find_map(|l| {
        l.trim()
            .strip_prefix("Build ID: ")
            .map(|id| id.trim().to_string())
    })
}

/// `(name, file offset, size, flags)` of every section, from `readelf -SW`.
pub fn readelf_sections(file: &Path) -> Vec<(String, u64, u64, String)> {
    let out = run("readelf", &["-SW", &s(file)]);
    let mut sections = Vec::new();
    for line in out.lines() {
        let Some(rest) = line.trim_start().strip_prefix('[') else {
            continue;
        };
        let Some((_, rest)) = rest.split_once(']') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // name type address offset size entsize [flags] link info align
        if fields.len() < 9 || fields[0] == "Name" {
            continue;
        }
        let (Ok(offset), Ok(size)) = (
            u64::from_str_radix(fields[3], 16),
            u64::from_str_radix(fields[4], 16),
        ) else {
            continue;
        };
        let flags = if fields.len() >= 10 {
            fields[6].to_string()
        } else {
            String::new()
        };
        sections.push((fields[0].to_string(), offset, size, flags));
    }
    sections
}

/// The bytes of a section as binutils sees them (decompressed), via objcopy.
pub fn objcopy_section(scratch: &Scratch, file: &Path, section: &str) -> Vec<u8> {
    let out = scratch.path(&format!("section{}", section.replace('.', "_")));
    run(
        "objcopy",
        &[
            "--decompress-debug-sections".to_string(),
            "-O".to_string(),
            "binary".to_string(),
            format!("--only-section={section}"),
            format!("--set-section-flags={section}=alloc"),
            s(file),
            s(&out),
        ],
    );
    std::fs::read(&out).expect("objcopy output")
}

pub fn corpus_dir() -> PathBuf {
    PathBuf::from(
        std::env::var("CORESNAP_CORPUS_DIR").unwrap_or_else(|_| "/tmp/coresnap-corpus".to_string()),
    )
}

/// `(p_offset, p_filesz)` of every `PT_LOAD`, from `readelf -lW`.
pub fn readelf_loads(file: &Path) -> Vec<(u64, u64)> {
    let out = run("readelf", &["-lW", &s(file)]);
    out.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields[..] {
                ["LOAD", offset, _vaddr, _paddr, filesz, ..] => Some((
                    u64::from_str_radix(offset.trim_start_matches("0x"), 16).ok()?,
                    u64::from_str_radix(filesz.trim_start_matches("0x"), 16).ok()?,
                )),
                _ => None,
            }
        })
        .collect()
}
