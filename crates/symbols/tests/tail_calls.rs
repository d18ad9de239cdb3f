//! Tail-call frames rebuilt from DWARF call sites, over a program compiled here with
//! `gcc -O2 -g`; objdump is the oracle for where the calls and tail-call jumps are.

mod common;

use std::path::Path;

use common::*;
use coresnap_symbols::{DebugSearch, ModuleInfo};

const TAIL_C: &str = r#"
__attribute__((noinline)) int leaf(volatile int *p) { *p += 1; return *p * 7; }
__attribute__((noinline)) int one(volatile int *p) { *p += 2; return leaf(p); }
__attribute__((noinline)) int two(volatile int *p) { *p += 3; return one(p); }
__attribute__((noinline)) int left(volatile int *p) { *p += 4; return leaf(p); }
__attribute__((noinline)) int right(volatile int *p) { *p += 5; return leaf(p); }
__attribute__((noinline)) int either(volatile int *p) { if (*p & 1) return left(p); return right(p); }
__attribute__((noinline)) int via_one(volatile int *p) { int r = one(p); return r + *p; }
__attribute__((noinline)) int via_two(volatile int *p) { int r = two(p); return r + *p; }
__attribute__((noinline)) int via_either(volatile int *p) { int r = either(p); return r + *p; }
__attribute__((noinline)) int direct(volatile int *p) { int r = leaf(p); return r + *p; }
int main(int argc, char **argv) {
  (void)argv;
  volatile int x = argc;
  return via_one(&x) + via_two(&x) + via_either(&x) + direct(&x);
}
"#;

/// The instructions of `function` as (address, length, text), from objdump.
fn disassemble(exe: &Path, function: &str) -> Vec<(u64, u64, String)> {
    let out = run(
        "objdump",
        &[
            "-d".to_string(),
            "-w".to_string(),
            format!("--disassemble={function}"),
            s(exe),
        ],
    );
    out.lines()
        .filter_map(|line| {
            let mut fields = line.trim().split('\t');
            let address = fields.next()?.strip_suffix(':')?;
            let address = u64::from_str_radix(address, 16).ok()?;
            let length = fields.next()?.split_whitespace().count() as u64;
            Some((address, length, fields.next()?.trim().to_string()))
        })
        .collect()
}

/// The address after the first instruction of `function` whose text starts with `mnemonic`
/// and that targets `<target>`: a return address for a call, the tail call's "return
/// address" for a jump.
fn after(exe: &Path, function: &str, mnemonic: &str, target: &str) -> u64 {
    let code = disassemble(exe, function);
    let wanted = format!("<{target}>");
    let (address, length, _) = code
        .iter()
        .find(|(_, _, text)| text.starts_with(mnemonic) && text.ends_with(&wanted))
        .unwrap_or_else(|| panic!("no `{mnemonic} ... {wanted}` in {function}: {code:#?}"));
    address + length
}

fn names(frames: &[coresnap_symbols::TailCallFrame]) -> Vec<(u64, Vec<String>)> {
    frames
        .iter()
        .map(|f| {
            let names = f
                .frames
                .iter()
                .map(|s| s.function.clone().unwrap_or_default())
                .collect();
            (f.svma, names)
        })
        .collect()
}

#[test]
fn tail_calls_are_recovered_from_call_sites() {
    let scratch = Scratch::new("tailcall");
    let source = scratch.write("tail.c", TAIL_C);
    let exe = scratch.path("tail");
    run(
        "gcc",
        &[
            "-O2".to_string(),
            "-g".to_string(),
            s(&source),
            "-o".to_string(),
            s(&exe),
        ],
    );
    let sysroot = scratch.path("empty-sysroot");
    std::fs::create_dir_all(&sysroot).expect("create empty sysroot");
    let search = DebugSearch {
        sysroot: Some(sysroot),
        debug_dirs: Vec::new(),
    };
    let module = ModuleInfo::open(&exe, &search).expect("open the test binary");

    // The premise: gcc turned the returns into jumps (objdump panics otherwise).
    let one_jump = after(&exe, "one", "jmp", "leaf");
    let two_jump = after(&exe, "two", "jmp", "one");
    let (leaf, _) = nm_symbol(&exe, "leaf", false);
    let (one, _) = nm_symbol(&exe, "one", false);

    // via_one -> one -jmp-> leaf: the unwinder sees via_one call leaf; one is rebuilt.
    let returns_from_one = after(&exe, "via_one", "call", "one");
    let frames = module.tail_call_frames(returns_from_one, leaf);
    assert_eq!(names(&frames), vec![(one_jump, vec!["one".to_string()])]);
    let source = frames[0].frames.last().expect("one frame");
    assert!(
        source
            .file
            .as_deref()
            .is_some_and(|f| f.ends_with("tail.c")),
        "{source:?}"
    );
    assert_eq!(source.line, Some(3), "{source:?}");

    // Any address inside the callee will do, not just its entry.
    assert_eq!(module.tail_call_frames(returns_from_one, leaf + 2), frames);

    // Two tail calls in a row, innermost first.
    let returns_from_two = after(&exe, "via_two", "call", "two");
    assert_eq!(
        names(&module.tail_call_frames(returns_from_two, leaf)),
        vec![
            (one_jump, vec!["one".to_string()]),
            (two_jump, vec!["two".to_string()]),
        ]
    );
    // The chain can stop part-way: two's caller seen calling one.
    assert_eq!(
        names(&module.tail_call_frames(returns_from_two, one)),
        vec![(two_jump, vec!["two".to_string()])]
    );

    // either reaches leaf through left or through right: gdb claims nothing, nor do we.
    let returns_from_either = after(&exe, "via_either", "call", "either");
    assert_eq!(module.tail_call_frames(returns_from_either, leaf), vec![]);

    // No tail call: the callee is what the caller called.
    let returns_from_leaf = after(&exe, "direct", "call", "leaf");
    assert_eq!(module.tail_call_frames(returns_from_leaf, leaf), vec![]);
    assert_eq!(module.tail_call_frames(returns_from_one, one), vec![]);
    // Not a return address at all.
    assert_eq!(module.tail_call_frames(leaf, one), vec![]);
}

#[test]
fn no_dwarf_means_no_tail_call_frames() {
    let scratch = Scratch::new("tailcall-nodwarf");
    let source = scratch.write("tail.c", TAIL_C);
    let exe = scratch.path("tail");
    run(
        "gcc",
        &["-O2".to_string(), s(&source), "-o".to_string(), s(&exe)],
    );
    let module = ModuleInfo::open(&exe, &DebugSearch::default()).expect("open the test binary");
    let (leaf, _) = nm_symbol(&exe, "leaf", false);
    let returns_from_one = after(&exe, "via_one", "call", "one");
    assert_eq!(module.tail_call_frames(returns_from_one, leaf), vec![]);
}
