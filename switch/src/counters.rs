//! Datapath counters. Each datapath thread owns its counters outright (plain
//! `u64`s behind `&mut`), so updating them costs no atomic operation; the
//! control plane reads snapshots.

/// Why the datapath dropped a frame. Later layers (tunnels, crypto) extend
/// this list; every reason has a stable name used by `vswitchctl stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum DropReason {
    /// Shorter than an Ethernet header (or its 802.1Q tag).
    Truncated,
    /// Longer than the port's MTU plus the Ethernet header, and not a GSO frame.
    Oversize,
    /// Source MAC is a group (multicast/broadcast) or all-zero address.
    InvalidSourceMac,
    /// Destination is an IEEE 802.1D reserved group address (01:80:c2:00:00:0x).
    ReservedGroup,
    /// Destination was learned on the ingress port (802.1D filtering).
    SameSegment,
    /// The ingress port is administratively down.
    PortDown,
    /// A flood found no other port to deliver to.
    NoEgress,
    /// The egress device's queue was full (counted on the egress port).
    TxQueueFull,
    /// The egress device refused the frame, e.g. its link is down inside the
    /// sandbox (counted on the egress port).
    TxError,
    /// A UDP datagram on the VXLAN port too short for a VXLAN header and an
    /// inner Ethernet header.
    VxlanMalformed,
    /// A VXLAN header without the I flag (RFC 7348: no valid VNI).
    VxlanBadFlags,
    /// A VXLAN packet for a VNI no overlay network uses.
    UnknownVni,
    /// A VXLAN packet from an address that is not a peer of that network
    /// (and peers are not learned).
    UnknownPeer,
    /// Software segmentation or checksum completion refused the frame.
    OffloadFailed,
    /// A frame too big for the tunnel, answered with ICMP "fragmentation
    /// needed" / "packet too big" from the network's gateway.
    TooBigForTunnel,
    /// An encrypted packet shorter than its header and tag, or of another type.
    CryptoMalformed,
    /// An encrypted packet whose tag does not verify: tampered, or sealed
    /// under another secret.
    AuthFailed,
    /// An encrypted packet sealed with another cipher than the network's
    /// (a host whose network was created with another `-o cipher`).
    CipherMismatch,
    /// An encrypted packet seen before, or older than the replay window.
    Replayed,
    /// An encrypted packet under a key epoch this network does not accept.
    UnknownEpoch,
    /// Plain VXLAN for an encrypted network (never accepted).
    Unencrypted,
    /// Encrypted traffic for a network that is not encrypted here.
    UnexpectedEncrypted,
    /// Sealing failed (no randomness for a new session).
    SealFailed,
    /// A frame for an encrypted network whose keys come from the cluster
    /// store while this host holds no key for its current send epoch yet.
    NoSendKey,
    /// An encrypted packet of this host's own sender session, sent back to it.
    Reflected,
    /// A unicast frame between a tunnel and the gateway: each host's
    /// sandboxes use their own host's (anycast) gateway.
    GatewayAcrossTunnel,
    /// A frame to this node's mesh station (the source of ingress flows to
    /// other nodes' replicas) that belongs to no such flow.
    MeshStray,
    /// A TCP segment to a gateway's DNS port whose source address is not
    /// its ingress port's own (the DNS server knows TCP clients by address).
    DnsSpoofed,
    /// An IP packet a sandbox sent through its gateway to an address outside
    /// its networks where egress is off (`--internal`, `-o egress=false`),
    /// or to another network of the switch: the gateway answered ICMP
    /// network unreachable.
    NoRoute,
    /// A frame for the gateway's own stack (or an answer it asked for)
    /// beyond the room of the stack's queue (256 frames between two polls).
    GatewayBusy,
    /// A packet routed out through the gateway that the L4 translator cannot
    /// carry: a UDP GSO train, or malformed headers.
    NatUnsupported,
    /// A fragment the translator's reassembly refused (overlapping, too
    /// long, malformed), or a fragmented datagram it gave up (not whole
    /// within 30 s, or the oldest when 64 were in reassembly).
    NatFragments,
    /// Dropped by the egress port's link impairment (`port impair --loss`).
    ImpairLoss,
    /// The egress port's impairment queue was full (its `limit` frames or
    /// bytes are waiting for their departure time).
    ImpairQueueFull,
    /// A unicast frame from one tunnel port to another (split horizon:
    /// nothing that came from a tunnel goes back into one, so stale tables
    /// on two hosts cannot bounce a frame between VTEPs).
    SplitHorizon,
    /// Frames the kernel dropped on their way into an AF_XDP port's socket:
    /// its RX ring was full or its fill ring empty (the switch fell behind).
    /// Read from the socket's statistics once a second.
    XskRxDropped,
    /// Frames the kernel dropped on their way into a raw uplink's
    /// `AF_PACKET` socket: its receive buffer was full (the switch fell
    /// behind on the host interface). Read from the socket's
    /// `PACKET_STATISTICS` once a second.
    UplinkRxDropped,
    /// An ICMPv6 message for a gateway (to one of its addresses or groups)
    /// that fails its checksum, does not parse, or breaks neighbour
    /// discovery's validity rules (hop limit 255, code 0, no zero-length
    /// option; RFC 4861).
    Icmpv6Malformed,
    /// An IPv6 packet routed out through the gateway with an extension
    /// header the L4 translator does not handle (a fragment header, a
    /// routing header with segments left, an option that must not be
    /// skipped, AH and the like).
    NatIpv6Extension,
    /// A frame an AF_XDP socket received as a broken descriptor chain (a
    /// descriptor outside the UMEM or its chunk, or a multi-buffer chain
    /// longer than any frame): dropped whole.
    XskBadDescriptor,
    /// A frame of a spread network (`-o spread`) a replica worker would
    /// have handed to the network's owner worker (or an encrypted packet to
    /// the worker that opens its session) while that worker already had
    /// [`crate::replica::MAX_HANDED_OVER`] frames from other workers waiting
    /// (it fell behind: the memory of frames in flight is bounded).
    OwnerBusy,
    /// A datagram a worker would have handed on as it came, unopened (a
    /// packet of another worker's encrypted session; on a `--learn-peers`
    /// VTEP, a replica's datagram from a VTEP it has no port for) while the
    /// receiving worker already had half of
    /// [`crate::replica::MAX_HANDED_OVER`] waiting. Anyone on the underlay
    /// can send such datagrams, so they take at most half of a worker's
    /// hand-over room, and forged ones cannot crowd out the frames that
    /// passed this switch's checks (`owner_busy` is theirs).
    HandOverBusy,
    /// Packets the kernel dropped on their way into a VTEP's UDP socket:
    /// its receive buffer was full (the switch fell behind on the
    /// underlay). Read from the socket's `SO_MEMINFO` once a second. The
    /// kernel counts a dropped GRO train of datagrams (a peer's GSO send)
    /// at least once (once on Linux 6.18), so more datagrams than this may
    /// have been lost.
    TunnelRxDropped,
    /// An encrypted packet of a spread overlay handed by one worker to
    /// another as the one its sender session is steered to, which alone
    /// keeps that session's replay window, that is not that worker's either
    /// (the workers disagree on the steering): refused rather than judged
    /// by a second window or handed on again. (A packet of another worker's
    /// session read from a worker's own socket, as UDP GRO or a missing
    /// steering program can make happen, is handed to that worker.)
    Misdirected,
    /// A broadcast, multicast or unknown-unicast frame from a port that has
    /// already flooded its share this second (`-o flood-limit`, storm
    /// control; see [`crate::port::FloodLimit`]).
    FloodLimited,
    /// An IP packet a sandbox sent through its gateway to be translated
    /// (egress, or an answer on a published port) from a source address
    /// that is none of its sandbox's (on any of its networks): it would
    /// open or feed flows in another sandbox's name.
    NatSpoofedSource,
    /// A unicast frame between two isolated ports: two endpoints of a
    /// network with inter-container communication off (`-o
    /// com.docker.network.bridge.enable_icc=false`).
    Isolated,
}

impl DropReason {
    /// Every reason (counters are indexed by the enum's value, not by the
    /// position here).
    pub const ALL: [DropReason; 47] = [
        DropReason::Truncated,
        DropReason::Oversize,
        DropReason::InvalidSourceMac,
        DropReason::ReservedGroup,
        DropReason::SameSegment,
        DropReason::PortDown,
        DropReason::NoEgress,
        DropReason::TxQueueFull,
        DropReason::TxError,
        DropReason::VxlanMalformed,
        DropReason::VxlanBadFlags,
        DropReason::UnknownVni,
        DropReason::UnknownPeer,
        DropReason::OffloadFailed,
        DropReason::TooBigForTunnel,
        DropReason::CryptoMalformed,
        DropReason::AuthFailed,
        DropReason::CipherMismatch,
        DropReason::Replayed,
        DropReason::UnknownEpoch,
        DropReason::Unencrypted,
        DropReason::UnexpectedEncrypted,
        DropReason::SealFailed,
        DropReason::NoSendKey,
        DropReason::Reflected,
        DropReason::GatewayAcrossTunnel,
        DropReason::DnsSpoofed,
        DropReason::NoRoute,
        DropReason::GatewayBusy,
        DropReason::NatUnsupported,
        DropReason::NatFragments,
        DropReason::ImpairLoss,
        DropReason::ImpairQueueFull,
        DropReason::SplitHorizon,
        DropReason::XskRxDropped,
        DropReason::Icmpv6Malformed,
        DropReason::NatIpv6Extension,
        DropReason::MeshStray,
        DropReason::XskBadDescriptor,
        DropReason::OwnerBusy,
        DropReason::HandOverBusy,
        DropReason::UplinkRxDropped,
        DropReason::TunnelRxDropped,
        DropReason::Misdirected,
        DropReason::FloodLimited,
        DropReason::NatSpoofedSource,
        DropReason::Isolated,
    ];
    /// Number of reasons.
    pub const COUNT: usize = Self::ALL.len();

    /// The stable snake_case name shown by `vswitchctl stats`.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::Oversize => "oversize",
            DropReason::InvalidSourceMac => "invalid_source_mac",
            DropReason::ReservedGroup => "reserved_group",
            DropReason::SameSegment => "same_segment",
            DropReason::PortDown => "port_down",
            DropReason::NoEgress => "no_egress",
            DropReason::TxQueueFull => "tx_queue_full",
            DropReason::TxError => "tx_error",
            DropReason::VxlanMalformed => "vxlan_malformed",
            DropReason::VxlanBadFlags => "vxlan_bad_flags",
            DropReason::UnknownVni => "unknown_vni",
            DropReason::UnknownPeer => "unknown_peer",
            DropReason::OffloadFailed => "offload_failed",
            DropReason::TooBigForTunnel => "too_big_for_tunnel",
            DropReason::CryptoMalformed => "crypto_malformed",
            DropReason::AuthFailed => "auth_failed",
            DropReason::CipherMismatch => "cipher_mismatch",
            DropReason::Replayed => "replayed",
            DropReason::UnknownEpoch => "unknown_epoch",
            DropReason::Unencrypted => "unencrypted",
            DropReason::UnexpectedEncrypted => "unexpected_encrypted",
            DropReason::SealFailed => "seal_failed",
            DropReason::NoSendKey => "no_send_key",
            DropReason::Reflected => "reflected",
            DropReason::GatewayAcrossTunnel => "gateway_across_tunnel",
            DropReason::MeshStray => "mesh_stray",
            DropReason::DnsSpoofed => "dns_spoofed",
            DropReason::NoRoute => "no_route",
            DropReason::GatewayBusy => "gateway_busy",
            DropReason::NatUnsupported => "nat_unsupported",
            DropReason::NatFragments => "nat_fragments",
            DropReason::ImpairLoss => "impair_loss",
            DropReason::ImpairQueueFull => "impair_queue_full",
            DropReason::SplitHorizon => "split_horizon",
            DropReason::XskRxDropped => "xsk_rx_dropped",
            DropReason::Icmpv6Malformed => "icmpv6_malformed",
            DropReason::NatIpv6Extension => "nat_ipv6_extension",
            DropReason::XskBadDescriptor => "xsk_bad_descriptor",
            DropReason::OwnerBusy => "owner_busy",
            DropReason::HandOverBusy => "handover_busy",
            DropReason::UplinkRxDropped => "uplink_rx_dropped",
            DropReason::TunnelRxDropped => "tunnel_rx_dropped",
            DropReason::Misdirected => "misdirected",
            DropReason::FloodLimited => "flood_limited",
            DropReason::NatSpoofedSource => "nat_spoofed_source",
            DropReason::Isolated => "isolated",
        }
    }
}

/// Drop counts indexed by [`DropReason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropCounters([u64; DropReason::COUNT]);

// `Default` is derived for arrays of at most 32 elements only.
impl Default for DropCounters {
    fn default() -> Self {
        DropCounters([0; DropReason::COUNT])
    }
}

impl DropCounters {
    /// Counts one drop.
    #[inline]
    pub fn count(&mut self, reason: DropReason) {
        self.0[reason as usize] += 1;
    }

    /// Counts `n` drops at once.
    #[inline]
    pub fn add(&mut self, reason: DropReason, n: u64) {
        self.0[reason as usize] += n;
    }

    /// Adds every count of `other` to these.
    pub fn merge(&mut self, other: &DropCounters) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }

    /// The count for one reason.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.0[reason as usize]
    }

    /// Total drops over all reasons.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// `(name, count)` for every reason, zeros included.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.iter().map(|&r| (r, self.get(r)))
    }
}

/// Per-port traffic counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortCounters {
    /// Frames received from the port (valid or not).
    pub rx_packets: u64,
    /// Bytes received from the port.
    pub rx_bytes: u64,
    /// Frames handed to the port for transmission.
    pub tx_packets: u64,
    /// Bytes handed to the port for transmission.
    pub tx_bytes: u64,
    /// Frames from this port that were flooded (broadcast, multicast, unknown unicast).
    pub rx_flooded: u64,
    /// Frames from this port that were dropped, by reason.
    pub drops: DropCounters,
}

impl PortCounters {
    /// Adds `other`'s counts to these (one port's counters kept by several
    /// datapath workers, each for the frames it handled).
    pub fn merge(&mut self, other: &PortCounters) {
        self.rx_packets += other.rx_packets;
        self.rx_bytes += other.rx_bytes;
        self.tx_packets += other.tx_packets;
        self.tx_bytes += other.tx_bytes;
        self.rx_flooded += other.rx_flooded;
        self.drops.merge(&other.drops);
    }
}

/// Per-network learning counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LearningCounters {
    /// New (network, MAC) entries learned.
    pub learned: u64,
    /// Learned MACs that moved to another port (station moves).
    pub station_moves: u64,
    /// New MACs not learned because the network's table was full.
    pub table_full: u64,
    /// New MACs (or moves) not learned because the port's limit was reached.
    pub port_limit: u64,
    /// Frames whose source is a static entry on another port (not relearned).
    pub static_conflicts: u64,
    /// Entries removed by aging.
    pub aged_out: u64,
}
