//! Bad input gives a sentence or a partial image with warnings, within bounded time, and never
//! a panic: empty, random, not-a-core, other architectures, truncation at every offset of the
//! headers and notes (and many beyond), bit flips.

mod common;

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use common::{assert_some_warning, case_dir, qemu_user_options};
use coresnap_core::{Arch, CoreError, CoreOptions, ProcessImage};
use object::read::elf::{FileHeader, ProgramHeader};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("coresnap-core-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn error_for(bytes: &[u8]) -> String {
    match ProcessImage::from_core_bytes(bytes.to_vec(), &CoreOptions::default()) {
        Ok(image) => panic!("expected an error, got {image:?}"),
        Err(error) => error.to_string(),
    }
}

/// A minimal ELF header: class, type, machine; no program headers.
fn elf_header(class64: bool, e_type: u16, machine: u16) -> Vec<u8> {
    let mut header = vec![0u8; if class64 { 64 } else { 52 }];
    header[..4].copy_from_slice(b"\x7fELF");
    header[4] = if class64 { 2 } else { 1 };
    header[5] = 1; // little-endian
    header[6] = 1; // EV_CURRENT
    header[16..18].copy_from_slice(&e_type.to_le_bytes());
    header[18..20].copy_from_slice(&machine.to_le_bytes());
    header[20..24].copy_from_slice(&1u32.to_le_bytes());
    header
}

#[test]
fn errors_are_sentences() {
    let dir = temp_dir("errors");
    let empty = dir.join("empty");
    std::fs::write(&empty, b"").unwrap();
    let error = ProcessImage::open_core(&empty, &CoreOptions::default()).unwrap_err();
    assert_eq!(error.to_string(), "the file is empty");

    let missing = dir.join("missing-core");
    let error = ProcessImage::open_core(&missing, &CoreOptions::default()).unwrap_err();
    assert!(matches!(error, CoreError::Io { .. }));
    assert!(
        error.to_string().contains(missing.to_str().unwrap()),
        "{error}"
    );
    let error = ProcessImage::open_core(&dir, &CoreOptions::default()).unwrap_err();
    assert!(error.to_string().contains("directory"), "{error}");

    assert_eq!(error_for(b"hello, world"), "the file is not an ELF file");
    assert_eq!(error_for(b"\x7fEL"), "the file is not an ELF file");
    let random: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    assert_eq!(error_for(&random), "the file is not an ELF file");
    assert!(error_for(b"\x7fELF\x02\x01").starts_with("the ELF header is unusable"));

    // Real executables: a PIE (ET_DYN) and a non-PIE aarch64 one (ET_EXEC).
    let pie = std::fs::read(case_dir("c-segv-O0").join("exe")).unwrap();
    assert_eq!(
        error_for(&pie),
        "the ELF file is not a core dump (e_type is ET_DYN)"
    );
    let exec = std::fs::read(case_dir("aarch64-segv").join("exe")).unwrap();
    assert_eq!(
        error_for(&exec),
        "the ELF file is not a core dump (e_type is ET_EXEC)"
    );
    let exe_path = case_dir("aarch64-segv").join("exe");
    let error = ProcessImage::open_core(&exe_path, &CoreOptions::default()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "the ELF file is not a core dump (e_type is ET_EXEC)"
    );

    assert_eq!(
        error_for(&elf_header(false, 4, 40)),
        "the core is for an unsupported architecture (e_machine 40)"
    );
    assert_eq!(
        error_for(&elf_header(true, 4, 40)),
        "the core is for an unsupported architecture (e_machine 40)"
    );
    assert_eq!(
        error_for(&elf_header(true, 4, 62)),
        "the core has no thread (no NT_PRSTATUS note)"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Everything a consumer does with an image, so that damage anywhere is exercised.
fn exercise(image: &ProcessImage) {
    let mut buf = [0u8; 64];
    for thread in &image.threads {
        let _ = thread.dwarf_registers(image.arch);
        for (_, value) in thread.registers.iter().take(40) {
            let _ = image.read_memory(*value, &mut buf);
        }
    }
    for mapping in image.mappings.iter().take(200) {
        let _ = image.build_id_in_memory(mapping.start);
        let _ = image.read_memory(mapping.start, &mut buf);
        let _ = image.read_memory(mapping.end.wrapping_sub(8), &mut buf);
        if let Some(path) = &mapping.path {
            let _ = image.resolve_path(path);
        }
    }
    let _ = image.read_vdso_image();
    let _ = image.read_u64(u64::MAX - 3);
    let _ = image.read_memory(u64::MAX, &mut buf);
}

fn open_and_exercise(bytes: Vec<u8>, options: &CoreOptions) {
    match ProcessImage::from_core_bytes(bytes, options) {
        Ok(image) => exercise(&image),
        Err(error) => assert!(!error.to_string().is_empty()),
    }
}

/// Where a core's program headers and notes end: the part where damage matters most.
fn metadata_end(core: &[u8]) -> usize {
    let header = object::elf::FileHeader64::<object::Endianness>::parse(core).unwrap();
    let endian = header.endian().unwrap();
    let mut end = 0u64;
    for phdr in header.program_headers(endian, core).unwrap() {
        if phdr.p_type(endian) == object::elf::PT_NOTE {
            end = end.max(phdr.p_offset(endian) + phdr.p_filesz(endian));
        }
    }
    end as usize
}

/// The file ranges of a core's small `PT_LOAD` segments (data pages, where `r_debug`,
/// `link_map` and the dynamic section live) — not the big, mostly-zero stacks.
fn small_segments(core: &[u8]) -> Vec<(usize, usize)> {
    let header = object::elf::FileHeader64::<object::Endianness>::parse(core).unwrap();
    let endian = header.endian().unwrap();
    header
        .program_headers(endian, core)
        .unwrap()
        .iter()
        .filter(|p| p.p_type(endian) == object::elf::PT_LOAD)
        .filter(|p| p.p_filesz(endian) > 0 && p.p_filesz(endian) <= 64 * 1024)
        .map(|p| (p.p_offset(endian) as usize, p.p_filesz(endian) as usize))
        .collect()
}

/// Runs `work` on another thread and fails if it takes longer than `limit` (a hang) or panics.
fn within(limit: Duration, work: impl FnOnce() + Send + 'static) {
    let (done, finished) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        work();
        let _ = done.send(());
    });
    match finished.recv_timeout(limit) {
        Ok(()) => worker.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = worker.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("took longer than {limit:?}"),
    }
}

#[test]
fn truncation_at_every_header_and_note_offset() {
    within(Duration::from_secs(240), || {
        for (case, options) in [
            ("deep-recursion", CoreOptions::default()),
            (
                "aarch64-segv",
                qemu_user_options(Some(case_dir("aarch64-segv").join("exe"))),
            ),
        ] {
            let core = std::fs::read(case_dir(case).join("core")).unwrap();
            let notes_end = metadata_end(&core);
            assert!(notes_end > 64 && notes_end < core.len());
            for length in 0..=notes_end + 64 {
                open_and_exercise(core[..length].to_vec(), &options);
            }
            // And through the memory segments.
            for step in 1..200 {
                let length = notes_end + (core.len() - notes_end) / 200 * step;
                open_and_exercise(core[..length].to_vec(), &options);
            }
        }
    });
}

#[test]
fn truncated_core_files_read_what_is_left() {
    let dir = case_dir("c-segv-O2");
    let core = std::fs::read(dir.join("core")).unwrap();
    let full = ProcessImage::open_core(&dir.join("core"), &CoreOptions::default()).unwrap();
    let sp = full.threads[0].sp(Arch::X86_64).unwrap();
    let temp = temp_dir("truncated");
    let truncated_path = temp.join("core");
    // Cut the core in the middle of its memory: notes and early segments survive.
    let cut = core.len() / 2;
    std::fs::write(&truncated_path, &core[..cut]).unwrap();
    let image = ProcessImage::open_core(&truncated_path, &CoreOptions::default()).unwrap();
    assert_eq!(image.threads.len(), full.threads.len());
    assert_eq!(image.mappings, full.mappings);
    assert_some_warning(&image, |w| w.contains("truncated"));
    // The main thread's stack is near the end of the address space, so in the lost half.
    assert!(full.read_u64(sp).is_some());
    assert_eq!(image.read_u64(sp), None);
    // Code is still read from the files on disk.
    let pc = full.threads[0].pc(Arch::X86_64).unwrap();
    let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
    assert!(full.read_memory(pc, &mut a) && image.read_memory(pc, &mut b));
    assert_eq!(a, b);
    std::fs::remove_dir_all(&temp).unwrap();
}

/// xorshift64*: a deterministic stream of random numbers, so that failures repeat.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn bit_flips_never_panic() {
    within(Duration::from_secs(240), || {
        let mut random = Random(0x9e37_79b9_7f4a_7c15);
        for (case, options) in [
            ("deep-recursion", CoreOptions::default()),
            ("c-abort", CoreOptions::default()),
            (
                "aarch64-segv",
                qemu_user_options(Some(case_dir("aarch64-segv").join("exe"))),
            ),
        ] {
            let core = std::fs::read(case_dir(case).join("core")).unwrap();
            let notes_end = metadata_end(&core);
            let segments = small_segments(&core);
            for round in 0..600 {
                let mut damaged = core.clone();
                for _ in 0..1 + random.below(8) {
                    // Mostly headers and notes; a third of the time the data pages.
                    let offset = if round % 3 == 2 && !segments.is_empty() {
                        let (start, len) = segments[random.below(segments.len())];
                        start + random.below(len)
                    } else {
                        random.below(notes_end)
                    };
                    damaged[offset] ^= 1 << random.below(8);
                }
                // Whole words of garbage too: counts and sizes that claim everything.
                if round % 5 == 0 {
                    let offset = random.below(notes_end - 8) & !7;
                    damaged[offset..offset + 8].copy_from_slice(&random.next().to_le_bytes());
                }
                open_and_exercise(damaged, &options);
            }
        }
    });
}
