//! The committed fuzz seed corpus (`fuzz/corpus/vxlan_decap/`) holds the
//! packets its file names claim, so the fuzzer starts from valid VXLAN.

use vxlan::{Vni, VxlanError, decapsulate};

#[path = "../../fuzz/harness/corpus.rs"]
mod corpus;

fn seed(name: &str) -> Vec<u8> {
    corpus::Corpus::new(env!("CARGO_MANIFEST_DIR"), "vxlan_decap").read(name)
}

#[test]
fn seeds_decapsulate_as_named() {
    for (name, vni, ethertype) in [
        ("arp_vni42", 42, [0x08, 0x06]),
        ("ipv4_udp_vni5001", 5001, [0x08, 0x00]),
        ("ipv4_tcp_vlan_vni_max", Vni::MAX.get(), [0x81, 0x00]),
        ("ipv4_fragment_vni7", 7, [0x08, 0x00]),
        ("ipv6_tcp_hbh_vni1", 1, [0x86, 0xdd]),
        ("reserved_bits_set_vni0", 0, [0x08, 0x06]),
    ] {
        let bytes = seed(name);
        let (got, inner) = decapsulate(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got.get(), vni, "{name}");
        assert_eq!(inner[12..14], ethertype, "{name}");
    }
    assert_eq!(decapsulate(&seed("flag_not_set")), Err(VxlanError::FlagNotSet { flags: 0 }));
}
