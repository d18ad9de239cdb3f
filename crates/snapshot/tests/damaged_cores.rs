//! Bad input never crashes or hangs the engine.
//!
//! Every core of the corpus is snapshotted clean (timed), then truncated at many offsets and with
//! random bytes flipped in its notes and its memory segments; on top of that come inputs that are
//! not cores at all (empty, random, an executable, text, a folder, a missing path), an executable
//! from another case, and a sysroot without libc. Each snapshot runs in a child process (this test
//! binary run again with `--coresnap-child`), so that an abort, a stack overflow or an endless
//! loop is seen as what it is instead of taking the test down. A child must either exit 0 with a
//! JSON snapshot or exit 1 with one line `ptrace: ...`, within max(10 × the clean time, 5 s).
//!
//! The corpus lives in `$CORESNAP_CORPUS_DIR` (default /tmp/coresnap-corpus): `corpus/*`,
//! `arm64/corpus/*` (with `arm64/corpus/sysroot`) and `cases/*` that have a `core`.
//! Run it in release mode: `cargo test --release -p coresnap-snapshot --test damaged_cores`.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const CHILD_FLAG: &str = "--coresnap-child";
/// Children run at once: the test machine has two cores.
const WORKERS: usize = 2;
/// Evenly spread truncation offsets per core, on top of the structural ones.
const SPREAD_TRUNCATIONS: u64 = 20;
const MIN_TIMEOUT: Duration = Duration::from_secs(5);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(CHILD_FLAG) {
        std::process::exit(child(&args[2..]));
    }
    // `cargo test` passes harness flags (`--nocapture`, filters); this test has no sub-tests.
    let started = Instant::now();
    let failures = run_all();
    eprintln!("damaged_cores: finished in {:.1} s", started.elapsed().as_secs_f64());
    if !failures.is_empty() {
        eprintln!("damaged_cores: {} failure(s):", failures.len());
        for f in &failures {
            eprintln!("  - {f}");
        }
        std::process::exit(1);
    }
    eprintln!("damaged_cores: ok");
}

/// The child: one snapshot, reported the way the `ptrace` command reports it.
fn child(args: &[String]) -> i32 {
    let mut request = coresnap_snapshot::SnapshotRequest { faulted: true, ..Default::default() };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let Some(value) = it.next() else {
            eprintln!("ptrace: {flag} needs a value");
            return 2;
        };
        match flag.as_str() {
            "--core" => request.core = Some(PathBuf::from(value)),
            "--exe" => request.executable = Some(PathBuf::from(value)),
            "--sysroot" => request.sysroot = Some(PathBuf::from(value)),
            "--debug-dir" => request.debug_dirs.push(PathBuf::from(value)),
            _ => {
                eprintln!("ptrace: unknown child option {flag}");
                return 2;
            }
        }
    }
    match coresnap_snapshot::snapshot(&request) {
        Ok(snapshot) => match serde_json::to_string(&snapshot) {
            Ok(json) => {
                println!("{json}");
                0
            }
            Err(e) => {
                eprintln!("ptrace: cannot encode the snapshot: {e}");
                1
            }
        },
        Err(e) => {
            eprintln!("ptrace: {e}");
            1
        }
    }
}

struct Case {
    name: String,
    core: PathBuf,
    exe: PathBuf,
    sysroot: Option<PathBuf>,
    debug_dirs: Vec<PathBuf>,
}

impl Case {
    fn args_with_core(&self, core: &Path) -> Vec<String> {
        let mut args = vec!["--core".to_string(), path_arg(core), "--exe".into(), path_arg(&self.exe)];
        if let Some(s) = &self.sysroot {
            args.extend(["--sysroot".to_string(), path_arg(s)]);
        }
        for d in &self.debug_dirs {
            args.extend(["--debug-dir".to_string(), path_arg(d)]);
        }
        args
    }
}

fn path_arg(p: &Path) -> String {
    p.display().to_string()
}

fn corpus_dir() -> PathBuf {
    let dir = PathBuf::from(std::env::var("CORESNAP_CORPUS_DIR").unwrap_or_else(|_| "/tmp/coresnap-corpus".into()));
    assert!(
        dir.join("corpus").is_dir(),
        "the corpus is missing: {} has no corpus/ folder (build it with /work/shared/corpus, or set CORESNAP_CORPUS_DIR)",
        dir.display()
    );
    dir
}

fn sorted_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect(),
        Err(_) => Vec::new(),
    };
    dirs.sort();
    dirs
}

/// `tool_hints` of a case's `meta` (JSON): its sysroot and debug folders.
fn hints(meta: &Path) -> (Option<PathBuf>, Vec<PathBuf>) {
    let Ok(text) = std::fs::read_to_string(meta) else { return (None, Vec::new()) };
    let Ok(meta) = serde_json::from_str::<serde_json::Value>(&text) else { return (None, Vec::new()) };
    let hints = &meta["tool_hints"];
    let sysroot = hints["sysroot"].as_str().map(PathBuf::from);
    let debug_dirs = hints["debug_dirs"]
        .as_array()
        .map(|a| a.iter().filter_map(|d| d.as_str().map(PathBuf::from)).collect())
        .unwrap_or_default();
    (sysroot, debug_dirs)
}

fn find_cases(root: &Path) -> Vec<Case> {
    let mut cases = Vec::new();
    for (group, dir) in [("corpus", root.join("corpus")), ("cases", root.join("cases"))] {
        for d in sorted_dirs(&dir) {
            if !d.join("core").is_file() || !d.join("exe").is_file() {
                continue;
            }
            let (sysroot, debug_dirs) = hints(&d.join("meta"));
            cases.push(Case {
                name: format!("{group}/{}", d.file_name().unwrap_or_default().to_string_lossy()),
                core: d.join("core"),
                exe: d.join("exe"),
                sysroot,
                debug_dirs,
            });
        }
    }
    let arm64 = root.join("arm64/corpus");
    for d in sorted_dirs(&arm64) {
        if !d.join("core").is_file() || !d.join("exe").is_file() {
            continue;
        }
        cases.push(Case {
            name: format!("arm64/{}", d.file_name().unwrap_or_default().to_string_lossy()),
            core: d.join("core"),
            exe: d.join("exe"),
            sysroot: Some(arm64.join("sysroot")),
            debug_dirs: Vec::new(),
        });
    }
    cases
}

/// Where things are in a core: enough to aim the damage.
#[derive(Debug, Default)]
struct Layout {
    size: u64,
    header_end: u64,
    program_headers: std::ops::Range<u64>,
    notes: Vec<std::ops::Range<u64>>,
    /// File ranges of `PT_LOAD` segments that have bytes in the file.
    loads: Vec<std::ops::Range<u64>>,
    /// File offsets of the `PT_LOAD` program headers.
    load_headers: Vec<u64>,
    /// `(note type, file offset of the note header, file offset of its descriptor)`.
    note_headers: Vec<(u32, u64, u64)>,
}

fn layout(core: &Path) -> Layout {
    let mut file = File::open(core).unwrap_or_else(|e| panic!("cannot open {}: {e}", core.display()));
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut header = [0u8; 64];
    file.read_exact(&mut header).unwrap_or_else(|e| panic!("{} has no ELF header: {e}", core.display()));
    assert_eq!(&header[..4], b"\x7fELF", "{} is not an ELF file", core.display());
    assert_eq!(header[4], 2, "{} is not a 64-bit core", core.display());
    assert_eq!(header[5], 1, "{} is not a little-endian core", core.display());
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as u64;
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or_default()) as u64;
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or_default());
    let phoff = u64_at(&header, 0x20);
    let phentsize = u16_at(&header, 0x36);
    let phnum = u16_at(&header, 0x38);
    let mut table = vec![0u8; (phentsize * phnum) as usize];
    file.read_exact_at(&mut table, phoff).unwrap_or_else(|e| panic!("{}: program headers unreadable: {e}", core.display()));
    let mut layout = Layout { size, header_end: 64, program_headers: phoff..phoff + phentsize * phnum, ..Layout::default() };
    for i in 0..phnum as usize {
        let ph = &table[i * phentsize as usize..(i + 1) * phentsize as usize];
        let (kind, offset, filesz) = (u32_at(ph, 0), u64_at(ph, 8), u64_at(ph, 0x20));
        if kind == 1 {
            layout.load_headers.push(phoff + (i as u64) * phentsize);
        }
        if filesz == 0 {
            continue;
        }
        match kind {
            1 => layout.loads.push(offset..offset + filesz),
            4 => layout.notes.push(offset..offset + filesz),
            _ => {}
        }
    }
    assert!(!layout.notes.is_empty(), "{} has no PT_NOTE", core.display());
    for range in layout.notes.clone() {
        let mut offset = range.start;
        while offset + 12 <= range.end {
            let mut h = [0u8; 12];
            if file.read_exact_at(&mut h, offset).is_err() {
                break;
            }
            let align4 = |n: u64| (n + 3) & !3;
            let (namesz, descsz, kind) = (u32_at(&h, 0), u32_at(&h, 4), u32_at(&h, 8) as u32);
            let desc = offset + 12 + align4(namesz);
            layout.note_headers.push((kind, offset, desc));
            offset = desc + align4(descsz);
        }
    }
    layout
}

/// xorshift64*: reproducible damage without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    fn in_range(&mut self, r: &std::ops::Range<u64>) -> u64 {
        r.start + self.below(r.end.saturating_sub(r.start))
    }
}

fn seed_for(name: &str) -> u64 {
    // FNV-1a of the case name: each case gets its own, stable damage.
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3)) | 1
}

fn truncation_offsets(l: &Layout) -> Vec<u64> {
    let mut offsets = vec![0, 1, 63, 64, l.header_end, l.program_headers.start + (l.program_headers.end - l.program_headers.start) / 2];
    offsets.push(l.program_headers.end);
    for n in &l.notes {
        offsets.extend([n.start + 1, n.start + (n.end - n.start) / 2, n.end - 1]);
    }
    if let Some(first) = l.loads.first() {
        offsets.push(first.start + (first.end - first.start) / 2);
    }
    if let Some(largest) = l.loads.iter().max_by_key(|r| r.end - r.start) {
        offsets.push(largest.start + (largest.end - largest.start) / 2);
    }
    offsets.push(l.size.saturating_sub(1));
    for k in 1..=SPREAD_TRUNCATIONS {
        offsets.push(l.size / (SPREAD_TRUNCATIONS + 1) * k);
    }
    offsets.retain(|&o| o < l.size);
    offsets.sort_unstable();
    offsets.dedup();
    offsets
}

/// What a damaged copy looks like.
enum Damage {
    Truncate(u64),
    /// `(file offset, xor mask)`; masks are never zero.
    Flip(Vec<(u64, u8)>),
    /// `(file offset, bytes)`: hostile values written over fields that size or locate things.
    Write(Vec<(u64, Vec<u8>)>),
}

fn flips(l: &Layout, rng: &mut Rng) -> Vec<(String, Damage)> {
    let mut out = Vec::new();
    let mask = |rng: &mut Rng| (rng.below(255) + 1) as u8;
    for count in [1, 2, 4, 8, 16, 32, 64, 128] {
        let bytes = (0..count)
            .map(|_| {
                let note = &l.notes[rng.below(l.notes.len() as u64) as usize];
                (rng.in_range(note), mask(rng))
            })
            .collect();
        out.push((format!("{count} byte(s) flipped in the notes"), Damage::Flip(bytes)));
    }
    if !l.loads.is_empty() {
        for count in [16, 256, 4096] {
            let bytes = (0..count)
                .map(|_| {
                    let load = &l.loads[rng.below(l.loads.len() as u64) as usize];
                    (rng.in_range(load), mask(rng))
                })
                .collect();
            out.push((format!("{count} bytes flipped in memory segments"), Damage::Flip(bytes)));
        }
    }
    out.extend(hostile_values(l));
    let header_bytes = (0..4).map(|_| (rng.in_range(&l.program_headers), mask(rng))).collect();
    out.push(("4 bytes flipped in the program headers".into(), Damage::Flip(header_bytes)));
    let mixed = (0..32)
        .map(|_| (if rng.below(2) == 0 { rng.in_range(&(0..l.header_end)) } else { rng.below(l.size) }, mask(rng)))
        .collect();
    out.push(("32 bytes flipped anywhere, header included".into(), Damage::Flip(mixed)));
    out
}

/// Sizes, counts and addresses replaced by the values most likely to overflow or loop.
fn hostile_values(l: &Layout) -> Vec<(String, Damage)> {
    const HUGE: [u8; 8] = [0xff; 8];
    let mut out = vec![
        ("e_phnum = 0xffff".to_string(), Damage::Write(vec![(0x38, vec![0xff, 0xff])])),
        ("e_phoff past the end".to_string(), Damage::Write(vec![(0x20, vec![0xf0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])])),
        (
            "every PT_LOAD claims 2^64-1 bytes in the file and in memory".to_string(),
            Damage::Write(l.load_headers.iter().flat_map(|h| [(h + 0x20, HUGE.to_vec()), (h + 0x28, HUGE.to_vec())]).collect()),
        ),
        (
            "every PT_LOAD at file offset 2^64-16 and address 2^64-4096".to_string(),
            Damage::Write(
                l.load_headers
                    .iter()
                    .flat_map(|h| [(h + 8, (u64::MAX - 15).to_le_bytes().to_vec()), (h + 0x10, (u64::MAX - 4095).to_le_bytes().to_vec())])
                    .collect(),
            ),
        ),
    ];
    let notes_sized = l.note_headers.iter().map(|&(_, header, _)| (header + 4, vec![0xff, 0xff, 0xff, 0xff])).collect();
    out.push(("every note's descsz = 2^32-1".into(), Damage::Write(notes_sized)));
    let notes_named = l.note_headers.iter().map(|&(_, header, _)| (header, vec![0xfe, 0xff, 0xff, 0x7f])).collect();
    out.push(("every note's namesz = 2^31-2".into(), Damage::Write(notes_named)));
    const NT_PRSTATUS: u32 = 1;
    const NT_AUXV: u32 = 6;
    const NT_FILE: u32 = 0x4649_4c45;
    // pr_reg starts 112 bytes into prstatus; registers are overwritten wholesale since their
    // order differs between x86_64 and aarch64.
    let registers: Vec<_> = l.note_headers.iter().filter(|n| n.0 == NT_PRSTATUS).map(|&(_, _, desc)| desc + 112).collect();
    out.push((
        "every register of every thread = 2^64-8".into(),
        Damage::Write(registers.iter().map(|&r| (r, [0xf8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff].repeat(27))).collect()),
    ));
    out.push((
        "every register of every thread = 0x1000".into(),
        Damage::Write(registers.iter().map(|&r| (r, 0x1000u64.to_le_bytes().repeat(27))).collect()),
    ));
    let files: Vec<_> = l.note_headers.iter().filter(|n| n.0 == NT_FILE).map(|n| n.2).collect();
    if !files.is_empty() {
        out.push(("NT_FILE count = 2^64-1".into(), Damage::Write(files.iter().map(|&d| (d, HUGE.to_vec())).collect())));
        out.push((
            "NT_FILE page size = 2^64-1 and ranges reversed".into(),
            Damage::Write(files.iter().flat_map(|&d| [(d + 8, HUGE.to_vec()), (d + 16, HUGE.to_vec())]).collect()),
        ));
    }
    let auxv: Vec<_> = l.note_headers.iter().filter(|n| n.0 == NT_AUXV).map(|n| n.2).collect();
    if !auxv.is_empty() {
        // Every value (odd words) points at the last page: AT_PHDR, AT_SYSINFO_EHDR, AT_EXECFN...
        let writes = auxv.iter().flat_map(|&d| (0..24).map(move |i| (d + 16 * i + 8, (u64::MAX - 4095).to_le_bytes().to_vec()))).collect();
        out.push(("every auxv value = 2^64-4096".into(), Damage::Write(writes)));
    }
    out
}

/// Copies `core` to `to` keeping holes (the cores are sparse: 50 MB apparent, a few on disk),
/// then damages the copy.
fn make_damaged(core: &Path, to: &Path, damage: &Damage) -> Result<(), String> {
    let status = Command::new("cp")
        .arg("--sparse=always")
        .arg(core)
        .arg(to)
        .status()
        .map_err(|e| format!("cannot run cp: {e}"))?;
    if !status.success() {
        return Err(format!("cp {} {} failed: {status}", core.display(), to.display()));
    }
    let file = std::fs::OpenOptions::new().read(true).write(true).open(to).map_err(|e| format!("cannot open {}: {e}", to.display()))?;
    match damage {
        Damage::Truncate(len) => file.set_len(*len).map_err(|e| format!("cannot truncate: {e}"))?,
        Damage::Write(writes) => {
            for (offset, bytes) in writes {
                file.write_all_at(bytes, *offset).map_err(|e| format!("cannot write at {offset}: {e}"))?;
            }
        }
        Damage::Flip(bytes) => {
            for &(offset, mask) in bytes {
                let mut b = [0u8];
                file.read_exact_at(&mut b, offset).map_err(|e| format!("cannot read byte {offset}: {e}"))?;
                b[0] ^= mask;
                file.write_all_at(&b, offset).map_err(|e| format!("cannot write byte {offset}: {e}"))?;
            }
        }
    }
    Ok(())
}

struct Outcome {
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// Runs this binary as a child on `args`, killing it after `timeout`.
fn run_child(args: &[String], timeout: Duration) -> Outcome {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("cannot find the test binary: {e}"));
    let dir = std::env::temp_dir();
    // Output goes to files: a child that fills a pipe nobody reads would look like a hang.
    let tag = format!("coresnap-damaged-{}-{:?}", std::process::id(), std::thread::current().id()).replace(['(', ')'], "");
    let out_path = dir.join(format!("{tag}.out"));
    let err_path = dir.join(format!("{tag}.err"));
    let started = Instant::now();
    let mut child = Command::new(exe)
        .arg(CHILD_FLAG)
        .args(args)
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap_or_else(|e| panic!("cannot create {}: {e}", out_path.display())))
        .stderr(File::create(&err_path).unwrap_or_else(|e| panic!("cannot create {}: {e}", err_path.display())))
        .env("RUST_BACKTRACE", "0")
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the child: {e}"));
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("cannot wait for the child: {e}"),
        }
    };
    let elapsed = started.elapsed();
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    let _ = std::fs::remove_file(&err_path);
    Outcome { status, stdout, stderr, elapsed }
}

/// What a run must end with.
#[derive(Clone, Copy, PartialEq)]
enum Expect {
    /// A snapshot or a clear error.
    SnapshotOrError,
    /// A clear error: the input is not a core at all.
    Error,
    /// A snapshot whose warnings mention this text (any of the `|`-separated words).
    SnapshotWarning(&'static str),
    /// A snapshot whose warnings mention this text, or a clear error.
    SnapshotWarningOrError(&'static str),
}

/// Checks one run; `Ok` holds the snapshot, when there is one.
fn judge(outcome: &Outcome, timeout: Duration, expect: Expect) -> Result<Option<serde_json::Value>, String> {
    let first_stderr_line = || outcome.stderr.lines().next().unwrap_or("").to_string();
    let Some(status) = outcome.status else {
        return Err(format!("hung: killed after {:.1} s", timeout.as_secs_f64()));
    };
    if outcome.stderr.contains("panicked") {
        return Err(format!("panicked: {}", outcome.stderr.trim()));
    }
    if let Some(signal) = status.signal() {
        return Err(format!("died of signal {signal}: {}", first_stderr_line()));
    }
    match status.code() {
        Some(0) => {
            let snapshot: serde_json::Value =
                serde_json::from_str(&outcome.stdout).map_err(|e| format!("exit 0 without a JSON snapshot: {e}"))?;
            if !snapshot["threads"].is_object() {
                return Err("exit 0 but the snapshot has no threads object".into());
            }
            let warned = |words: &str| {
                snapshot["warnings"].as_array().is_some_and(|ws| {
                    ws.iter().filter_map(|w| w.as_str()).any(|w| words.split('|').any(|word| w.contains(word)))
                })
            };
            match expect {
                Expect::Error => Err("expected a clear error, got a snapshot".into()),
                Expect::SnapshotWarning(words) | Expect::SnapshotWarningOrError(words) if !warned(words) => {
                    Err(format!("the snapshot's warnings do not mention '{words}': {}", snapshot["warnings"]))
                }
                _ => Ok(Some(snapshot)),
            }
        }
        Some(1) => {
            let message = outcome.stderr.trim_end();
            if message.lines().count() != 1 || !message.starts_with("ptrace: ") || message.len() <= "ptrace: ".len() {
                return Err(format!("exit 1 without a one-line 'ptrace: ...' message: {message:?}"));
            }
            match expect {
                Expect::SnapshotWarning(_) => Err(format!("expected a snapshot with warnings, got: {message}")),
                _ => Ok(None),
            }
        }
        Some(code) => Err(format!("exit code {code}: {}", outcome.stderr.trim())),
        None => Err("no exit code".into()),
    }
}

struct Job {
    label: String,
    /// The core to damage and how; `None` runs `args` as they are.
    damage: Option<(PathBuf, Damage)>,
    /// Child arguments; the damaged copy is put where `DAMAGED` stands.
    args: Vec<String>,
    timeout: Duration,
    expect: Expect,
}

const DAMAGED: &str = "\u{0}damaged";

fn run_job(job: &Job, scratch: &Path, worker: usize) -> Result<bool, String> {
    let copy = scratch.join(format!("core-{worker}"));
    let args: Vec<String> = match &job.damage {
        Some((core, damage)) => {
            make_damaged(core, &copy, damage)?;
            job.args.iter().map(|a| if a == DAMAGED { path_arg(&copy) } else { a.clone() }).collect()
        }
        None => job.args.clone(),
    };
    let outcome = run_child(&args, job.timeout);
    let _ = std::fs::remove_file(&copy);
    judge(&outcome, job.timeout, job.expect).map(|snapshot| snapshot.is_some())
}

fn run_jobs(jobs: &[Job], scratch: &Path) -> Vec<String> {
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let (snapshots, errors) = (AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|scope| {
        for worker in 0..WORKERS {
            let (next, failures, snapshots, errors) = (&next, &failures, &snapshots, &errors);
            scope.spawn(move || loop {
                let Some(job) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) else { break };
                match run_job(job, scratch, worker) {
                    Ok(true) => snapshots.fetch_add(1, Ordering::Relaxed),
                    Ok(false) => errors.fetch_add(1, Ordering::Relaxed),
                    Err(why) => {
                        if let Ok(mut f) = failures.lock() {
                            f.push(format!("{}: {why}", job.label));
                        }
                        continue;
                    }
                };
            });
        }
    });
    eprintln!(
        "damaged_cores: {} runs gave a snapshot, {} a clear error",
        snapshots.into_inner(),
        errors.into_inner()
    );
    failures.into_inner().unwrap_or_default()
}

fn timeout_for(clean: Duration) -> Duration {
    (clean * 10).max(MIN_TIMEOUT)
}

fn run_all() -> Vec<String> {
    let root = corpus_dir();
    let cases = find_cases(&root);
    assert!(cases.len() >= 5, "the corpus at {} has only {} cases with a core", root.display(), cases.len());
    let scratch = std::env::temp_dir().join(format!("coresnap-damaged-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap_or_else(|e| panic!("cannot create {}: {e}", scratch.display()));

    let mut failures = Vec::new();
    let mut jobs = Vec::new();
    let mut clean_snapshots = Vec::new();
    for case in &cases {
        // The clean run: it must work, and its time sets the damaged runs' limit.
        let outcome = run_child(&case.args_with_core(&case.core), Duration::from_secs(120));
        let clean = match judge(&outcome, Duration::from_secs(120), Expect::SnapshotOrError) {
            Ok(Some(snapshot)) => snapshot,
            Ok(None) => {
                failures.push(format!("{} (clean): no snapshot: {}", case.name, outcome.stderr.trim()));
                continue;
            }
            Err(why) => {
                failures.push(format!("{} (clean): {why}", case.name));
                continue;
            }
        };
        let timeout = timeout_for(outcome.elapsed);
        let layout = layout(&case.core);
        let damaged_args = case.args_with_core(Path::new(DAMAGED));
        for offset in truncation_offsets(&layout) {
            jobs.push(Job {
                label: format!("{} truncated to {offset} of {} bytes", case.name, layout.size),
                damage: Some((case.core.clone(), Damage::Truncate(offset))),
                args: damaged_args.clone(),
                timeout,
                expect: Expect::SnapshotOrError,
            });
        }
        let mut rng = Rng(seed_for(&case.name));
        for (what, damage) in flips(&layout, &mut rng) {
            jobs.push(Job {
                label: format!("{} with {what}", case.name),
                damage: Some((case.core.clone(), damage)),
                args: damaged_args.clone(),
                timeout,
                expect: Expect::SnapshotOrError,
            });
        }
        clean_snapshots.push((case, clean, timeout));
    }

    jobs.extend(not_cores(&cases, &scratch));
    jobs.extend(wrong_companions(&clean_snapshots, &scratch));

    eprintln!("damaged_cores: {} cases, {} damaged runs", cases.len(), jobs.len());
    failures.extend(run_jobs(&jobs, &scratch));
    let _ = std::fs::remove_dir_all(&scratch);
    failures
}

/// Inputs that are not cores at all.
fn not_cores(cases: &[Case], scratch: &Path) -> Vec<Job> {
    let Some(case) = cases.iter().find(|c| c.sysroot.is_none()).or(cases.first()) else { return Vec::new() };
    let empty = scratch.join("empty");
    let random = scratch.join("random");
    let text = scratch.join("text");
    let folder = scratch.join("folder");
    let missing = scratch.join("does-not-exist");
    let write = |p: &Path, bytes: &[u8]| std::fs::write(p, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", p.display()));
    write(&empty, b"");
    let mut rng = Rng(0x5eed);
    let noise: Vec<u8> = (0..4096).map(|_| rng.next() as u8).collect();
    write(&random, &noise);
    write(&text, b"this is not a core file\nbut a few lines of text\n");
    std::fs::create_dir_all(&folder).unwrap_or_else(|e| panic!("cannot create {}: {e}", folder.display()));
    let inputs: [(&str, &Path); 6] = [
        ("an empty file", &empty),
        ("4 KiB of random bytes", &random),
        ("an executable", &case.exe),
        ("a text file", &text),
        ("a folder", &folder),
        ("a path that does not exist", &missing),
    ];
    inputs
        .into_iter()
        .map(|(what, path)| Job {
            label: format!("{what} given as the core ({})", path.display()),
            damage: None,
            args: vec!["--core".into(), path_arg(path), "--exe".into(), path_arg(&case.exe)],
            timeout: MIN_TIMEOUT,
            expect: Expect::Error,
        })
        .collect()
}

/// A core with another case's executable, and a sysroot without libc.
fn wrong_companions(clean: &[(&Case, serde_json::Value, Duration)], scratch: &Path) -> Vec<Job> {
    let mut jobs = Vec::new();
    let native: Vec<_> = clean.iter().filter(|(c, _, _)| c.sysroot.is_none()).collect();
    if let [first, second, ..] = native.as_slice() {
        let (case, _, timeout) = first;
        let (other, _, _) = second;
        jobs.push(Job {
            label: format!("{} with the executable of {}", case.name, other.name),
            damage: None,
            args: vec!["--core".into(), path_arg(&case.core), "--exe".into(), path_arg(&other.exe)],
            timeout: *timeout,
            expect: Expect::SnapshotWarningOrError("build-id"),
        });
    }
    // A sysroot holding every module of the case but libc: the snapshot goes on without it.
    if let Some((case, snapshot, timeout)) = native.iter().find(|(_, s, _)| modules_of(s).iter().any(|m| is_libc(m))) {
        let sysroot = scratch.join("sysroot-without-libc");
        for module in modules_of(snapshot) {
            if is_libc(&module) || !module.starts_with('/') {
                continue;
            }
            let target = sysroot.join(module.trim_start_matches('/'));
            if let Some(parent) = target.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            let _ = std::os::unix::fs::symlink(&module, &target);
        }
        jobs.push(Job {
            label: format!("{} with a sysroot that lacks libc", case.name),
            damage: None,
            args: vec![
                "--core".into(),
                path_arg(&case.core),
                "--exe".into(),
                path_arg(&case.exe),
                "--sysroot".into(),
                path_arg(&sysroot),
            ],
            timeout: *timeout,
            expect: Expect::SnapshotWarning("libc.so"),
        });
    }
    jobs
}

fn modules_of(snapshot: &serde_json::Value) -> Vec<String> {
    snapshot["modules"]
        .as_array()
        .map(|ms| ms.iter().filter_map(|m| m["code_file"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

fn is_libc(path: &str) -> bool {
    path.rsplit('/').next().is_some_and(|name| name.starts_with("libc.so"))
}
