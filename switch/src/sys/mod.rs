//! Thin wrappers around the system calls the daemon needs (TAP devices,
//! network namespaces, netlink). The only place `unsafe` is allowed.
