//! Chat templates: the committed templates with a conversation drawn from the input, or the input
//! as a template source of its own, as a hostile GGUF file could carry (`template::check_input`):
//! rendering ends in `Ok` or a `ChatError`, never in a panic, and within the time limit.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    gguf_fuzz::template::check_input(data);
});
