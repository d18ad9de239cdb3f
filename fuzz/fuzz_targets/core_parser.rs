//! Feeds arbitrary bytes to the core parser, then walks every thread of what it parsed.
//! See fuzz/README.md.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    coresnap_fuzz::check_core_bytes(data);
});
