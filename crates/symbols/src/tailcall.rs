//! Frames that tail calls left off the stack, rebuilt from DWARF call-site information the way
//! gdb does it.
//!
//! When `f` ends in `jmp g`, `g` returns straight to `f`'s caller, so an unwinder sees the
//! caller call `g`. The compiler records every call in `DW_TAG_call_site` entries (DWARF 5;
//! `DW_TAG_GNU_call_site` in DWARF 4): where it returns to, which function it calls, and
//! whether it is a tail call. From the caller's call site we know the function it called
//! (`f`); when that is not the function the unwinder found (`g`), the tail calls in `f` (and,
//! a few levels down, in the functions `f` tail-calls) that lead to `g` are the missing
//! frames. When more than one path leads there, nothing is claimed.
//!
//! Functions are compared by their entry address; a call-site origin that is only a
//! declaration (a function defined in another unit) is resolved by name through the symbol
//! table. Every unit that is looked at is indexed once and cached.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use gimli::{AttributeValue, UnitOffset};

use crate::dwarf::{DwarfContext, Reader};

/// How many tail calls in a row are followed from the function the caller called.
const MAX_CHAIN: usize = 5;
/// How many call sites the whole search may look at, so a web of tail calls stays cheap.
const MAX_VISITS: usize = 256;
/// How many `DW_AT_abstract_origin`/`DW_AT_specification` links are followed for a name.
const MAX_ORIGIN_LINKS: usize = 4;
/// Address ranges kept per function; more than this is odd DWARF, not real code layout.
const MAX_RANGES: usize = 64;

/// The function a call site calls.
#[derive(Clone, Debug, PartialEq)]
enum Target {
    /// A function defined in the same unit, by its entry address.
    Entry(u64),
    /// A function known only by a declaration: its (linkage) name.
    Name(String),
    /// An indirect call, or an origin this crate does not follow (another unit's DIE).
    Unknown,
}

#[derive(Clone, Debug)]
struct CallSite {
    /// The address after the call (or jump) instruction.
    return_pc: u64,
    /// An address inside the call instruction, for symbolization.
    lookup_pc: u64,
    tail: bool,
    target: Target,
}

/// A function with code in this unit.
struct Function {
    entry: u64,
    ranges: Vec<Range<u64>>,
    /// Its own DIE and the DIEs it is a concrete instance or definition of: call sites name
    /// any of them.
    offsets: Vec<UnitOffset<usize>>,
    tail_calls: Vec<CallSite>,
}

/// The call sites and functions of one compilation unit.
#[derive(Default)]
pub(crate) struct UnitIndex {
    functions: Vec<Function>,
    /// Every call site with a return address, by that address.
    by_return_pc: HashMap<u64, CallSite>,
}

impl UnitIndex {
    fn function_containing(&self, svma: u64) -> Option<&Function> {
        self.functions
            .iter()
            .find(|f| f.ranges.iter().any(|r| r.contains(&svma)))
    }

    fn function_at_entry(&self, entry: u64) -> Option<&Function> {
        self.functions.iter().find(|f| f.entry == entry)
    }
}

/// Per-module state: unit indexes by the unit's offset in `.debug_info`.
#[derive(Default)]
pub(crate) struct CallSiteCache {
    units: HashMap<usize, Arc<UnitIndex>>,
}

/// The tail-call chain between a caller and its callee, as the call sites of the missing
/// frames, innermost (nearest the callee) first. Empty when there is none, when it cannot be
/// told, or when more than one chain fits.
pub(crate) fn find_chain(
    context: &DwarfContext,
    cache: &mut CallSiteCache,
    address_of: &dyn Fn(&str) -> Option<u64>,
    callee_entry_from_symbols: Option<u64>,
    caller_return_svma: u64,
    callee_svma: u64,
) -> Vec<(u64, u64)> {
    let mut search = Search {
        context,
        cache,
        address_of,
        visits: 0,
    };
    // The call instruction is just before the return address; the unit that holds it holds
    // the call site.
    let Some(caller_unit) = search.unit_for(caller_return_svma.wrapping_sub(1)) else {
        return Vec::new();
    };
    let Some(site) = caller_unit.by_return_pc.get(&caller_return_svma) else {
        return Vec::new();
    };
    let Some(called) = search.resolve(&site.target) else {
        return Vec::new();
    };
    let callee_entry = search
        .unit_for(callee_svma)
        .and_then(|unit| unit.function_containing(callee_svma).map(|f| f.entry))
        .or(callee_entry_from_symbols);
    let Some(callee_entry) = callee_entry else {
        return Vec::new();
    };
    if called == callee_entry {
        return Vec::new();
    }
    let mut paths = Vec::new();
    let mut path = Vec::new();
    let mut visited = vec![called];
    search.walk(called, callee_entry, &mut path, &mut visited, &mut paths);
    match paths.as_slice() {
        [only] => only.iter().rev().copied().collect(),
        _ => Vec::new(),
    }
}

struct Search<'a> {
    context: &'a DwarfContext,
    cache: &'a mut CallSiteCache,
    address_of: &'a dyn Fn(&str) -> Option<u64>,
    visits: usize,
}

impl Search<'_> {
    /// Depth-first over tail calls from the function at `from`, collecting every path of call
    /// sites (outermost first) that ends in a tail call to `target`. Stops early once two
    /// different paths are known: the answer is then "ambiguous" whatever else is found.
    fn walk(
        &mut self,
        from: u64,
        target: u64,
        path: &mut Vec<(u64, u64)>,
        visited: &mut Vec<u64>,
        paths: &mut Vec<Vec<(u64, u64)>>,
    ) {
        if path.len() >= MAX_CHAIN || paths.len() > 1 {
            return;
        }
        let Some(unit) = self.unit_for(from) else {
            return;
        };
        let Some(function) = unit.function_at_entry(from) else {
            return;
        };
        for site in function.tail_calls.iter() {
            self.visits += 1;
            if self.visits > MAX_VISITS || paths.len() > 1 {
                // Too big to tell: claim nothing rather than a guess.
                paths.push(Vec::new());
                paths.push(Vec::new());
                return;
            }
            let Some(next) = self.resolve(&site.target) else {
                continue;
            };
            path.push((site.return_pc, site.lookup_pc));
            if next == target {
                if !paths.contains(path) {
                    paths.push(path.clone());
                }
            } else if !visited.contains(&next) {
                visited.push(next);
                self.walk(next, target, path, visited, paths);
                visited.pop();
            }
            path.pop();
        }
    }

    fn resolve(&self, target: &Target) -> Option<u64> {
        match target {
            Target::Entry(entry) => Some(*entry),
            Target::Name(name) => (self.address_of)(name),
            Target::Unknown => None,
        }
    }

    /// The index of the unit whose code holds `svma`, built on first use.
    fn unit_for(&mut self, svma: u64) -> Option<Arc<UnitIndex>> {
        let unit = self.context.find_dwarf_and_unit(svma)?;
        // Only units with code are found by address, so the offset names one unit.
        let key = unit.header.offset().0;
        if let Some(index) = self.cache.units.get(&key) {
            return Some(index.clone());
        }
        // A unit that cannot be read is indexed as empty, so it is not read again.
        let index = Arc::new(index_unit(unit).unwrap_or_default());
        self.cache.units.insert(key, index.clone());
        Some(index)
    }
}

/// A call site as read, before its origin is resolved against the unit's functions.
struct RawSite {
    function: usize,
    return_pc: u64,
    lookup_pc: u64,
    tail: bool,
    origin: Option<AttributeValue<Reader>>,
}

fn index_unit(unit: gimli::UnitRef<'_, Reader>) -> gimli::Result<UnitIndex> {
    let mut functions: Vec<Function> = Vec::new();
    let mut raw_sites = Vec::new();
    // The functions enclosing the current DIE, as (depth, index in `functions`).
    let mut enclosing: Vec<(isize, usize)> = Vec::new();
    let mut cursor = unit.entries();
    while let Some(entry) = cursor.next_dfs()? {
        let depth = entry.depth();
        while enclosing.last().is_some_and(|&(d, _)| d >= depth) {
            enclosing.pop();
        }
        let tag = entry.tag();
        if tag == gimli::DW_TAG_subprogram {
            let mut ranges = Vec::new();
            let mut iter = unit.die_ranges(entry)?;
            while let Some(range) = iter.next()? {
                if range.begin < range.end && ranges.len() < MAX_RANGES {
                    ranges.push(range.begin..range.end);
                }
            }
            // Declarations and abstract instances have no code; call sites never sit in them.
            let Some(first) = ranges.first() else {
                continue;
            };
            let entry_pc = address_attr(unit, entry, gimli::DW_AT_low_pc)
                .or_else(|| address_attr(unit, entry, gimli::DW_AT_entry_pc))
                .unwrap_or(first.start);
            functions.push(Function {
                entry: entry_pc,
                ranges,
                offsets: origin_links(unit, entry),
                tail_calls: Vec::new(),
            });
            enclosing.push((depth, functions.len() - 1));
        } else if tag == gimli::DW_TAG_call_site || tag == gimli::DW_TAG_GNU_call_site {
            let Some(&(_, function)) = enclosing.last() else {
                continue;
            };
            let return_pc = address_attr(unit, entry, gimli::DW_AT_call_return_pc)
                .or_else(|| address_attr(unit, entry, gimli::DW_AT_low_pc));
            let Some(return_pc) = return_pc else {
                continue;
            };
            let call_pc = address_attr(unit, entry, gimli::DW_AT_call_pc);
            let tail = [gimli::DW_AT_call_tail_call, gimli::DW_AT_GNU_tail_call]
                .into_iter()
                .any(|name| matches!(entry.attr_value(name), Some(AttributeValue::Flag(true))));
            let origin = entry
                .attr_value(gimli::DW_AT_call_origin)
                .or_else(|| entry.attr_value(gimli::DW_AT_abstract_origin));
            raw_sites.push(RawSite {
                function,
                return_pc,
                lookup_pc: call_pc.unwrap_or(return_pc.wrapping_sub(1)),
                tail,
                origin,
            });
        }
    }

    let mut by_return_pc = HashMap::new();
    for raw in raw_sites {
        let target = match raw.origin {
            Some(AttributeValue::UnitRef(offset)) => {
                match functions.iter().find(|f| f.offsets.contains(&offset)) {
                    Some(f) => Target::Entry(f.entry),
                    None => match declared_name(unit, offset) {
                        Some(name) => Target::Name(name),
                        None => Target::Unknown,
                    },
                }
            }
            _ => Target::Unknown,
        };
        let site = CallSite {
            return_pc: raw.return_pc,
            lookup_pc: raw.lookup_pc,
            tail: raw.tail,
            target,
        };
        if site.tail {
            if let Some(function) = functions.get_mut(raw.function) {
                function.tail_calls.push(site.clone());
            }
        }
        // The same return address twice would be odd DWARF; the first one stands.
        by_return_pc.entry(site.return_pc).or_insert(site);
    }
    Ok(UnitIndex {
        functions,
        by_return_pc,
    })
}

fn address_attr(
    unit: gimli::UnitRef<'_, Reader>,
    entry: &gimli::DebuggingInformationEntry<Reader>,
    name: gimli::DwAt,
) -> Option<u64> {
    let value = entry.attr_value(name)?;
    unit.attr_address(value).ok().flatten()
}

/// The DIE itself and the DIEs it refers to through `DW_AT_abstract_origin` and
/// `DW_AT_specification`, within the unit.
fn origin_links(
    unit: gimli::UnitRef<'_, Reader>,
    entry: &gimli::DebuggingInformationEntry<Reader>,
) -> Vec<UnitOffset<usize>> {
    let mut offsets = vec![entry.offset()];
    let mut next = link_of(entry);
    while let Some(offset) = next {
        if offsets.len() > MAX_ORIGIN_LINKS || offsets.contains(&offset) {
            break;
        }
        offsets.push(offset);
        next = unit.entry(offset).ok().and_then(|e| link_of(&e));
    }
    offsets
}

fn link_of(entry: &gimli::DebuggingInformationEntry<Reader>) -> Option<UnitOffset<usize>> {
    [gimli::DW_AT_abstract_origin, gimli::DW_AT_specification]
        .into_iter()
        .find_map(|name| match entry.attr_value(name) {
            Some(AttributeValue::UnitRef(offset)) => Some(offset),
            _ => None,
        })
}

/// The linkage name (else the name) of the function declared at `offset`, following
/// `DW_AT_abstract_origin`/`DW_AT_specification` when the DIE itself has none.
fn declared_name(unit: gimli::UnitRef<'_, Reader>, offset: UnitOffset<usize>) -> Option<String> {
    let mut offset = offset;
    for _ in 0..=MAX_ORIGIN_LINKS {
        let entry = unit.entry(offset).ok()?;
        for name in [
            gimli::DW_AT_linkage_name,
            gimli::DW_AT_MIPS_linkage_name,
            gimli::DW_AT_name,
        ] {
            if let Some(value) = entry.attr_value(name) {
                let string = unit.attr_string(value).ok()?;
                let string = gimli::Reader::to_string_lossy(&string).ok()?;
                return Some(string.into_owned());
            }
        }
        offset = link_of(&entry)?;
    }
    None
}
