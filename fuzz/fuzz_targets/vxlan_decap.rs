//! Fuzzes VXLAN decapsulation and inner-flow hashing on arbitrary UDP payloads.
//!
//! Beyond "never panics", checks that whatever decapsulates re-encapsulates to
//! a packet that decapsulates to the same VNI and inner frame.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vxlan::{DEFAULT_SOURCE_PORTS, HEADER_LEN, decapsulate, encapsulate_into, flow_hash, source_port};

fuzz_target!(|data: &[u8]| {
    // The whole input as an inner frame, too: flow_hash must cope with anything.
    let _ = flow_hash(data);
    let Ok((vni, inner)) = decapsulate(data) else {
        return;
    };
    let hash = flow_hash(inner);
    assert_eq!(hash, flow_hash(inner), "flow_hash is not deterministic");
    assert!(DEFAULT_SOURCE_PORTS.contains(&source_port(hash, DEFAULT_SOURCE_PORTS)));

    let mut out = vec![0u8; HEADER_LEN + inner.len()];
    let n = encapsulate_into(vni, inner, &mut out).expect("a decapsulated frame re-encapsulates");
    assert_eq!(n, out.len());
    assert_eq!(decapsulate(&out), Ok((vni, inner)));
});
