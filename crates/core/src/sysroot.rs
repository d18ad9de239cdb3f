//! Paths of the crashed system, looked up under a sysroot on this machine.

use std::path::{Component, Path, PathBuf};

/// Symlinks followed by hand before giving up (the kernel's own limit).
const MAX_SYMLINKS: u32 = 40;

/// `sysroot/path`, where absolute symlinks met on the way are re-rooted in the sysroot (a target
/// filesystem's `/lib/x -> /usr/lib/x` must not escape to this machine's `/usr/lib`). Relative
/// symlinks are left for the operating system to follow, even out of the sysroot (the arm64
/// corpus's `corpus -> ..` relies on it).
pub(crate) fn resolve(sysroot: Option<&Path>, path: &str) -> PathBuf {
    match sysroot {
        None => PathBuf::from(path),
        Some(root) => {
            let mut budget = MAX_SYMLINKS;
            resolve_under(root, Path::new(path), &mut budget)
        }
    }
}

fn resolve_under(root: &Path, path: &Path, budget: &mut u32) -> PathBuf {
    let mut current = root.to_path_buf();
    for component in path.components() {
        match component {
            Component::Prefix(_) | Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                if current == root {
                    continue;
                }
                if current.is_symlink() {
                    // Only the operating system knows where a relative link's parent is.
                    current.push("..");
                } else {
                    current.pop();
                }
            }
            Component::Normal(name) => {
                current.push(name);
                if *budget == 0 {
                    continue;
                }
                if let Ok(target) = std::fs::read_link(&current) {
                    if target.is_absolute() {
                        *budget -= 1;
                        current = resolve_under(root, &target, budget);
                    }
                }
            }
        }
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_symlinks_stay_inside_the_sysroot() {
        let dir = std::env::temp_dir().join(format!("coresnap-sysroot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("usr/lib")).unwrap();
        std::fs::write(dir.join("usr/lib/libx.so"), b"x").unwrap();
        std::os::unix::fs::symlink("/usr/lib", dir.join("lib")).unwrap();
        std::os::unix::fs::symlink("usr/lib", dir.join("lib2")).unwrap();
        std::os::unix::fs::symlink("/lib/libx.so", dir.join("usr/lib/liby.so")).unwrap();

        let resolved = resolve(Some(&dir), "/lib/libx.so");
        assert_eq!(resolved, dir.join("usr/lib/libx.so"));
        assert_eq!(std::fs::read(&resolved).unwrap(), b"x");
        let resolved = resolve(Some(&dir), "/lib2/liby.so");
        assert_eq!(std::fs::read(&resolved).unwrap(), b"x");
        assert_eq!(
            resolve(Some(&dir), "/../../lib/libx.so"),
            dir.join("usr/lib/libx.so")
        );
        assert_eq!(resolve(None, "/lib/libx.so"), PathBuf::from("/lib/libx.so"));

        // A symlink loop ends (the budget runs out) instead of recursing forever.
        std::os::unix::fs::symlink("/loop", dir.join("loop")).unwrap();
        let _ = resolve(Some(&dir), "/loop/x");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
