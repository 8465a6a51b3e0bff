//! Any bytes as a GGUF file: parse, then use the file as a loader would (`check::check_bytes`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    gguf_fuzz::check::check_bytes(data);
});
