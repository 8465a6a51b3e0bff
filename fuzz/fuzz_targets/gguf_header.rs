//! Structure-aware GGUF files: the input decodes to a header spec (`header::HeaderSpec`), which is
//! serialized into GGUF bytes and checked like any file (`check::check_bytes`).
#![no_main]

use gguf_fuzz::header::HeaderSpec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let bytes = HeaderSpec::draw(data).to_bytes();
    gguf_fuzz::check::check_bytes(&bytes);
});
