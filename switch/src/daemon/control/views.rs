//! Read-only requests: the payloads of `show`, `fdb show`, `stats`,
//! `network inspect`/`ls` and `sandbox ls`, built from the model and a
//! datapath snapshot.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};

use ctl::proto::{
    self, ConfigReference, CtlError, DnsStats, EndpointInfo, EndpointResource, FdbKind, Ipam, IpamConfig, NetworkInfo,
    NetworkSummary, PortStats, SandboxInfo, ShowNetwork, ShowPort, ShowTree,
};
use ctl::{IpNet, Ipv4Net};

use super::{
    Control, Reply, VTEP_PORT_NAME, datapath_error, gateway_port_name, model_error, network_id, ok, tunnel_port_name,
};
use crate::daemon::datapath::{PortRole, Snapshot};
use crate::model::{ConfigNetwork, Endpoint, Model, Network};
use crate::port::{NetworkId, PortId};
use crate::sys::netlink::{LinkState, Netlink};
use crate::sys::netns::NetNs;

impl Control {
    /// Names every datapath port the way `show`, `fdb` and `stats` print
    /// them, and the remote VTEP of tunnel ports.
    pub(super) fn port_names(&self, snapshot: &Snapshot) -> (HashMap<PortId, String>, HashMap<PortId, SocketAddr>) {
        let remotes: HashMap<PortId, SocketAddr> = snapshot.tunnels.iter().map(|t| (t.port, t.remote)).collect();
        let names = snapshot
            .ports
            .iter()
            .map(|&(port, _, _)| {
                let name = match PortRole::of(port) {
                    PortRole::Endpoint(i) => self
                        .model
                        .endpoint_by_port_index(i)
                        .map(|e| e.host_tap_name.clone())
                        .or_else(|| self.model.uplink_by_port_index(i).map(|u| u.interface.clone())),
                    PortRole::Gateway(i) => self.model.network_by_index(i).map(gateway_port_name),
                    PortRole::Tunnel(_) => remotes.get(&port).map(|r| tunnel_port_name(*r)),
                };
                (port, name.unwrap_or_else(|| port.to_string()))
            })
            .collect();
        (names, remotes)
    }

    /// The kernel's view of every endpoint TAP (its `txqueuelen` and
    /// `tx_dropped`), by TAP name, read over netlink in each sandbox's
    /// namespace: one socket per sandbox per request, never per frame. A
    /// TAP that cannot be read (its namespace is gone) is left out and
    /// logged.
    pub(super) fn tap_links(&self) -> HashMap<String, LinkState> {
        let mut by_sandbox: BTreeMap<&str, Vec<&Endpoint>> = BTreeMap::new();
        for e in self.model.endpoints().filter(|e| e.port_type.is_tap()) {
            by_sandbox.entry(e.sandbox.as_str()).or_default().push(e);
        }
        let mut links = HashMap::new();
        for (sandbox, endpoints) in by_sandbox {
            let read = || -> Result<Vec<(String, LinkState)>, String> {
                let sb = self.model.sandbox(sandbox).map_err(|e| e.to_string())?;
                let ns = NetNs::open_path(&sb.netns_path).map_err(|e| e.to_string())?;
                let mut nl = Netlink::open_in(&ns).map_err(|e| e.to_string())?;
                let mut out = Vec::new();
                for e in &endpoints {
                    if let Some(l) = nl.link(&e.ifname_in_sandbox).map_err(|e| e.to_string())? {
                        out.push((e.host_tap_name.clone(), l));
                    }
                }
                Ok(out)
            };
            match read() {
                Ok(found) => links.extend(found),
                Err(error) => tracing::debug!(sandbox, %error, "cannot read the sandbox's TAP counters"),
            }
        }
        links
    }

    pub(super) fn network_name(&self, id: NetworkId) -> String {
        self.model.network_by_index(id.0).map(|n| n.name.clone()).unwrap_or_else(|| id.to_string())
    }

    pub(super) fn fdb_show(&self, network: Option<&str>) -> Reply {
        let filter = network.map(|n| self.model.network(n).map(network_id)).transpose().map_err(model_error)?;
        let snapshot = self.datapath.snapshot().map_err(datapath_error)?;
        let (names, remotes) = self.port_names(&snapshot);
        let mut entries: Vec<proto::FdbEntry> = snapshot
            .fdb
            .iter()
            .filter(|r| filter.is_none_or(|f| f == r.network))
            .map(|r| proto::FdbEntry {
                network: self.network_name(r.network),
                port: names.get(&r.port).cloned().unwrap_or_else(|| r.port.to_string()),
                mac: r.mac,
                age_secs: r.age.as_secs(),
                kind: match (r.cluster, r.is_static) {
                    (true, _) => FdbKind::Cluster,
                    (false, true) => FdbKind::Static,
                    (false, false) => FdbKind::Learned,
                },
                remote: remotes.get(&r.port).copied(),
            })
            .collect();
        entries.sort_by(|a, b| (&a.network, &a.port, a.mac.0).cmp(&(&b.network, &b.port, b.mac.0)));
        ok(entries)
    }

    pub(super) fn stats(&self, port: Option<&str>) -> Reply {
        /// The network column of the workers' rows.
        const WORKER_NETWORK: &str = "(worker)";
        let snapshot = self.datapath.snapshot().map_err(datapath_error)?;
        let (names, _) = self.port_names(&snapshot);
        let taps = self.tap_links();
        let drops = |d: &crate::counters::DropCounters| -> BTreeMap<String, u64> {
            d.iter().filter(|(_, n)| *n > 0).map(|(r, n)| (r.name().to_owned(), n)).collect()
        };
        let mut stats: Vec<PortStats> = snapshot
            .ports
            .iter()
            .map(|(id, network, c)| {
                let port = names.get(id).cloned().unwrap_or_else(|| id.to_string());
                PortStats {
                    tap_queue_dropped: taps.get(&port).and_then(|l| l.tx_dropped),
                    port,
                    network: self.network_name(*network),
                    rx_packets: c.rx_packets,
                    rx_bytes: c.rx_bytes,
                    tx_packets: c.tx_packets,
                    tx_bytes: c.tx_bytes,
                    floods: c.rx_flooded,
                    drops: drops(&c.drops),
                    dns: matches!(PortRole::of(*id), PortRole::Gateway(_))
                        .then(|| snapshot.dns.iter().find(|(n, _)| n == network).map(|(_, d)| dns_stats(d)))
                        .flatten(),
                    nat: matches!(PortRole::of(*id), PortRole::Gateway(_))
                        .then(|| {
                            snapshot.nat.iter().find(|(n, _)| n == network).map(|(_, c)| super::publish::nat_stats(c))
                        })
                        .flatten(),
                    impair: snapshot.impair.iter().find(|i| i.port == *id).map(impair_stats),
                    worker: None,
                    gro: None,
                }
            })
            .collect();
        if let Some(v) = snapshot.vtep {
            stats.push(PortStats {
                port: VTEP_PORT_NAME.to_owned(),
                network: "(underlay)".to_owned(),
                rx_packets: v.rx_packets,
                rx_bytes: v.rx_bytes,
                tx_packets: v.tx_packets,
                tx_bytes: v.tx_bytes,
                floods: 0,
                drops: drops(&v.drops),
                dns: None,
                nat: None,
                impair: None,
                tap_queue_dropped: None,
                worker: None,
                gro: Some(proto::GroStats { frames: v.gro_frames, segments: v.gro_segments }),
            });
        }
        // One row per datapath worker: its load and its underlay socket.
        for (k, w) in snapshot.workers.iter().enumerate() {
            let v = w.vtep.unwrap_or_default();
            stats.push(PortStats {
                port: format!("vsw-dp-{k}"),
                network: WORKER_NETWORK.to_owned(),
                rx_packets: v.rx_packets,
                rx_bytes: v.rx_bytes,
                tx_packets: v.tx_packets,
                tx_bytes: v.tx_bytes,
                floods: 0,
                drops: drops(&v.drops),
                dns: None,
                nat: None,
                impair: None,
                tap_queue_dropped: None,
                worker: Some(proto::WorkerLoad {
                    index: k as u32,
                    busy_ms: w.busy.as_millis() as u64,
                    wakeups: w.wakeups,
                    cpu: w.cpu,
                    replica_frames: w.spread.replica_rx,
                    to_owner: w.spread.punted,
                    from_replicas: w.spread.taken,
                    placed_out: w.spread.placed_out,
                    placed_in: w.spread.placed_in,
                }),
                gro: None,
            });
        }
        // Sorted like every other listing: by network, then port (the
        // underlay's row, then the workers' rows, last).
        let rank = |s: &PortStats| (s.worker.is_some(), s.port == VTEP_PORT_NAME);
        stats.sort_by(|a, b| (rank(a), &a.network, &a.port).cmp(&(rank(b), &b.network, &b.port)));
        stats.retain(|s| port.is_none_or(|p| p == s.port));
        if let Some(p) = port
            && stats.is_empty()
        {
            return Err(CtlError::not_found(format!("port {p} not found")));
        }
        ok(stats)
    }

    pub(super) fn show(&self) -> Reply {
        let snapshot = self.datapath.snapshot().map_err(datapath_error)?;
        let taps = self.tap_links();
        let networks = self
            .model
            .networks()
            .into_iter()
            .map(|n| {
                let mut ports = Vec::new();
                if let Some(gw) = n.gateway.filter(|_| n.driver.is_switched()) {
                    ports.push(ShowPort {
                        name: gateway_port_name(n),
                        kind: proto::PortKind::Internal,
                        sandbox: None,
                        ifname: None,
                        mac: Some(crate::gateway::gateway_mac(gw)),
                        ip: n.subnet.and_then(|s| Ipv4Net::new(gw, s.prefix_len()).ok()),
                        ip6: n.gateway6_net(),
                        remote: None,
                        impair: None,
                        port_type: None,
                        xdp_mode: None,
                        down: false,
                        txqueuelen: None,
                    });
                }
                ports.extend(self.model.endpoints_on_network(&n.id).into_iter().map(|e| ShowPort {
                    name: e.host_tap_name.clone(),
                    kind: proto::PortKind::Tap,
                    sandbox: Some(e.sandbox.clone()),
                    ifname: Some(e.ifname_in_sandbox.clone()),
                    mac: Some(e.mac),
                    ip: e.ipv4_net(),
                    ip6: e.ipv6_net(),
                    remote: None,
                    impair: e.impair,
                    port_type: (!e.port_type.is_tap()).then_some(e.port_type),
                    xdp_mode: self.xdp_modes.borrow().get(&e.port_index).cloned(),
                    down: false,
                    txqueuelen: taps.get(&e.host_tap_name).and_then(|l| l.txqueuelen),
                }));
                ports.extend(self.model.uplinks_of(&n.id).into_iter().map(|u| ShowPort {
                    name: u.interface.clone(),
                    kind: proto::PortKind::Uplink,
                    sandbox: None,
                    ifname: Some(u.interface.clone()),
                    mac: None,
                    ip: None,
                    ip6: None,
                    remote: None,
                    impair: None,
                    port_type: Some(u.port_type),
                    xdp_mode: self.xdp_modes.borrow().get(&u.port_index).cloned(),
                    down: self.uplinks_down.contains(&u.interface),
                    txqueuelen: None,
                }));
                ports.extend(snapshot.tunnels.iter().filter(|t| t.network == network_id(n)).map(|t| ShowPort {
                    name: tunnel_port_name(t.remote),
                    kind: proto::PortKind::Tunnel,
                    sandbox: None,
                    ifname: None,
                    mac: None,
                    ip: None,
                    ip6: None,
                    remote: Some(t.remote),
                    impair: self.model.tunnel_impairment(t.remote).copied(),
                    port_type: None,
                    xdp_mode: None,
                    down: false,
                    txqueuelen: None,
                }));
                ShowNetwork {
                    name: n.name.clone(),
                    id: n.id.clone(),
                    driver: n.driver,
                    subnet: n.subnet,
                    gateway: n.gateway,
                    subnet6: n.subnet6,
                    gateway6: n.gateway6,
                    mtu: n.driver.is_switched().then_some(n.mtu),
                    vni: n.vni,
                    worker: self.datapath.network_worker(network_id(n)).map(|k| k as u32),
                    spread_over: self.datapath.network_spread(network_id(n)).then(|| self.datapath.workers() as u32),
                    ports,
                }
            })
            .collect();
        ok(ShowTree { version: env!("CARGO_PKG_VERSION").to_owned(), networks, cluster: self.store_state() })
    }

    pub(super) fn endpoint_info(&self, e: &Endpoint) -> EndpointInfo {
        EndpointInfo {
            network: self.model.network_by_id(&e.network_id).map(|n| n.name.clone()).unwrap_or_default(),
            sandbox: e.sandbox.clone(),
            endpoint_id: e.id.clone(),
            port: e.host_tap_name.clone(),
            ifname: e.ifname_in_sandbox.clone(),
            mac: e.mac,
            ipv4: e.ipv4_net(),
            ipv6: e.ipv6_net(),
            aliases: e.aliases.clone(),
            publish: e.publish.clone(),
            service: e.service.clone(),
            gw_priority: e.gw_priority,
            default_gateway: e.is_default_gateway_network,
        }
    }

    pub(super) fn sandbox_info(&self, name: &str) -> SandboxInfo {
        let sandbox = self.model.sandbox(name).ok();
        SandboxInfo {
            name: name.to_owned(),
            netns: sandbox.map(|s| s.netns_path.clone()).unwrap_or_default(),
            dns: sandbox.map(|s| s.dns.clone()).unwrap_or_default(),
            dns_search: sandbox.map(|s| s.dns_search.clone()).unwrap_or_default(),
            dns_options: sandbox.map(|s| s.dns_options.clone()).unwrap_or_default(),
            extra_hosts: sandbox.map(|s| s.extra_hosts.clone()).unwrap_or_default(),
            endpoints: self.model.endpoints_in_sandbox(name).into_iter().map(|e| self.endpoint_info(e)).collect(),
            resolver: None,
            listens_ipv6: false,
        }
    }

    pub(super) fn network_info(&self, n: &Network) -> NetworkInfo {
        let containers: BTreeMap<String, EndpointResource> = self
            .model
            .endpoints_on_network(&n.id)
            .into_iter()
            .map(|e| {
                let resource = EndpointResource {
                    name: e.sandbox.clone(),
                    endpoint_id: e.id.clone(),
                    mac_address: e.mac.to_string(),
                    ipv4_address: e.ipv4_net().map(|a| a.to_string()).unwrap_or_default(),
                    ipv6_address: e.ipv6_net().map(|a| a.to_string()).unwrap_or_default(),
                };
                (e.id.clone(), resource)
            })
            .collect();
        // The settings themselves, under Docker's names (an option given by
        // a daemon from before they were folded into them is not shown).
        let options = docker_options(&n.options, n.driver.is_switched().then_some(n.mtu), n.vni);
        NetworkInfo {
            name: n.name.clone(),
            id: n.id.clone(),
            created: n.created.clone(),
            scope: scope_of(n).to_owned(),
            driver: n.driver,
            enable_ipv4: n.enable_ipv4,
            enable_ipv6: n.enable_ipv6,
            ipam: Ipam { driver: "default".to_owned(), options: BTreeMap::new(), config: ipam_configs(n) },
            internal: n.internal,
            attachable: n.attachable,
            containers,
            options,
            labels: n.labels.clone(),
            config_from: ConfigReference { network: n.config_from.clone().unwrap_or_default() },
            config_only: false,
        }
    }

    /// A configuration-only network as `network inspect` shows it (Docker's
    /// shape: driver `null`, here `none`; its settings as they were given).
    pub(super) fn config_network_info(&self, c: &ConfigNetwork) -> NetworkInfo {
        let s = &c.settings;
        let options = docker_options(&s.options, s.mtu, s.vni);
        let v4 = (s.subnet.map(Into::into), s.gateway.map(Into::into), s.ip_range.map(Into::into));
        let v6 = (s.subnet6.map(Into::into), s.gateway6.map(Into::into), s.ip_range6.map(Into::into));
        NetworkInfo {
            name: c.name.clone(),
            id: c.id.clone(),
            created: c.created.clone(),
            scope: "local".to_owned(),
            driver: proto::Driver::None,
            enable_ipv4: s.enable_ipv4,
            enable_ipv6: s.enable_ipv6,
            ipam: Ipam {
                driver: "default".to_owned(),
                options: BTreeMap::new(),
                config: pools([v4, v6], &s.aux_addresses),
            },
            internal: false,
            attachable: false,
            containers: BTreeMap::new(),
            options,
            labels: s.labels.clone(),
            config_from: ConfigReference::default(),
            config_only: true,
        }
    }
}

/// A row of `network ls` for a configuration-only network: driver `none`
/// (Docker's `null`), never dangling (`network prune` keeps them, as
/// Docker's does).
pub(super) fn config_network_summary(c: &ConfigNetwork) -> NetworkSummary {
    let s = &c.settings;
    NetworkSummary {
        endpoints: 0,
        predefined: false,
        dangling: false,
        labels: s.labels.clone(),
        internal: false,
        created: c.created.clone(),
        name: c.name.clone(),
        id: c.id.clone(),
        driver: proto::Driver::None,
        scope: "local".to_owned(),
        subnet: s.subnet,
        enable_ipv4: s.enable_ipv4,
        enable_ipv6: s.enable_ipv6,
        subnet6: s.subnet6,
        config_only: true,
        config_from: None,
    }
}

/// A network's Docker scope: `swarm` for a cluster network (its record is
/// in the cluster store), `local` for the others.
fn scope_of(n: &Network) -> &'static str {
    if n.cluster { "swarm" } else { "local" }
}

pub(super) fn network_summary(model: &Model, n: &Network) -> NetworkSummary {
    NetworkSummary {
        endpoints: model.endpoints_on_network(&n.id).len(),
        predefined: n.is_predefined(),
        dangling: model.is_unused(n),
        labels: n.labels.clone(),
        internal: n.internal,
        created: n.created.clone(),
        name: n.name.clone(),
        id: n.id.clone(),
        driver: n.driver,
        scope: scope_of(n).to_owned(),
        subnet: n.subnet,
        enable_ipv4: n.enable_ipv4,
        enable_ipv6: n.enable_ipv6,
        subnet6: n.subnet6,
        config_only: false,
        config_from: n.config_from.clone(),
    }
}

/// `Options` as `docker network inspect` shows them: the `-o` options, with
/// the MTU and VNI under Docker's names for them.
fn docker_options(options: &BTreeMap<String, String>, mtu: Option<u32>, vni: Option<u32>) -> BTreeMap<String, String> {
    let mut options = options.clone();
    let named = [(crate::model::DOCKER_MTU_OPTION, mtu), (crate::model::DOCKER_VNI_OPTION, vni)];
    for (name, value) in named {
        if let Some(value) = value {
            options.insert(name.to_owned(), value.to_string());
        }
    }
    options
}

/// Docker's `IPAM.Config` of a network: its IPv4 pool, then its IPv6 one.
fn ipam_configs(n: &Network) -> Vec<IpamConfig> {
    let v4 = (n.subnet.map(Into::into), n.gateway.map(Into::into), n.ip_range.map(Into::into));
    let v6 = (n.subnet6.map(Into::into), n.gateway6.map(Into::into), n.ip_range6.map(Into::into));
    pools([v4, v6], &n.aux_addresses)
}

/// One address pool of `IPAM.Config`: subnet, gateway, range.
type Pool = (Option<IpNet>, Option<IpAddr>, Option<IpNet>);

/// `IPAM.Config` from each family's (subnet, gateway, range), a family
/// without a subnet left out, each pool with the auxiliary addresses of
/// its family.
fn pools(families: [Pool; 2], aux: &BTreeMap<String, IpAddr>) -> Vec<IpamConfig> {
    families
        .into_iter()
        .filter_map(|(subnet, gateway, ip_range)| {
            let subnet = subnet?;
            let auxiliary_addresses = aux
                .iter()
                .filter(|(_, ip)| ip.is_ipv4() == matches!(subnet, IpNet::V4(_)))
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            Some(IpamConfig { subnet, gateway, ip_range, auxiliary_addresses })
        })
        .collect()
}

/// The wire form of a port's impairment.
fn impair_stats(i: &crate::daemon::datapath::ImpairSnapshot) -> proto::ImpairStats {
    proto::ImpairStats { settings: i.settings, counters: i.counters }
}

/// The wire form of a DNS server's counters.
fn dns_stats(c: &dns::Counters) -> DnsStats {
    DnsStats {
        queries: c.queries,
        answered_locally: c.answered_locally,
        nxdomain: c.nxdomain,
        nodata: c.nodata,
        forwarded: c.forwarded,
        upstream_failures: c.upstream_failures,
        malformed: c.malformed,
        refused: c.refused,
        refused_over_limit: c.refused_over_limit,
        truncated: c.truncated,
        tcp_closed_idle: c.tcp_closed_idle,
    }
}
