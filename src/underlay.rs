//! Simulated hosts for multi-host (overlay) tests. [`Underlay`] makes one
//! network namespace per "host", each joined by a veth link to a kernel
//! bridge in a dedicated "underlay" namespace, with an address in a test
//! subnet (and, on a [dual-stack](Underlay::dual_stack) underlay, an IPv6
//! address too, for VTEPs on an IPv6 underlay); it also makes any extra
//! namespaces a test asks for (containers of a kernel-VXLAN host, say).
//! Everything is removed when it drops, even when the test fails.
//!
//! A `vswitchd` runs in a host with
//! [`Daemon::builder`](crate::Daemon::builder)`().in_netns(host.netns_path())`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::names::unique_prefix;
use crate::netns::{NETNS_DIR, netns_exec};
use crate::process::{output_with_timeout, text};

/// Name of every host's underlay interface (inside its own namespace).
pub const UNDERLAY_IF: &str = "ul0";
/// The VXLAN UDP port.
pub const VXLAN_PORT: u16 = 4789;

/// Longest one `ip` command may take.
const IP_TIMEOUT: Duration = Duration::from_secs(20);

/// One simulated host on the underlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnderlayHost {
    /// Its namespace (`/run/netns/<ns>`).
    pub ns: String,
    /// Its underlay interface, [`UNDERLAY_IF`].
    pub ifname: String,
    /// Its underlay address.
    pub addr: Ipv4Addr,
    /// Its IPv6 underlay address, on a [dual-stack](Underlay::dual_stack)
    /// underlay.
    pub addr6: Option<Ipv6Addr>,
}

impl UnderlayHost {
    /// Path of its namespace, for `nsenter --net=` or [`crate::daemon::DaemonBuilder::in_netns`].
    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from(NETNS_DIR).join(&self.ns)
    }

    /// Its VTEP address: the underlay address and the VXLAN port.
    pub fn vtep(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.addr, VXLAN_PORT))
    }

    /// Its IPv6 underlay address; panics on an IPv4-only underlay.
    pub fn ipv6(&self) -> Ipv6Addr {
        self.addr6.unwrap_or_else(|| panic!("host {} has no IPv6 underlay address (Underlay::dual_stack)", self.ns))
    }

    /// Its VTEP address on the IPv6 underlay: `[addr6]:4789`.
    pub fn vtep6(&self) -> SocketAddr {
        SocketAddr::V6(SocketAddrV6::new(self.ipv6(), VXLAN_PORT, 0, 0))
    }
}

/// A set of hosts on one underlay L2 segment (a kernel bridge in its own
/// namespace), addresses `a.b.c.1`, `a.b.c.2`, … of a /24.
pub struct Underlay {
    prefix: String,
    switch_ns: Option<String>,
    hosts: Vec<UnderlayHost>,
    /// Namespaces to delete, in creation order.
    namespaces: Vec<String>,
}

impl Underlay {
    /// Makes `hosts` hosts on the underlay subnet `net.0/24` (`net` gives
    /// its first three octets), each with [`UNDERLAY_IF`] up at MTU 1500 and
    /// address `net.<i + 1>`, and loopback up. Panics with the failing
    /// command's output if a step fails (what was made is still removed).
    pub fn new(net: [u8; 3], hosts: usize) -> Underlay {
        Underlay::make(net, None, hosts)
    }

    /// As [`Underlay::new`], and each host also gets the IPv6 address
    /// `net6::<i + 1>/64` on [`UNDERLAY_IF`] (`net6` is a /64 prefix, e.g.
    /// `fd00:212:1::`), usable at once (`nodad`), for VTEPs on an IPv6
    /// underlay. The underlay bridge does no multicast snooping, so
    /// neighbour discovery never depends on MLD reports it has seen.
    pub fn dual_stack(net: [u8; 3], net6: Ipv6Addr, hosts: usize) -> Underlay {
        Underlay::make(net, Some(net6), hosts)
    }

    fn make(net: [u8; 3], net6: Option<Ipv6Addr>, hosts: usize) -> Underlay {
        let prefix = unique_prefix();
        let mut u = Underlay { prefix, switch_ns: None, hosts: Vec::new(), namespaces: Vec::new() };
        let sw = u.add_netns("ul");
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"]);
        if net6.is_some() {
            ip(&["-n", &sw, "link", "set", "br0", "type", "bridge", "mcast_snooping", "0"]);
        }
        ip(&["-n", &sw, "link", "set", "br0", "up"]);
        u.switch_ns = Some(sw.clone());
        for i in 1..=hosts {
            let ns = u.add_netns(&format!("h{i}"));
            let port = format!("h{i}");
            ip(&["-n", &ns, "link", "add", UNDERLAY_IF, "type", "veth", "peer", "name", &port, "netns", &sw]);
            ip(&["-n", &sw, "link", "set", &port, "master", "br0", "up"]);
            let addr = Ipv4Addr::new(net[0], net[1], net[2], i as u8);
            ip(&["-n", &ns, "addr", "add", &format!("{addr}/24"), "dev", UNDERLAY_IF]);
            let addr6 = net6.map(|p| Ipv6Addr::from(u128::from(p) | i as u128));
            if let Some(a6) = addr6 {
                ip(&["-n", &ns, "-6", "addr", "add", &format!("{a6}/64"), "dev", UNDERLAY_IF, "nodad"]);
            }
            ip(&["-n", &ns, "link", "set", UNDERLAY_IF, "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            u.hosts.push(UnderlayHost { ns, ifname: UNDERLAY_IF.to_owned(), addr, addr6 });
        }
        u
    }

    /// Host `i` (0-based).
    pub fn host(&self, i: usize) -> &UnderlayHost {
        &self.hosts[i]
    }

    /// All hosts.
    pub fn hosts(&self) -> &[UnderlayHost] {
        &self.hosts
    }

    /// The namespace holding the underlay bridge `br0`.
    pub fn switch_ns(&self) -> &str {
        self.switch_ns.as_deref().unwrap_or_default()
    }

    /// `prefix + suffix`: a name unique to this underlay (at most 13
    /// characters of prefix).
    pub fn name(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// Creates the namespace `prefix + suffix` (loopback up), to be removed
    /// with the underlay, and returns its name.
    pub fn add_netns(&mut self, suffix: &str) -> String {
        let name = self.name(suffix);
        ip(&["netns", "add", &name]);
        self.namespaces.push(name.clone());
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        name
    }

    /// Turns host `host` into a Linux kernel VXLAN host: a `vxlan` device
    /// `vx0` (VNI `vni`, port 4789, local = the host's address, no learning)
    /// that floods to every address in `remotes`, enslaved with a veth to a
    /// kernel bridge `kbr0`; the veth's other end is `eth0` of a new
    /// "container" namespace with address `container_cidr` and MTU 1450.
    /// Transmit offloads of the host's underlay interface are turned off
    /// (needs `ethtool`). Returns the container namespace's name.
    pub fn kernel_vxlan_container(
        &mut self,
        host: usize,
        vni: u32,
        remotes: &[Ipv4Addr],
        container_cidr: &str,
    ) -> String {
        let local = IpAddr::V4(self.hosts[host].addr);
        let remotes: Vec<IpAddr> = remotes.iter().map(|&r| r.into()).collect();
        self.kernel_container(host, vni, local, &remotes, container_cidr)
    }

    /// As [`Underlay::kernel_vxlan_container`] over the IPv6 underlay of a
    /// [dual-stack](Underlay::dual_stack) underlay: the `vxlan` device's
    /// local address is the host's IPv6 address and `remotes` are IPv6
    /// VTEPs; the container's MTU is 1430 (the kernel's default for VXLAN
    /// over IPv6 on a 1500-byte link). The kernel computes and checks UDP
    /// checksums on it (`udp6zerocsumtx`/`udp6zerocsumrx` off, the default):
    /// a zero checksum from a peer is dropped.
    pub fn kernel_vxlan6_container(
        &mut self,
        host: usize,
        vni: u32,
        remotes: &[Ipv6Addr],
        container_cidr: &str,
    ) -> String {
        let local = IpAddr::V6(self.hosts[host].ipv6());
        let remotes: Vec<IpAddr> = remotes.iter().map(|&r| r.into()).collect();
        self.kernel_container(host, vni, local, &remotes, container_cidr)
    }

    fn kernel_container(
        &mut self,
        host: usize,
        vni: u32,
        local: IpAddr,
        remotes: &[IpAddr],
        container_cidr: &str,
    ) -> String {
        let h = self.hosts[host].clone();
        let c = self.add_netns(&format!("k{host}"));
        let mtu = 1500 - if local.is_ipv6() { 70 } else { 50 };
        let (ns, vni, local, mtu) = (h.ns.as_str(), vni.to_string(), local.to_string(), mtu.to_string());
        ip(&["-n", ns, "link", "add", "vx0", "type", "vxlan", "id", &vni, "dstport", "4789"]
            .into_iter()
            .chain(["local", &local, "dev", &h.ifname, "nolearning"])
            .collect::<Vec<_>>());
        for r in remotes {
            let r = r.to_string();
            bridge(ns, &["fdb", "append", "00:00:00:00:00:00", "dev", "vx0", "dst", &r]);
        }
        // A veth leaves checksums of locally made packets for "hardware" to
        // fill in, across namespaces too: with offloads on, the inner TCP
        // checksums of the kernel's VXLAN packets reach the other host's
        // UDP socket (vswitchd) unfinished. A real NIC would complete them;
        // here the kernel must, before the packets leave.
        let out = netns_exec(ns, "ethtool", &["-K", &h.ifname, "tx", "off"]);
        assert!(out.status.success(), "ethtool -K {} tx off in {ns} failed: {}", h.ifname, text(&out.stderr));
        ip(&["-n", ns, "link", "add", "kbr0", "type", "bridge"]);
        ip(&["-n", ns, "link", "set", "vx0", "master", "kbr0", "up"]);
        ip(&["-n", ns, "link", "add", "c0", "type", "veth", "peer", "name", "eth0", "netns", &c]);
        ip(&["-n", ns, "link", "set", "c0", "master", "kbr0", "up"]);
        ip(&["-n", ns, "link", "set", "kbr0", "up"]);
        ip(&["-n", &c, "link", "set", "eth0", "mtu", &mtu, "up"]);
        ip(&["-n", &c, "addr", "add", container_cidr, "dev", "eth0"]);
        c
    }
}

impl Drop for Underlay {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            let mut c = Command::new("ip");
            c.args(["netns", "delete", ns]);
            let _ = output_with_timeout(&mut c, IP_TIMEOUT);
            let _ = std::fs::remove_file(PathBuf::from(NETNS_DIR).join(ns));
        }
    }
}

/// Joins namespace `host` (the daemon's) to a "LAN" namespace `lan` by a
/// veth pair, `host_if` on the daemon's side (for `port add`) and `lan0`
/// on the LAN's, with `queues` queues each way; `lan0` gets `address`
/// (`A.B.C.D/N`), goes up and completes its own checksums (an XDP program
/// on the other end sees bytes only).
pub fn lan_link(host: &str, lan: &str, host_if: &str, queues: u32, address: &str) {
    let queues = queues.to_string();
    let q = ["numtxqueues", queues.as_str(), "numrxqueues", queues.as_str()];
    let mut add = vec!["-n", host, "link", "add", host_if];
    add.extend(q);
    add.extend(["type", "veth", "peer", "name", "lan0"]);
    add.extend(q);
    add.extend(["netns", lan]);
    ip(&add);
    ip(&["-n", lan, "addr", "add", address, "dev", "lan0"]);
    ip(&["-n", lan, "link", "set", "lan0", "up"]);
    let out = netns_exec(lan, "ethtool", &["-K", "lan0", "tx", "off"]);
    assert!(out.status.success(), "ethtool -K lan0 tx off in {lan}: {}", text(&out.stderr));
}

/// Runs `ip args…` and panics with its output if it fails.
pub fn ip(args: &[&str]) -> String {
    let mut c = Command::new("ip");
    c.args(args);
    let out = output_with_timeout(&mut c, IP_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "ip {} failed: {}", args.join(" "), text(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `bridge args…` inside `ns` and panics with its output if it fails.
fn bridge(ns: &str, args: &[&str]) {
    let out = netns_exec(ns, "bridge", args);
    assert!(out.status.success(), "bridge {} in {ns} failed: {}", args.join(" "), text(&out.stderr));
}
