//! Tests against the real kernel (need root): named namespaces, TAPs with
//! vnet headers moved into namespaces and configured over netlink, and an
//! end-to-end ping/TCP exchange through a userspace TAP-to-TAP forwarder.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::netlink::{self, LinkConfig, Netlink};
use super::netns::{self, NETNS_RUN_DIR, NetNs, NetNsError};
use super::tap::{Offloads, Tap, TapError, TapMode, TapOptions};
use super::testutil::{NetGuard, have_root, recv_within};
use crate::wire::VirtioNetHdr;

/// Runs a command, asserts success, returns stdout.
fn run(cmd: &[&str]) -> String {
    let out = Command::new(cmd[0]).args(&cmd[1..]).output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

fn json(cmd: &[&str]) -> serde_json::Value {
    serde_json::from_str(&run(cmd)).expect("json from ip")
}

fn flags_of(v: &serde_json::Value) -> Vec<String> {
    v["flags"].as_array().expect("flags").iter().map(|f| f.as_str().unwrap_or_default().to_owned()).collect()
}

/// Polls `cond` for up to 2 s (device teardown after close is asynchronous
/// in places).
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn run_in_returns_value_and_reports_panics() {
    if !have_root("run_in_returns_value_and_reports_panics") {
        return;
    }
    let ns = NetNs::current().unwrap();
    assert!(ns.is_current().unwrap());
    let v = [1, 2, 3];
    assert_eq!(netns::run_in(&ns, || v.iter().sum::<i32>()).unwrap(), 6);
    let r = netns::run_in(&ns, || -> i32 { panic!("expected test panic") });
    assert!(matches!(r, Err(NetNsError::Panicked)));
}

#[test]
fn named_netns_is_usable_by_ip_and_has_lo_up() {
    if !have_root("named_netns_is_usable_by_ip_and_has_lo_up") {
        return;
    }
    let mut g = NetGuard::new();
    let ns = g.netns();
    let name = ns.name().unwrap().to_owned();
    let path = Path::new(NETNS_RUN_DIR).join(&name);
    assert!(path.exists());
    assert!(run(&["ip", "netns", "list"]).lines().any(|l| l.split_whitespace().next() == Some(&name)));

    let lo = json(&["ip", "netns", "exec", &name, "ip", "-j", "link", "show", "lo"]);
    assert!(flags_of(&lo[0]).contains(&"UP".to_owned()), "lo not up: {lo}");
    // Really a different namespace from ours.
    assert!(!ns.is_current().unwrap());
    assert_ne!(ns.id().unwrap(), NetNs::current().unwrap().id().unwrap());
    assert_eq!(NetNs::open_named(&name).unwrap().id().unwrap(), ns.id().unwrap());
    let in_ns = netns::run_in(&ns, || NetNs::current().unwrap().id().unwrap()).unwrap();
    assert_eq!(in_ns, ns.id().unwrap());

    assert!(matches!(NetNs::create_named(&name), Err(NetNsError::AlreadyExists(n)) if n == name));

    drop(ns);
    NetNs::remove_named(&name).unwrap();
    assert!(!path.exists());
    assert!(!run(&["ip", "netns", "list"]).contains(&name));
    assert!(matches!(NetNs::remove_named(&name), Err(NetNsError::NotFound(_))));
}

#[test]
fn tap_has_vnet_hdr_offloads_and_queues() {
    if !have_root("tap_has_vnet_hdr_offloads_and_queues") {
        return;
    }
    let mut g = NetGuard::new();
    let name = g.name();
    g.host_link(&name);
    let tap = Tap::create(&name, TapOptions::default()).unwrap();
    assert_eq!(tap.name(), name);
    assert_eq!(tap.current_name().unwrap(), name);
    assert!(!tap.is_persistent().unwrap());
    let off = tap.offloads();
    eprintln!("negotiated offloads: {off}");
    // Every kernel vswitch supports (>= 4.x) accepts checksum + TSO.
    assert!(off.contains(Offloads::CSUM | Offloads::TSO4 | Offloads::TSO6 | Offloads::TSO_ECN), "{off}");

    let tun_flags = std::fs::read_to_string(format!("/sys/class/net/{name}/tun_flags")).unwrap();
    let tun_flags = i64::from_str_radix(tun_flags.trim().trim_start_matches("0x"), 16).unwrap();
    let want = i64::from(libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR | libc::IFF_MULTI_QUEUE);
    assert_eq!(tun_flags & want, want, "tun_flags {tun_flags:#x}");

    // Nothing queued: a non-blocking read says WouldBlock.
    let mut buf = vec![0u8; Tap::RECV_BUF_LEN];
    assert_eq!(tap.recv(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);

    // A second queue on the same device.
    let q2 = tap.open_queue().unwrap();
    assert_eq!(q2.current_name().unwrap(), name);
    q2.set_queue_enabled(false).unwrap();
    q2.set_queue_enabled(true).unwrap();
    drop(q2);
    assert!(Netlink::open().unwrap().link_exists(&name).unwrap());

    // CreateNew refuses an existing name.
    let err = Tap::create(&name, TapOptions { persist: false, mode: TapMode::CreateNew }).unwrap_err();
    assert!(matches!(&err, TapError::Ioctl { source, .. } if source.raw_os_error() == Some(libc::EBUSY)), "{err:?}");

    // Not persistent: gone once the last queue closes.
    drop(tap);
    eventually("non-persistent TAP removed", || !Netlink::open().unwrap().link_exists(&name).unwrap());
}

#[test]
fn persistent_tap_survives_drop_and_reattaches_in_its_netns() {
    if !have_root("persistent_tap_survives_drop_and_reattaches_in_its_netns") {
        return;
    }
    let mut g = NetGuard::new();
    let ns = g.netns();
    let name = g.name();
    g.host_link(&name);
    let persist = TapOptions { persist: true, mode: TapMode::CreateNew };
    let tap = Tap::create(&name, persist).unwrap();
    assert!(tap.is_persistent().unwrap());
    drop(tap); // as after kill -9: the fd is gone
    let mut host = Netlink::open().unwrap();
    assert!(host.link_exists(&name).unwrap(), "persistent TAP vanished");

    let attach = TapOptions { persist: false, mode: TapMode::AttachExisting };
    let again = Tap::create(&name, attach).unwrap();
    assert!(again.is_persistent().unwrap());
    assert!(again.offloads().contains(Offloads::CSUM));

    // Move it into the sandbox; from then on it is re-attached from there.
    netlink::move_link_to_netns(&name, &ns).unwrap();
    drop(again);
    assert!(!host.link_exists(&name).unwrap());
    assert!(netlink::link_exists(&ns, &name).unwrap());
    assert!(matches!(Tap::create(&name, attach), Err(TapError::NotFound(_))));

    let inside = netns::run_in(&ns, || Tap::create(&name, attach)).unwrap().unwrap();
    assert!(inside.is_persistent().unwrap());
    inside.delete().unwrap();
    eventually("deleted TAP removed", || !netlink::link_exists(&ns, &name).unwrap());
}

#[test]
fn tap_moved_into_netns_and_configured_as_eth0() {
    if !have_root("tap_moved_into_netns_and_configured_as_eth0") {
        return;
    }
    let mut g = NetGuard::new();
    let ns = g.netns();
    let ns_name = ns.name().unwrap().to_owned();
    let name = g.name();
    g.host_link(&name);
    let tap = Tap::create(&name, TapOptions::default()).unwrap();
    netlink::move_link_to_netns(&name, &ns).unwrap();
    assert!(!netlink::link_exists(&NetNs::current().unwrap(), &name).unwrap());

    let mac = [0x02, 0x00, 0x5e, 0x10, 0x20, 0x30];
    let cfg = LinkConfig {
        new_name: Some("eth0".into()),
        mac: Some(mac),
        mtu: Some(1400),
        ipv4: Some((Ipv4Addr::new(10, 77, 0, 2), 24)),
        ipv6: Some(("fd77::2".parse().unwrap(), 64)),
        txqueuelen: Some(2048),
        up: true,
    };
    netlink::configure_link(&ns, &name, &cfg).unwrap();
    netlink::add_default_route(&ns, Ipv4Addr::new(10, 77, 0, 1), "eth0").unwrap();
    netlink::add_default_route6(&ns, "fd77::1".parse().unwrap(), "eth0").unwrap();
    // Idempotent: configuring again (same name) and re-adding the routes succeed.
    netlink::configure_link(&ns, "eth0", &LinkConfig { new_name: Some("eth0".into()), ..cfg.clone() }).unwrap();
    netlink::add_default_route(&ns, Ipv4Addr::new(10, 77, 0, 1), "eth0").unwrap();
    netlink::add_default_route6(&ns, "fd77::1".parse().unwrap(), "eth0").unwrap();
    assert_eq!(tap.current_name().unwrap(), "eth0");

    let addr = json(&["ip", "-n", &ns_name, "-j", "addr", "show", "dev", "eth0"]);
    let l = &addr[0];
    assert_eq!(l["address"], "02:00:5e:10:20:30", "{l}");
    assert_eq!(l["mtu"], 1400);
    assert_eq!(l["txqlen"], 2048, "{l}");
    assert!(flags_of(l).contains(&"UP".to_owned()), "{l}");
    let v4: Vec<_> = l["addr_info"].as_array().unwrap().iter().filter(|a| a["family"] == "inet").collect();
    assert_eq!(v4.len(), 1, "{l}");
    assert_eq!(v4[0]["local"], "10.77.0.2");
    assert_eq!(v4[0]["prefixlen"], 24);
    // The IPv6 address is there once, global, usable at once (nodad, never tentative).
    let v6: Vec<_> = l["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["family"] == "inet6" && a["scope"] == "global")
        .collect();
    assert_eq!(v6.len(), 1, "{l}");
    assert_eq!((&v6[0]["local"], &v6[0]["prefixlen"]), (&"fd77::2".into(), &64.into()), "{l}");
    assert_eq!(v6[0]["nodad"], true, "{l}");
    assert!(v6[0].get("tentative").is_none(), "{l}");

    let routes = json(&["ip", "-n", &ns_name, "-j", "route", "show", "default"]);
    assert_eq!(routes.as_array().unwrap().len(), 1, "{routes}");
    assert_eq!(routes[0]["gateway"], "10.77.0.1");
    assert_eq!(routes[0]["dev"], "eth0");
    let routes6 = json(&["ip", "-n", &ns_name, "-j", "-6", "route", "show"]);
    let find = |dst: &str| routes6.as_array().unwrap().iter().filter(|r| r["dst"] == dst).cloned().collect::<Vec<_>>();
    let prefix = find("fd77::/64");
    assert_eq!((prefix.len(), &prefix[0]["dev"]), (1, &"eth0".into()), "on-link prefix route: {routes6}");
    let default6 = find("default");
    assert_eq!(default6.len(), 1, "{routes6}");
    assert_eq!((&default6[0]["gateway"], &default6[0]["dev"]), (&"fd77::1".into(), &"eth0".into()), "{routes6}");

    let mut nl = Netlink::open_in(&ns).unwrap();
    let st = nl.link("eth0").unwrap().unwrap();
    assert_eq!((st.mtu, st.mac.as_deref(), st.up), (Some(1400), Some(&mac[..]), true));
    assert!(matches!(nl.add_ipv4_addr("eth0", Ipv4Addr::LOCALHOST, 33), Err(netlink::NetlinkError::InvalidPrefix(33))));
    let bad6 = nl.add_ipv6_addr("eth0", "fd77::3".parse().unwrap(), 129);
    assert!(matches!(bad6, Err(netlink::NetlinkError::InvalidPrefix6(129))));

    netlink::delete_link(&ns, "eth0").unwrap();
    assert!(!netlink::link_exists(&ns, "eth0").unwrap());
}

#[test]
fn source_routes_send_an_address_through_its_own_gateway_and_go_with_their_rule() {
    if !have_root("source_routes_send_an_address_through_its_own_gateway_and_go_with_their_rule") {
        return;
    }
    let mut g = NetGuard::new();
    let ns = g.netns();
    let ns_name = ns.name().unwrap().to_owned();
    let mut taps = Vec::new();
    for (ifname, v4, v6) in [("eth0", [10, 77, 0, 2], "fd77::2"), ("eth1", [10, 78, 0, 2], "fd78::2")] {
        let name = g.name();
        g.host_link(&name);
        taps.push(Tap::create(&name, TapOptions::default()).unwrap());
        netlink::move_link_to_netns(&name, &ns).unwrap();
        let cfg = LinkConfig {
            new_name: Some(ifname.into()),
            ipv4: Some((Ipv4Addr::from(v4), 24)),
            ipv6: Some((v6.parse().unwrap(), 64)),
            up: true,
            ..LinkConfig::default()
        };
        netlink::configure_link(&ns, &name, &cfg).unwrap();
    }
    netlink::add_default_route(&ns, Ipv4Addr::new(10, 77, 0, 1), "eth0").unwrap();
    netlink::add_default_route6(&ns, "fd77::1".parse().unwrap(), "eth0").unwrap();
    let route = |args: &[&str]| {
        let mut cmd = vec!["ip", "-n", &ns_name, "-j"];
        cmd.extend_from_slice(args);
        let r = json(&cmd);
        (r[0]["dev"].as_str().unwrap_or_default().to_owned(), r[0]["gateway"].as_str().map(str::to_owned))
    };
    let via = |dev: &str, gw: &str| (dev.to_owned(), Some(gw.to_owned()));
    let from_eth1 = ["route", "get", "192.0.2.1", "from", "10.78.0.2"];
    let from_eth1_v6 = ["-6", "route", "get", "2001:db8::1", "from", "fd78::2"];
    assert_eq!(route(&from_eth1), via("eth0", "10.77.0.1"), "the main table's default route before");

    let mut nl = Netlink::open_in(&ns).unwrap();
    for _ in 0..2 {
        // Twice: adding again changes nothing.
        nl.add_source_route("10.78.0.2".parse().unwrap(), "10.78.0.1".parse().unwrap(), "eth1").unwrap();
        nl.add_source_route("fd78::2".parse().unwrap(), "fd78::1".parse().unwrap(), "eth1").unwrap();
    }
    let eth1 = nl.link("eth1").unwrap().unwrap().index;
    let rules = nl.source_rules(netlink_packet_route::AddressFamily::Inet).unwrap();
    assert_eq!(rules, vec![("10.78.0.2".parse().unwrap(), netlink::table_of(eth1))], "one rule, once");
    assert_eq!(route(&from_eth1), via("eth1", "10.78.0.1"), "from eth1's address, through eth1's gateway");
    assert_eq!(route(&from_eth1_v6), via("eth1", "fd78::1"));
    assert_eq!(route(&["route", "get", "192.0.2.1"]), via("eth0", "10.77.0.1"), "any other source as before");
    assert_eq!(route(&["route", "get", "192.0.2.1", "from", "10.77.0.2"]), via("eth0", "10.77.0.1"));
    // The main table still decides every route but its default one.
    assert_eq!(route(&["route", "get", "10.77.0.9", "from", "10.78.0.2"]), ("eth0".to_owned(), None));

    nl.remove_source_route("10.78.0.2".parse().unwrap()).unwrap();
    nl.remove_source_route("fd78::2".parse().unwrap()).unwrap();
    nl.remove_source_route("fd78::2".parse().unwrap()).expect("nothing left to remove is fine");
    assert!(nl.source_rules(netlink_packet_route::AddressFamily::Inet).unwrap().is_empty());
    assert!(nl.source_rules(netlink_packet_route::AddressFamily::Inet6).unwrap().is_empty());
    assert_eq!(route(&from_eth1), via("eth0", "10.77.0.1"), "back to the main table's default route");
    assert_eq!(route(&from_eth1_v6), via("eth0", "fd77::1"));
    drop(taps);
}

#[test]
fn cleanup_leaves_no_netns_or_links_behind() {
    if !have_root("cleanup_leaves_no_netns_or_links_behind") {
        return;
    }
    let mut g = NetGuard::new();
    let prefix = g.prefix().to_owned();
    let a = g.netns();
    let _b = g.netns();
    let name = g.name();
    g.host_link(&name);
    let tap = Tap::create(&name, TapOptions { persist: true, mode: TapMode::CreateNew }).unwrap();
    let moved = g.name();
    g.host_link(&moved);
    let t2 = Tap::create(&moved, TapOptions { persist: true, mode: TapMode::CreateNew }).unwrap();
    netlink::move_link_to_netns(&moved, &a).unwrap();
    drop((tap, t2, a, _b));
    drop(g);
    let left: Vec<_> = std::fs::read_dir(NETNS_RUN_DIR)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "left behind in {NETNS_RUN_DIR}: {left:?}");
    let mut host = Netlink::open().unwrap();
    eventually("host links removed", || !host.link_exists(&name).unwrap() && !host.link_exists(&moved).unwrap());
}

/// Counters of the in-test forwarder.
#[derive(Default)]
struct FwdStats {
    frames: AtomicU64,
    gso_frames: AtomicU64,
    csum_partial: AtomicU64,
    bad_hdr: AtomicU64,
    dropped: AtomicU64,
}

/// Moves frames, vnet header included, between two TAP queues until `stop`.
/// A->B uses `send`, B->A uses `send_vectored` (header and frame as two
/// slices), so both write paths are exercised.
fn forward(a: &Tap, b: &Tap, stop: &AtomicBool, st: &FwdStats) {
    let mut buf = vec![0u8; Tap::RECV_BUF_LEN];
    while !stop.load(Ordering::Relaxed) {
        let mut idle = true;
        for (src, dst, vectored) in [(a, b, false), (b, a, true)] {
            loop {
                let n = match src.recv(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("tap recv: {e}"),
                };
                idle = false;
                st.frames.fetch_add(1, Ordering::Relaxed);
                match VirtioNetHdr::parse(&buf[..n]) {
                    Some(h) if n >= VirtioNetHdr::LEN + 14 => {
                        if h.is_gso() {
                            st.gso_frames.fetch_add(1, Ordering::Relaxed);
                        }
                        if h.needs_csum() {
                            st.csum_partial.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    _ => {
                        st.bad_hdr.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                }
                let res = if vectored {
                    let (h, f) = buf[..n].split_at(VirtioNetHdr::LEN);
                    dst.send_vectored(&[IoSlice::new(h), IoSlice::new(f)])
                } else {
                    dst.send(&buf[..n])
                };
                match res {
                    Ok(w) => assert_eq!(w, n, "short TAP write"),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        st.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => panic!("tap send: {e}"),
                }
            }
        }
        if idle {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

fn ping_available() -> bool {
    Command::new("ping").arg("-V").output().is_ok_and(|o| o.status.success())
}

#[test]
fn ping_and_tcp_between_namespaces_through_userspace_forwarder() {
    if !have_root("ping_and_tcp_between_namespaces_through_userspace_forwarder") {
        return;
    }
    let mut g = NetGuard::new();
    let ns_a = g.netns();
    let ns_b = g.netns();
    let ip_a = Ipv4Addr::new(10, 78, 0, 1);
    let ip_b = Ipv4Addr::new(10, 78, 0, 2);
    let mut taps = Vec::new();
    for (ns, ip, last) in [(&ns_a, ip_a, 1u8), (&ns_b, ip_b, 2u8)] {
        let name = g.name();
        g.host_link(&name);
        let tap = Tap::create(&name, TapOptions::default()).unwrap();
        netlink::move_link_to_netns(&name, ns).unwrap();
        let cfg = LinkConfig {
            new_name: Some("eth0".into()),
            mac: Some([0x02, 0, 0, 0x78, 0, last]),
            mtu: Some(1500),
            ipv4: Some((ip, 24)),
            ipv6: None,
            txqueuelen: None,
            up: true,
        };
        netlink::configure_link(ns, &name, &cfg).unwrap();
        taps.push(tap);
    }
    let (tap_a, tap_b) = (&taps[0], &taps[1]);
    let stop = AtomicBool::new(false);
    let stats = FwdStats::default();

    std::thread::scope(|s| {
        let fwd = s.spawn(|| forward(tap_a, tap_b, &stop, &stats));
        // Stop the forwarder even if an assertion below fails.
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = StopOnDrop(&stop);

        if ping_available() {
            let out = run(&[
                "ip",
                "netns",
                "exec",
                ns_a.name().unwrap(),
                "ping",
                "-c",
                "2",
                "-i",
                "0.2",
                "-W",
                "2",
                &ip_b.to_string(),
            ]);
            assert!(out.contains("2 received"), "{out}");
        } else {
            assert!(std::env::var_os("CI").is_none(), "ping not installed (apt-get install iputils-ping)");
            eprintln!("SKIP ping part: `ping` not installed (TCP part still runs) ===========");
        }

        // Bulk TCP B <- A: exercises TSO/GSO super-frames and partial checksums
        // crossing the forwarder with their vnet headers.
        const LEN: usize = 8 << 20;
        let listener = netns::run_in(&ns_b, || TcpListener::bind(SocketAddr::from((ip_b, 0)))).unwrap().unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = s.spawn(move || -> io::Result<(usize, u64)> {
            let (conn, _) = listener.accept()?;
            let mut buf = vec![0u8; 64 * 1024];
            let (mut total, mut sum) = (0usize, 0u64);
            loop {
                let twenty = Duration::from_secs(20);
                let n = recv_within(twenty, |t| conn.set_read_timeout(t), || (&conn).read(&mut buf))?;
                if n == 0 {
                    return Ok((total, sum));
                }
                for (i, &byte) in buf[..n].iter().enumerate() {
                    sum = sum.wrapping_add(u64::from(byte) * ((total + i) as u64 % 251 + 1));
                }
                total += n;
            }
        });
        let mut conn = netns::run_in(&ns_a, || {
            TcpStream::connect_timeout(&SocketAddr::from((ip_b, port)), Duration::from_secs(5))
        })
        .unwrap()
        .unwrap();
        conn.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        let data: Vec<u8> = (0..LEN).map(|i| (i.wrapping_mul(31) ^ (i >> 9)) as u8).collect();
        let want: u64 =
            data.iter().enumerate().fold(0u64, |acc, (i, &b)| acc.wrapping_add(u64::from(b) * (i as u64 % 251 + 1)));
        conn.write_all(&data).unwrap();
        conn.shutdown(std::net::Shutdown::Write).unwrap();
        let (got, sum) = server.join().unwrap().unwrap();
        assert_eq!(got, LEN);
        assert_eq!(sum, want, "payload corrupted in transit");

        stop.store(true, Ordering::Relaxed);
        fwd.join().unwrap();
    });

    let frames = stats.frames.load(Ordering::Relaxed);
    let gso = stats.gso_frames.load(Ordering::Relaxed);
    let csum = stats.csum_partial.load(Ordering::Relaxed);
    eprintln!(
        "forwarded {frames} frames, {gso} GSO, {csum} csum-partial, {} dropped",
        stats.dropped.load(Ordering::Relaxed)
    );
    assert_eq!(stats.bad_hdr.load(Ordering::Relaxed), 0);
    assert!(frames > 0);
    if tap_a.offloads().contains(Offloads::TSO4) {
        assert!(gso > 0, "TSO negotiated but no GSO frame crossed the forwarder");
        assert!(csum > 0, "checksum offload negotiated but no partial checksum seen");
    }
}
