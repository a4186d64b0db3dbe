//! vswitch datapath: the IEEE 802.1D learning bridge core and the vswitchd daemon.
//!
//! The core (`wire`, `fdb`, `bridge`) takes bytes and a timestamp and returns
//! forwarding decisions; it never touches a file descriptor. Only `sys` talks to
//! the kernel.

pub mod model;
pub mod sys;
