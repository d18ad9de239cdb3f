//! Prints what coresnap-core reads from a core: `dump_core CORE [SYSROOT] [EXECUTABLE]`.

use std::path::PathBuf;

use coresnap_core::{CoreOptions, ProcessImage};

fn main() {
    let mut args = std::env::args_os().skip(1);
    let Some(core) = args.next() else {
        eprintln!("usage: dump_core CORE [SYSROOT] [EXECUTABLE]");
        std::process::exit(2);
    };
    let options = CoreOptions {
        sysroot: args.next().filter(|s| !s.is_empty()).map(PathBuf::from),
        executable: args.next().map(PathBuf::from),
    };
    let image = match ProcessImage::open_core(&PathBuf::from(core), &options) {
        Ok(image) => image,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::exit(1);
        }
    };
    println!(
        "arch {:?} pid {} signal {:?}",
        image.arch, image.pid, image.signal
    );
    println!("process {:?}", image.process);
    println!("pac mask {:?}", image.pac_mask);
    for (index, thread) in image.threads.iter().enumerate() {
        let crashed = if image.crashing_thread == Some(index) {
            " (crashed)"
        } else {
            ""
        };
        println!(
            "thread {} cursig {} fp {} pc {:x?} sp {:x?}{crashed}",
            thread.tid,
            thread.pending_signal,
            thread.has_fp_registers,
            thread.pc(image.arch),
            thread.sp(image.arch)
        );
    }
    for (kind, value) in &image.auxv {
        println!("auxv {kind:>2} {value:#x}");
    }
    for m in &image.mappings {
        println!(
            "{:#014x}-{:#014x} {}{}{} {:#9x} {}",
            m.start,
            m.end,
            if m.readable { 'r' } else { '-' },
            if m.writable { 'w' } else { '-' },
            if m.executable { 'x' } else { '-' },
            m.file_offset,
            m.path.as_deref().unwrap_or("")
        );
    }
    println!(
        "vdso {:#x?} image {:?} bytes",
        image.vdso_base(),
        image.read_vdso_image().map(|v| v.len())
    );
    for warning in &image.warnings {
        println!("warning: {warning}");
    }
}
