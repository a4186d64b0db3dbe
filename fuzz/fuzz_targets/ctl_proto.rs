//! Fuzzes the ctl protocol's decoders (request lines, response lines, reply
//! payloads, and the text forms of ports, CIDRs, MACs and drivers) on
//! arbitrary bytes: never panics, and what decodes round-trips; see
//! `fuzz/harness/ctl_proto.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../harness/ctl_proto.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    harness::run(data);
});
