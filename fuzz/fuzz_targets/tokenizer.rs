//! Any bytes as tokenizer input: the first byte picks a vocabulary and the `encode` flags, the
//! rest is the text (`tokenize::check_input`): encoding never panics, ids are in the
//! vocabulary, and decoding gives the text back wherever llama.cpp does.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    gguf_fuzz::tokenize::check_input(data);
});
