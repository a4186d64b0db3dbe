//! The datapath loop, tested deterministically through the in-memory
//! harness ([`super::testing`]): learning, flooding, isolation and aging;
//! drops under their reasons; link impairment; overlays (replication, GRO, MSS clamping,
//! ICMP too-big, encryption between two datapaths); the gateway's answers;
//! the events the loop hands over (MACs, links, drop bursts, peers, keys);
//! packet capture; the L4 translator over IPv6 with real loopback sockets.
//! Frames are built and checked with etherparse, never with the switch's
//! own parsers.

mod capture;
mod drops;
mod events;
mod gateway;
mod impair;
mod learning;
mod nat6;
mod overlay;
