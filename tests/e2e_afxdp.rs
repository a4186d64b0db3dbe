//! AF_XDP ports and uplinks, end to end (needs root). The daemon runs in a
//! simulated host namespace with a VTEP on its underlay interface:
//!
//! - sandboxes connected with `--port-type afxdp` (a veth pair, an XDP
//!   program and an AF_XDP socket on the host end) ping and carry TCP,
//!   byte for byte, to each other and to a TAP sandbox on the same network;
//! - an uplink (`port add`, raw and afxdp) on a veth whose peer is a "LAN"
//!   namespace lets sandboxes and the LAN reach each other; a macvlan
//!   network's parent is its uplink;
//! - the interface carrying the VTEP address or a default route is refused
//!   without `--force`;
//! - after `kill -9` and a restart, AF_XDP endpoints and uplinks work again;
//!   an uplink whose interface is deleted goes down with an event.

use std::net::Ipv4Addr;
use std::time::Duration;

use ctl::proto::{EndpointInfo, PortKind, PortType, ShowTree};
use serde_json::Value;
use vswitch::overlay::vtep_daemon;
use vswitch::underlay::{UNDERLAY_IF, ip, lan_link};
use vswitch::{Daemon, Underlay, link_info, netns_exec_ok, ping, require_root, tcp_transfer, wait_for, wait_for_ping};

fn connect_afxdp(d: &Daemon, net: &str, sandbox: &str) -> EndpointInfo {
    d.ctl_json(&["network", "connect", net, sandbox, "--port-type", "afxdp"])
}

fn addr(e: &EndpointInfo) -> Ipv4Addr {
    e.ipv4.expect("an IPv4 address").addr()
}

/// `show`'s port `name`.
fn show_port(d: &Daemon, name: &str) -> Option<ctl::proto::ShowPort> {
    let tree: ShowTree = d.ctl_json(&["show"]);
    tree.networks.into_iter().flat_map(|n| n.ports).find(|p| p.name == name)
}

/// A VTEP daemon on a one-host underlay with one network and three
/// sandboxes on it: `a` and `b` connected with `--port-type afxdp`, `c` with
/// a TAP (the default).
struct ThreeSandboxes {
    // Fields drop in order: the daemon before the namespaces it runs in.
    d: Daemon,
    u: Underlay,
    net: String,
    a: String,
    b: String,
    c: String,
    ea: EndpointInfo,
    eb: EndpointInfo,
    ec: EndpointInfo,
}

impl ThreeSandboxes {
    /// The underlay on `underlay`.0/24, the network on `subnet`, created with
    /// the further `network create` options `options`.
    fn new(underlay: [u8; 3], subnet: &str, options: &[&str]) -> Self {
        let u = Underlay::new(underlay, 1);
        let d = vtep_daemon(u.host(0), &[]);
        let net = d.name("n");
        let (a, b, c) = (d.name("a"), d.name("b"), d.name("c"));
        let mut create = vec!["network", "create", &net, "--subnet", subnet];
        create.extend_from_slice(options);
        d.ctl_ok(&create);
        for s in [&a, &b, &c] {
            d.sandbox_create(s);
        }
        let ea = connect_afxdp(&d, &net, &a);
        let eb = connect_afxdp(&d, &net, &b);
        let ec = d.connect(&net, &c, None);
        Self { d, u, net, a, b, c, ea, eb, ec }
    }

    /// The `stats` rows of the two AF_XDP ports (`a`'s, then `b`'s).
    fn afxdp_stats(&self) -> [ctl::proto::PortStats; 2] {
        let stats: Vec<ctl::proto::PortStats> = self.d.ctl_json(&["stats"]);
        [&self.ea, &self.eb].map(|e| stats.iter().find(|s| s.port == e.port).expect("a stats row").clone())
    }
}

fn assert_tcp(server: &str, ip: Ipv4Addr, client: &str, what: &str) {
    let r = tcp_transfer(server, ip, client, 8 << 20).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(r.intact, "{what}: stream corrupted or short: {r:?}");
    eprintln!("{what}: {:.0} Mbit/s (debug build)", r.mbit_per_s());
}

#[test]
fn afxdp_sandboxes_talk_to_each_other_and_to_a_tap_sandbox() {
    if !require_root("afxdp_sandboxes_talk_to_each_other_and_to_a_tap_sandbox") {
        return;
    }
    let t = ThreeSandboxes::new([10, 213, 0], "10.214.0.0/24", &[]);
    let ThreeSandboxes { u, d, net, a, b, c, ea, eb, ec } = &t;
    for e in [&ea, &eb] {
        let port = show_port(d, &e.port).expect("the port is shown");
        assert_eq!(port.port_type, Some(PortType::Afxdp));
        // A veth has native XDP but no zero-copy AF_XDP: copy mode, chosen by itself.
        // Copy mode has multi-buffer descriptors and TX metadata (Linux 6.8+).
        let mode = port.xdp_mode.as_deref().unwrap_or_default();
        assert!(mode.starts_with("copy, native XDP"), "{port:?}");
        // The sandbox's end does not leave checksums to offload (XDP cannot see that).
        let features = netns_exec_ok(&e.sandbox, "ethtool", &["-k", &e.ifname]);
        assert!(features.contains("tx-checksumming: off"), "{features}");
    }
    assert_eq!(show_port(d, &ec.port).expect("tap port").port_type, None, "a TAP is the default");

    assert!(wait_for_ping(a, addr(eb), Duration::from_secs(10)).is_some(), "afxdp -> afxdp");
    assert!(ping(a, addr(ec), 2), "afxdp -> tap");
    assert!(ping(c, addr(ea), 2), "tap -> afxdp");
    assert!(ping(b, Ipv4Addr::new(10, 214, 0, 1), 2), "afxdp -> the gateway");
    assert_tcp(b, addr(eb), a, "TCP afxdp -> afxdp");
    // A TAP sandbox sends 64 KiB GSO frames: the AF_XDP port segments them.
    assert_tcp(a, addr(ea), c, "TCP tap -> afxdp");
    assert_tcp(c, addr(ec), b, "TCP afxdp -> tap");

    for row in t.afxdp_stats() {
        // (GSO frames from the TAP sandbox count once on the way in.)
        assert!(row.rx_packets > 1000 && row.tx_packets > 100 && row.tx_bytes > 8 << 20, "{row:?}");
    }
    // IPv6 too: a second, dual-stack network, AF_XDP endpoints as the sandboxes' eth1.
    let net6 = d.name("v6");
    d.ctl_ok(&["network", "create", &net6, "--ipv6", "--subnet", "10.215.0.0/24", "--subnet", "fd00:215::/64"]);
    let a6 = connect_afxdp(d, &net6, a);
    let b6 = connect_afxdp(d, &net6, b);
    let b6_ip = b6.ipv6.expect("an IPv6 address").addr();
    assert_eq!(a6.ifname, "eth1");
    assert!(wait_for_ping(a, b6_ip, Duration::from_secs(10)).is_some(), "afxdp -> afxdp over IPv6");
    d.ctl_ok(&["network", "disconnect", &net6, a]);
    d.ctl_ok(&["network", "disconnect", &net6, b]);

    // Disconnecting removes the veth pair.
    d.ctl_ok(&["network", "disconnect", net, a]);
    let links = netns_exec_ok(&u.host(0).ns, "ip", &["-o", "link"]);
    assert!(!links.contains(&ea.port), "{links}");
    assert!(!netns_exec_ok(a, "ip", &["-o", "link"]).contains(&ea.ifname), "the sandbox's end went too");
}

#[test]
fn jumbo_frames_cross_afxdp_ports_as_descriptor_chains() {
    if !require_root("jumbo_frames_cross_afxdp_ports_as_descriptor_chains") {
        return;
    }
    let t = ThreeSandboxes::new([10, 217, 0], "10.218.0.0/24", &["--mtu", "9000"]);
    let ThreeSandboxes { d, a, b, c, ea, eb, ec, .. } = &t;
    for e in [&ea, &eb] {
        let port = show_port(d, &e.port).expect("the port is shown");
        let mode = port.xdp_mode.as_deref().unwrap_or_default();
        assert!(mode.contains("multi-buffer"), "{port:?}");
        assert!(mode.contains("TX checksum offloaded"), "copy mode has TX metadata on 6.8+: {port:?}");
        let link = netns_exec_ok(&e.sandbox, "ip", &["-o", "link", "show", &e.ifname]);
        assert!(link.contains("mtu 9000"), "{link}");
    }
    assert!(wait_for_ping(a, addr(eb), Duration::from_secs(10)).is_some(), "afxdp -> afxdp");
    // 8,028-byte IP packets, not fragmented: three UMEM chunks each way.
    for (from, to) in [(&a, addr(eb)), (&b, addr(ec)), (&c, addr(ea))] {
        let to = to.to_string();
        netns_exec_ok(from, "ping", &["-n", "-c", "3", "-i", "0.2", "-W", "2", "-s", "8000", "-M", "do", &to]);
    }
    // TCP with 8,948-byte segments, checked by a hash of the received bytes.
    assert_tcp(b, addr(eb), a, "jumbo TCP afxdp -> afxdp");
    // The TAP sandbox's GSO frames are segmented to its MSS (8,948) and leave
    // as chains with their checksums completed by the kernel.
    assert_tcp(a, addr(ea), c, "jumbo TCP tap -> afxdp");
    assert_tcp(c, addr(ec), b, "jumbo TCP afxdp -> tap");
    for row in t.afxdp_stats() {
        assert!(row.rx_bytes > 8 << 20 || row.tx_bytes > 8 << 20, "{row:?}");
        // Jumbo frames are neither too long nor broken nor refused.
        for reason in ["oversize", "xsk_bad_descriptor", "offload_failed", "tx_error"] {
            assert_eq!(row.drops.get(reason).copied().unwrap_or(0), 0, "{reason}: {row:?}");
        }
    }
}

#[test]
fn uplinks_join_a_lan_and_survive_kill_9() {
    if !require_root("uplinks_join_a_lan_and_survive_kill_9") {
        return;
    }
    let mut u = Underlay::new([10, 216, 0], 1);
    let host = u.host(0).ns.clone();
    let lan = u.add_netns("lan");
    lan_link(&host, &lan, "up0", 1, "10.217.0.200/24");
    let lan_ip = Ipv4Addr::new(10, 217, 0, 200);

    let mut d = vtep_daemon(u.host(0), &[]);
    let net = d.name("n");
    let (a, b) = (d.name("a"), d.name("b"));
    d.network_create(&net, "10.217.0.0/24");
    d.sandbox_create(&a);
    d.sandbox_create(&b);
    let ea = d.connect(&net, &a, None);
    let eb = connect_afxdp(&d, &net, &b);

    // The VTEP's interface and a default route's are refused without --force.
    let e = d.ctl_err(&["port", "add", &net, UNDERLAY_IF]);
    assert!(e.contains("VTEP") && e.contains("--force"), "{e}");
    ip(&["-n", &host, "link", "add", "dr0", "type", "veth", "peer", "name", "dr1"]);
    ip(&["-n", &host, "addr", "add", "10.218.0.1/24", "dev", "dr0"]);
    ip(&["-n", &host, "link", "set", "dr0", "up"]);
    ip(&["-n", &host, "route", "add", "default", "via", "10.218.0.2"]);
    let e = d.ctl_err(&["port", "add", &net, "dr0"]);
    assert!(e.contains("default route") && e.contains("--force"), "{e}");
    assert!(show_port(&d, "dr0").is_none(), "a refused request changes nothing");
    d.ctl_ok(&["port", "add", &net, "dr0", "--force"]);
    assert_eq!(show_port(&d, "dr0").expect("forced").kind, PortKind::Uplink);
    d.ctl_ok(&["port", "rm", "dr0"]);
    assert!(show_port(&d, "dr0").is_none());

    // Raw uplink: both sandboxes and the LAN reach each other.
    d.ctl_ok(&["port", "add", &net, "up0"]);
    let port = show_port(&d, "up0").expect("the uplink is shown");
    assert_eq!((port.kind, port.port_type), (PortKind::Uplink, Some(PortType::Raw)));
    assert!(wait_for_ping(&a, lan_ip, Duration::from_secs(10)).is_some(), "tap sandbox -> LAN (raw)");
    assert!(ping(&b, lan_ip, 2), "afxdp sandbox -> LAN (raw)");
    assert!(ping(&lan, addr(&ea), 2), "LAN -> tap sandbox (raw)");
    assert_tcp(&lan, lan_ip, &a, "TCP tap sandbox -> LAN over a raw uplink");
    assert_tcp(&b, addr(&eb), &lan, "TCP LAN -> afxdp sandbox over a raw uplink");

    // The same interface as an AF_XDP uplink.
    d.ctl_ok(&["port", "rm", "up0"]);
    d.ctl_ok(&["port", "add", &net, "up0", "--port-type", "afxdp"]);
    let port = show_port(&d, "up0").expect("the uplink is shown");
    assert_eq!(port.port_type, Some(PortType::Afxdp));
    assert!(port.xdp_mode.is_some_and(|m| m.contains("copy")), "mode shown");
    assert!(wait_for_ping(&a, lan_ip, Duration::from_secs(10)).is_some(), "tap sandbox -> LAN (afxdp)");
    assert!(ping(&lan, addr(&eb), 2), "LAN -> afxdp sandbox (afxdp)");
    assert_tcp(&a, addr(&ea), &lan, "TCP LAN -> tap sandbox over an AF_XDP uplink");

    // kill -9: endpoints and the uplink come back.
    d.kill9();
    d.restart();
    assert!(wait_for_ping(&b, lan_ip, Duration::from_secs(30)).is_some(), "afxdp sandbox -> LAN after restart");
    assert!(ping(&b, addr(&ea), 2), "afxdp -> tap after restart");
    assert_tcp(&a, addr(&ea), &b, "TCP afxdp -> tap after restart");
    assert_eq!(show_port(&d, &eb.port).and_then(|p| p.port_type), Some(PortType::Afxdp));
    assert_eq!(show_port(&d, "up0").and_then(|p| p.port_type), Some(PortType::Afxdp));

    // The interface goes away: the port goes down, with an event, and stays recorded.
    ip(&["-n", &host, "link", "delete", "up0"]);
    let down = wait_for(Duration::from_secs(10), || show_port(&d, "up0").filter(|p| p.down));
    assert!(down.is_some(), "the uplink is not shown down; log:\n{}", d.log());
    let events: Vec<Value> =
        d.ctl_ok(&["--json", "events"]).lines().map(|l| serde_json::from_str(l).expect("an event")).collect();
    assert!(
        events.iter().any(|e| e["kind"] == "port_down" && e["port"] == "up0" && e["reason"] == "gone"),
        "{events:?}"
    );

    // macvlan: Docker's name for a network whose uplink is its parent.
    ip(&["-n", &host, "link", "add", "up1", "type", "veth", "peer", "name", "lan1", "netns", &lan]);
    let mv = d.name("mv");
    d.ctl_ok(&["network", "create", "-d", "macvlan", "-o", "parent=up1", &mv, "--subnet", "10.219.0.0/24"]);
    assert_eq!(show_port(&d, "up1").expect("the parent is the uplink").kind, PortKind::Uplink);
    d.ctl_ok(&["network", "rm", &mv]);
    assert!(show_port(&d, "up1").is_none(), "the uplink goes with its network");
}

#[test]
fn a_network_rm_or_port_add_that_cannot_be_saved_changes_nothing() {
    if !require_root("a_network_rm_or_port_add_that_cannot_be_saved_changes_nothing") {
        return;
    }
    // Two LANs on one network, each behind a raw uplink.
    let mut u = Underlay::new([10, 236, 0], 1);
    let host = u.host(0).ns.clone();
    let (lan_a, lan_b) = (u.add_netns("la"), u.add_netns("lb"));
    lan_link(&host, &lan_a, "upa", 1, "10.237.0.1/24");
    lan_link(&host, &lan_b, "upb", 1, "10.237.0.2/24");
    let d = vtep_daemon(u.host(0), &[]);
    let net = d.name("n");
    d.network_create(&net, "10.237.0.0/24");
    d.ctl_ok(&["port", "add", &net, "upa"]);
    d.ctl_ok(&["port", "add", &net, "upb"]);
    let b = Ipv4Addr::new(10, 237, 0, 2);
    assert!(wait_for_ping(&lan_a, b, Duration::from_secs(10)).is_some(), "LAN a -> LAN b across the uplinks");

    // The state cannot be saved (its temporary file's name is taken by a
    // directory, which even root cannot open for writing).
    let blocker = d.state_dir().join("state.json.tmp");
    std::fs::create_dir(&blocker).expect("a directory in the way of the next save");
    let e = d.ctl_err(&["network", "rm", &net]);
    assert!(e.contains("state.json.tmp"), "the error says what failed: {e}");
    assert!(show_port(&d, "upa").is_some() && show_port(&d, "upb").is_some(), "both uplinks still shown");
    assert!(ping(&lan_a, b, 2), "a rejected network rm left the uplinks forwarding");
    // A port add of an interface that is down, refused the same way, leaves
    // it down.
    ip(&["-n", &host, "link", "add", "upc", "type", "veth", "peer", "name", "upd"]);
    let is_up = || {
        let info = link_info(&host, "upc").expect("upc exists");
        info["flags"].as_array().is_some_and(|f| f.iter().any(|x| x == "UP"))
    };
    assert!(!is_up(), "a new veth is down");
    let e = d.ctl_err(&["port", "add", &net, "upc"]);
    assert!(e.contains("state.json.tmp"), "{e}");
    assert!(show_port(&d, "upc").is_none(), "not shown");
    assert!(!is_up(), "a rejected port add set the interface up");

    // Once it can be saved, the network goes with its uplinks.
    std::fs::remove_dir(&blocker).expect("the directory removed");
    d.ctl_ok(&["network", "rm", &net]);
    assert!(show_port(&d, "upa").is_none() && show_port(&d, "upb").is_none(), "the uplinks went with the network");
    assert!(!ping(&lan_a, b, 1), "nothing forwards between the LANs any more");
}

/// The events so far (`events` prints the history as JSON lines).
fn events(d: &Daemon) -> Vec<Value> {
    d.ctl_ok(&["--json", "events"]).lines().map(|l| serde_json::from_str(l).expect("an event")).collect()
}

fn has_event(d: &Daemon, kind: &str, port: &str, reason: &str) -> bool {
    events(d).iter().any(|e| e["kind"] == kind && e["port"] == port && e["reason"] == reason)
}

#[test]
fn a_macvlan_stack_network_comes_back_when_its_parent_returns() {
    if !require_root("a_macvlan_stack_network_comes_back_when_its_parent_returns") {
        return;
    }
    let mut u = Underlay::new([10, 219, 0], 1);
    let host = u.host(0).ns.clone();
    let lan = u.add_netns("lan");
    lan_link(&host, &lan, "up2", 1, "10.220.0.200/24");
    let lan_ip = Ipv4Addr::new(10, 220, 0, 200);

    let mut d = vtep_daemon(u.host(0), &[]);
    let (mv, a) = (d.name("mv"), d.name("a"));
    // A stack file's macvlan network: its parent is a raw uplink.
    let stack = format!(
        "networks:\n  {mv}:\n    driver: macvlan\n    driver_opts:\n      parent: up2\n    ipam:\n      config:\n        \
         - subnet: 10.220.0.0/24\nsandboxes:\n  {a}:\n    networks:\n      {mv}:\n        ipv4_address: 10.220.0.10\n"
    );
    let path = d.state_dir().with_file_name("macvlan.yaml");
    std::fs::write(&path, &stack).expect("write the stack file");
    let path = path.display().to_string();
    let out = d.ctl_ok(&["apply", "-f", &path]);
    assert!(out.contains(&format!("network {mv}: created")), "{out}");
    let port = show_port(&d, "up2").expect("the parent is the uplink");
    assert_eq!((port.kind, port.port_type, port.down), (PortKind::Uplink, Some(PortType::Raw), false));
    let a_ip = Ipv4Addr::new(10, 220, 0, 10);
    assert!(wait_for_ping(&a, lan_ip, Duration::from_secs(10)).is_some(), "sandbox -> LAN");
    // Both ways, 64 KiB GSO frames across the raw socket's batches.
    assert_tcp(&lan, lan_ip, &a, "TCP sandbox -> LAN over a raw uplink");
    assert_tcp(&a, a_ip, &lan, "TCP LAN -> sandbox over a raw uplink");
    assert!(d.ctl_ok(&["apply", "-f", &path]).contains("unchanged"), "applied again: nothing changes");
    let exported = d.ctl_ok(&["export"]);
    assert!(exported.contains("driver: macvlan") && exported.contains("parent: up2"), "{exported}");

    // The interface goes: the port goes down, waiting for it.
    ip(&["-n", &host, "link", "delete", "up2"]);
    let down = wait_for(Duration::from_secs(10), || show_port(&d, "up2").filter(|p| p.down));
    assert!(down.is_some(), "the uplink is not shown down; log:\n{}", d.log());
    assert!(has_event(&d, "port_down", "up2", "gone"));
    assert!(d.ctl_ok(&["show"]).contains("link: down, waiting for the interface"));
    // It comes back (created down, as veths are): attached again on its own.
    lan_link(&host, &lan, "up2", 1, "10.220.0.200/24");
    let up = wait_for(Duration::from_secs(10), || show_port(&d, "up2").filter(|p| !p.down));
    assert!(up.is_some(), "the uplink did not come back; log:\n{}", d.log());
    assert!(has_event(&d, "port_up", "up2", "returned"), "{:?}", events(&d));
    assert!(wait_for_ping(&lan, a_ip, Duration::from_secs(10)).is_some(), "LAN -> sandbox after the return");
    assert_tcp(&lan, lan_ip, &a, "TCP sandbox -> LAN after the return");

    // Gone while the daemon is down: the uplink stays recorded, down, and
    // comes back when the interface does.
    d.kill9();
    ip(&["-n", &host, "link", "delete", "up2"]);
    d.restart();
    let down = wait_for(Duration::from_secs(10), || show_port(&d, "up2").filter(|p| p.down));
    assert!(down.is_some(), "the uplink is not recorded down after the restart; log:\n{}", d.log());
    lan_link(&host, &lan, "up2", 1, "10.220.0.200/24");
    let up = wait_for(Duration::from_secs(10), || show_port(&d, "up2").filter(|p| !p.down));
    assert!(up.is_some(), "the uplink did not come back after the restart; log:\n{}", d.log());
    // (The LAN's end is new, with a new MAC: it asks first.)
    assert!(wait_for_ping(&lan, a_ip, Duration::from_secs(10)).is_some(), "LAN -> sandbox after restart and return");
    let stats: Vec<ctl::proto::PortStats> = d.ctl_json(&["stats"]);
    let row = stats.iter().find(|s| s.port == "up2").expect("a stats row for the uplink");
    assert!(row.rx_packets > 0 && row.tx_packets > 0, "{row:?}");
}
