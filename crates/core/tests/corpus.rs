//! The real cores of the corpus (see /work/shared/corpus/README.md) against their ground truth.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::{
    assert_some_warning, case_dir, corpus_root, file_bytes, parse_hex, qemu_user_options, read_json,
};
use coresnap_core::{Arch, CoreOptions, ProcessImage, SignalInfo};
use object::Object;
use serde_json::Value;

const X86_64_CASES: [&str; 9] = [
    "c-segv-O0",
    "c-segv-O2",
    "c-abort",
    "cpp-throw",
    "deep-recursion",
    "many-threads",
    "no-fp-no-unwind",
    "stripped",
    "big-python",
];

/// The bytes at `avma` as the file behind its mapping holds them (read by the test itself).
fn bytes_from_mapped_file(image: &ProcessImage, avma: u64, len: usize) -> Vec<u8> {
    let mapping = image
        .mapping_at(avma)
        .unwrap_or_else(|| panic!("{avma:#x} is in no mapping"));
    let path = image.resolve_path(mapping.path.as_deref().expect("a file-backed mapping"));
    file_bytes(&path, mapping.file_offset + (avma - mapping.start), len)
}

/// The process's code at `pc` is readable and is what the file behind its mapping holds.
#[track_caller]
fn assert_code_from_mapped_file(image: &ProcessImage, pc: u64, len: usize, case: &str) {
    let mut code = vec![0u8; len];
    assert!(image.read_memory(pc, &mut code), "{case}: code at {pc:#x}");
    assert_eq!(code, bytes_from_mapped_file(image, pc, len), "{case}");
}

/// Opens a corpus core that must read cleanly: the expected architecture and no warnings.
#[track_caller]
fn open_clean_core(dir: &Path, case: &str, options: &CoreOptions, arch: Arch) -> ProcessImage {
    let image = ProcessImage::open_core(&dir.join("core"), options)
        .unwrap_or_else(|e| panic!("{case}: {e}"));
    assert_eq!(image.arch, arch, "{case}");
    assert!(image.warnings.is_empty(), "{case}: {:?}", image.warnings);
    image
}

/// The signal's number and code are those of `siginfo`, the corpus's record of it.
#[track_caller]
fn assert_signal_number_and_code(signal: &SignalInfo, siginfo: &Value, case: &str) {
    assert_eq!(
        signal.number as i64,
        siginfo["si_signo"].as_i64().unwrap(),
        "{case}"
    );
    assert_eq!(
        signal.code.map(i64::from),
        siginfo["si_code"].as_i64(),
        "{case}"
    );
}

fn build_id_from_file_description(description: &str) -> Vec<u8> {
    let hex = description
        .split("BuildID[sha1]=")
        .nth(1)
        .expect("`file` output with a build-id")
        .split(',')
        .next()
        .unwrap();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn check_x86_64_case(case: &str) {
    let dir = case_dir(case);
    let expected = read_json(&dir.join("expected.json"));
    let meta = read_json(&dir.join("meta"));
    let image = open_clean_core(&dir, case, &CoreOptions::default(), Arch::X86_64);

    // Threads: count, the crashing one first, every tid.
    assert_eq!(
        image.threads.len() as u64,
        expected["threads"].as_u64().unwrap(),
        "{case}"
    );
    let crashed = image.crashing_thread.expect("a crashing thread");
    assert_eq!(
        crashed, 0,
        "{case}: the kernel writes the crashing thread first"
    );
    assert_eq!(
        image.threads[crashed].tid as u64,
        expected["crash_tid"].as_u64().unwrap(),
        "{case}"
    );
    let tids: BTreeSet<u64> = image.threads.iter().map(|t| t.tid as u64).collect();
    let expected_tids: BTreeSet<u64> = meta["tids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect();
    assert_eq!(tids, expected_tids, "{case}");
    assert!(
        tids.contains(&(image.pid as u64)),
        "{case}: pid {} is one of the threads",
        image.pid
    );
    assert!(image.threads.iter().all(|t| t.has_fp_registers), "{case}");

    // Signal, from NT_SIGINFO.
    let signal = image.signal.clone().expect("a signal");
    let siginfo = &meta["siginfo"];
    assert_eq!(
        signal.number as u64,
        expected["signal"].as_u64().unwrap(),
        "{case}"
    );
    assert_signal_number_and_code(&signal, siginfo, case);
    let code = siginfo["si_code"].as_i64().unwrap();
    let union_word = parse_hex(siginfo["si_addr"].as_str().unwrap());
    if code > 0 {
        assert_eq!(signal.address, Some(union_word), "{case}");
        assert_eq!(signal.sender_pid, None, "{case}");
    } else {
        // abort() → tgkill: the union starts with si_pid, the process itself.
        assert_eq!(signal.sender_pid, Some(union_word as u32 as i32), "{case}");
        assert_eq!(signal.sender_pid, Some(image.pid), "{case}");
        assert_eq!(signal.address, None, "{case}");
    }

    // Process.
    assert_eq!(image.process.command.as_deref(), Some("exe"), "{case}");
    assert!(
        image.process.args.as_deref().unwrap().starts_with("./exe"),
        "{case}"
    );
    assert_eq!(image.process.uid, Some(0), "{case}");
    let exe_path = dir.join("exe");
    assert_eq!(
        image.process.executable_path.as_deref(),
        Some(exe_path.to_str().unwrap()),
        "{case}"
    );

    // Mappings: exactly the files NT_FILE lists, sorted and non-overlapping.
    let mapped: BTreeSet<&str> = image
        .mappings
        .iter()
        .filter_map(|m| m.path.as_deref())
        .filter(|p| !p.starts_with('['))
        .collect();
    let expected_files: BTreeSet<&str> = meta["mapped_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(mapped, expected_files, "{case}");
    assert!(mapped.iter().any(|p| p.ends_with("/libc.so.6")), "{case}");
    for pair in image.mappings.windows(2) {
        assert!(
            pair[0].start < pair[0].end && pair[0].end <= pair[1].start,
            "{case}: {pair:?}"
        );
    }

    // Memory: every thread's stack, and code (left out of the core, so read from the files).
    for thread in &image.threads {
        let sp = thread.sp(Arch::X86_64).unwrap();
        assert!(
            image.read_u64(sp).is_some(),
            "{case}: thread {} sp {sp:#x}",
            thread.tid
        );
        let mapping = image.mapping_at(sp).expect("sp in a mapping");
        assert!(
            mapping.readable && mapping.writable && mapping.path.is_none(),
            "{case}"
        );
        let pc = thread.pc(Arch::X86_64).unwrap();
        let code_mapping = image.mapping_at(pc).expect("pc in a mapping");
        assert!(
            code_mapping.executable,
            "{case}: pc {pc:#x} in {code_mapping:?}"
        );
        assert_code_from_mapped_file(&image, pc, 16, case);
    }
    let crash_pc = image.threads[crashed].pc(Arch::X86_64).unwrap();
    let crash_mapping = image.mapping_at(crash_pc).unwrap();
    if case.starts_with("c-segv") || case == "deep-recursion" {
        assert_eq!(
            crash_mapping.path.as_deref(),
            Some(exe_path.to_str().unwrap()),
            "{case}"
        );
    }

    // The DWARF view of the crashing thread.
    let dwarf = image.threads[crashed].dwarf_registers(Arch::X86_64);
    assert_eq!(dwarf.len(), 17, "{case}");
    assert_eq!(dwarf[16], (16, crash_pc), "{case}");
    assert_eq!(
        dwarf[7],
        (7, image.threads[crashed].sp(Arch::X86_64).unwrap()),
        "{case}"
    );

    // The executable's build-id as the process had it.
    let exe_base = image
        .mappings
        .iter()
        .find(|m| m.path.as_deref() == Some(exe_path.to_str().unwrap()) && m.file_offset == 0)
        .expect("the executable's first mapping")
        .start;
    assert_eq!(
        image.build_id_in_memory(exe_base),
        Some(build_id_from_file_description(
            meta["exe_file"].as_str().unwrap()
        )),
        "{case}"
    );

    // The vDSO, whole, from memory.
    let vdso = image.read_vdso_image().expect("the vDSO image");
    let parsed = object::File::parse(&vdso[..]).expect("the vDSO is an ELF file");
    assert!(parsed.build_id().unwrap().is_some(), "{case}");
    assert_eq!(
        image
            .mapping_at(image.vdso_base().unwrap())
            .unwrap()
            .path
            .as_deref(),
        Some("[vdso]")
    );
}

#[test]
fn x86_64_corpus_cases() {
    for case in X86_64_CASES {
        check_x86_64_case(case);
    }
}

#[test]
fn big_python_maps_its_extension_modules() {
    let dir = case_dir("big-python");
    let image = ProcessImage::open_core(&dir.join("core"), &CoreOptions::default()).unwrap();
    let modules: BTreeSet<&str> = image
        .mappings
        .iter()
        .filter_map(|m| m.path.as_deref())
        .collect();
    assert!(
        modules.iter().filter(|p| p.contains("lib-dynload")).count() >= 5,
        "{modules:?}"
    );
}

fn qemu_options(dir: &Path, with_executable: bool) -> CoreOptions {
    let meta = read_json(&dir.join("meta"));
    CoreOptions {
        sysroot: Some(PathBuf::from(
            meta["tool_hints"]["sysroot"].as_str().unwrap(),
        )),
        executable: with_executable.then(|| dir.join("exe")),
    }
}

fn check_qemu_case(case: &str, with_executable: bool) {
    let dir = case_dir(case);
    let expected = read_json(&dir.join("expected.json"));
    let meta = read_json(&dir.join("meta"));
    let options = qemu_options(&dir, with_executable);
    let sysroot = options.sysroot.clone().unwrap();
    let image = open_clean_core(&dir, case, &options, Arch::Aarch64);
    assert_eq!(
        image.threads.len() as u64,
        expected["threads"].as_u64().unwrap()
    );
    let crashed = image.crashing_thread.unwrap();
    assert_eq!(
        image.threads[crashed].tid as u64,
        expected["crash_tid"].as_u64().unwrap()
    );
    // qemu-user writes no NT_SIGINFO: the number comes from pr_cursig, the rest is unknown.
    let signal = image.signal.clone().unwrap();
    assert_eq!(signal.number as u64, expected["signal"].as_u64().unwrap());
    assert_eq!((signal.code, signal.address), (None, None));
    assert!(meta["siginfo"].is_null());

    // Mappings rebuilt from link_map: the executable, libc and the dynamic linker.
    let exe = image
        .process
        .executable_path
        .clone()
        .expect("an executable path");
    assert_eq!(image.resolve_path(&exe), dir.join("exe"), "{case}");
    let paths: BTreeSet<&str> = image
        .mappings
        .iter()
        .filter_map(|m| m.path.as_deref())
        .collect();
    assert!(paths.contains(exe.as_str()), "{case}: {paths:?}");
    let libc = paths
        .iter()
        .find(|p| p.ends_with("/libc.so.6"))
        .expect("libc.so.6 mapped");
    assert!(image.resolve_path(libc).starts_with(&sysroot));
    assert!(
        paths.iter().any(|p| p.contains("ld-linux-aarch64.so.1")),
        "{paths:?}"
    );
    for pair in image.mappings.windows(2) {
        assert!(pair[0].end <= pair[1].start, "{pair:?}");
    }

    // The crash is in the executable (segv) or libc (abort); its code is only on disk.
    let thread = &image.threads[crashed];
    let pc = thread.pc(Arch::Aarch64).unwrap();
    assert_code_from_mapped_file(&image, pc, 4, case);
    let mapping = image.mapping_at(pc).unwrap();
    assert!(mapping.executable);
    let expected_module = if case == "aarch64-segv" {
        exe.as_str()
    } else {
        *libc
    };
    assert_eq!(mapping.path.as_deref(), Some(expected_module), "{case}");
    // The other threads wait in libc.
    for other in image.threads.iter().filter(|t| t.tid != thread.tid) {
        let pc = other.pc(Arch::Aarch64).unwrap();
        assert_eq!(image.mapping_at(pc).unwrap().path.as_deref(), Some(*libc));
        assert_code_from_mapped_file(&image, pc, 8, case);
        assert!(image.read_u64(other.sp(Arch::Aarch64).unwrap()).is_some());
    }
    assert!(image.read_u64(thread.sp(Arch::Aarch64).unwrap()).is_some());
    let dwarf = thread.dwarf_registers(Arch::Aarch64);
    assert_eq!(dwarf.len(), 33);
    assert_eq!(dwarf[32], (32, pc));
}

#[test]
fn qemu_user_cores_rebuild_mappings_from_link_map() {
    for case in ["aarch64-segv", "aarch64-abort"] {
        check_qemu_case(case, true);
        // The executable is also found without being named: AT_EXECFN is ./exe, relative to
        // the directory the core was written in.
        check_qemu_case(case, false);
    }
}

#[test]
fn qemu_user_core_without_sysroot_says_what_is_missing() {
    let dir = case_dir("aarch64-segv");
    let options = CoreOptions {
        sysroot: None,
        executable: Some(dir.join("exe")),
    };
    let image = ProcessImage::open_core(&dir.join("core"), &options).unwrap();
    // This machine's /lib/libc.so.6 is not an aarch64 library: refused, with a reason.
    assert_some_warning(&image, |w| {
        w.contains("libc.so.6") || w.contains("architecture")
    });
    assert!(image
        .mappings
        .iter()
        .all(|m| !m.path.as_deref().unwrap_or("").ends_with("libc.so.6")));
    assert_eq!(image.threads.len(), 4);
}

#[test]
fn mismatched_executable_is_reported() {
    let dir = case_dir("c-segv-O0");
    let other = case_dir("c-segv-O2").join("exe");
    let options = CoreOptions {
        sysroot: None,
        executable: Some(other.clone()),
    };
    let image = ProcessImage::open_core(&dir.join("core"), &options).unwrap();
    assert_some_warning(&image, |w| {
        w.contains("does not match") && w.contains("build-id")
    });
    // The caller's file still replaces the executable's path.
    let exe = image.process.executable_path.clone().unwrap();
    assert_eq!(image.resolve_path(&exe), other);

    let qemu_dir = case_dir("aarch64-segv");
    let options = qemu_user_options(Some(case_dir("aarch64-abort").join("exe")));
    let image = ProcessImage::open_core(&qemu_dir.join("core"), &options).unwrap();
    let _ = image.mappings.len();
    let wrong_arch = qemu_user_options(Some(dir.join("exe")));
    let image = ProcessImage::open_core(&qemu_dir.join("core"), &wrong_arch).unwrap();
    assert_some_warning(&image, |w| w.contains("architecture"));
}

fn arm64_corpus() -> PathBuf {
    let dir = corpus_root().join("arm64/corpus");
    assert!(
        dir.join("sysroot").is_dir(),
        "the arm64 real-kernel corpus is missing at {}: build it with \
         CORPUS_DIR=... /work/shared/corpus/make-arm64-cores.sh",
        dir.display()
    );
    dir
}

#[test]
fn arm64_kernel_cores() {
    let root = arm64_corpus();
    let sysroot = root.join("sysroot");
    let mut cases = 0;
    for entry in std::fs::read_dir(&root).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.join("expected.json").is_file() {
            continue;
        }
        cases += 1;
        let case = dir.file_name().unwrap().to_string_lossy().into_owned();
        let expected = read_json(&dir.join("expected.json"));
        let options = CoreOptions {
            sysroot: Some(sysroot.clone()),
            executable: None,
        };
        let image = open_clean_core(&dir, &case, &options, Arch::Aarch64);
        assert_eq!(
            image.threads.len() as u64,
            expected["thread_count"].as_u64().unwrap(),
            "{case}"
        );
        assert_eq!(image.crashing_thread, Some(0), "{case}");
        let signal = image.signal.clone().unwrap();
        let want = &expected["signal"];
        assert_signal_number_and_code(&signal, want, &case);
        if let Some(address) = want["si_addr"].as_str() {
            assert_eq!(signal.address, Some(parse_hex(address)), "{case}");
        }
        if signal.code == Some(-6) {
            assert_eq!(signal.sender_pid, Some(image.pid), "{case}");
        }
        let pac = image.pac_mask.expect("NT_ARM_PAC_MASK");
        assert_ne!(pac.insn, 0, "{case}");
        assert!(image.threads.iter().all(|t| t.has_fp_registers), "{case}");

        // NT_FILE paths resolve in the sysroot, through its lib -> usr/lib and corpus -> ..
        let exe = image.process.executable_path.clone().unwrap();
        assert_eq!(exe, format!("/corpus/{case}/exe"));
        assert_eq!(
            std::fs::canonicalize(image.resolve_path(&exe)).unwrap(),
            std::fs::canonicalize(dir.join("exe")).unwrap()
        );
        let libc = image
            .mappings
            .iter()
            .filter_map(|m| m.path.as_deref())
            .find(|p| p.ends_with("/libc.so.6"))
            .expect("libc mapped");
        assert!(image.resolve_path(libc).is_file(), "{case}");

        for thread in &image.threads {
            let pc = thread.pc(Arch::Aarch64).unwrap();
            assert_code_from_mapped_file(&image, pc, 8, &case);
            assert!(
                image.read_u64(thread.sp(Arch::Aarch64).unwrap()).is_some(),
                "{case}"
            );
        }
        let vdso = image.read_vdso_image().expect("the vDSO");
        assert!(object::File::parse(&vdso[..]).is_ok(), "{case}");
    }
    assert!(
        cases >= 4,
        "only {cases} arm64 cases found in {}",
        root.display()
    );
}
