//! The datapath loop, tested deterministically through the in-memory
//! harness ([`super::testing`]): learning, flooding, isolation and aging;
//! drops under their reasons; link impairment; overlays (replication, GRO, MSS clamping,
//! ICMP too-big, encryption between two datapaths, batched tunnel sends and
//! floods encapsulated once), over IPv4 and IPv6 underlays; the gateway's
//! answers (IPv4, and IPv6: neighbour discovery, router advertisements, DNS);
//! the events the loop hands over (MACs, links, drop bursts, peers, keys);
//! packet capture; cluster views (tunnels, remote MACs, proxy ARP/ND);
//! the L4 translator over IPv6 with real loopback sockets.
//! Frames are built and checked with etherparse, never with the switch's
//! own parsers.

mod capture;
mod cluster;
mod drops;
mod events;
mod gateway;
mod gateway6;
mod impair;
mod learning;
mod mesh;
mod nat6;
mod overlay;
mod overlay6;
mod spread;
mod spread_overlay;
mod store_keys;
mod tunnel_batch;
mod uplink_batch;
mod xsk;
