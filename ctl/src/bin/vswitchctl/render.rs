//! Human-readable output of daemon replies.

use std::io::{self, Write};

use ctl::proto::{
    DnsRecord, DnsStats, Event, EventKind, FdbEntry, ImpairStats, LostScope, NatFlow, NatStats, NetworkSummary,
    PeerInfo, PortStats, SandboxInfo, ServiceInfo, ShowTree,
};

use serde_json::{Value, json};

use crate::listing::{Column, Listing, col, extra, sparse};
use crate::table::Table;

/// `network ls`'s columns: Docker's table, then the fields only a
/// `--format` template sees (Docker's, and the switch's subnets and
/// endpoint count). Strings, as Docker's are
/// (`{{if eq .Internal "true"}}`), but the count.
const NETWORK_COLUMNS: [Column; 12] = [
    col("ID", "NETWORK ID"),
    col("Name", "NAME"),
    col("Driver", "DRIVER"),
    col("Scope", "SCOPE"),
    extra("IPv4", "IPV4"),
    extra("IPv6", "IPV6"),
    extra("Internal", "INTERNAL"),
    extra("Labels", "LABELS"),
    extra("CreatedAt", "CREATED AT"),
    extra("Subnet", "SUBNET"),
    extra("Subnet6", "SUBNET6"),
    extra("Endpoints", "ENDPOINTS"),
];

/// `network ls`, like `docker network ls` (IDs of 12 characters unless `whole_ids`).
pub(crate) fn networks(nets: &[NetworkSummary], whole_ids: bool) -> Listing<12> {
    let mut listing = Listing::new(&NETWORK_COLUMNS);
    for n in nets {
        let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        listing.push([
            json!(shown_id(n, whole_ids)),
            json!(n.name),
            json!(n.driver.to_string()),
            json!(n.scope),
            json!(n.enable_ipv4.to_string()),
            json!(n.enable_ipv6.to_string()),
            json!(n.internal.to_string()),
            json!(labels.join(",")),
            json!(go_time(&n.created)),
            json!(n.subnet.map(|s| s.to_string()).unwrap_or_default()),
            json!(n.subnet6.map(|s| s.to_string()).unwrap_or_default()),
            json!(n.endpoints),
        ]);
    }
    listing
}

/// A network's ID as `network ls` shows it: 12 characters, or whole.
fn shown_id(n: &NetworkSummary, whole_ids: bool) -> String {
    if whole_ids { n.id.clone() } else { short_id(&n.id) }
}

/// An RFC 3339 UTC time (`2026-12-03T15:37:16Z`) as Go's `Time.String`
/// prints it, which is what Docker's `.CreatedAt` column shows
/// (`2026-12-03 15:37:16 +0000 UTC`); any other text unchanged.
fn go_time(rfc3339: &str) -> String {
    match rfc3339.strip_suffix('Z').and_then(|t| t.split_once('T')) {
        Some((date, time)) => format!("{date} {time} +0000 UTC"),
        None => rfc3339.to_owned(),
    }
}

/// `sandbox ls`'s columns.
const SANDBOX_COLUMNS: [Column; 4] =
    [col("Name", "NAME"), col("Netns", "NETNS"), col("Endpoints", "ENDPOINTS"), col("DNS", "DNS")];

/// `sandbox ls`: endpoints as `NETWORK:IP`, comma-separated, and the DNS servers.
pub(crate) fn sandboxes(boxes: &[SandboxInfo]) -> Listing<4> {
    let mut listing = Listing::new(&SANDBOX_COLUMNS);
    for b in boxes {
        let eps: Vec<String> = b
            .endpoints
            .iter()
            .map(|e| match (e.ipv4, e.ipv6) {
                (Some(ip), _) => format!("{}:{ip}", e.network),
                (None, Some(ip)) => format!("{}:{ip}", e.network),
                (None, None) => e.network.clone(),
            })
            .collect();
        let dns: Vec<String> = b.dns.iter().map(ToString::to_string).collect();
        listing.push([json!(b.name), json!(b.netns.display().to_string()), json!(eps.join(",")), json!(dns.join(","))]);
    }
    listing
}

/// `sandbox inspect --pretty`: an indented block per sandbox, in the style
/// of `show`.
pub(crate) fn sandbox_inspect(w: &mut dyn Write, boxes: &[SandboxInfo]) -> io::Result<()> {
    for b in boxes {
        writeln!(w, "Sandbox {}", b.name)?;
        writeln!(w, "    netns: {}", b.netns.display())?;
        if !b.extra_hosts.is_empty() {
            writeln!(w, "    extra hosts: {}", b.extra_hosts.join(", "))?;
        }
        if b.endpoints.is_empty() {
            writeln!(w, "    endpoints: none")?;
        }
        for e in &b.endpoints {
            writeln!(w, "    Endpoint {}", e.ifname)?;
            writeln!(w, "        network: {}", e.network)?;
            writeln!(w, "        ip: {}", dash(e.ipv4.map(|ip| ip.to_string()).unwrap_or_default()))?;
            if let Some(ip6) = e.ipv6 {
                writeln!(w, "        ip6: {ip6}")?;
            }
            writeln!(w, "        mac: {}", e.mac)?;
            writeln!(w, "        port: {}", e.port)?;
            writeln!(w, "        aliases: {}", dash(e.aliases.join(", ")))?;
            if !e.publish.is_empty() {
                let published: Vec<String> = e.publish.iter().map(ToString::to_string).collect();
                writeln!(w, "        published: {}", published.join(", "))?;
            }
            if let Some(service) = &e.service {
                writeln!(w, "        service: {service}")?;
            }
        }
        if let Some(r) = &b.resolver {
            writeln!(w, "    Resolver")?;
            let resolv_conf = r.resolv_conf.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
            writeln!(w, "        resolv.conf: {}", dash(resolv_conf))?;
            writeln!(w, "        nameservers: {}", dash(join(&r.nameservers)))?;
            writeln!(w, "        search: {}", dash(r.search.join(", ")))?;
            writeln!(w, "        options: {}", dash(r.options.join(", ")))?;
            writeln!(w, "        upstreams: {}", dash(join(&r.upstreams)))?;
            writeln!(w, "        forwarding: {}", if r.forwarding { "yes" } else { "no" })?;
        }
    }
    Ok(())
}

/// `dns ls`'s columns.
const DNS_COLUMNS: [Column; 6] = [
    col("Network", "NETWORK"),
    col("Name", "NAME"),
    col("Type", "TYPE"),
    col("Value", "VALUE"),
    col("Sandbox", "SANDBOX"),
    col("TTL", "TTL"),
];

/// `dns ls`: the records of the embedded DNS.
pub(crate) fn dns_records(records: &[DnsRecord]) -> Listing<6> {
    let mut listing = Listing::new(&DNS_COLUMNS);
    for r in records {
        listing.push([
            json!(r.network),
            json!(r.name),
            json!(r.record_type),
            json!(r.value),
            json!(r.sandbox),
            json!(r.ttl),
        ]);
    }
    listing
}

/// `fdb show`'s columns; REMOTE (the VTEP) shows when an entry sits behind a tunnel.
const FDB_COLUMNS: [Column; 6] = [
    col("Port", "PORT"),
    col("Network", "NETWORK"),
    col("MAC", "MAC"),
    col("Age", "AGE"),
    col("Type", "TYPE"),
    sparse("Remote", "REMOTE"),
];

/// `fdb show`, like `ovs-appctl fdb/show` plus network and type columns.
pub(crate) fn fdb(entries: &[FdbEntry]) -> Listing<6> {
    let mut listing = Listing::new(&FDB_COLUMNS);
    for e in entries {
        listing.push([
            json!(e.port),
            json!(e.network),
            json!(e.mac.to_string()),
            json!(e.age_secs),
            json!(e.kind.as_str()),
            json!(e.remote.map(|r| r.to_string()).unwrap_or_default()),
        ]);
    }
    listing
}

/// `peer ls`'s columns.
const PEER_COLUMNS: [Column; 3] = [col("Peer", "PEER"), col("Networks", "NETWORKS"), col("Type", "TYPE")];

/// `peer ls`: a peer of every overlay lists `(all overlays)`.
pub(crate) fn peers(peers: &[PeerInfo]) -> Listing<3> {
    let mut listing = Listing::new(&PEER_COLUMNS);
    for p in peers {
        let networks = if p.all_networks { "(all overlays)".to_owned() } else { p.networks.join(",") };
        let kind = if p.learned { "learned" } else { "static" };
        listing.push([json!(p.addr.to_string()), json!(networks), json!(kind)]);
    }
    listing
}

/// The store line of `node ls` and `show`.
fn store_line(store: &ctl::proto::StoreState) -> String {
    let state = if store.connected { "connected".to_owned() } else { "unreachable".to_owned() };
    let error = store.last_error.as_deref().filter(|_| !store.connected).map(|e| format!(" ({e})")).unwrap_or_default();
    format!(
        "cluster store {} {state}{error}, revision {}, node {}",
        store.endpoints.join(","),
        store.revision,
        store.node
    )
}

/// `node ls`'s columns; `.Self` (a boolean, as Docker's) for templates.
const NODE_COLUMNS: [Column; 6] = [
    col("Name", "NAME"),
    col("VTEP", "VTEP"),
    col("Status", "STATUS"),
    col("Endpoints", "ENDPOINTS"),
    col("Networks", "NETWORKS"),
    extra("Self", "SELF"),
];

/// `node ls`: the store's state, then one row per node, this one marked `*`.
pub(crate) fn nodes(w: &mut dyn Write, list: &ctl::proto::NodeList) -> io::Result<()> {
    writeln!(w, "{}", store_line(&list.store))?;
    node_rows(list, true).write_table(w)
}

/// `node ls`'s rows; with `mark_self`, this node's name is followed by ` *`
/// (the table's mark; a template has `.Self`).
pub(crate) fn node_rows(list: &ctl::proto::NodeList, mark_self: bool) -> Listing<6> {
    let mut listing = Listing::new(&NODE_COLUMNS);
    for n in &list.nodes {
        let name = if n.is_self && mark_self { format!("{} *", n.name) } else { n.name.clone() };
        listing.push([
            json!(name),
            json!(n.vtep.map(|v| v.to_string()).unwrap_or_default()),
            json!(n.status.as_str()),
            json!(n.endpoints),
            json!(n.networks.join(",")),
            json!(n.is_self),
        ]);
    }
    listing
}

/// `stats`: one row per port; the DROPS column shows the total and the
/// non-zero reasons. When gateway ports carry the embedded DNS's counters, a
/// table `DNS` follows with a row per such port; ports that are or were
/// impaired get a table `IMPAIR`; TAP ports get a table `TAP-QUEUE` with the
/// frames their sandbox sent that the kernel dropped before the switch read
/// them (the TAP queue was full); the underlay endpoint a table `GRO` with
/// the TCP segments off the tunnel merged into one TAP write; and when
/// gateway ports carry the L4 translator's counters, a table `NAT`.
pub(crate) fn stats(w: &mut dyn Write, ports: &[PortStats]) -> io::Result<()> {
    port_counters(ports, true).write_table(w)?;
    let dns: Vec<(&str, &DnsStats)> = ports.iter().filter_map(|p| Some((p.port.as_str(), p.dns.as_ref()?))).collect();
    if !dns.is_empty() {
        dns_table(w, &dns)?;
    }
    let impair: Vec<(&str, &ImpairStats)> =
        ports.iter().filter_map(|p| Some((p.port.as_str(), p.impair.as_ref()?))).collect();
    if !impair.is_empty() {
        impair_table(w, &impair)?;
    }
    let workers: Vec<&ctl::proto::WorkerLoad> = ports.iter().filter_map(|p| p.worker.as_ref()).collect();
    if !workers.is_empty() {
        writeln!(w)?;
        writeln!(w, "WORKERS (datapath threads; their rows above count their underlay sockets)")?;
        let mut t = Table::new(&[
            "WORKER",
            "BUSY-MS",
            "WAKEUPS",
            "CPU",
            "AS-REPLICA",
            "TO-OWNER",
            "FROM-REPLICAS",
            "PLACED-OUT",
            "PLACED-IN",
        ]);
        for k in workers {
            let cpu = k.cpu.map_or_else(|| "any".to_owned(), |c| c.to_string());
            t.row(vec![
                format!("vsw-dp-{}", k.index),
                k.busy_ms.to_string(),
                k.wakeups.to_string(),
                cpu,
                k.replica_frames.to_string(),
                k.to_owner.to_string(),
                k.from_replicas.to_string(),
                k.placed_out.to_string(),
                k.placed_in.to_string(),
            ]);
        }
        t.write(w)?;
    }
    let gro: Vec<(&str, &ctl::proto::GroStats)> =
        ports.iter().filter_map(|p| Some((p.port.as_str(), p.gro.as_ref()?))).collect();
    if !gro.is_empty() {
        writeln!(w)?;
        writeln!(w, "GRO (TCP segments off the tunnel merged into one TAP write)")?;
        let mut t = Table::new(&["PORT", "FRAMES", "SEGMENTS"]);
        for (port, g) in gro {
            t.row(vec![port.to_owned(), g.frames.to_string(), g.segments.to_string()]);
        }
        t.write(w)?;
    }
    let taps: Vec<(&str, u64)> = ports.iter().filter_map(|p| Some((p.port.as_str(), p.tap_queue_dropped?))).collect();
    if !taps.is_empty() {
        writeln!(w)?;
        writeln!(w, "TAP-QUEUE (frames the sandbox sent, dropped by the kernel: the TAP's queue was full)")?;
        let mut t = Table::new(&["PORT", "DROPPED"]);
        for (port, n) in taps {
            t.row(vec![port.to_owned(), n.to_string()]);
        }
        t.write(w)?;
    }
    let nat: Vec<(&str, &NatStats)> = ports.iter().filter_map(|p| Some((p.port.as_str(), p.nat.as_ref()?))).collect();
    if nat.is_empty() {
        return Ok(());
    }
    writeln!(w)?;
    writeln!(w, "NAT")?;
    let mut t = Table::new(&["PORT", "OPENED", "REFUSED", "TIMED-OUT", "TABLE-FULL", "ACTIVE"]);
    for (port, n) in nat {
        let counters = [n.flows_opened, n.flows_refused, n.flows_timed_out, n.table_full, n.active];
        t.row(std::iter::once(port.to_owned()).chain(counters.iter().map(u64::to_string)).collect());
    }
    t.write(w)
}

/// `stats`' per-port columns; for templates, `.DropReasons` maps each
/// reason that dropped frames to its count, and `.TapQueueDropped` is a TAP
/// port's queue drops (0 for ports without a TAP queue, so that
/// `{{if gt .TapQueueDropped 0}}` holds on every row).
const STATS_COLUMNS: [Column; 10] = [
    col("Port", "PORT"),
    col("Network", "NETWORK"),
    col("RxPackets", "RX-PACKETS"),
    col("RxBytes", "RX-BYTES"),
    col("TxPackets", "TX-PACKETS"),
    col("TxBytes", "TX-BYTES"),
    col("Floods", "FLOODS"),
    col("Drops", "DROPS"),
    extra("DropReasons", "DROP-REASONS"),
    extra("TapQueueDropped", "TAP-QUEUE-DROPPED"),
];

/// `stats`' rows; with `reasons_in_drops` (the table), the DROPS cell
/// follows the total with the non-zero reasons (`3 (no_route=3)`); a
/// template has the total as a number and `.DropReasons`.
pub(crate) fn port_counters(ports: &[PortStats], reasons_in_drops: bool) -> Listing<10> {
    let mut listing = Listing::new(&STATS_COLUMNS);
    for p in ports {
        let nonzero: serde_json::Map<String, Value> =
            p.drops.iter().filter(|(_, n)| **n > 0).map(|(r, n)| (r.clone(), json!(n))).collect();
        let drops = if reasons_in_drops && !nonzero.is_empty() {
            let reasons: Vec<String> = nonzero.iter().map(|(r, n)| format!("{r}={n}")).collect();
            json!(format!("{} ({})", p.total_drops(), reasons.join(", ")))
        } else {
            json!(p.total_drops())
        };
        listing.push([
            json!(p.port),
            json!(p.network),
            json!(p.rx_packets),
            json!(p.rx_bytes),
            json!(p.tx_packets),
            json!(p.tx_bytes),
            json!(p.floods),
            drops,
            Value::Object(nonzero),
            json!(p.tap_queue_dropped.unwrap_or(0)),
        ]);
    }
    listing
}

/// The `IMPAIR` table of `stats`: a row per port that is or was impaired.
fn impair_table(w: &mut dyn Write, ports: &[(&str, &ImpairStats)]) -> io::Result<()> {
    writeln!(w)?;
    writeln!(w, "IMPAIR")?;
    let mut t = Table::new(&["PORT", "SETTINGS", "QUEUED", "DELAYED", "LOST", "DUPLICATED", "REORDERED", "QUEUE-FULL"]);
    for &(port, i) in ports {
        let settings = i.settings.map_or_else(|| "(cleared)".to_owned(), |s| s.to_string());
        t.row([port.to_owned(), settings].into_iter().chain(i.counters.columns().map(|n| n.to_string())).collect());
    }
    t.write(w)
}

/// The `DNS` table of `stats`: a row per gateway port.
fn dns_table(w: &mut dyn Write, dns: &[(&str, &DnsStats)]) -> io::Result<()> {
    writeln!(w)?;
    writeln!(w, "DNS")?;
    let mut t = Table::new(&[
        "PORT",
        "QUERIES",
        "LOCAL",
        "NXDOMAIN",
        "NODATA",
        "FORWARDED",
        "UPSTREAM-FAIL",
        "MALFORMED",
        "REFUSED",
        "OVER-LIMIT",
        "TRUNCATED",
        "TCP-CLOSED",
    ]);
    for &(port, d) in dns {
        let counters = [
            d.queries,
            d.answered_locally,
            d.nxdomain,
            d.nodata,
            d.forwarded,
            d.upstream_failures,
            d.malformed,
            d.refused,
            d.refused_over_limit,
            d.truncated,
            d.tcp_closed_idle,
        ];
        t.row(std::iter::once(port.to_owned()).chain(counters.iter().map(u64::to_string)).collect());
    }
    t.write(w)
}

/// `nat ls`'s columns; `.Age` as the table shows it (`4m05s`), `.AgeMs` in
/// milliseconds.
const NAT_COLUMNS: [Column; 13] = [
    col("Proto", "PROTO"),
    col("Direction", "DIRECTION"),
    col("Network", "NETWORK"),
    col("Sandbox", "SANDBOX"),
    col("Inner", "INNER"),
    col("Remote", "REMOTE"),
    col("OuterLocal", "OUTER-LOCAL"),
    col("OuterRemote", "OUTER-REMOTE"),
    col("FromSandbox", "FROM-SANDBOX"),
    col("ToSandbox", "TO-SANDBOX"),
    col("Age", "AGE"),
    col("State", "STATE"),
    extra("AgeMs", "AGE-MS"),
];

/// `nat ls`: one row per live flow; byte counts are the payload from and to the sandbox.
pub(crate) fn nat_flows(flows: &[NatFlow]) -> Listing<13> {
    let mut listing = Listing::new(&NAT_COLUMNS);
    for f in flows {
        listing.push([
            json!(f.proto),
            json!(f.direction),
            json!(f.network),
            json!(f.sandbox.clone().unwrap_or_default()),
            json!(f.sandbox_addr.to_string()),
            json!(f.remote_addr.to_string()),
            json!(f.outer_local.map(|a| a.to_string()).unwrap_or_default()),
            json!(f.outer_remote.to_string()),
            json!(f.bytes_from_sandbox),
            json!(f.bytes_to_sandbox),
            json!(age(f.age_ms)),
            json!(f.state),
            json!(f.age_ms),
        ]);
    }
    listing
}

/// `service ls`'s columns, Docker's where they mean the same.
const SERVICE_COLUMNS: [Column; 6] = [
    col("Name", "NAME"),
    col("Network", "NETWORK"),
    col("Replicas", "REPLICAS"),
    col("Ports", "PORTS"),
    extra("Mode", "MODE"),
    extra("CreatedAt", "CREATED AT"),
];

/// `service ls`: like `docker service ls`, published ports as `*:8080->80/tcp`.
pub(crate) fn services(services: &[ServiceInfo]) -> Listing<6> {
    let mut listing = Listing::new(&SERVICE_COLUMNS);
    for s in services {
        let ports: Vec<String> = s
            .publish
            .iter()
            .map(|m| {
                let host = if m.host_ip == std::net::Ipv4Addr::UNSPECIFIED {
                    format!("*:{}", m.host_port)
                } else {
                    m.host_display()
                };
                format!("{host}->{}", m.container_display())
            })
            .collect();
        listing.push([
            json!(s.name),
            json!(s.network),
            json!(s.replicas.len()),
            json!(ports.join(", ")),
            json!(s.mode.as_str()),
            json!(go_time(&s.created)),
        ]);
    }
    listing
}

/// A flow's age: `850ms`, `12.3s`, `4m05s`, `2h03m`.
fn age(ms: u64) -> String {
    let secs = ms / 1000;
    match secs {
        0 => format!("{ms}ms"),
        1..60 => format!("{}.{}s", secs, (ms % 1000) / 100),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60),
    }
}

/// `show`, an indented tree like `ovs-vsctl show`.
pub(crate) fn show(w: &mut dyn Write, tree: &ShowTree) -> io::Result<()> {
    writeln!(w, "vswitchd {}", tree.version)?;
    if let Some(store) = &tree.cluster {
        writeln!(w, "    {}", store_line(store))?;
    }
    for n in &tree.networks {
        writeln!(w, "    Network {} ({}, id {})", n.name, n.driver, short_id(&n.id))?;
        if let Some(s) = n.subnet {
            writeln!(w, "        subnet: {s}")?;
        }
        if let Some(g) = n.gateway {
            writeln!(w, "        gateway: {g}")?;
        }
        if let Some(s) = n.subnet6 {
            writeln!(w, "        subnet6: {s}")?;
        }
        if let Some(g) = n.gateway6 {
            writeln!(w, "        gateway6: {g}")?;
        }
        if let Some(m) = n.mtu {
            writeln!(w, "        mtu: {m}")?;
        }
        if let Some(v) = n.vni {
            writeln!(w, "        vni: {v}")?;
        }
        match (n.worker, n.spread_over) {
            (Some(k), Some(all)) => writeln!(w, "        worker: vsw-dp-{k} (owner; spread over {all} workers)")?,
            (Some(k), None) => writeln!(w, "        worker: vsw-dp-{k}")?,
            _ => {}
        }
        for p in &n.ports {
            writeln!(w, "        Port {}", p.name)?;
            writeln!(w, "            type: {}", p.kind.as_str())?;
            let fields = [
                ("sandbox", p.sandbox.clone()),
                ("interface", p.ifname.clone()),
                ("mac", p.mac.map(|m| m.to_string())),
                ("ip", p.ip.map(|i| i.to_string())),
                ("ip6", p.ip6.map(|i| i.to_string())),
                ("remote", p.remote.map(|r| r.to_string())),
                ("impair", p.impair.map(|i| i.to_string())),
                ("port type", p.port_type.map(|t| t.to_string())),
                ("xdp", p.xdp_mode.clone()),
                // A down uplink is attached again when its interface returns.
                (
                    "link",
                    p.down.then(|| {
                        if p.kind == ctl::proto::PortKind::Uplink { "down, waiting for the interface" } else { "down" }
                            .to_owned()
                    }),
                ),
                ("txqueuelen", p.txqueuelen.map(|n| n.to_string())),
            ];
            for (label, value) in fields {
                if let Some(v) = value {
                    writeln!(w, "            {label}: {v}")?;
                }
            }
        }
    }
    Ok(())
}

/// The first 12 characters of an ID, as Docker prints them.
fn short_id(id: &str) -> String {
    id.chars().take(12).collect()
}

/// `items` joined with `", "`.
fn join<T: ToString>(items: &[T]) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

fn dash(s: String) -> String {
    if s.is_empty() { "-".to_owned() } else { s }
}

/// One event of `events` as a line: time, kind, network, what happened.
pub(crate) fn event(w: &mut dyn Write, e: &Event) -> io::Result<()> {
    let network = e.kind.network().unwrap_or("-");
    writeln!(w, "{}  {:<17} {:<12} {}", e.time, e.kind.name(), network, event_details(&e.kind))
}

/// Seconds, as an interval is printed (`1.0s`).
fn secs(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

/// ` (sandbox NAME)` when there is one.
fn sandbox_suffix(sandbox: &Option<String>) -> String {
    sandbox.as_ref().map(|s| format!(" (sandbox {s})")).unwrap_or_default()
}

/// What an event says, in words.
fn event_details(kind: &EventKind) -> String {
    match kind {
        EventKind::MacLearned { mac, port, .. } => format!("{mac} learned on {port}"),
        EventKind::MacMoved { mac, from, to, .. } => format!("{mac} moved {from} -> {to}"),
        EventKind::MacFlapping { mac, ports, moves, suppressed, interval_ms, .. } => format!(
            "{mac} flapping between {} and {}: {moves} moves in {} ({suppressed} not shown one by one), now on {}",
            ports[0],
            ports[1],
            secs(*interval_ms),
            ports[1]
        ),
        EventKind::MacAged { mac, port, .. } => format!("{mac} aged out on {port}"),
        EventKind::TableFull { refused, limit, .. } => {
            format!("table full ({limit} entries): {refused} new MACs not learned")
        }
        EventKind::LearnLimit { port, refused, .. } => {
            format!("learning limit reached on {port}: {refused} MACs not learned")
        }
        EventKind::EventsSuppressed { learned, moved, aged, .. } => {
            format!("too many to show: {learned} learned, {moved} moved, {aged} aged out not shown")
        }
        EventKind::DropBurst { port, reason, drops, interval_ms, .. } => {
            format!("{port}: {drops} frames dropped ({reason}) in {}", secs(*interval_ms))
        }
        EventKind::PortUp { port, sandbox, reason, .. } => {
            format!("{port} up{}: {}", sandbox_suffix(sandbox), reason.as_str())
        }
        EventKind::PortDown { port, sandbox, reason, .. } => {
            format!("{port} down{}: {}", sandbox_suffix(sandbox), reason.as_str())
        }
        EventKind::PeerLearned { peer, port, .. } => format!("peer {peer} learned from its traffic ({port})"),
        EventKind::PeerSilent { peer, port, .. } => format!("peer {peer} silent: removed ({port})"),
        EventKind::KeyRotated { epoch, automatic, .. } => {
            format!("key epoch {epoch} ({})", if *automatic { "automatic rotation" } else { "network key rotate" })
        }
        EventKind::EndpointGone { sandbox, port, address, .. } => {
            format!("{port} of sandbox {sandbox} gone: endpoint and {address} released")
        }
        EventKind::SandboxGone { sandbox, netns } => format!("sandbox {sandbox} gone ({netns}): removed"),
        EventKind::EventsLost { lost, scope } => match scope {
            LostScope::Stream => format!("{lost} events lost: this client read too slowly"),
            LostScope::Daemon => format!("{lost} events lost inside the daemon"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table<const N: usize>(listing: Listing<N>) -> String {
        let mut out = Vec::new();
        listing.write_table(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// The tables as they were before `--format` came to them: REMOTE only
    /// when an entry has one, this node marked `*`, empty cells `-`.
    #[test]
    fn list_tables_keep_their_shape() {
        let mac = ctl::MacAddr([2, 0, 0, 0, 0, 1]);
        let local = FdbEntry {
            network: "n".into(),
            port: "vsw1".into(),
            mac,
            age_secs: 4,
            kind: ctl::proto::FdbKind::Learned,
            remote: None,
        };
        assert_eq!(
            table(fdb(std::slice::from_ref(&local))),
            "PORT   NETWORK   MAC                 AGE   TYPE\nvsw1   n         02:00:00:00:00:01   4     learned\n"
        );
        let remote = FdbEntry { remote: Some("192.0.2.1:4789".parse().unwrap()), ..local.clone() };
        let both = table(fdb(&[local, remote]));
        assert_eq!(
            both.lines().map(|l| l.split_whitespace().last().unwrap()).collect::<Vec<_>>(),
            ["REMOTE", "-", "192.0.2.1:4789"]
        );
        let store = ctl::proto::StoreState {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            node: "a".into(),
            connected: true,
            revision: 7,
            last_error: None,
        };
        let node = |name: &str, is_self| ctl::proto::NodeInfo {
            name: name.into(),
            vtep: None,
            status: ctl::proto::NodeStatus::Ready,
            is_self,
            endpoints: 0,
            networks: vec![],
        };
        let list = ctl::proto::NodeList { store, nodes: vec![node("a", true), node("b", false)] };
        let mut out = Vec::new();
        nodes(&mut out, &list).unwrap();
        let out = String::from_utf8(out).unwrap();
        let rows: Vec<Vec<&str>> = out.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(
            rows,
            [
                vec!["NAME", "VTEP", "STATUS", "ENDPOINTS", "NETWORKS"],
                vec!["a", "*", "-", "ready", "0", "-"],
                vec!["b", "-", "ready", "0", "-"]
            ],
            "{out}"
        );
        // A template has the plain name and `.Self`.
        let rows = node_rows(&list, false).template_rows();
        assert_eq!((&rows[0]["Name"], &rows[0]["Self"], &rows[1]["Self"]), (&json!("a"), &json!(true), &json!(false)));
    }

    #[test]
    fn created_times_print_as_go_prints_them() {
        assert_eq!(go_time("2026-12-03T15:37:16Z"), "2026-12-03 15:37:16 +0000 UTC");
        assert_eq!(go_time("2026-12-03T15:37:16.5Z"), "2026-12-03 15:37:16.5 +0000 UTC");
        assert_eq!(go_time(""), "");
        assert_eq!(go_time("yesterday"), "yesterday");
    }

    #[test]
    fn impairment_shows_in_show_and_stats() {
        let impair = ctl::Impairment { delay_us: 10_000, loss_ppm: 10_000, ..ctl::Impairment::default() };
        let tree = ShowTree {
            version: "0".into(),
            cluster: None,
            networks: vec![ctl::proto::ShowNetwork {
                name: "app".into(),
                id: "0123456789abcdef".into(),
                driver: ctl::proto::Driver::Bridge,
                subnet: None,
                gateway: None,
                subnet6: None,
                gateway6: None,
                mtu: None,
                vni: None,
                worker: Some(1),
                spread_over: None,
                ports: vec![
                    ctl::proto::ShowPort {
                        name: "vsw1".into(),
                        kind: ctl::proto::PortKind::Tap,
                        sandbox: Some("web".into()),
                        ifname: None,
                        mac: None,
                        ip: None,
                        ip6: None,
                        remote: None,
                        impair: Some(impair),
                        port_type: Some(ctl::proto::PortType::Afxdp),
                        xdp_mode: Some("copy, native XDP".into()),
                        down: false,
                        txqueuelen: Some(4096),
                    },
                    ctl::proto::ShowPort {
                        name: "up0".into(),
                        kind: ctl::proto::PortKind::Uplink,
                        sandbox: None,
                        ifname: Some("up0".into()),
                        mac: None,
                        ip: None,
                        ip6: None,
                        remote: None,
                        impair: None,
                        port_type: Some(ctl::proto::PortType::Raw),
                        xdp_mode: None,
                        down: true,
                        txqueuelen: None,
                    },
                ],
            }],
        };
        let mut out = Vec::new();
        show(&mut out, &tree).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("            impair: delay 10ms loss 1%\n"));
        assert!(text.contains("            port type: afxdp\n            xdp: copy, native XDP\n"), "{text}");
        assert!(text.contains("            txqueuelen: 4096\n"), "{text}");
        assert!(text.contains("        worker: vsw-dp-1\n"), "{text}");
        assert!(text.contains("            link: down, waiting for the interface\n"), "{text}");
        let row = PortStats {
            port: "vsw1".into(),
            network: "app".into(),
            rx_packets: 0,
            rx_bytes: 0,
            tx_packets: 0,
            tx_bytes: 0,
            floods: 0,
            drops: [("impair_loss".to_owned(), 3)].into(),
            dns: None,
            nat: None,
            impair: Some(ImpairStats {
                settings: None,
                counters: ctl::ImpairCounters { queued: 1, delayed: 2, lost: 3, ..Default::default() },
            }),
            tap_queue_dropped: None,
            worker: None,
            gro: None,
        };
        let tap = PortStats { port: "vsw2".into(), tap_queue_dropped: Some(4242), impair: None, ..row.clone() };
        let mut out = Vec::new();
        stats(&mut out, &[row.clone(), tap]).unwrap();
        let text = String::from_utf8(out).unwrap();
        let queue = text.split("TAP-QUEUE").nth(1).expect(&text);
        assert!(queue.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["vsw2", "4242"]), "{text}");
        assert!(!queue.contains("vsw1"), "a port without a TAP queue has no row: {text}");
        let vtep = PortStats {
            port: "vtep".into(),
            gro: Some(ctl::proto::GroStats { frames: 3, segments: 120 }),
            impair: None,
            ..row.clone()
        };
        let mut out = Vec::new();
        stats(&mut out, &[row.clone(), vtep]).unwrap();
        let text = String::from_utf8(out).unwrap();
        let gro = text.split("GRO (").nth(1).expect(&text);
        assert!(gro.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["vtep", "3", "120"]), "{text}");
        assert!(!gro.contains("vsw1"), "{text}");
        let mut out = Vec::new();
        stats(&mut out, &[row]).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("3 (impair_loss=3)") && text.contains("IMPAIR"), "{text}");
        let line = text.lines().find(|l| l.starts_with("vsw1") && l.contains("(cleared)")).expect(&text);
        assert_eq!(line.split_whitespace().skip(2).collect::<Vec<_>>(), ["1", "2", "3", "0", "0", "0"]);
    }

    #[test]
    fn ages_are_short() {
        assert_eq!(age(850), "850ms");
        assert_eq!(age(12_345), "12.3s");
        assert_eq!(age(245_000), "4m05s");
        assert_eq!(age(7_380_000), "2h03m");
    }
}
