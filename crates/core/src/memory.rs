//! Where the bytes of the process's address space come from: the core's `PT_LOAD` segments or a
//! live process's `/proc/pid/mem`, and, for what those lack, the mapped files on disk.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use memmap2::Mmap;

/// The bytes of a core file.
pub(crate) enum CoreBytes {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl CoreBytes {
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            CoreBytes::Mapped(map) => map,
            CoreBytes::Owned(bytes) => bytes,
        }
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
            let data = bytes.as_slice();
            let mut done = 0usize;
            while done < buf.len() {
                let Some(address) = avma.checked_add(done as u64) else {
                    return false;
                };
                let rest = &mut buf[done..];
                let n = read_core_piece(data, segments, files, address, rest, use_files);
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
    data: &[u8],
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
                let Some(source) = from.checked_add(n).and_then(|to| data.get(from..to)) else {
                    return 0;
                };
                out[..n].copy_from_slice(source);
                return n;
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
