//! Shared support for vswitch's integration tests and benchmarks: root checks,
//! unique names, a guard that runs `vswitchd` and drives it with `vswitchctl`,
//! and helpers that act inside network namespaces (ping, TCP transfer, frame
//! capture and injection), simulated hosts on an underlay for multi-host
//! (VXLAN overlay) tests, decoding of captures with tshark, the embedded
//! DNS's tools (dig, a dnsmasq upstream, raw DNS messages), an "outside
//! world" for the L4 translator's tests (egress, published ports: servers
//! that log their clients, firewall snapshots), and waiting on
//! conditions with a deadline (never on fixed sleeps). Everything a
//! test creates is removed when its guard drops, even when the test fails.

pub mod bins;
pub mod capture;
pub mod cluster;
pub mod container;
pub mod daemon;
pub mod dns;
pub mod encrypted;
pub mod etcd;
pub mod names;
pub mod netns;
pub mod outside;
pub mod overlay;
pub mod process;
pub mod promtool;
pub mod tshark;
pub mod underlay;
pub mod wait;

pub use bins::Binaries;
pub use capture::{Capture, Frame, inject_frame, inject_frames};
pub use cluster::ClusterHosts;
pub use container::Container;
pub use daemon::{Daemon, DaemonBuilder};
pub use dns::dig;
pub use etcd::{Etcd, EtcdPlace, EtcdTls, require_root_and_etcd};
pub use names::{require_root, unique_prefix};
pub use netns::{
    MAX_HASHED_CONNECTIONS, TcpBlast, TransferReport, in_netns, ipv4_addrs, ipv6_addrs, link_info, link_names,
    netns_exec, netns_exec_ok, ping, tcp_transfer, tcp_transfer_paced, transfers_until, udp_send, wait_for_ping,
};
pub use overlay::{vtep_daemon, vtep6_daemon};
pub use process::{output_with_timeout, text};
pub use promtool::promtool_accepts;
pub use tshark::{require_tshark, tshark_fields, write_pcap};
pub use underlay::{Underlay, UnderlayHost};
pub use wait::{ReadTimeout, recv_within, wait_for, wait_until};
