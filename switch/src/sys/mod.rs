//! Thin wrappers around the system calls the daemon needs (TAP devices,
//! network namespaces, netlink). The only place `unsafe` is allowed: every
//! `unsafe` block is one syscall behind a safe function, with a `// SAFETY:`
//! comment.
//!
//! - [`tap`]: TAP queues with a virtio-net header and negotiated offloads.
//! - [`netns`]: named network namespaces (`ip netns` compatible) and
//!   [`netns::run_in`] to act inside one.
//! - [`netlink`]: synchronous rtnetlink interface configuration.
//! - [`afxdp`]: AF_XDP sockets, their rings and the XDP redirect program.
//! - [`packet`]: `AF_PACKET` sockets on host interfaces (raw uplinks).
//! - [`ethtool`]: the one ethtool request AF_XDP ports need.
//! - [`reuseport`]: the underlay's receive sockets, one per worker, steered by VNI.
//! - [`sched`]: CPU and thread scheduling readings, thread CPU affinity.
//! - [`ports`]: free host ports for published ports left to the daemon.
//! - [`sockopt`]: typed `getsockopt`/`setsockopt`, a socket's kernel drops and buffer sizes.

#![allow(unsafe_code)]

pub mod afxdp;
pub mod dgram;
pub mod ethtool;
pub mod ifaddr;
pub mod mem;
pub mod netlink;
pub mod netns;
pub mod packet;
pub mod ports;
pub mod process;
pub mod reuseport;
pub mod sched;
pub mod sockopt;
pub mod stream;
pub mod tap;

#[cfg(test)]
pub(crate) mod testutil;

#[cfg(test)]
mod root_tests;
