//! Where the bytes of the process's address space come from: the core's `PT_LOAD` segments or a
//! live process's `/proc/pid/mem`, and, for what those lack, the mapped files on disk.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use memmap2::Mmap;

/// The bytes of a core file.
pub(crate) enum CoreBytes {
    /// The core mapped for its headers and notes, and open for reading the process's memory
    /// through a few pages of cache (see [`PageCache`]).
    Mapped(Mmap, PageCache),
    Owned(Vec<u8>),
}

impl CoreBytes {
    /// A core file mapped from `file`.
    pub(crate) fn mapped(map: Mmap, file: File) -> CoreBytes {
        CoreBytes::Mapped(map, PageCache::new(file))
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            CoreBytes::Mapped(map, _) => map,
            CoreBytes::Owned(bytes) => bytes,
        }
    }

    /// Copies the core's bytes at `offset` into `out`; false if any is missing.
    fn copy_at(&self, offset: usize, out: &mut [u8]) -> bool {
        match self {
            CoreBytes::Mapped(_, pages) => pages.read_exact_at(offset as u64, out),
            CoreBytes::Owned(bytes) => match offset
                .checked_add(out.len())
                .and_then(|end| bytes.get(offset..end))
            {
                Some(source) => {
                    out.copy_from_slice(source);
                    true
                }
                None => false,
            },
        }
    }
}

/// How many bytes one cached page of the core holds.
const PAGE: usize = 4096;
/// How many pages are kept: the stacks being walked and the code around their return
/// addresses fit many times over.
const PAGES: usize = 64;

/// Pages of the core file read with `pread`, for the process's memory.
///
/// Reading memory straight from the map would do as well, but every first touch of a mapped
/// file page makes the kernel map its neighbours too (fault-around, 64 KiB), and all of it
/// counts as this process's memory: 200 thread stacks cost 13 MB that way. Reads here copy
/// only what is asked from a handful of pages.
pub(crate) struct PageCache {
    file: File,
    slots: std::sync::Mutex<Slots>,
}

struct Slots {
    /// `(page number in the file, bytes of it that exist)`; the same index in `bytes`.
    pages: Vec<(u64, usize)>,
    bytes: Vec<Box<[u8; PAGE]>>,
    /// The slot the next miss replaces, round robin.
    next: usize,
    /// The slot read last.
    last: usize,
}

impl PageCache {
    fn new(file: File) -> PageCache {
        PageCache {
            file,
            slots: std::sync::Mutex::new(Slots {
                pages: Vec::new(),
                bytes: Vec::new(),
                next: 0,
                last: 0,
            }),
        }
    }

    fn read_exact_at(&self, offset: u64, out: &mut [u8]) -> bool {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut done = 0usize;
        while done < out.len() {
            let Some(at) = offset.checked_add(done as u64) else {
                return false;
            };
            let page = at / PAGE as u64;
            let within = (at % PAGE as u64) as usize;
            let Some(slot) = slots.find_or_load(&self.file, page) else {
                return false;
            };
            let (Some(&(_, valid)), Some(bytes)) = (slots.pages.get(slot), slots.bytes.get(slot))
            else {
                return false;
            };
            if within >= valid {
                return false;
            }
            let n = (out.len() - done).min(valid - within);
            out[done..done + n].copy_from_slice(&bytes[within..within + n]);
            done += n;
        }
        true
    }
}

impl Slots {
    fn find_or_load(&mut self, file: &File, page: u64) -> Option<usize> {
        // Reads come in runs on one page (a stack, then the code it returns to).
        if self.pages.get(self.last).is_some_and(|&(p, _)| p == page) {
            return Some(self.last);
        }
        if let Some(slot) = self.pages.iter().position(|&(p, _)| p == page) {
            self.last = slot;
            return Some(slot);
        }
        let slot = if self.pages.len() < PAGES {
            self.pages.push((u64::MAX, 0));
            self.bytes.push(Box::new([0u8; PAGE]));
            self.pages.len() - 1
        } else {
            let slot = self.next % PAGES;
            self.next = slot + 1;
            slot
        };
        let start = page.checked_mul(PAGE as u64)?;
        let buffer = self.bytes.get_mut(slot)?;
        let mut valid = 0usize;
        while valid < PAGE {
            let Some(at) = start.checked_add(valid as u64) else {
                break;
            };
            match file.read_at(&mut buffer[valid..], at) {
                Ok(0) => break,
                Ok(n) => valid += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        *self.pages.get_mut(slot)? = (page, valid);
        self.last = slot;
        Some(slot)
    }
}

/// One `PT_LOAD` segment of a core: `[start, end)` in the process, of which the first
/// `data_len` bytes are in the core at `data_offset` (fewer than `p_filesz` when the core file
/// was cut short; none when the kernel left the pages out).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Segment {
    pub start: u64,
    pub end: u64,
    pub data_offset: u64,
    pub data_len: u64,
    pub flags: u32,
}

pub(crate) enum MemorySource {
    Core {
        bytes: CoreBytes,
        /// Sorted by start.
        segments: Vec<Segment>,
    },
    /// `/proc/<pid>/mem` of a stopped process.
    Live(File),
}

/// Ranges of the address space backed by files on disk, for pages the core left out.
#[derive(Default)]
pub(crate) struct FileBacking {
    /// Sorted by start, non-overlapping.
    ranges: Vec<FileRange>,
    files: Vec<LazyFile>,
}

struct FileRange {
    start: u64,
    end: u64,
    file_offset: u64,
    file: usize,
}

struct LazyFile {
    path: PathBuf,
    /// Mapped on first use; `None` when the file cannot be opened or mapped.
    map: OnceLock<Option<Mmap>>,
}

impl FileBacking {
    /// `ranges`: `(start, end, file offset, path on this machine)`, sorted by start and
    /// non-overlapping.
    pub(crate) fn new(ranges: impl IntoIterator<Item = (u64, u64, u64, PathBuf)>) -> FileBacking {
        let mut backing = FileBacking::default();
        for (start, end, file_offset, path) in ranges {
            let file = match backing.files.iter().position(|f| f.path == path) {
                Some(index) => index,
                None => {
                    backing.files.push(LazyFile {
                        path,
                        map: OnceLock::new(),
                    });
                    backing.files.len() - 1
                }
            };
            backing.ranges.push(FileRange {
                start,
                end,
                file_offset,
                file,
            });
        }
        backing
    }

    /// Copies what the file backing `avma` holds into `out`; returns how many bytes (0: none).
    fn read(&self, avma: u64, out: &mut [u8]) -> usize {
        let index = self.ranges.partition_point(|r| r.start <= avma);
        let Some(range) = index.checked_sub(1).and_then(|i| self.ranges.get(i)) else {
            return 0;
        };
        if avma >= range.end {
            return 0;
        }
        let Some(file) = self.files.get(range.file) else {
            return 0;
        };
        let Some(map) = file.map.get_or_init(|| map_file(&file.path)) else {
            return 0;
        };
        let Some(offset) = range
            .file_offset
            .checked_add(avma - range.start)
            .and_then(|o| usize::try_from(o).ok())
        else {
            return 0;
        };
        let Some(available) = map.get(offset..) else {
            return 0;
        };
        let in_range = usize::try_from(range.end - avma).unwrap_or(usize::MAX);
        let n = out.len().min(available.len()).min(in_range);
        out[..n].copy_from_slice(&available[..n]);
        n
    }
}

fn map_file(path: &std::path::Path) -> Option<Mmap> {
    let file = File::open(path).ok()?;
    if file.metadata().ok()?.len() == 0 {
        return None;
    }
    // SAFETY: the file is opened read-only; like every debugger we accept that a file changed
    // on disk while mapped gives wrong bytes.
    unsafe { Mmap::map(&file) }.ok()
}

/// Reads `buf.len()` bytes at `avma`; true only if every byte was read.
pub(crate) fn read(
    memory: &MemorySource,
    files: &FileBacking,
    avma: u64,
    buf: &mut [u8],
    use_files: bool,
) -> bool {
    match memory {
        MemorySource::Live(mem) => {
            if buf.is_empty() {
                return true;
            }
            if avma.checked_add(buf.len() as u64 - 1).is_none() {
                return false;
            }
            mem.read_exact_at(buf, avma).is_ok()
        }
        MemorySource::Core { bytes, segments } => {
            let mut done = 0usize;
            while done < buf.len() {
                let Some(address) = avma.checked_add(done as u64) else {
                    return false;
                };
                let rest = &mut buf[done..];
                let n = read_core_piece(bytes, segments, files, address, rest, use_files);
                if n == 0 {
                    return false;
                }
                done += n;
            }
            true
        }
    }
}

fn read_core_piece(
    data: &CoreBytes,
    segments: &[Segment],
    files: &FileBacking,
    address: u64,
    out: &mut [u8],
    use_files: bool,
) -> usize {
    let index = segments.partition_point(|s| s.start <= address);
    if let Some(segment) = index.checked_sub(1).and_then(|i| segments.get(i)) {
        if address < segment.end {
            let relative = address - segment.start;
            if relative < segment.data_len {
                let n = (out.len() as u64).min(segment.data_len - relative) as usize;
                let Some(from) = segment
                    .data_offset
                    .checked_add(relative)
                    .and_then(|o| usize::try_from(o).ok())
                else {
                    return 0;
                };
                return if data.copy_at(from, &mut out[..n]) {
                    n
                } else {
                    0
                };
            }
            if !use_files {
                return 0;
            }
            let n = (out.len() as u64).min(segment.end - address) as usize;
            return files.read(address, &mut out[..n]);
        }
    }
    if !use_files {
        return 0;
    }
    // Outside every segment (only a rebuilt mapping reaches past the core): stop at the next
    // segment, which takes precedence.
    let limit = segments
        .get(index)
        .map(|next| next.start - address)
        .unwrap_or(u64::MAX);
    let n = (out.len() as u64).min(limit) as usize;
    files.read(address, &mut out[..n])
}

/// A NUL-terminated string of at most `max_len` bytes, read page by page so that a string
/// ending just before unreadable memory is still found.
pub(crate) fn read_c_string(
    read: impl Fn(u64, &mut [u8]) -> bool,
    avma: u64,
    max_len: usize,
) -> Option<String> {
    const CHUNK: u64 = 256;
    let mut bytes = Vec::new();
    let mut address = avma;
    while bytes.len() < max_len {
        // Do not cross a 256-byte boundary in one read: the next page may be unmapped.
        let chunk_len = (CHUNK - address % CHUNK).min((max_len - bytes.len()) as u64) as usize;
        let mut chunk = [0u8; CHUNK as usize];
        let chunk = &mut chunk[..chunk_len];
        if !read(address, chunk) {
            return None;
        }
        if let Some(end) = chunk.iter().position(|&b| b == 0) {
            bytes.extend_from_slice(&chunk[..end]);
            return Some(String::from_utf8_lossy(&bytes).into_owned());
        }
        bytes.extend_from_slice(chunk);
        address = address.checked_add(chunk_len as u64)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_page_cache_reads_what_the_file_holds() {
        let path = std::env::temp_dir().join(format!("coresnap-pages-{}", std::process::id()));
        // Not a whole number of pages, so the last one is short.
        let contents: Vec<u8> = (0..(PAGE * (PAGES + 7) + 123))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        File::create(&path)
            .and_then(|mut f| f.write_all(&contents))
            .expect("write the scratch file");
        let pages = PageCache::new(File::open(&path).expect("open the scratch file"));
        let _ = std::fs::remove_file(&path);

        // Across page boundaries, then enough pages to evict the first ones, then back.
        for &(offset, len) in &[
            (0usize, 16usize),
            (PAGE - 3, 8),
            (5 * PAGE - 100, 3 * PAGE),
            (0, PAGE * (PAGES + 7)),
            (17, 40),
            (contents.len() - 123, 123),
        ] {
            let mut out = vec![0u8; len];
            assert!(
                pages.read_exact_at(offset as u64, &mut out),
                "{offset:#x}+{len}"
            );
            assert_eq!(out, contents[offset..offset + len], "{offset:#x}+{len}");
        }
        // Past the end, or running over it: refused, not padded.
        let mut out = [0u8; 8];
        assert!(!pages.read_exact_at(contents.len() as u64 - 4, &mut out));
        assert!(!pages.read_exact_at(contents.len() as u64 + PAGE as u64, &mut out));
        assert!(!pages.read_exact_at(u64::MAX - 2, &mut out));
    }
}
