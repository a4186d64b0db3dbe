//! Self-tests of the etcd test support (`vswitch::Etcd`): a three-member
//! TLS cluster on addresses inside the test's namespaces becomes healthy and
//! serves writes, a client without a certificate is refused, and the cluster
//! keeps a quorum (health and writes) with one member killed, which comes
//! back on its data dir with the data written meanwhile. Needs root.

use vswitch::{Etcd, EtcdPlace, Underlay, require_root, text, wait_until};

fn places(u: &Underlay) -> Vec<EtcdPlace> {
    u.hosts().iter().map(EtcdPlace::from).collect()
}

#[test]
fn three_member_tls_cluster_is_healthy_and_refuses_clients_without_a_certificate() {
    if !require_root("three_member_tls_cluster_is_healthy_and_refuses_clients_without_a_certificate") {
        return;
    }
    let u = Underlay::new([10, 220, 1], 3);
    let etcd = Etcd::start(&places(&u), 3, true);
    assert_eq!(etcd.len(), 3);
    assert!(etcd.store_url().starts_with("etcd://10.220.1.1:2379,"), "{}", etcd.store_url());
    let health = etcd.etcdctl(&["endpoint", "health"]);
    assert!(health.status.success(), "endpoint health: {}", text(&health.stderr));
    let members = etcd.etcdctl(&["member", "list"]);
    assert_eq!(text(&members.stdout).lines().count(), 3, "member list: {}", text(&members.stdout));
    assert!(etcd.put("/t/k", "v1"), "a write through the TLS client failed");
    let got = etcd.etcdctl(&["get", "/t/k", "--print-value-only"]);
    assert_eq!(text(&got.stdout), "v1");

    // The same request with the CA (the server is trusted) but no client
    // certificate: the members require one (--client-cert-auth).
    let tls = etcd.tls().expect("TLS etcd");
    let mut args = vec![format!("--cacert={}", tls.ca.display())];
    args.extend(etcd.etcdctl_base(&[0]));
    args.extend(["get".to_owned(), "/t/k".to_owned()]);
    let refused = etcd.etcdctl_raw(etcd.place(0).ns.as_str(), &args);
    assert!(!refused.status.success(), "a client without a certificate was served: {}", text(&refused.stdout));
    assert!(!text(&refused.stdout).contains("v1"), "a client without a certificate read the value");
    // Plain HTTP to a TLS member is refused too.
    let mut plain = vec![format!("--endpoints=http://{}:2379", etcd.place(0).addr)];
    plain.extend(["--dial-timeout=2s".to_owned(), "--command-timeout=5s".to_owned(), "get".into(), "/t/k".into()]);
    let refused = etcd.etcdctl_raw(etcd.place(0).ns.as_str(), &plain);
    assert!(!refused.status.success(), "a plain-HTTP client was served: {}", text(&refused.stdout));
}

#[test]
fn a_three_member_cluster_survives_one_killed_member_and_takes_it_back() {
    if !require_root("a_three_member_cluster_survives_one_killed_member_and_takes_it_back") {
        return;
    }
    let u = Underlay::new([10, 220, 2], 3);
    let mut etcd = Etcd::start(&places(&u), 3, true);
    etcd.kill(2);
    assert!(!etcd.is_running(2));
    assert!(!etcd.member_healthy(2), "a killed member answers health");
    // The killed member may have led: the other two elect a leader first.
    for i in [0, 1] {
        wait_until(
            std::time::Duration::from_secs(30),
            || format!("member {i} healthy with one of three members killed"),
            || etcd.member_healthy(i).then_some(()),
        );
    }
    let out = etcd.etcdctl_at(&[0, 1], &["put", "/t/while-down", "yes"]);
    assert!(out.status.success(), "no quorum write with 2 of 3 members: {}", text(&out.stderr));

    // Back on its data dir, it catches up on what was written meanwhile.
    etcd.restart(2);
    let got = etcd.etcdctl_at(&[2], &["get", "/t/while-down", "--print-value-only", "--consistency=s"]);
    assert_eq!(text(&got.stdout), "yes", "restarted member did not catch up: {}", text(&got.stderr));

    // Two of three down: no quorum, writes fail (within the command timeout).
    etcd.kill(1);
    etcd.kill(2);
    let out = etcd.etcdctl_at(&[0], &["put", "/t/no-quorum", "x"]);
    assert!(!out.status.success(), "a write succeeded without a quorum");
    assert!(!etcd.member_healthy(0), "a member without a quorum reports healthy");
    etcd.restart_nowait(1);
    etcd.restart_nowait(2);
    etcd.wait_healthy(vswitch::etcd::READY_TIMEOUT);
    assert!(etcd.put("/t/after", "ok"), "no write after the majority came back");
}

#[test]
fn one_member_without_tls() {
    if !require_root("one_member_without_tls") {
        return;
    }
    let u = Underlay::new([10, 220, 3], 1);
    let etcd = Etcd::single(u.host(0), false);
    assert_eq!(etcd.client_urls(), vec!["http://10.220.3.1:2379".to_owned()]);
    assert!(etcd.vswitchd_args().contains(&"--cluster-insecure".to_owned()));
    assert!(etcd.put("/t/k", "v"), "write to a plain member failed");
}
