//! Crash recovery of `vswitchd`: after `kill -9` and a restart with the same
//! socket and state dir, networks, sandboxes, endpoints and static FDB
//! entries come back and sandboxes talk again; a second daemon on a socket
//! that is in use refuses to start. Needs root.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use ctl::proto::{FdbEntry, FdbKind, SandboxInfo};
use serde_json::Value;
use vswitch::{Binaries, Daemon, output_with_timeout, ping, require_root, tcp_transfer, text, wait_for_ping};

fn static_entries(d: &Daemon) -> Vec<FdbEntry> {
    let mut v: Vec<FdbEntry> =
        d.ctl_json::<Vec<FdbEntry>>(&["fdb", "show"]).into_iter().filter(|e| e.kind == FdbKind::Static).collect();
    v.sort_by_key(|e| (e.network.clone(), e.mac.to_string()));
    v.into_iter().map(|e| FdbEntry { age_secs: 0, ..e }).collect()
}

#[test]
fn kill_9_and_restart_restores_state_and_connectivity() {
    if !require_root("kill_9_and_restart_restores_state_and_connectivity") {
        return;
    }
    let mut d = Daemon::start();
    let net = d.name("n");
    let (a, b) = (d.name("a"), d.name("b"));
    d.network_create(&net, "10.205.0.0/24");
    d.sandbox_create(&a);
    d.sandbox_create(&b);
    let ea = d.connect(&net, &a, None);
    let eb = d.connect(&net, &b, Some("10.205.0.77"));
    d.ctl_ok(&["fdb", "add", &net, "02:aa:00:00:00:05", &eb.port]);
    let ip_b = Ipv4Addr::new(10, 205, 0, 77);
    assert!(ping(&a, ip_b, 2), "no connectivity before the crash");

    let networks: Value = d.ctl_json(&["network", "ls"]);
    let inspect: Value = d.ctl_json(&["network", "inspect", &net]);
    let sandboxes: Vec<SandboxInfo> = d.ctl_json(&["sandbox", "ls"]);
    let statics = static_entries(&d);
    assert!(statics.iter().any(|e| e.mac.to_string() == "02:aa:00:00:00:05"), "{statics:?}");

    d.kill9();
    let killed = Instant::now();
    // With the switch dead nothing forwards (this check costs up to 1 s of the outage below).
    assert!(!ping(&a, ip_b, 1), "ping went through with the daemon dead");
    let checked = killed.elapsed();
    d.restart();
    let ready = killed.elapsed() - checked;
    let back = wait_for_ping(&a, ip_b, Duration::from_secs(30));
    let lost = killed.elapsed();
    eprintln!(
        "restart after kill -9: connectivity lost for {lost:?} from kill to first successful ping; \
         {checked:?} of it checking that the dead switch forwards nothing, restart to ready {ready:?}, \
         restart to first ping {:?}",
        lost - checked
    );
    assert!(back.is_some(), "no connectivity 30 s after the restart");

    assert_eq!(d.ctl_json::<Value>(&["network", "ls"]), networks, "network ls changed across the restart");
    assert_eq!(d.ctl_json::<Value>(&["network", "inspect", &net]), inspect, "network inspect changed");
    assert_eq!(d.ctl_json::<Vec<SandboxInfo>>(&["sandbox", "ls"]), sandboxes, "sandbox ls changed");
    assert_eq!(static_entries(&d), statics, "static fdb entries changed");
    for (s, e) in [(&a, &ea), (&b, &eb)] {
        let info = vswitch::link_info(s, &e.ifname).unwrap_or_else(|| panic!("{} gone from {s}", e.ifname));
        assert_eq!(info["address"].as_str(), Some(e.mac.to_string().as_str()), "{info}");
        assert_eq!(vswitch::ipv4_addrs(s, &e.ifname), vec![e.ipv4.expect("ip").to_string()]);
    }
    let r = tcp_transfer(&b, ip_b, &a, 4 << 20).expect("TCP after restart");
    assert!(r.intact, "TCP stream after restart corrupted: {r:?}");
    assert!(ping(&b, ea.ipv4.expect("ip").addr(), 1), "b cannot reach a after restart");
}

#[test]
fn second_daemon_on_the_same_socket_refuses_to_start() {
    if !require_root("second_daemon_on_the_same_socket_refuses_to_start") {
        return;
    }
    let d = Daemon::start();
    let net = d.name("n");
    d.network_create(&net, "10.205.1.0/24");
    let mut second = Command::new(&Binaries::get().vswitchd);
    second.arg("--ctl-socket").arg(d.socket()).arg("--state-dir").arg(d.state_dir());
    // An error at the binary's edge is one message, backtraces or not.
    second.env("RUST_BACKTRACE", "1");
    let out = output_with_timeout(&mut second, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("second vswitchd did not refuse to start: {e}"));
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "second vswitchd exited successfully; stderr: {stderr}");
    assert!(
        stderr.contains(&d.socket().display().to_string()) || stderr.to_lowercase().contains("already"),
        "second vswitchd should say why it refuses (socket in use); stderr: {stderr}"
    );
    assert_eq!(stderr.lines().filter(|l| l.starts_with("Error: ")).count(), 1, "stderr: {stderr}");
    assert!(!stderr.contains("Stack backtrace") && !stderr.contains("\u{1b}["), "stderr: {stderr}");
    // Its log is a file, not a terminal: no colour codes.
    assert!(!d.log().contains('\u{1b}'), "ANSI escapes in the log:\n{}", d.log());
    // The first daemon is unharmed.
    d.ctl_ok(&["ping"]);
    let info: Value = d.ctl_json(&["network", "inspect", &net]);
    assert_eq!(info[0]["Name"], net.as_str());
}

#[test]
fn sigterm_stops_the_daemon_and_state_survives() {
    if !require_root("sigterm_stops_the_daemon_and_state_survives") {
        return;
    }
    let mut d = Daemon::start();
    let net = d.name("n");
    let (a, b) = (d.name("a"), d.name("b"));
    d.network_create(&net, "10.205.2.0/24");
    d.sandbox_create(&a);
    d.sandbox_create(&b);
    d.connect(&net, &a, None);
    let eb = d.connect(&net, &b, None);
    let inspect: Value = d.ctl_json(&["network", "inspect", &net]);

    let status = d.terminate(Duration::from_secs(10));
    assert!(status.is_some(), "vswitchd did not exit within 10 s of SIGTERM");
    // A clean exit (0) is best; dying by the signal's default action is accepted
    // (the state is on disk after every change, and a restart copes with the stale socket).
    use std::os::unix::process::ExitStatusExt;
    assert!(
        status.is_some_and(|s| s.success() || s.signal() == Some(libc::SIGTERM)),
        "vswitchd exited with {status:?} on SIGTERM"
    );
    if status.is_some_and(|s| !s.success()) {
        eprintln!("note: vswitchd has no SIGTERM handler (it died by the signal instead of exiting cleanly)");
    }
    assert!(!d.ctl(&["ping"]).status.success(), "something still answers on the socket");

    d.restart();
    assert_eq!(d.ctl_json::<Value>(&["network", "inspect", &net]), inspect, "state changed across SIGTERM");
    let ip_b = eb.ipv4.expect("ip").addr();
    assert!(wait_for_ping(&a, ip_b, Duration::from_secs(10)).is_some(), "no connectivity after SIGTERM + start");
}

/// `network create --aux-address`: the reserved addresses are shown by
/// `network inspect`, never given to an endpoint, refused as `--ip`, and
/// all of that holds after `kill -9`. A reserved address outside the
/// subnet is refused and creates nothing.
#[test]
fn aux_addresses_are_skipped_refused_and_survive_kill_9() {
    if !require_root("aux_addresses_are_skipped_refused_and_survive_kill_9") {
        return;
    }
    let mut d = Daemon::start();
    let net = d.name("n");
    let (a, b, c) = (d.name("a"), d.name("b"), d.name("c"));
    let create = |aux: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = ["network", "create", &net, "--subnet", "10.205.3.0/24"].map(String::from).into();
        for a in aux {
            args.extend(["--aux-address".to_owned(), (*a).to_owned()]);
        }
        args
    };
    let err = d.ctl_err(&create(&["router=10.205.4.2"]).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(err.contains("router=10.205.4.2") && err.contains("not inside subnet 10.205.3.0/24"), "{err}");
    let listed = d.ctl_ok(&["network", "ls"]);
    assert!(!listed.contains(&net), "a refused network is listed: {listed}");
    let args = create(&["router=10.205.3.2", "printer=10.205.3.3"]);
    let info: ctl::proto::NetworkInfo = d.ctl_json(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let aux = |info: &ctl::proto::NetworkInfo| info.ipam.config[0].auxiliary_addresses.clone();
    let want = std::collections::BTreeMap::from([
        ("printer".to_owned(), "10.205.3.3".parse().unwrap()),
        ("router".to_owned(), "10.205.3.2".parse().unwrap()),
    ]);
    assert_eq!(aux(&info), want);
    for s in [&a, &b, &c] {
        d.sandbox_create(s);
    }
    let ea = d.connect(&net, &a, None);
    assert_eq!(ea.ipv4.map(|i| i.to_string()).as_deref(), Some("10.205.3.4/24"), "past .1 (gateway), .2 and .3");
    let err = d.ctl_err(&["network", "connect", &net, &b, "--ip", "10.205.3.2"]);
    assert!(err.contains("reserved as auxiliary address \"router\""), "{err}");

    d.kill9();
    d.restart();
    let info: Vec<ctl::proto::NetworkInfo> = d.ctl_json(&["network", "inspect", &net]);
    assert_eq!(aux(&info[0]), want, "after kill -9");
    let eb = d.connect(&net, &b, None);
    assert_eq!(eb.ipv4.map(|i| i.to_string()).as_deref(), Some("10.205.3.5/24"));
    let err = d.ctl_err(&["network", "connect", &net, &c, "--ip", "10.205.3.3"]);
    assert!(err.contains("reserved as auxiliary address \"printer\""), "{err}");
    assert!(ping(&a, Ipv4Addr::new(10, 205, 3, 5), 2), "the endpoints still talk");
}
