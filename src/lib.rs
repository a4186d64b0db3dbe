//! Shared support for vswitch's integration tests and benchmarks: root checks,
//! unique names, a guard that runs `vswitchd` and drives it with `vswitchctl`,
//! and helpers that act inside network namespaces (ping, TCP transfer, frame
//! capture and injection). Everything a test creates is removed when its
//! guard drops, even when the test fails.

pub mod bins;
pub mod capture;
pub mod daemon;
pub mod names;
pub mod netns;
pub mod process;

pub use bins::Binaries;
pub use capture::{Capture, Frame, inject_frame};
pub use daemon::Daemon;
pub use names::{require_root, unique_prefix};
pub use netns::{
    TransferReport, in_netns, ipv4_addrs, link_info, link_names, netns_exec, ping, tcp_transfer, wait_for_ping,
};
pub use process::{output_with_timeout, text};
