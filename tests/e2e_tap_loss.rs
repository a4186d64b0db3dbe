//! Loss in a TAP's queue is visible: a sandbox that sends faster than the
//! switch reads overflows its TAP's queue, and the kernel drops the rest
//! (the interface's `tx_dropped`). The daemon is paused with SIGSTOP while a
//! sandbox floods 64-byte UDP frames, so every frame beyond the queue's
//! length must be dropped; `stats --json` then shows exactly what the kernel
//! counted, as the port's `tap_queue_dropped`, and the queue is as deep as
//! the daemon configured it, also after a restart. Needs root.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use ctl::proto::{PortStats, ShowTree};
use vswitch::overlay::ip_of;
use vswitch::{Daemon, link_info, netns_exec_ok, ping, require_root, udp_send, wait_until};

/// The `txqueuelen` the daemon gives every endpoint TAP.
const TXQUEUELEN: u64 = switch::daemon::plumbing::TAP_TXQUEUELEN as u64;

/// Frames other than the flood that may sit in the queue when it fills
/// (IPv6 neighbour and multicast listener messages of the sandbox).
const OTHER_FRAMES: u64 = 64;

/// Frames sent while the daemon is stopped: the queue's worth and 2,000 more.
const FLOOD: u64 = TXQUEUELEN + 2000;

/// The kernel's count of frames dropped on transmit by `ifname` in `ns`.
fn kernel_tx_dropped(ns: &str, ifname: &str) -> u64 {
    let out = netns_exec_ok(ns, "ip", &["-s", "-j", "link", "show", "dev", ifname]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j output");
    v[0]["stats64"]["tx"]["dropped"].as_u64().unwrap_or_else(|| panic!("no tx dropped in {v}"))
}

fn port_stats(d: &Daemon, port: &str) -> PortStats {
    let all: Vec<PortStats> = d.ctl_json(&["stats"]);
    all.into_iter().find(|s| s.port == port).unwrap_or_else(|| panic!("no stats row for {port}"))
}

fn show_txqueuelen(d: &Daemon, port: &str) -> Option<u32> {
    let tree: ShowTree = d.ctl_json(&["show"]);
    let p = tree.networks.iter().flat_map(|n| &n.ports).find(|p| p.name == port);
    p.unwrap_or_else(|| panic!("port {port} not in show: {tree:?}")).txqueuelen
}

/// Stops the daemon with SIGSTOP; continues it when dropped, even when the
/// test fails, so the daemon's own guard can clean up.
struct Paused(u32);

impl Paused {
    /// Returns once every thread of the daemon has stopped: kill(2)
    /// returns before a thread running on the other CPU does, and under
    /// load the datapath read 347 more frames from the queue after it
    /// (one failed run).
    fn new(pid: u32) -> Paused {
        // SAFETY: kill(2) on the pid of the daemon this test started and has not reaped.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) }, 0, "SIGSTOP the daemon");
        let paused = Paused(pid);
        wait_until(
            Duration::from_secs(10),
            || format!("every thread of {pid} to stop"),
            || all_stopped(pid).then_some(()),
        );
        paused
    }
}

/// Whether every thread of `pid` is stopped (state `T` in
/// `/proc/PID/task/TID/stat`; a thread gone meanwhile counts as stopped).
fn all_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
    tasks.flatten().all(|task| {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // The state follows the command name, which ends at the last `)`.
        stat.rsplit_once(')').is_none_or(|(_, rest)| rest.trim_start().starts_with('T'))
    })
}

impl Drop for Paused {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::kill(self.0 as libc::pid_t, libc::SIGCONT) };
    }
}

#[test]
fn a_tap_queue_overflow_is_counted_as_the_kernel_counts_it() {
    if !require_root("a_tap_queue_overflow_is_counted_as_the_kernel_counts_it") {
        return;
    }
    let mut d = Daemon::start();
    let net = d.name("n");
    let (a, b) = (d.name("a"), d.name("b"));
    d.network_create(&net, "10.203.0.0/24");
    d.sandbox_create(&a);
    d.sandbox_create(&b);
    let ea = d.connect(&net, &a, None);
    let eb = d.connect(&net, &b, None);
    assert!(ping(&a, ip_of(&eb), 3), "{a} cannot ping {b}");
    // No ARP while the switch is stopped: b's address stays resolved.
    let dst_ip = ip_of(&eb).to_string();
    netns_exec_ok(
        &a,
        "ip",
        &["neigh", "replace", &dst_ip, "lladdr", &eb.mac.to_string(), "dev", "eth0", "nud", "permanent"],
    );

    // The queue is as deep as configured, as the kernel and `show` say.
    let info = link_info(&a, &ea.ifname).expect("a's interface");
    assert_eq!(info["txqlen"].as_u64(), Some(TXQUEUELEN), "{info}");
    assert_eq!(show_txqueuelen(&d, &ea.port).map(u64::from), Some(TXQUEUELEN));

    let kernel_before = kernel_tx_dropped(&a, &ea.ifname);
    let before = port_stats(&d, &ea.port);
    assert_eq!(before.tap_queue_dropped, Some(kernel_before), "{before:?}");

    // 64-byte frames: 14 Ethernet + 20 IPv4 + 8 UDP + 18 payload + 4 FCS.
    let dst = SocketAddr::from((ip_of(&eb), 9));
    let payloads = vec![vec![0x5a; 18]; FLOOD as usize];
    {
        let _paused = Paused::new(d.pid().expect("daemon runs"));
        udp_send(&a, Ipv4Addr::UNSPECIFIED, dst, &payloads).expect("flood from a");
    }

    // Every frame sent either reached the switch (once it runs again) or
    // was dropped by the kernel because the queue was full.
    let dropped = kernel_tx_dropped(&a, &ea.ifname) - kernel_before;
    let after = wait_until(
        Duration::from_secs(20),
        || format!("the switch to read the queued frames: {:?}", port_stats(&d, &ea.port)),
        || {
            let s = port_stats(&d, &ea.port);
            (s.rx_packets - before.rx_packets + dropped >= FLOOD).then_some(s)
        },
    );
    let read = after.rx_packets - before.rx_packets;
    eprintln!("{FLOOD} frames sent while stopped: {dropped} dropped in the TAP queue, {read} read by the switch");
    assert!(
        dropped >= FLOOD - TXQUEUELEN,
        "only {dropped} of {FLOOD} frames dropped with a {TXQUEUELEN}-frame queue ({read} read by the switch)"
    );
    // ... and no more: the queue really held TXQUEUELEN frames (with the
    // kernel's default of 1,000, 5,096 would have been lost).
    assert!(
        dropped <= FLOOD - TXQUEUELEN + OTHER_FRAMES,
        "{dropped} of {FLOOD} dropped: the queue held fewer than {TXQUEUELEN} frames ({read} read by the switch)"
    );
    assert!(dropped > 0);

    // `stats --json` shows what the kernel counted (read while nothing is
    // sent, so the two reads agree).
    let kernel = kernel_tx_dropped(&a, &ea.ifname);
    let shown = port_stats(&d, &ea.port);
    assert_eq!(shown.tap_queue_dropped, Some(kernel), "{shown:?}");
    assert_eq!(kernel, kernel_before + dropped);
    // They never reached the switch: not a drop reason of the switch's.
    assert_eq!(shown.total_drops(), before.total_drops(), "{shown:?}");
    // The receiving port's queue lost nothing.
    assert_eq!(port_stats(&d, &eb.port).tap_queue_dropped, Some(kernel_tx_dropped(&b, &eb.ifname)));

    // The same number for Prometheus and for people.
    let metrics = d.ctl_ok(&["stats", "--prometheus"]);
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("vswitch_port_tap_queue_dropped_total{") && l.contains(&format!("port=\"{}\"", ea.port))
        })
        .unwrap_or_else(|| panic!("no tap queue metric for {}:\n{metrics}", ea.port));
    assert!(line.ends_with(&format!(" {kernel}")), "{line}");
    let human = d.ctl_ok(&["stats"]);
    let queue = human.split("TAP-QUEUE").nth(1).unwrap_or_else(|| panic!("no TAP-QUEUE table:\n{human}"));
    assert!(
        queue.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == [ea.port.as_str(), &kernel.to_string()]),
        "{human}"
    );

    // A TAP restored after a restart gets the configured depth back.
    netns_exec_ok(&a, "ip", &["link", "set", "dev", &ea.ifname, "txqueuelen", "1000"]);
    d.restart();
    let info = link_info(&a, &ea.ifname).expect("a's interface after restart");
    assert_eq!(info["txqlen"].as_u64(), Some(TXQUEUELEN), "{info}");
    assert_eq!(show_txqueuelen(&d, &ea.port).map(u64::from), Some(TXQUEUELEN));
    // The kernel's counter lives with the TAP, so it survives the restart.
    assert_eq!(port_stats(&d, &ea.port).tap_queue_dropped, Some(kernel_tx_dropped(&a, &ea.ifname)));
}
