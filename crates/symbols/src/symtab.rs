//! The ELF symbol tables as one sorted list of code symbols, and demangling of their names.

use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};

use object::{Object, ObjectSymbol, SymbolKind, SymbolSection};

use crate::elf::{self, bytes_of};
use crate::SharedBytes;

/// How far back a lookup walks past symbols that end before the address, looking for one
/// that encloses it (a big function with smaller symbols inside it).
const MAX_WALK_BACK: usize = 64;

struct Symbol {
    address: u64,
    size: u64,
    name: NameRef,
    /// Higher is preferred among symbols at one address: FUNC over others, then GLOBAL over
    /// WEAK over LOCAL (so `abort` wins over the local alias `__GI_abort`).
    rank: u8,
}

/// Where a symbol's name lies in [`SymbolTable::names`]: one buffer for all names instead
/// of an allocation for each of libc's 13,000.
#[derive(Clone, Copy, Debug)]
struct NameRef {
    start: u32,
    len: u32,
}

impl NameRef {
    fn get(self, names: &str) -> &str {
        let start = self.start as usize;
        names.get(start..start + self.len as usize).unwrap_or("")
    }
}

/// A symbol found for an address.
pub(crate) struct SymbolHit<'a> {
    pub name: &'a str,
    /// `svma - start of the symbol`.
    pub offset: u64,
    /// The symbol has a size and the address lies within it.
    pub contains: bool,
    /// Every symbol at the same address (aliases), best first.
    aliases: &'a [Symbol],
    names: &'a str,
}

impl SymbolHit<'_> {
    /// Whether `name` is one of the names at this symbol's address.
    pub(crate) fn is_alias(&self, name: &str) -> bool {
        self.aliases.iter().any(|s| s.name.get(self.names) == name)
    }
}

#[derive(Default)]
pub(crate) struct SymbolTable {
    /// Sorted by address, then best first.
    symbols: Vec<Symbol>,
    /// Every name, one after the other.
    names: String,
}

impl SymbolTable {
    /// Collects `.symtab` of the module and of its debug file, and `.dynsym` of the module.
    pub(crate) fn build(
        module: &SharedBytes,
        debug: Option<&SharedBytes>,
        text: &[Range<u64>],
        warnings: &mut Vec<String>,
    ) -> SymbolTable {
        let mut symbols = Vec::new();
        let mut names = String::new();
        match elf::parse(bytes_of(module)) {
            Ok(file) => {
                collect(file.symbols(), text, &mut symbols, &mut names);
                collect(file.dynamic_symbols(), text, &mut symbols, &mut names);
            }
            Err(e) => warnings.push(format!("symbol tables unreadable: {e}")),
        }
        if let Some(debug) = debug {
            match elf::parse(bytes_of(debug)) {
                Ok(file) => collect(file.symbols(), text, &mut symbols, &mut names),
                Err(e) => warnings.push(format!("debug file symbol table unreadable: {e}")),
            }
        }
        sort(&mut symbols, &names);
        symbols.dedup_by(|b, a| a.address == b.address && a.name.get(&names) == b.name.get(&names));
        symbols.shrink_to_fit();
        names.shrink_to_fit();
        SymbolTable { symbols, names }
    }

    /// The address of the function named `name`, when exactly one address bears that name
    /// (two static functions of the same name in different files are not told apart).
    pub(crate) fn address_of(&self, name: &str) -> Option<u64> {
        let mut found = None;
        for symbol in self
            .symbols
            .iter()
            .filter(|s| s.name.get(&self.names) == name)
        {
            match found {
                None => found = Some(symbol.address),
                Some(address) if address == symbol.address => {}
                Some(_) => return None,
            }
        }
        found
    }

    /// The symbol for `svma`: one whose `[start, start + size)` holds it, else the nearest
    /// unsized symbol at or below it.
    pub(crate) fn lookup(&self, svma: u64) -> Option<SymbolHit<'_>> {
        let end = self.symbols.partition_point(|s| s.address <= svma);
        let mut unsized_nearest = None;
        let mut group_end = end;
        for _ in 0..MAX_WALK_BACK {
            let Some(last) = group_end.checked_sub(1).and_then(|i| self.symbols.get(i)) else {
                break;
            };
            let group_start = self
                .symbols
                .get(..group_end)?
                .partition_point(|s| s.address < last.address);
            let group = self.symbols.get(group_start..group_end)?;
            // The group is sorted best first.
            let best = group.first()?;
            let size = group.iter().map(|s| s.size).max().unwrap_or(0);
            let offset = svma.wrapping_sub(best.address); // best.address <= svma by the search
            if size > 0 {
                if offset < size {
                    return Some(SymbolHit {
                        name: best.name.get(&self.names),
                        offset,
                        contains: true,
                        aliases: group,
                        names: &self.names,
                    });
                }
            } else if group_end == end {
                unsized_nearest = Some(SymbolHit {
                    name: best.name.get(&self.names),
                    offset,
                    contains: false,
                    aliases: group,
                    names: &self.names,
                });
            }
            group_end = group_start;
        }
        unsized_nearest
    }
}

/// Best first among symbols at one address: by rank, then the plainer name (fewer leading
/// underscores, then shorter), so `printf` wins over `_IO_printf` and `malloc` over
/// `__libc_malloc`; the name itself settles the rest so the choice never depends on order.
fn preference(names: &str, a: &Symbol, b: &Symbol) -> std::cmp::Ordering {
    let (name_a, name_b) = (a.name.get(names), b.name.get(names));
    let underscores = |name: &str| name.bytes().take_while(|&b| b == b'_').count();
    b.rank
        .cmp(&a.rank)
        .then_with(|| underscores(name_a).cmp(&underscores(name_b)))
        .then_with(|| name_a.len().cmp(&name_b.len()))
        .then_with(|| name_a.cmp(name_b))
}

/// By address, then best first; what still ties (the same name twice) is ordered by size so
/// the order never depends on where the symbols came from.
fn sort(symbols: &mut [Symbol], names: &str) {
    symbols.sort_unstable_by(|a, b| {
        a.address
            .cmp(&b.address)
            .then_with(|| preference(names, a, b))
            .then_with(|| b.size.cmp(&a.size))
    });
}

fn collect<'data, 'file, S>(
    symbols: impl Iterator<Item = S>,
    text: &[Range<u64>],
    out: &mut Vec<Symbol>,
    names: &mut String,
) where
    S: ObjectSymbol<'data>,
{
    for symbol in symbols {
        if !matches!(symbol.section(), SymbolSection::Section(_)) {
            continue;
        }
        let is_function = match symbol.kind() {
            SymbolKind::Text => true,
            // NOTYPE labels count only inside code (assembler entry points, `_start`).
            SymbolKind::Unknown => false,
            _ => continue,
        };
        let address = symbol.address();
        if !is_function && !text.iter().any(|r| r.contains(&address)) {
            continue;
        }
        let Ok(name) = symbol.name() else { continue };
        // aarch64/arm mapping symbols (`$x`, `$d`) mark code/data, not functions.
        if name.is_empty() || name.starts_with('$') {
            continue;
        }
        let binding = if symbol.is_local() {
            0
        } else if symbol.is_weak() {
            1
        } else {
            2
        };
        let (Ok(start), Ok(len)) = (u32::try_from(names.len()), u32::try_from(name.len())) else {
            continue; // past 4 GiB of names: no real table gets there
        };
        if start.checked_add(len).is_none() {
            continue;
        }
        names.push_str(name);
        out.push(Symbol {
            address,
            size: symbol.size(),
            name: NameRef { start, len },
            rank: u8::from(is_function) * 4 + binding,
        });
    }
}

/// Demangles a symbol-table name: `_R` is Rust v0; `_Z` is Rust legacy when it ends in the
/// `17h<16 hex digits>E` hash, else C++ (named without parameters or return type, as gdb
/// names frames). Anything else (C) comes back unchanged.
pub(crate) fn demangle(name: &str) -> String {
    let demangled = catch_unwind(AssertUnwindSafe(|| {
        if name.starts_with("_R") || is_rust_legacy(name) {
            rustc_demangle::try_demangle(name)
                .ok()
                .map(|d| format!("{d:#}"))
        } else if name.starts_with("_Z") {
            // gdb's and eu-stack's shape: no parameter list, no return type. The full
            // signature stays available in `mangled`.
            let options = cpp_demangle::DemangleOptions::new()
                .no_params()
                .no_return_type();
            cpp_demangle::Symbol::new(name)
                .ok()
                .and_then(|s| s.demangle_with_options(&options).ok())
        } else {
            None
        }
    }));
    demangled.ok().flatten().unwrap_or_else(|| name.to_string())
}

fn is_rust_legacy(name: &str) -> bool {
    if !name.starts_with("_ZN") {
        return false;
    }
    // LLVM may append `.llvm.<digits>` or similar after the mangled name.
    let mangled = name.split('.').next().unwrap_or(name);
    let Some(body) = mangled.strip_suffix('E') else {
        return false;
    };
    let Some(hash_start) = body.len().checked_sub(19) else {
        return false;
    };
    let Some(hash) = body.get(hash_start..) else {
        return false;
    };
    hash.strip_prefix("17h")
        .is_some_and(|digits| digits.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demangles_by_prefix() {
        assert_eq!(demangle("main"), "main");
        assert_eq!(demangle("_ZN2ns3fooIiEEvT_"), "ns::foo<int>");
        assert_eq!(demangle("_ZN4test4main17h0123456789abcdefE"), "test::main");
        assert_eq!(demangle("_RNvCs1234_4test4main"), "test::main");
        // Not valid mangling: left alone rather than garbled.
        assert_eq!(demangle("_Zjunk"), "_Zjunk");
    }

    fn table(symbols: &[(u64, u64, &str, u8)]) -> SymbolTable {
        let mut names = String::new();
        let mut symbols: Vec<Symbol> = symbols
            .iter()
            .map(|&(address, size, name, rank)| {
                let start = names.len() as u32;
                names.push_str(name);
                Symbol {
                    address,
                    size,
                    name: NameRef {
                        start,
                        len: name.len() as u32,
                    },
                    rank,
                }
            })
            .collect();
        sort(&mut symbols, &names);
        SymbolTable { symbols, names }
    }

    #[test]
    fn lookup_prefers_global_functions_and_respects_sizes() {
        let t = table(&[
            (0x100, 0x20, "__GI_abort", 4),
            (0x100, 0x20, "abort", 6),
            (0x100, 0x20, "_IO_abort", 6),
            (0x200, 0x100, "big", 6),
            (0x210, 0x8, "inner", 4),
            (0x400, 0, "label", 2),
        ]);
        let hit = t.lookup(0x104).unwrap();
        assert_eq!((hit.name, hit.offset, hit.contains), ("abort", 4, true));
        assert!(hit.is_alias("__GI_abort") && !hit.is_alias("big"));
        assert!(t.lookup(0x120).is_none(), "past the end of a sized symbol");
        assert!(t.lookup(0xff).is_none());
        let hit = t.lookup(0x280).unwrap();
        assert_eq!(
            (hit.name, hit.offset),
            ("big", 0x80),
            "enclosing symbol behind a nested one"
        );
        let hit = t.lookup(0x450).unwrap();
        assert_eq!((hit.name, hit.offset, hit.contains), ("label", 0x50, false));
    }
}
