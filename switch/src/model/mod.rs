//! The container network model: networks, sandboxes, endpoints, IPAM and
//! their persistence. Pure state; no packet I/O.
