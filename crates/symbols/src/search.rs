//! Finding a module's separate debug file the way gdb does: by build-id, then by
//! `.gnu_debuglink`.

use std::path::{Component, Path, PathBuf};

use object::Object;

use crate::elf::{self, bytes_of};
use crate::{hex, DebugSearch, SectionRef, SharedBytes};

/// A debug file accepted for a module.
pub(crate) struct DebugFile {
    pub path: PathBuf,
    pub bytes: SharedBytes,
    pub has_debug_info: bool,
    pub has_symtab: bool,
    pub debug_frame: Option<SectionRef>,
}

/// What must hold for a candidate to be this module's debug file.
struct Expect<'a> {
    build_id: Option<&'a [u8]>,
    crc: Option<u32>,
}

pub(crate) fn find_debug_file(
    module_path: Option<&Path>,
    build_id: Option<&[u8]>,
    debuglink: Option<(&[u8], u32)>,
    search: &DebugSearch,
    warnings: &mut Vec<String>,
) -> Option<DebugFile> {
    let roots = search.roots();

    if let Some(id) = build_id.filter(|id| id.len() >= 2) {
        let (first, rest) = id.split_at(1);
        let relative = format!(".build-id/{}/{}.debug", hex(first), hex(rest));
        let expect = Expect {
            build_id: Some(id),
            crc: None,
        };
        for root in &roots {
            if let Some(found) = try_candidate(&root.join(&relative), &expect, warnings) {
                return Some(found);
            }
        }
    }

    let (name, crc) = debuglink?;
    let name = std::str::from_utf8(name).ok().map(Path::new)?;
    // The link is a bare file name; anything that would climb out of the directories searched
    // is ignored rather than followed.
    if name
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        warnings.push(format!(
            ".gnu_debuglink names {}, which is not a file name",
            name.display()
        ));
        return None;
    }
    let module_path = module_path?;
    let directory = module_path.parent().unwrap_or(Path::new(""));
    let mut candidates = vec![directory.join(name), directory.join(".debug").join(name)];
    // `<root>/<directory of the file>/`: the directory as the process saw it, so a sysroot
    // prefix comes off first.
    let seen_directory = search
        .sysroot
        .as_deref()
        .and_then(|sysroot| directory.strip_prefix(sysroot).ok())
        .unwrap_or(directory);
    let seen_directory: PathBuf = seen_directory
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    candidates.extend(
        roots
            .iter()
            .map(|root| root.join(&seen_directory).join(name)),
    );

    let expect = Expect {
        build_id,
        crc: Some(crc),
    };
    let module_identity = same_file::identity(module_path);
    for candidate in candidates {
        if module_identity.is_some() && same_file::identity(&candidate) == module_identity {
            continue; // the link names the module itself
        }
        if let Some(found) = try_candidate(&candidate, &expect, warnings) {
            return Some(found);
        }
    }
    None
}

fn try_candidate(
    path: &Path,
    expect: &Expect<'_>,
    warnings: &mut Vec<String>,
) -> Option<DebugFile> {
    if !path.is_file() {
        return None;
    }
    let map = match elf::map_file(path) {
        Ok(map) => map,
        Err(e) => {
            warnings.push(format!(
                "debug file {} could not be read: {e}",
                path.display()
            ));
            return None;
        }
    };
    let bytes: SharedBytes = map;
    let file = match elf::parse(bytes_of(&bytes)) {
        Ok(file) => file,
        Err(e) => {
            warnings.push(format!("debug file {} is not usable: {e}", path.display()));
            return None;
        }
    };
    let candidate_id = file.build_id().ok().flatten().filter(|id| !id.is_empty());
    match (expect.build_id, candidate_id) {
        (Some(wanted), Some(found)) if wanted != found => {
            warnings.push(format!(
                "debug file {} has build-id {}, the module has {}; not used",
                path.display(),
                hex(found),
                hex(wanted)
            ));
            return None;
        }
        // Matching build-ids identify the file better than the CRC would.
        (Some(_), Some(_)) => {}
        _ => match expect.crc {
            Some(wanted) => {
                let found = crc32fast::hash(bytes_of(&bytes));
                if found != wanted {
                    warnings.push(format!(
                        "debug file {} has CRC32 {found:08x}, .gnu_debuglink expects {wanted:08x}; not used",
                        path.display()
                    ));
                    return None;
                }
            }
            None => {
                warnings.push(format!(
                    "debug file {} has no build-id to check; not used",
                    path.display()
                ));
                return None;
            }
        },
    }

    let debug_frame = match elf::section_ref(&file, &bytes, ".debug_frame") {
        Ok(section) => section,
        Err(e) => {
            warnings.push(format!(
                "{}: section .debug_frame unreadable: {e}",
                path.display()
            ));
            None
        }
    };
    let has_debug_info = elf::has_contents(&file, ".debug_info");
    let has_symtab = file.symbol_table().is_some();
    drop(file);
    Some(DebugFile {
        path: path.to_path_buf(),
        bytes,
        has_debug_info,
        has_symtab,
        debug_frame,
    })
}

/// Comparing files by device and inode, so a link that names the module itself (through
/// any path) is skipped.
mod same_file {
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;

    pub(super) fn identity(path: &Path) -> Option<(u64, u64)> {
        std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
    }
}
