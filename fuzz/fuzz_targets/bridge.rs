//! Fuzzes the learning bridge and the frame parsers with arbitrary programs
//! of frames on arbitrary ports and networks, time passing and
//! configuration changes; see `fuzz/harness/bridge.rs` for the input format
//! and every invariant checked (never back out of the ingress port, never
//! across networks, tables within their limits, counters consistent, ...).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../harness/bridge.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    harness::run(data);
});
