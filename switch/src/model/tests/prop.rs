//! Property: random connect/disconnect sequences never hand out an address
//! twice on a network, nor a gateway, network or broadcast address, and
//! refused operations change nothing.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Op {
    Connect { net: usize, sandbox: usize, host: Option<u8> },
    Disconnect { net: usize, sandbox: usize },
    RemoveSandbox { sandbox: usize },
}

const NETS: [(&str, &str, &str); 2] = [("small", "10.50.0.0/29", "10.50.0.3"), ("mid", "10.60.0.0/28", "10.60.0.1")];
const SANDBOXES: usize = 8;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..NETS.len(), 0..SANDBOXES, proptest::option::of(0u8..16))
            .prop_map(|(net, sandbox, host)| Op::Connect { net, sandbox, host }),
        3 => (0..NETS.len(), 0..SANDBOXES).prop_map(|(net, sandbox)| Op::Disconnect { net, sandbox }),
        1 => (0..SANDBOXES).prop_map(|sandbox| Op::RemoveSandbox { sandbox }),
    ]
}

proptest! {
    #[test]
    fn addresses_are_never_handed_out_twice(ops in proptest::collection::vec(op(), 1..80)) {
        let mut m = Model::new();
        for (name, subnet, gw) in NETS {
            m.create_network(CreateNetwork { subnet: Some(net(subnet)), gateway: Some(ip(gw)), ..CreateNetwork::new(name, Driver::Bridge) }).unwrap();
        }
        for op in ops {
            let sb = |i: usize| format!("s{i}");
            if let Op::Connect { sandbox, .. } | Op::Disconnect { sandbox, .. } = op {
                let _ = m.create_sandbox(CreateSandbox::new(sb(sandbox)));
            }
            let before = m.clone();
            let res = match op {
                Op::Connect { net: n, sandbox, host } => {
                    let base = u32::from(net(NETS[n].1).network());
                    let ipv4 = host.map(|h| std::net::Ipv4Addr::from(base + u32::from(h)));
                    m.connect(Connect { ipv4, ..Connect::new(NETS[n].0, sb(sandbox)) }).map(|e| {
                        if ipv4.is_none() {
                            // Auto allocation takes the lowest free host address.
                            let s = before.network(NETS[n].0).unwrap();
                            let used: BTreeSet<_> = before.endpoints_on_network(&s.id).iter().filter_map(|e| e.ipv4).collect();
                            let sub = s.subnet.unwrap();
                            let lowest = (u32::from(sub.network()) + 1..u32::from(sub.broadcast()))
                                .map(std::net::Ipv4Addr::from)
                                .find(|a| Some(*a) != s.gateway && !used.contains(a));
                            assert_eq!(e.ipv4, lowest);
                        }
                    })
                }
                Op::Disconnect { net: n, sandbox } => m.disconnect(NETS[n].0, &sb(sandbox)).map(drop),
                Op::RemoveSandbox { sandbox } => m.remove_sandbox(&sb(sandbox)).map(drop),
            };
            if res.is_err() {
                prop_assert_eq!(snapshot(&m), snapshot(&before));
            }
            prop_assert_eq!(m.check_invariants(), Ok(()));
            for (name, subnet, gw) in NETS {
                let n = m.network(name).unwrap();
                let sub = net(subnet);
                let mut seen = BTreeSet::new();
                for e in m.endpoints_on_network(&n.id) {
                    let Some(a) = e.ipv4 else { prop_assert!(false, "an IPv4 network's endpoint has no IPv4"); continue };
                    prop_assert!(seen.insert(a), "{} handed out twice", a);
                    prop_assert!(sub.contains(&a));
                    prop_assert!(a != ip(gw) && a != sub.network() && a != sub.broadcast(), "{} is reserved", a);
                }
            }
        }
    }
}
