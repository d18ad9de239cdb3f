//! Facts about the machine the snapshot is made on (hostname, uname).

use std::ffi::CStr;

/// `uname(2)` fields, as the SDKs name them in attributes.
pub struct Uname {
    pub sysname: String,
    pub release: String,
    pub version: String,
    pub machine: String,
}

pub fn uname() -> Option<Uname> {
    // SAFETY: utsname is plain old data; uname fills it with NUL-terminated strings.
    let mut buf: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut buf) } != 0 {
        return None;
    }
    let field = |f: &[libc::c_char]| -> String {
        // SAFETY: the kernel NUL-terminates every utsname field within its array.
        unsafe { CStr::from_ptr(f.as_ptr()) }.to_string_lossy().into_owned()
    };
    Some(Uname {
        sysname: field(&buf.sysname),
        release: field(&buf.release),
        version: field(&buf.version),
        machine: field(&buf.machine),
    })
}

pub fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..end]).into_owned())
}
