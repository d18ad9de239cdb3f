//! Damaged unwind sections and hostile memory: the walk must end, without panicking, whatever
//! the bytes say. The sections are this test binary's own `.eh_frame`/`.eh_frame_hdr` with
//! bytes flipped, so the damage reaches deep into real CIEs, FDEs and instructions.

use std::sync::Arc;

use coresnap_unwind::{
    Arch, Memory, ModuleUnwindInfo, Regs, SectionBytes, UnwindOptions, UnwindSection, Unwinder,
};
use object::{Object, ObjectSection};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Readable everywhere below 2^47 except one page in eight; words are noise, often small
/// offsets from the address itself so that chains look like stack frames.
struct Hostile(u64);
impl Memory for Hostile {
    fn read(&self, avma: u64, buf: &mut [u8]) -> bool {
        if avma >= 1 << 47 || (avma >> 12) % 8 == 3 {
            return false;
        }
        for (i, byte) in buf.iter_mut().enumerate() {
            let address = avma.wrapping_add(i as u64);
            let word = address & !7;
            let mut x = word ^ self.0;
            x ^= x >> 31;
            x = x.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            x ^= x >> 29;
            let value = if x.is_multiple_of(3) {
                word.wrapping_add(x % 256)
            } else {
                x
            };
            *byte = value.to_le_bytes()[(address & 7) as usize];
        }
        true
    }
}

fn own_sections() -> (u64, Vec<u8>, u64, Vec<u8>, std::ops::Range<u64>) {
    let bytes = std::fs::read("/proc/self/exe").expect("own executable");
    let file = object::File::parse(&bytes[..]).expect("an ELF file");
    let eh_frame = file.section_by_name(".eh_frame").expect(".eh_frame");
    let hdr = file
        .section_by_name(".eh_frame_hdr")
        .expect(".eh_frame_hdr");
    let text = file.section_by_name(".text").expect(".text");
    (
        eh_frame.address(),
        eh_frame.data().expect("data").to_vec(),
        hdr.address(),
        hdr.data().expect("data").to_vec(),
        text.address()..text.address() + text.size(),
    )
}

/// `HOSTILE_ITERATIONS=20000` runs a longer campaign; `HOSTILE_TRACE=1` (with `--nocapture`)
/// prints every walk.
#[test]
fn damaged_real_cfi_never_panics() {
    let (eh_svma, eh_frame, hdr_svma, hdr, text) = own_sections();
    let iterations: u64 = std::env::var("HOSTILE_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300);
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for iteration in 0..iterations {
        let mut eh = eh_frame.clone();
        let mut table = hdr.clone();
        for _ in 0..(1 + rng.next() % 64) {
            let at = (rng.next() as usize) % eh.len();
            eh[at] = rng.next() as u8;
        }
        if rng.next().is_multiple_of(4) {
            let at = (rng.next() as usize) % table.len();
            table[at] = rng.next() as u8;
        }
        let arch = if iteration % 2 == 0 {
            Arch::X86_64
        } else {
            Arch::Aarch64
        };
        let owner: Arc<dyn AsRef<[u8]> + Send + Sync> = Arc::new(eh);
        let length = (*owner).as_ref().len();
        let module = ModuleUnwindInfo {
            name: "damaged".into(),
            avma_range: text.clone(),
            bias: 0,
            eh_frame: Some(UnwindSection {
                svma: eh_svma,
                data: SectionBytes::new(owner, 0..length),
            }),
            eh_frame_hdr: (iteration % 3 != 0).then(|| UnwindSection {
                svma: hdr_svma,
                data: SectionBytes::from_vec(table),
            }),
            debug_frame: None,
            text_svma_ranges: vec![],
        };
        let options = UnwindOptions {
            scan_words: 32,
            ..UnwindOptions::default()
        };
        let mut unwinder = Unwinder::new(arch, vec![module], options);
        unwinder.add_executable_range(0x1000..0x10_0000);
        let memory = Hostile(rng.next());
        for _ in 0..8 {
            let mut regs = Regs::new(arch);
            for dwarf in 0..33 {
                let value = match rng.next() % 4 {
                    0 => text.start + rng.next() % (text.end - text.start),
                    1 => 0x7ff0_0000_0000 + rng.next() % 0x10_0000,
                    2 => rng.next() % 0x10_0000,
                    _ => rng.next(),
                };
                regs.set(dwarf, value);
            }
            regs.set(
                if arch == Arch::X86_64 { 16 } else { 32 },
                text.start + rng.next() % (text.end - text.start),
            );
            if std::env::var("HOSTILE_TRACE").is_ok() {
                eprintln!(
                    "iteration {iteration} {arch:?} pc {:#x}",
                    regs.pc().unwrap_or(0)
                );
            }
            let started = std::time::Instant::now();
            let unwound = unwinder.unwind(&regs, &memory);
            if std::env::var("HOSTILE_TRACE").is_ok() {
                eprintln!(
                    "  {} frames in {:?}: {}",
                    unwound.frames.len(),
                    started.elapsed(),
                    unwound.stop_reason
                );
            }
            assert!(!unwound.frames.is_empty());
            // Guessed frames are bounded (see MAX_CONSECUTIVE_GUESSED); nothing here has CFI
            // that could vouch for more.
            assert!(
                unwound.frames.len() <= 100_002,
                "{} frames",
                unwound.frames.len()
            );
            let _ = unwound.stop_reason.to_string();
        }
    }
}
