//! Unit tests of the translator, against a model of the daemon's sockets.
//!
//! Frames from sandboxes are built with `etherparse`, and frames toward
//! them parsed with it: every control frame's IP and L4 checksums are
//! checked, and every data frame's virtio-net header is checked and its
//! partial checksum completed and verified.

mod harness;
mod ipv6;
mod mesh;
mod published;
mod robustness;
mod tcp_egress;
mod udp_icmp;
