//! A cache of decompressed debug sections on disk, keyed by build-id, so that the second look
//! at a crash in the same library maps what the first one inflated (debuginfod's client keeps
//! downloaded files the same way).
//!
//! Where: `$CORESNAP_CACHE_DIR` when set (`off` turns the cache off), else
//! `$XDG_CACHE_HOME/coresnap`, else `~/.cache/coresnap`. One file per section:
//! `<dir>/<build-id>/<section>-<compressed offset>-<compressed size>-<size>` holding a header
//! that repeats that key (and the first and last bytes of the compressed stream, whose zlib
//! trailer is a checksum of the contents), then the bytes.
//!
//! Files are written to a temporary name (mode 0600, folders 0700) and renamed into place, so a
//! reader never sees half a file. A file whose header or length does not match is ignored (and
//! replaced). Nothing here is ever fatal: a read-only or full disk only means no cache.
//!
//! Size: after each new file, the cache is held to `$CORESNAP_CACHE_MAX` (bytes, or with a `K`,
//! `M` or `G` suffix; default 2 GiB) by removing the files used longest ago. A hit marks its file
//! used (its modification time), so the libraries looked at every day stay. Removing a file a
//! running reader has mapped is safe: its mapping stays valid until it is dropped.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use crate::{hex, SharedBytes};

/// Sections smaller than this are inflated again each time: a file per section would cost
/// more than it saves.
pub(crate) const MIN_CACHED_SIZE: u64 = 64 * 1024;

const MAGIC: &[u8; 8] = b"CSNPSEC1";
/// How many bytes of each end of the compressed stream the header keeps.
const STREAM_SAMPLE: usize = 16;
const HEADER_LEN: usize = 8 + 8 * 4 + 2 * STREAM_SAMPLE;

/// Which compressed bytes a cached section was inflated from.
pub(crate) struct SectionKey<'a> {
    /// The build-id of the file holding the section.
    pub build_id: &'a [u8],
    /// The section's name (`.debug_info`).
    pub name: &'a str,
    /// Where the compressed stream starts in the file, and its length.
    pub compressed_offset: u64,
    pub compressed: &'a [u8],
    /// `CompressionFormat` as a number, so zlib and zstd copies never mix.
    pub format: u64,
    pub size: u64,
}

impl SectionKey<'_> {
    fn file_name(&self) -> Option<String> {
        let name = self.name.trim_start_matches('.');
        // Section names come from the file; only plain ones become file names.
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        {
            return None;
        }
        Some(format!(
            "{name}-{:x}-{:x}-{:x}",
            self.compressed_offset,
            self.compressed.len(),
            self.size
        ))
    }

    fn header(&self) -> [u8; HEADER_LEN] {
        let sample_len = STREAM_SAMPLE.min(self.compressed.len());
        let head = self.compressed.get(..sample_len).unwrap_or(&[]);
        let tail = self
            .compressed
            .get(self.compressed.len() - sample_len..)
            .unwrap_or(&[]);
        let mut header = [0u8; HEADER_LEN];
        let fields = [
            self.compressed_offset,
            self.compressed.len() as u64,
            self.size,
            self.format,
        ];
        let mut at = 0;
        put(&mut header, &mut at, MAGIC);
        for field in fields {
            put(&mut header, &mut at, &field.to_le_bytes());
        }
        let samples_at = at;
        put(&mut header, &mut at, head);
        at = samples_at + STREAM_SAMPLE;
        put(&mut header, &mut at, tail);
        header
    }
}

fn put(header: &mut [u8], at: &mut usize, bytes: &[u8]) {
    if let Some(slot) = header.get_mut(*at..*at + bytes.len()) {
        slot.copy_from_slice(bytes);
    }
    *at += bytes.len();
}

/// How stale a file's mark of use may be before a hit renews it.
const MARK_USED_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

/// The default bound on the cache's size on disk.
const DEFAULT_MAX_BYTES: u64 = 2 << 30;

/// A folder of cached sections.
#[derive(Clone, Debug)]
pub(crate) struct SectionCache {
    dir: PathBuf,
    max_bytes: u64,
    /// The cache's size as this process last counted it plus what it stored since: the folder is
    /// walked again only when that passes `max_bytes`, not on every store (None: not counted yet).
    counted_bytes: std::sync::Arc<std::sync::Mutex<Option<u64>>>,
}

impl SectionCache {
    /// The cache the environment asks for, or `None` when it is turned off or no folder can
    /// be named.
    pub(crate) fn from_env() -> Option<SectionCache> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let dir = match var("CORESNAP_CACHE_DIR") {
            Some(dir) if dir == "off" => return None,
            Some(dir) => PathBuf::from(dir),
            None => match var("XDG_CACHE_HOME").map(PathBuf::from) {
                Some(xdg) if xdg.is_absolute() => xdg.join("coresnap"),
                _ => PathBuf::from(var("HOME")?).join(".cache").join("coresnap"),
            },
        };
        let max_bytes = std::env::var("CORESNAP_CACHE_MAX")
            .ok()
            .and_then(|v| parse_size(&v))
            .unwrap_or(DEFAULT_MAX_BYTES);
        Some(SectionCache { dir, max_bytes, counted_bytes: Default::default() })
    }

    /// A cache in `dir` (created on first store) of at most `max_bytes`.
    #[cfg(test)]
    pub(crate) fn at(dir: &Path, max_bytes: u64) -> SectionCache {
        SectionCache {
            dir: dir.to_path_buf(),
            max_bytes,
            counted_bytes: Default::default(),
        }
    }

    fn path_of(&self, key: &SectionKey<'_>) -> Option<PathBuf> {
        if key.build_id.is_empty() {
            return None;
        }
        Some(self.dir.join(hex(key.build_id)).join(key.file_name()?))
    }

    /// The cached bytes of a section (`owner` and the range of the bytes in it), when a
    /// matching, complete file is there.
    pub(crate) fn load(
        &self,
        key: &SectionKey<'_>,
    ) -> Option<(SharedBytes, std::ops::Range<usize>)> {
        let path = self.path_of(key)?;
        let file = File::open(&path).ok()?;
        let expected_len = (HEADER_LEN as u64).checked_add(key.size)?;
        let metadata = file.metadata().ok()?;
        if metadata.len() != expected_len {
            return None;
        }
        // SAFETY: read-only private map of a file this cache only ever replaces by rename,
        // never rewrites in place; see `elf::map_file` for the truncation caveat.
        let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
        if map.get(..HEADER_LEN)? != key.header() {
            return None;
        }
        let end = HEADER_LEN.checked_add(usize::try_from(key.size).ok()?)?;
        if map.len() != end {
            return None;
        }
        // Used now: the size bound removes what was used longest ago first. A file marked in
        // the last minutes is left as it is: a write per section and run would cost more than
        // the order it keeps.
        let now = SystemTime::now();
        let marked = metadata.modified().ok().and_then(|m| now.duration_since(m).ok());
        if marked.is_none_or(|age| age > MARK_USED_AFTER) {
            let _ = file.set_modified(now);
        }
        Some((Arc::new(map), HEADER_LEN..end))
    }

    /// Writes a section's inflated bytes and maps the written file. `None` when the disk
    /// refused (then the caller keeps its own copy).
    pub(crate) fn store(
        &self,
        key: &SectionKey<'_>,
        data: &[u8],
    ) -> Option<(SharedBytes, std::ops::Range<usize>)> {
        if data.len() as u64 != key.size {
            return None;
        }
        let path = self.path_of(key)?;
        let folder = path.parent()?;
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(folder)
            .ok()?;
        let temporary = temporary_name(&path)?;
        let written = write_new(&temporary, &key.header(), data);
        if written.is_none() || fs::rename(&temporary, &path).is_err() {
            let _ = fs::remove_file(&temporary);
            return None;
        }
        let loaded = self.load(key);
        let stored = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let mut counted = self.counted_bytes.lock().unwrap_or_else(|e| e.into_inner());
        let over = match counted.as_mut() {
            Some(total) => {
                *total = total.saturating_add(stored);
                *total > self.max_bytes
            }
            None => true,
        };
        if over {
            *counted = Some(self.trim(&path));
        }
        loaded
    }

    /// Removes the files used longest ago until the cache holds at most `max_bytes`, keeping
    /// `keep` (the file just written) whatever its size; returns the size it then holds.
    fn trim(&self, keep: &Path) -> u64 {
        let mut files = Vec::new();
        let mut total = 0u64;
        let Ok(folders) = fs::read_dir(&self.dir) else {
            return 0;
        };
        for folder in folders.flatten() {
            let Ok(entries) = fs::read_dir(folder.path()) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(meta) = entry.metadata() else { continue };
                if !meta.is_file() {
                    continue;
                }
                total = total.saturating_add(meta.len());
                let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                files.push((used, meta.len(), entry.path()));
            }
        }
        if total <= self.max_bytes {
            return total;
        }
        files.sort();
        for (_, len, path) in files {
            if total <= self.max_bytes {
                break;
            }
            if path == keep || fs::remove_file(&path).is_err() {
                continue;
            }
            total = total.saturating_sub(len);
            // An emptied build-id folder goes too (this fails, harmlessly, while it has files).
            if let Some(folder) = path.parent() {
                let _ = fs::remove_dir(folder);
            }
        }
        total
    }
}

/// `1234`, `64K`, `512M`, `2G` (powers of 1024) as bytes.
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, shift) = match text.as_bytes().last()? {
        b'k' | b'K' => (&text[..text.len() - 1], 10),
        b'm' | b'M' => (&text[..text.len() - 1], 20),
        b'g' | b'G' => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    digits
        .trim()
        .parse::<u64>()
        .ok()?
        .checked_mul(1u64 << shift)
}

fn temporary_name(path: &Path) -> Option<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut name = path.file_name()?.to_os_string();
    name.push(format!(
        ".tmp.{}.{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    Some(path.with_file_name(name))
}

fn write_new(path: &Path, header: &[u8], data: &[u8]) -> Option<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .ok()?;
    file.write_all(header).ok()?;
    file.write_all(data).ok()?;
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("coresnap-cache-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn key<'a>(compressed: &'a [u8], size: u64) -> SectionKey<'a> {
        SectionKey {
            build_id: &[0xab, 0xcd, 0xef],
            name: ".debug_info",
            compressed_offset: 0x1000,
            compressed,
            format: 1,
            size,
        }
    }

    #[test]
    fn stores_then_loads_with_private_modes() {
        let dir = scratch("roundtrip");
        let cache = SectionCache::at(&dir, u64::MAX);
        let compressed = b"compressed stream bytes, more than sixteen of them";
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let key = key(compressed, data.len() as u64);
        assert!(cache.load(&key).is_none(), "an empty cache has nothing");
        let (owner, range) = cache.store(&key, &data).expect("stored");
        assert_eq!(crate::elf::bytes_of(&owner).get(range).unwrap(), &data[..]);
        let (owner, range) = cache.load(&key).expect("loaded");
        assert_eq!(crate::elf::bytes_of(&owner).get(range).unwrap(), &data[..]);

        let folder = dir.join("abcdef");
        let file = folder.join("debug_info-1000-32-186a0");
        assert_eq!(
            fs::metadata(&folder).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let leftovers: Vec<_> = fs::read_dir(&folder).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");

        // Other compressed bytes (another build of the same file) do not match.
        let other = b"compressed stream bytes, more than sixteen of thex";
        assert!(cache
            .load(&super::tests::key(other, data.len() as u64))
            .is_none());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn short_or_damaged_files_are_ignored_and_replaced() {
        let dir = scratch("damaged");
        let cache = SectionCache::at(&dir, u64::MAX);
        let compressed = b"0123456789abcdef0123456789abcdef";
        let data = vec![7u8; 70_000];
        let key = key(compressed, data.len() as u64);
        cache.store(&key, &data).expect("stored");
        let file = dir.join("abcdef").join(key.file_name().unwrap());

        let full = fs::read(&file).unwrap();
        fs::write(&file, &full[..full.len() - 1]).unwrap();
        assert!(cache.load(&key).is_none(), "a short file is ignored");

        let mut damaged = full.clone();
        damaged[3] ^= 0xff;
        fs::write(&file, &damaged).unwrap();
        assert!(cache.load(&key).is_none(), "a damaged header is ignored");

        cache.store(&key, &data).expect("replaced");
        assert_eq!(fs::read(&file).unwrap(), full);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unwritable_folder_is_not_an_error() {
        let cache = SectionCache::at(Path::new("/proc/coresnap-cannot-be-here"), u64::MAX);
        let data = vec![1u8; 70_000];
        let compressed = b"x";
        let key = key(compressed, data.len() as u64);
        assert!(cache.store(&key, &data).is_none());
        assert!(cache.load(&key).is_none());
    }

    #[test]
    fn odd_section_names_and_missing_build_ids_are_not_cached() {
        let dir = scratch("names");
        let cache = SectionCache::at(&dir, u64::MAX);
        let data = vec![1u8; 70_000];
        let compressed = b"x";
        let mut key = key(compressed, data.len() as u64);
        key.name = "../../etc/passwd";
        assert!(cache.store(&key, &data).is_none());
        key.name = ".debug_info";
        key.build_id = &[];
        assert!(cache.store(&key, &data).is_none());
        assert!(!dir.exists());
    }

    #[test]
    fn the_files_used_longest_ago_go_first_when_the_cache_is_full() {
        let dir = scratch("bounded");
        let data = vec![3u8; 70_000];
        let file_len = (HEADER_LEN + data.len()) as u64;
        // Room for two files, not three.
        let cache = SectionCache::at(&dir, 2 * file_len + file_len / 2);
        // Streams of different lengths: the file name carries the compressed length.
        let streams: [&[u8]; 3] = [b"first", b"second", b"the third"];
        let keys: Vec<SectionKey<'_>> = streams.iter().map(|s| key(s, data.len() as u64)).collect();
        cache.store(&keys[0], &data).expect("first stored");
        cache.store(&keys[1], &data).expect("second stored");
        // Make the first one the older by a clear margin, then use it: it becomes the newer.
        let an_hour_ago = SystemTime::now() - std::time::Duration::from_secs(3600);
        for k in &keys[..2] {
            let path = cache.path_of(k).unwrap();
            File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(an_hour_ago)
                .unwrap();
        }
        assert!(cache.load(&keys[0]).is_some(), "a hit");
        cache.store(&keys[2], &data).expect("third stored");
        assert!(cache.load(&keys[0]).is_some(), "the file used last stays");
        assert!(
            cache.load(&keys[1]).is_none(),
            "the file used longest ago went"
        );
        assert!(
            cache.load(&keys[2]).is_some(),
            "the file just written stays"
        );

        // A bound smaller than one file keeps only the file just written.
        let tiny = SectionCache::at(&dir, 1);
        let fourth = key(b"the fourth one", data.len() as u64);
        tiny.store(&fourth, &data).expect("fourth stored");
        assert!(tiny.load(&fourth).is_some());
        assert!(tiny.load(&keys[0]).is_none() && tiny.load(&keys[2]).is_none());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sizes_read_with_suffixes() {
        assert_eq!(parse_size("1234"), Some(1234));
        assert_eq!(parse_size("64K"), Some(64 << 10));
        assert_eq!(parse_size(" 512m "), Some(512 << 20));
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size(""), None);
    }
}
