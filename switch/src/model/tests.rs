//! Tests of the model's rules, IPAM, persistence and invariants.

mod config_networks;
mod endpoints;
mod impair;
mod ipv6;
mod networks;
mod prop;
mod publish;
mod store;

use std::net::Ipv4Addr;

use ctl::proto::Driver;
use ctl::{Ipv4Net, MacAddr};

use super::*;

/// Parses a prefix literal.
fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

/// Shorthand for an IPv4 literal.
fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// The model's serialized form, for byte-identical comparisons.
fn snapshot(m: &Model) -> String {
    serde_json::to_string(m).unwrap()
}

/// A bridge network request with an explicit subnet.
fn bridge(name: &str, subnet: &str) -> CreateNetwork {
    CreateNetwork { subnet: Some(net(subnet)), ..CreateNetwork::new(name, Driver::Bridge) }
}

/// A model with networks `a` (10.1.0.0/24), `b` (10.2.0.0/24) and sandboxes `s1`, `s2`.
fn populated() -> Model {
    let mut m = Model::new();
    m.create_network(bridge("a", "10.1.0.0/24")).unwrap();
    m.create_network(bridge("b", "10.2.0.0/24")).unwrap();
    m.create_sandbox(CreateSandbox::new("s1")).unwrap();
    m.create_sandbox(CreateSandbox::new("s2")).unwrap();
    m
}

/// Asserts `r` is an error whose message contains every one of `needles`,
/// and that `m` is byte-identical to `before`.
#[track_caller]
fn assert_refused<T: std::fmt::Debug>(m: &Model, before: &str, r: Result<T, ModelError>, needles: &[&str]) {
    let msg = r.unwrap_err().to_string();
    for n in needles {
        assert!(msg.contains(n), "message {msg:?} lacks {n:?}");
    }
    assert_eq!(snapshot(m), before, "refused request ({msg}) changed the model");
    m.check_invariants().unwrap();
}
