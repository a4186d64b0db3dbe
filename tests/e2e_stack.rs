//! Stack files end to end: `vswitchctl apply -f FILE` creates networks,
//! sandboxes, connections and published ports as one transaction; a file
//! with an error, or a step that fails on the host, applies nothing;
//! applying twice changes nothing; `export` → `apply` reproduces the state
//! on a second daemon; an encrypted overlay with its options comes from a
//! file; a dual-stack and an IPv6-only network come from a file, their
//! sandboxes talk over IPv6, and their IPv6 addresses survive export →
//! apply; `kill -9` in the middle of an apply leaves the old
//! state or the new one, never a mix, and leaks no namespace or device.
//! Needs root.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ctl::proto::{NetworkSummary, SandboxInfo};
use vswitch::{Binaries, Daemon, link_names, require_root, wait_for_ping, wait_until};

const PREDEFINED: [&str; 3] = ["bridge", "host", "none"];

/// A host port free right now on 127.0.0.1, never handed to another test
/// of this binary (they run in parallel, and each publishes its port some
/// time after this probe let it go).
fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<BTreeSet<u16>> = std::sync::Mutex::new(BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind 127.0.0.1:0").port();
        if GIVEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(port) {
            return port;
        }
    }
}

/// Writes `text` as `NAME` in the daemon's temp dir and returns the path.
fn write_file(d: &Daemon, name: &str, text: &str) -> String {
    let path = d.state_dir().with_file_name(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path.display().to_string()
}

fn state(d: &Daemon) -> Vec<u8> {
    std::fs::read(d.state_dir().join("state.json")).expect("state.json")
}

fn network_names(d: &Daemon) -> BTreeSet<String> {
    d.ctl_json::<Vec<NetworkSummary>>(&["network", "ls"]).into_iter().map(|n| n.name).collect()
}

fn sandboxes(d: &Daemon) -> Vec<SandboxInfo> {
    d.ctl_json(&["sandbox", "ls"])
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// The address of `sandbox`'s endpoint on `network`.
fn address(d: &Daemon, sandbox: &str, network: &str) -> Ipv4Addr {
    let infos: Vec<SandboxInfo> = d.ctl_json(&["sandbox", "inspect", sandbox]);
    let info = infos.into_iter().next().unwrap_or_else(|| panic!("no sandbox {sandbox}"));
    let e =
        info.endpoints.iter().find(|e| e.network == network).unwrap_or_else(|| panic!("{sandbox} not on {network}"));
    e.ipv4.expect("address").addr()
}

/// The good stack of these tests: two networks (one internal), a sandbox on
/// both with a fixed address, an alias and a published port, and a sandbox
/// on the internal one.
fn good_stack(p: &str, port: u16) -> String {
    format!(
        "networks:
  {p}front:
    ipam:
      config:
        - subnet: 10.231.1.0/24
  {p}back:
    internal: true
    driver_opts:
      com.docker.network.driver.mtu: 1400
    ipam:
      config:
        - subnet: 10.231.2.0/24
sandboxes:
  {p}web:
    dns_search: [example.com]
    networks:
      {p}front:
        ipv4_address: 10.231.1.10
        aliases: [api]
      {p}back:
    ports:
      - \"127.0.0.1:{port}:80\"
  {p}db:
    networks:
      {p}back:
        ipv4_address: 10.231.2.20
"
    )
}

#[test]
fn a_stack_with_an_error_applies_nothing() {
    if !require_root("a_stack_with_an_error_applies_nothing") {
        return;
    }
    let d = Daemon::start();
    let p = d.prefix().to_owned();
    let before = state(&d);

    // The last network overlaps the first: refused before anything is made.
    let good = good_stack(&p, free_port());
    let (networks, rest) = good.split_once("sandboxes:\n").unwrap();
    let bad =
        format!("{networks}  {p}last:\n    ipam:\n      config:\n        - subnet: 10.231.0.0/23\nsandboxes:\n{rest}");
    let line = bad.lines().position(|l| l.contains("10.231.0.0/23")).unwrap() + 1;
    let path = write_file(&d, "bad.yaml", &bad);
    let err = d.ctl_err(&["apply", "-f", &path]);
    let want = format!(
        "{path}:{line}: networks.{p}last.ipam.config[0].subnet: subnet 10.231.0.0/23 overlaps network {p}front (10.231.1.0/24)"
    );
    assert!(err.contains(&want), "want {want:?} in {err}");
    assert_eq!(state(&d), before, "the state file changed");
    assert_eq!(network_names(&d), names(&PREDEFINED));
    assert!(d.leftover_netns().is_empty(), "namespaces made: {:?}", d.leftover_netns());

    // A step that fails on the host (the host port is taken) after
    // namespaces and devices were made: all of it is undone, including a new
    // connection of a sandbox that existed before and the recreation of its
    // old one (a new address: torn down, then plumbed back).
    let old = d.name("old");
    d.network_create(&d.name("oldnet"), "10.231.7.0/24");
    d.sandbox_create(&old);
    d.connect(&d.name("oldnet"), &old, None);
    let before = state(&d);
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let good = good_stack(&p, port);
    let (networks, rest) = good.split_once("sandboxes:\n").unwrap();
    let file = format!(
        "{networks}  {p}oldnet:\n    external: true\nsandboxes:\n  {old}:\n    networks:\n      {p}oldnet:\n        \
         ipv4_address: 10.231.7.50\n      {p}front:\n{rest}"
    );
    let path = write_file(&d, "taken.yaml", &file);
    let err = d.ctl_err(&["apply", "-f", &path]);
    let line = file.lines().position(|l| l.contains(&format!("127.0.0.1:{port}:80"))).unwrap() + 1;
    let want = format!("{path}:{line}: sandboxes.{p}web.ports: host port 127.0.0.1:{port}/tcp is already in use");
    assert!(err.contains(&want) && err.contains("nothing was applied"), "want {want:?} in {err}");
    assert_eq!(state(&d), before, "the state file changed");
    assert_eq!(network_names(&d), names(&[&PREDEFINED[..], &[d.name("oldnet").as_str()]].concat()));
    assert_eq!(d.leftover_netns(), vec![old.clone()], "namespaces left behind");
    let mut links = link_names(&old);
    links.sort();
    assert_eq!(links, ["eth0", "lo"], "the new connection's device was left in {old}");
    assert_eq!(vswitch::ipv4_addrs(&old, "eth0"), ["10.231.7.2/24"], "{old}'s old endpoint is not back");
    let gateway = Ipv4Addr::new(10, 231, 7, 1);
    assert!(wait_for_ping(&old, gateway, Duration::from_secs(10)).is_some(), "{old} lost its network");
    drop(taken);
}

#[test]
fn a_good_stack_creates_everything_and_applying_it_again_changes_nothing() {
    if !require_root("a_good_stack_creates_everything_and_applying_it_again_changes_nothing") {
        return;
    }
    let d = Daemon::start();
    let p = d.prefix().to_owned();
    let port = free_port();
    let path = write_file(&d, "stack.yaml", &good_stack(&p, port));
    let (web, db, front, back) = (d.name("web"), d.name("db"), d.name("front"), d.name("back"));

    let before = state(&d);
    let plan = d.ctl_ok(&["apply", "-f", &path, "--dry-run"]);
    assert!(
        plan.contains(&format!("network {front}: would be created (subnet 10.231.1.0/24, gateway 10.231.1.1)")),
        "{plan}"
    );
    assert!(
        plan.contains(&format!(
            "sandbox {web}: would be created (eth0 on {front}: 10.231.1.10; eth1 on {back}: 10.231.2."
        )),
        "{plan}"
    );
    assert!(plan.ends_with("dry run: 4 to create, 0 to change, 0 unchanged; nothing was applied\n"), "{plan}");
    assert_eq!(state(&d), before, "a dry run changed the state");
    assert!(d.leftover_netns().is_empty());

    let out = d.ctl_ok(&["apply", "-f", &path]);
    for line in [
        format!("network {front}: created (subnet 10.231.1.0/24, gateway 10.231.1.1)"),
        format!("network {back}: created (subnet 10.231.2.0/24, gateway 10.231.2.1)"),
        format!("sandbox {web}: created (eth0 on {front}: 10.231.1.10; eth1 on {back}: 10.231.2.2)"),
        format!("sandbox {db}: created (eth0 on {back}: 10.231.2.20)"),
        "applied: 4 created, 0 changed, 0 unchanged".to_owned(),
    ] {
        assert!(out.lines().any(|l| l == line), "no {line:?} in {out}");
    }
    d.remember_ports();
    assert!(network_names(&d).is_superset(&names(&[&front, &back])));
    let mut made = d.leftover_netns();
    made.sort();
    assert_eq!(made, [db.clone(), web.clone()]);
    let info: Vec<SandboxInfo> = sandboxes(&d);
    let w = info.iter().find(|s| s.name == web).expect("web");
    assert_eq!(w.dns_search, ["example.com"]);
    let eth0 = &w.endpoints.iter().find(|e| e.network == front).expect("web on front");
    assert_eq!((eth0.ifname.as_str(), eth0.ipv4.map(|n| n.addr())), ("eth0", Some(Ipv4Addr::new(10, 231, 1, 10))));
    assert_eq!(eth0.aliases, ["api"]);
    let shown: Vec<String> = eth0.publish.iter().map(ToString::to_string).collect();
    assert_eq!(shown, [format!("127.0.0.1:{port}:80/tcp")]);
    let on_back = w.endpoints.iter().find(|e| e.network == back).expect("web on back");
    assert_eq!(vswitch::link_info(&web, &on_back.ifname).expect("eth1")["mtu"], 1400);
    // Connectivity between the two sandboxes apply made, and to the gateway.
    let db_ip = Ipv4Addr::new(10, 231, 2, 20);
    assert!(wait_for_ping(&web, db_ip, Duration::from_secs(10)).is_some(), "{web} cannot reach {db}");
    assert!(wait_for_ping(&db, address(&d, &web, &back), Duration::from_secs(10)).is_some(), "{db} cannot reach {web}");
    assert!(
        wait_for_ping(&web, Ipv4Addr::new(10, 231, 1, 1), Duration::from_secs(10)).is_some(),
        "{web} cannot reach its gateway"
    );

    // Again: nothing changes, not even the state file.
    let saved = state(&d);
    let out = d.ctl_ok(&["apply", "-f", &path]);
    assert!(out.ends_with("\nunchanged\n"), "{out}");
    assert_eq!(out.lines().filter(|l| l.ends_with(": unchanged")).count(), 4, "{out}");
    assert_eq!(state(&d), saved, "applying the same file changed the state");

    // In place: another alias, a second connection, a port moved off the sandbox.
    let changed = good_stack(&p, port)
        .replace("aliases: [api]", "aliases: [api, www]")
        .replace(
            &format!("      {back}:\n        ipv4_address: 10.231.2.20\n"),
            &format!(
                "      {back}:\n        ipv4_address: 10.231.2.20\n      {front}:\n        ipv4_address: 10.231.1.20\n"
            ),
        )
        .replace(&format!("    ports:\n      - \"127.0.0.1:{port}:80\"\n"), "");
    let path2 = write_file(&d, "changed.yaml", &changed);
    let out = d.ctl_ok(&["apply", "-f", &path2]);
    let want_web = format!("sandbox {web}: changed (aliases on {front}; unpublished 127.0.0.1:{port}:80 on {front})");
    let want_db = format!("sandbox {db}: changed (connected to {front} (10.231.1.20))");
    assert!(out.contains(&want_web) && out.contains(&want_db), "want {want_web:?} and {want_db:?} in {out}");
    assert!(out.ends_with("applied: 0 created, 2 changed, 2 unchanged\n"), "{out}");
    d.remember_ports();
    assert!(
        wait_for_ping(&db, Ipv4Addr::new(10, 231, 1, 10), Duration::from_secs(10)).is_some(),
        "{db} cannot reach {web} on {front}"
    );
    let w: Vec<SandboxInfo> = sandboxes(&d);
    let w = w.iter().find(|s| s.name == web).unwrap();
    assert!(w.endpoints.iter().all(|e| e.publish.is_empty()), "{w:?}");
    assert!(d.ctl_ok(&["apply", "-f", &path2]).ends_with("\nunchanged\n"));

    // A sandbox listing fewer networks is disconnected from the others; a
    // changed address recreates the endpoint.
    let fewer = changed
        .replace("ipv4_address: 10.231.1.10", "ipv4_address: 10.231.1.11")
        .replace(&format!("      {back}:\n  {db}:"), &format!("  {db}:"));
    let path3 = write_file(&d, "fewer.yaml", &fewer);
    let out = d.ctl_ok(&["apply", "-f", &path3]);
    assert!(out.contains(&format!("disconnected from {back}")), "{out}");
    assert!(out.contains(&format!("reconnected to {front} (ipv4_address 10.231.1.10 → 10.231.1.11)")), "{out}");
    d.remember_ports();
    let mut links = link_names(&web);
    links.sort();
    assert_eq!(links, ["eth0", "lo"]);
    assert!(
        wait_for_ping(&db, Ipv4Addr::new(10, 231, 1, 11), Duration::from_secs(10)).is_some(),
        "{db} cannot reach {web}'s new address"
    );
    assert!(d.ctl_ok(&["apply", "-f", &path3]).ends_with("\nunchanged\n"));
}

#[test]
fn export_then_apply_reproduces_the_state_on_a_second_daemon() {
    if !require_root("export_then_apply_reproduces_the_state_on_a_second_daemon") {
        return;
    }
    let d1 = Daemon::start();
    let p = d1.prefix().to_owned();
    let (port, lb_port) = (free_port(), free_port());
    let file = good_stack(&p, port)
        .replace("        aliases: [api]\n", "        aliases: [api]\n        service: lb\n")
        + &format!("services:\n  lb:\n    network: {p}front\n    ports: [\"127.0.0.1:{lb_port}:8080\"]\n");
    d1.ctl_ok(&["apply", "-f", &write_file(&d1, "stack.yaml", &file)]);
    // Made by hand, not by the file: export has them too.
    d1.ctl_ok(&["network", "create", &d1.name("ov"), "-d", "overlay", "--attachable", "-o", "mss-clamp"]);
    d1.sandbox_create(&d1.name("hand"));
    d1.ctl_ok(&["network", "connect", &d1.name("ov"), &d1.name("hand"), "--mac", "02:00:00:00:00:99"]);
    d1.remember_ports();
    let exported = d1.ctl_ok(&["export"]);
    assert_eq!(d1.ctl_ok(&["export"]), exported, "export is not deterministic");
    assert!(exported.contains(&format!("{p}ov:\n    driver: overlay")), "{exported}");
    assert!(exported.contains("mac_address: 02:00:00:00:00:99"), "{exported}");
    assert!(exported.contains(&format!("\"127.0.0.1:{lb_port}:8080\"")), "{exported}");
    // Free the names (namespaces are host-wide) and ports for the second daemon.
    for s in ["web", "db", "hand"] {
        d1.ctl_ok(&["sandbox", "rm", &d1.name(s)]);
    }
    d1.ctl_ok(&["service", "rm", "lb"]);

    let d2 = Daemon::start();
    let path = write_file(&d2, "exported.yaml", &exported);
    let out = d2.ctl_ok(&["apply", "-f", &path]);
    assert!(out.contains("applied: 7 created"), "{out}");
    d2.remember_ports();
    assert_eq!(d2.ctl_ok(&["export"]), exported, "the second daemon's export differs");
    assert!(d2.ctl_ok(&["apply", "-f", &path]).ends_with("\nunchanged\n"));
    let (web, db) = (d1.name("web"), d1.name("db"));
    assert!(wait_for_ping(&web, Ipv4Addr::new(10, 231, 2, 20), Duration::from_secs(10)).is_some(), "{web} → {db}");
    let published = d2.ctl_ok(&["port", &web]);
    assert_eq!(published.trim(), format!("80/tcp -> 127.0.0.1:{port}"));
    for s in ["web", "db", "hand"] {
        d2.ctl_ok(&["sandbox", "rm", &d1.name(s)]);
    }
}

/// The IPv6 address of `sandbox`'s endpoint on `network`.
fn address6(d: &Daemon, sandbox: &str, network: &str) -> Ipv6Addr {
    let infos: Vec<SandboxInfo> = d.ctl_json(&["sandbox", "inspect", sandbox]);
    let info = infos.into_iter().next().unwrap_or_else(|| panic!("no sandbox {sandbox}"));
    let e =
        info.endpoints.iter().find(|e| e.network == network).unwrap_or_else(|| panic!("{sandbox} not on {network}"));
    e.ipv6.unwrap_or_else(|| panic!("{sandbox} has no IPv6 address on {network}: {e:?}")).addr()
}

/// Every endpoint of `d` as (sandbox, network, ifname, IPv4, IPv6, MAC).
fn endpoints(d: &Daemon) -> BTreeSet<(String, String, String, String, String, String)> {
    let show = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
    sandboxes(d)
        .into_iter()
        .flat_map(|s| s.endpoints)
        .map(|e| {
            let (v4, v6) = (show(e.ipv4.map(|n| n.to_string())), show(e.ipv6.map(|n| n.to_string())));
            (e.sandbox, e.network, e.ifname, v4, v6, e.mac.to_string())
        })
        .collect()
}

/// A dual-stack network (fixed subnets, a fixed and an automatic IPv6
/// address) and an IPv6-only one (automatic ULA /64), two sandboxes on both.
fn dual_stack(p: &str) -> String {
    format!(
        "networks:
  {p}dual:
    enable_ipv6: true
    ipam:
      config:
        - subnet: 10.231.11.0/24
        - subnet: fd00:231:11::/64
  {p}six:
    enable_ipv4: false
    enable_ipv6: true
sandboxes:
  {p}a:
    networks:
      {p}dual:
        ipv4_address: 10.231.11.10
        ipv6_address: fd00:231:11::10
      {p}six:
  {p}b:
    networks: [{p}dual, {p}six]
"
    )
}

#[test]
fn a_dual_stack_stack_talks_over_ipv6_and_export_reproduces_its_addresses() {
    if !require_root("a_dual_stack_stack_talks_over_ipv6_and_export_reproduces_its_addresses") {
        return;
    }
    let d1 = Daemon::start();
    let p = d1.prefix().to_owned();
    let (dual, six, a, b) = (d1.name("dual"), d1.name("six"), d1.name("a"), d1.name("b"));
    let good = dual_stack(&p);
    let before = state(&d1);

    // Errors first, each in the file's last object: nothing is applied.
    // An IPv6 subnet overlapping the first network's.
    let (networks, rest) = good.split_once("sandboxes:\n").unwrap();
    let overlap = format!(
        "{networks}  {p}last:\n    enable_ipv4: false\n    enable_ipv6: true\n    ipam:\n      config:\n        \
         - subnet: fd00:231::/32\nsandboxes:\n{rest}"
    );
    // An IPv6 address another endpoint of the file takes; one outside the subnet.
    let taken = format!("{good}      {p}dual:\n        ipv6_address: fd00:231:11::10\n")
        .replace(&format!("    networks: [{p}dual, {p}six]\n"), "    networks:\n");
    let outside = taken.replace("ipv6_address: fd00:231:11::10\n", "ipv6_address: fd00:231:99::10\n");
    let outside = outside.replacen("ipv6_address: fd00:231:99::10\n", "ipv6_address: fd00:231:11::10\n", 1);
    for (name, text, needle, want) in [
        (
            "overlap.yaml",
            &overlap,
            "fd00:231::/32",
            format!(
                "networks.{p}last.ipam.config[0].subnet: subnet fd00:231::/32 overlaps network {dual} \
                 (fd00:231:11::/64)"
            ),
        ),
        (
            "taken.yaml",
            &taken,
            "",
            format!("sandboxes.{b}.networks.{dual}.ipv6_address: address fd00:231:11::10 is already in use"),
        ),
        (
            "outside.yaml",
            &outside,
            "fd00:231:99::10",
            format!(
                "sandboxes.{b}.networks.{dual}.ipv6_address: address fd00:231:99::10 is not inside subnet \
                 fd00:231:11::/64"
            ),
        ),
    ] {
        let path = write_file(&d1, name, text);
        // The offending value's line; for the taken address, its second use.
        let line = if needle.is_empty() {
            text.lines().enumerate().filter(|(_, l)| l.contains("fd00:231:11::10")).nth(1).unwrap().0 + 1
        } else {
            text.lines().position(|l| l.contains(needle)).unwrap() + 1
        };
        let err = d1.ctl_err(&["apply", "-f", &path]);
        let want = format!("{path}:{line}: {want}");
        assert!(err.contains(&want), "want {want:?} in {err}\n{text}");
        assert_eq!(state(&d1), before, "{name}: the state file changed");
        assert_eq!(network_names(&d1), names(&PREDEFINED), "{name}: networks were made");
        assert!(d1.leftover_netns().is_empty(), "{name}: namespaces made: {:?}", d1.leftover_netns());
    }

    // The plan shows the IPv6 side; nothing is made.
    let path = write_file(&d1, "dual.yaml", &good);
    let plan = d1.ctl_ok(&["apply", "-f", &path, "--dry-run"]);
    for want in [
        format!(
            "network {dual}: would be created (subnet 10.231.11.0/24, gateway 10.231.11.1; IPv6 subnet \
                 fd00:231:11::/64, gateway fd00:231:11::1)"
        ),
        format!("network {six}: would be created (IPv6 subnet fd"),
        format!("sandbox {a}: would be created (eth0 on {dual}: 10.231.11.10, fd00:231:11::10; eth1 on {six}: fd"),
        format!("sandbox {b}: would be created (eth0 on {dual}: 10.231.11.2, fd00:231:11::2; eth1 on {six}: fd"),
    ] {
        assert!(plan.contains(&want), "no {want:?} in {plan}");
    }
    assert_eq!(state(&d1), before, "a dry run changed the state");

    let out = d1.ctl_ok(&["apply", "-f", &path]);
    assert!(out.ends_with("applied: 4 created, 0 changed, 0 unchanged\n"), "{out}");
    d1.remember_ports();
    assert_eq!(vswitch::ipv6_addrs(&a, "eth0"), ["fd00:231:11::10/64"]);
    assert_eq!(vswitch::ipv4_addrs(&a, "eth0"), ["10.231.11.10/24"]);
    assert_eq!(vswitch::ipv4_addrs(&a, "eth1"), Vec::<String>::new(), "{six} is IPv6-only");
    let b_dual = address6(&d1, &b, &dual);
    assert_eq!(b_dual, "fd00:231:11::2".parse::<Ipv6Addr>().unwrap());
    let (a_six, b_six) = (address6(&d1, &a, &six), address6(&d1, &b, &six));
    let inspect: serde_json::Value = d1.ctl_json(&["network", "inspect", &six]);
    let ula: ctl::Ipv6Net = inspect[0]["IPAM"]["Config"][0]["Subnet"].as_str().unwrap().parse().unwrap();
    assert!(ula.contains(&a_six) && ula.contains(&b_six), "{a_six} {b_six} outside {ula}");
    // Over IPv6 both ways, on both networks, and over IPv4.
    let wait = Duration::from_secs(10);
    assert!(wait_for_ping(&a, b_dual, wait).is_some(), "{a} cannot reach {b} over IPv6 on {dual}");
    assert!(wait_for_ping(&b, "fd00:231:11::10".parse::<Ipv6Addr>().unwrap(), wait).is_some(), "{b} → {a} on {dual}");
    assert!(wait_for_ping(&b, a_six, wait).is_some(), "{b} cannot reach {a} on {six}");
    assert!(wait_for_ping(&a, b_six, wait).is_some(), "{a} cannot reach {b} on {six}");
    assert!(wait_for_ping(&a, Ipv4Addr::new(10, 231, 11, 2), wait).is_some(), "{a} → {b} over IPv4");

    // Again: unchanged, not even the state file.
    let saved = state(&d1);
    let out = d1.ctl_ok(&["apply", "-f", &path]);
    assert!(out.ends_with("\nunchanged\n"), "{out}");
    assert_eq!(out.lines().filter(|l| l.ends_with(": unchanged")).count(), 4, "{out}");
    assert_eq!(state(&d1), saved, "applying the same file changed the state");

    // Export writes the IPv6 settings; applied on a second daemon it
    // reproduces the networks and every address.
    let exported = d1.ctl_ok(&["export"]);
    for want in [
        "    enable_ipv6: true\n".to_owned(),
        "    enable_ipv4: false\n".to_owned(),
        "      - subnet: fd00:231:11::/64\n".to_owned(),
        format!("      - subnet: {ula}\n"),
        "        ipv6_address: fd00:231:11::10\n".to_owned(),
        format!("        ipv6_address: {b_six}\n"),
    ] {
        assert!(exported.contains(&want), "no {want:?} in\n{exported}");
    }
    let before_export = endpoints(&d1);
    for s in [&a, &b] {
        d1.ctl_ok(&["sandbox", "rm", s]);
    }
    let d2 = Daemon::start();
    let path = write_file(&d2, "exported.yaml", &exported);
    let out = d2.ctl_ok(&["apply", "-f", &path]);
    assert!(out.ends_with("applied: 4 created, 0 changed, 0 unchanged\n"), "{out}");
    d2.remember_ports();
    assert_eq!(d2.ctl_ok(&["export"]), exported, "the second daemon's export differs");
    assert_eq!(endpoints(&d2), before_export, "the endpoints' addresses differ");
    let inspect2: serde_json::Value = d2.ctl_json(&["network", "inspect", &six]);
    assert_eq!(inspect2[0]["IPAM"], inspect[0]["IPAM"], "the IPv6-only network's IPAM differs");
    assert_eq!(inspect2[0]["EnableIPv4"], serde_json::json!(false));
    assert!(d2.ctl_ok(&["apply", "-f", &path]).ends_with("\nunchanged\n"));
    assert!(wait_for_ping(&b, a_six, wait).is_some(), "{b} cannot reach {a} on {six} on the second daemon");
    assert!(wait_for_ping(&a, b_dual, wait).is_some(), "{a} cannot reach {b} on {dual} on the second daemon");
    // The embedded DNS has the reproduced addresses (AAAA), on both networks.
    if vswitch::dns::require_dns_tools("a_dual_stack_stack_talks_over_ipv6_and_export_reproduces_its_addresses: dns") {
        let gw6 = Ipv6Addr::from(u128::from(ula.network()) + 1);
        for (ns, server, name, want) in [(&a, "fd00:231:11::1".parse().unwrap(), &b, b_dual), (&b, gw6, &a, a_six)] {
            let r = vswitch::dns::dig(ns, &[&format!("@{server}"), "AAAA", name]);
            assert_eq!(r.data_of("AAAA"), [want.to_string()], "{r}");
        }
    }
    for s in [&a, &b] {
        d2.ctl_ok(&["sandbox", "rm", s]);
    }
}

/// The file that lets a [`pausing_daemon`]'s requests go on; its
/// directory is removed when this is dropped, also when the test fails.
struct PauseFile(PathBuf);

impl Drop for PauseFile {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A daemon whose requests stop at `stage` of the test hook (see
/// `VSWITCH_TEST_PAUSE_APPLY` in `switch/src/daemon/control/stack/mod.rs`)
/// until the returned file exists.
fn pausing_daemon(stage: &str) -> (Daemon, PauseFile) {
    let dir = std::env::temp_dir().join(format!("vswitch-e2e-pause-{}-{stage}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let pause = PauseFile(dir.join("pause"));
    let d = Daemon::builder().env("VSWITCH_TEST_PAUSE_APPLY", format!("{stage}:{}", pause.0.display())).start();
    (d, pause)
}

/// Runs `vswitchctl ARGS` on `d` until the daemon stops at the hook, reads
/// the change journal it wrote, kills it with SIGKILL (the request fails),
/// lets later requests pass and starts it again; the journal.
fn kill_9_when_paused(d: &mut Daemon, pause: &Path, args: &[&str]) -> serde_json::Value {
    let mut request = Command::new(&Binaries::get().vswitchctl)
        .arg("--socket")
        .arg(d.socket())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vswitchctl");
    let reached = PathBuf::from(format!("{}.reached", pause.display()));
    wait_until(
        Duration::from_secs(30),
        || format!("`{}` to reach the pause\n{}", args.join(" "), d.log()),
        || reached.exists().then_some(()),
    );
    let journal: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.state_dir().join("apply.journal")).expect("journal")).unwrap();
    // SIGKILL at once: `Daemon::kill9` would first ask the paused daemon for its sandboxes.
    let pid = d.pid().expect("the daemon runs") as libc::pid_t;
    // SAFETY: kill(2) on the pid of the daemon this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill -9 {pid}");
    let status = request.wait().expect("wait for vswitchctl");
    assert!(!status.success(), "`{}` cannot have succeeded", args.join(" "));
    // Later requests pass the hook at once.
    std::fs::write(pause, "go").unwrap();
    d.restart(); // reaps the killed daemon, starts it again
    assert!(!d.state_dir().join("apply.journal").exists(), "the journal outlived the restart");
    journal
}

/// What a `kill -9` at `stage` of an apply leaves after the restart.
fn kill_mid_apply(stage: &str) -> (Daemon, Vec<String>, String) {
    let (mut d, pause) = pausing_daemon(stage);
    let p = d.prefix().to_owned();
    // The old state, made by hand.
    let (old, s1, s2) = (d.name("old"), d.name("s1"), d.name("s2"));
    d.network_create(&old, "10.231.5.0/24");
    d.sandbox_create(&s1);
    d.connect(&old, &s1, Some("10.231.5.2"));
    let file = format!(
        "networks:\n  {old}:\n    external: true\n  {p}new:\n    ipam:\n      config:\n        - subnet: 10.231.6.0/24\n\
         sandboxes:\n  {s1}:\n    networks: [{old}, {p}new]\n  {s2}:\n    networks:\n      {p}new:\n        \
         ipv4_address: 10.231.6.20\n    ports: [\"127.0.0.1:{}:80\"]\n",
        free_port()
    );
    let path = write_file(&d, "stack.yaml", &file);
    let journal = kill_9_when_paused(&mut d, &pause.0, &["apply", "-f", &path]);
    let taps: Vec<String> =
        journal["taps"].as_array().unwrap().iter().map(|t| t["tap"].as_str().unwrap().to_owned()).collect();
    assert_eq!(taps.len(), 2, "{journal}");
    (d, taps, file)
}

#[test]
fn kill_9_mid_connect_leaves_no_device_and_the_sandbox_connects_again() {
    if !require_root("kill_9_mid_connect_leaves_no_device_and_the_sandbox_connects_again") {
        return;
    }
    for port_type in ["tap", "afxdp"] {
        let (mut d, pause) = pausing_daemon("connect");
        let (net, s) = (d.name("n"), d.name("s"));
        d.network_create(&net, "10.231.7.0/24");
        d.sandbox_create(&s);
        let journal = kill_9_when_paused(&mut d, &pause.0, &["network", "connect", &net, &s, "--port-type", port_type]);
        let device = journal["taps"][0]["tap"].as_str().expect("the journal names the device").to_owned();
        assert_eq!(journal["taps"][0]["veth"], port_type == "afxdp", "{journal}");
        assert!(sandboxes(&d)[0].endpoints.is_empty(), "{port_type}: the connect was not saved");
        assert_eq!(link_names(&s), ["lo"], "{port_type}: a device of the unfinished connect is left in {s}");
        assert!(!host_has_link(&device), "{port_type}: {device} of the unfinished connect is left on the host");
        assert!(d.log().contains("an apply was interrupted"), "{}", d.log());
        // The sandbox's first interface name is free again.
        let e = d.connect(&net, &s, None);
        assert_eq!(e.ifname, "eth0");
        let gateway = Ipv4Addr::new(10, 231, 7, 1);
        assert!(wait_for_ping(&s, gateway, Duration::from_secs(10)).is_some(), "{port_type}: no ping after");
    }
}

#[test]
fn kill_9_mid_sandbox_create_leaves_no_namespace() {
    if !require_root("kill_9_mid_sandbox_create_leaves_no_namespace") {
        return;
    }
    let (mut d, pause) = pausing_daemon("sandbox");
    let s = d.name("s");
    let journal = kill_9_when_paused(&mut d, &pause.0, &["sandbox", "create", &s]);
    assert_eq!(journal["sandboxes"][0]["name"], s.as_str(), "{journal}");
    assert!(sandboxes(&d).is_empty(), "the sandbox was not saved");
    assert_eq!(d.leftover_netns(), Vec::<String>::new(), "the namespace of the unfinished create is left");
    d.sandbox_create(&s);
    assert_eq!(d.leftover_netns(), vec![s.clone()]);
}

/// Whether a network device called `name` exists in the test's namespace.
fn host_has_link(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

#[test]
fn kill_9_before_the_commit_leaves_the_old_state_and_nothing_else() {
    if !require_root("kill_9_before_the_commit_leaves_the_old_state_and_nothing_else") {
        return;
    }
    let (d, taps, _) = kill_mid_apply("effects");
    let (old, s1) = (d.name("old"), d.name("s1"));
    assert_eq!(network_names(&d), names(&[&PREDEFINED[..], &[old.as_str()]].concat()), "networks are not the old ones");
    let info = sandboxes(&d);
    assert_eq!(info.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), [s1.as_str()]);
    assert_eq!(info[0].endpoints.len(), 1, "{info:?}");
    assert_eq!(d.leftover_netns(), vec![s1.clone()], "a namespace of the unfinished apply is left");
    let mut links = link_names(&s1);
    links.sort();
    assert_eq!(links, ["eth0", "lo"], "a device of the unfinished apply is left in {s1}");
    for tap in &taps {
        assert!(!host_has_link(tap), "device {tap} of the unfinished apply is left on the host");
    }
    assert!(
        wait_for_ping(&s1, Ipv4Addr::new(10, 231, 5, 1), Duration::from_secs(10)).is_some(),
        "{s1} lost its network:\n{}",
        d.log()
    );
    assert!(d.log().contains("an apply was interrupted"), "{}", d.log());
}

#[test]
fn kill_9_after_the_commit_leaves_the_new_state_whole() {
    if !require_root("kill_9_after_the_commit_leaves_the_new_state_whole") {
        return;
    }
    let (d, taps, file) = kill_mid_apply("committed");
    d.remember_ports();
    let (old, s1, s2) = (d.name("old"), d.name("s1"), d.name("s2"));
    let new = d.name("new");
    assert_eq!(network_names(&d), names(&[&PREDEFINED[..], &[old.as_str(), new.as_str()]].concat()));
    let info = sandboxes(&d);
    assert_eq!(info.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), [s1.as_str(), s2.as_str()]);
    let mut made = d.leftover_netns();
    made.sort();
    assert_eq!(made, [s1.clone(), s2.clone()]);
    let mut links = link_names(&s1);
    links.sort();
    assert_eq!(links, ["eth0", "eth1", "lo"]);
    for tap in &taps {
        assert!(!host_has_link(tap), "device {tap} left on the host");
    }
    let s1_new = address(&d, &s1, &new);
    assert!(
        wait_for_ping(&s2, s1_new, Duration::from_secs(10)).is_some(),
        "{s2} cannot reach {s1} after the restart:\n{}",
        d.log()
    );
    // The file is applied: applying it again changes nothing.
    let path = write_file(&d, "again.yaml", &file);
    let out = d.ctl_ok(&["apply", "-f", &path]);
    assert!(out.ends_with("\nunchanged\n"), "{out}");
}

#[test]
fn an_encrypted_overlay_with_options_comes_from_a_stack_file() {
    if !require_root("an_encrypted_overlay_with_options_comes_from_a_stack_file") {
        return;
    }
    let secret = vswitch::encrypted::SecretFile::generate(0o600);
    let d = Daemon::builder().args(&[std::ffi::OsStr::new("--secret-file"), secret.path().as_os_str()]).start();
    let (sec, a, b) = (d.name("sec"), d.name("a"), d.name("b"));
    let file = format!(
        "networks:\n  {sec}:\n    driver: overlay\n    attachable: true\n    driver_opts:\n      encrypted: \"\"\n      \
         mss-clamp:\n      egress: \"false\"\n      key-rotation: 3600\n      \
         com.docker.network.driver.overlay.vxlanid_list: 4300\n    ipam:\n      config:\n        - subnet: 10.231.8.0/24\n\
         sandboxes:\n  {a}:\n    networks: [{sec}]\n  {b}:\n    networks:\n      {sec}:\n        ipv4_address: 10.231.8.9\n"
    );
    let out = d.ctl_ok(&["apply", "-f", &write_file(&d, "sec.yaml", &file)]);
    assert!(out.ends_with("applied: 3 created, 0 changed, 0 unchanged\n"), "{out}");
    d.remember_ports();
    let inspect: serde_json::Value = d.ctl_json(&["network", "inspect", &sec]);
    let options = &inspect[0]["Options"];
    for key in ["encrypted", "mss-clamp", "egress", "key-rotation"] {
        assert!(options.get(key).is_some(), "no option {key}: {inspect}");
    }
    // The encrypted overlay's MTU: 1500 − 50 (VXLAN) − 32 (sealing), with no underlay.
    assert_eq!(vswitch::link_info(&a, "eth0").expect("eth0")["mtu"], 1418);
    assert!(wait_for_ping(&a, Ipv4Addr::new(10, 231, 8, 9), Duration::from_secs(10)).is_some(), "{a} → {b}");
    let exported = d.ctl_ok(&["export"]);
    for line in ["encrypted: \"\"", "com.docker.network.driver.mtu: \"1418\"", "vxlanid_list: \"4300\""] {
        assert!(exported.contains(line), "no {line:?} in {exported}");
    }
    assert!(d.ctl_ok(&["apply", "-f", &write_file(&d, "again.yaml", &exported)]).ends_with("\nunchanged\n"));
}
