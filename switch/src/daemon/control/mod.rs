//! The control plane: applies ctl requests to the network model, performs
//! their side effects (namespaces, TAPs, datapath changes), persists the
//! result and answers. A rejected request changes nothing: the model is
//! changed on a copy, side effects are undone on failure, and the copy is
//! swapped in only after it was saved.

mod capture;
mod cluster;
pub use cluster::{RESYNC_INTERVAL, remove_node};
mod cluster_keys;
mod dns;
mod impair;
mod ingress;
mod metrics;
pub use metrics::CONTENT_TYPE as METRICS_CONTENT_TYPE;
mod overlay;
mod publish;
mod reap;
#[cfg(test)]
mod scratch;
mod stack;
mod stream;
mod uplinks;
mod views;

pub use stream::{StreamNext, StreamSource, Subscription};

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ctl::MacAddr;
use ctl::proto::{self, Ack, CtlError, ErrorKind, FlushResult, PortChange, Request, VersionInfo};
use serde::Serialize;
use serde_json::Value;

use super::datapath::{DatapathError, DatapathHandle, Gateway6Spec, GatewaySpec, NetworkSpec, endpoint_port};
use super::events::EventHub;
use super::hostports;
use super::plumbing::{self, PlumbError};
use super::tunnel::VtepConfig;
use crate::bridge::NetworkConfig;
use crate::model::{
    Connect, CreateNetwork, CreateSandbox, ENCRYPTED_OPTION, Endpoint, MSS_CLAMP_OPTION, Model, ModelError, Network,
    Store, StoreError,
};
use crate::port::{NetworkId, PortConfig};
use views::network_summary;

/// The control plane's state.
pub struct Control {
    model: Model,
    store: Store,
    datapath: DatapathHandle,
    vtep: Option<VtepConfig>,
    /// A cluster secret was loaded: encrypted overlays are possible.
    has_secret: bool,
    /// The embedded DNS's upstreams for sandboxes without their own.
    dns_upstreams: Vec<SocketAddr>,
    /// Held by every running capture (their count is the strong count - 1).
    captures: std::sync::Arc<()>,
    /// The switch's events: history, subscribers, names.
    events: EventHub,
    /// How each AF_XDP port runs (`show`), by port index.
    xdp_modes: std::cell::RefCell<std::collections::HashMap<u32, String>>,
    /// Uplinks whose interface is gone (or could not be attached): they
    /// wait for an interface of their name (see `uplinks.rs`).
    uplinks_down: std::collections::BTreeSet<String>,
    /// The index of the interface each uplink was last attached to, by
    /// interface name: an interface of that name with another index is a
    /// new one.
    uplink_ifindex: std::collections::BTreeMap<String, u32>,
    /// The cluster store, in cluster mode (`--cluster-store`).
    cluster: Option<cluster::ClusterLink>,
    /// The keys of encrypted cluster overlays, through the store.
    cluster_keys: Option<cluster_keys::StoreKeys>,
}

/// The name of the underlay endpoint's row in `stats`.
pub(crate) const VTEP_PORT_NAME: &str = "vtep";

type Reply = Result<Value, CtlError>;

fn ok<T: Serialize>(payload: T) -> Reply {
    serde_json::to_value(payload).map_err(|e| CtlError::internal(format!("cannot encode reply: {e}")))
}

/// The ctl error kind for a model error.
fn model_error(e: ModelError) -> CtlError {
    use ModelError as M;
    let kind = match &e {
        M::NoSuchNetwork(_)
        | M::NoSuchConfigNetwork(_)
        | M::NoSuchSandbox(_)
        | M::NotConnected { .. }
        | M::NoSuchPort { .. }
        | M::NoSuchTunnel { .. }
        | M::NoSuchFdbEntry { .. } => ErrorKind::NotFound,
        M::NetworkExists(_)
        | M::SandboxExists(_)
        | M::SubnetOverlap { .. }
        | M::VniInUse { .. }
        | M::NetnsPathInUse { .. }
        | M::AlreadyConnected { .. }
        | M::AddressInUse { .. }
        | M::MacInUse { .. }
        | M::InterfaceNameInUse { .. }
        | M::FdbEntryExists { .. } => ErrorKind::Conflict,
        M::NoSuchService(_) | M::NotPublished { .. } | M::NoEndpointToPublish(_) | M::NoSuchEndpointPort(_) => {
            ErrorKind::NotFound
        }
        M::PortPublished { .. } | M::ServiceOnOtherNetwork { .. } => ErrorKind::Conflict,
        M::NetworkInUse { .. } | M::NetworkHasServices { .. } | M::ConfigNetworkInUse { .. } => ErrorKind::InUse,
        M::HostNotConnectable
        | M::ConfigOnly(_)
        | M::NoneNotConnectable
        | M::NotAttachable(_)
        | M::SingletonDriver(_)
        | M::PublishOnInternal(_)
        | M::NotImpairable(_)
        | M::UnsupportedOption { .. } => ErrorKind::NotSupported,
        _ => ErrorKind::InvalidArgument,
    };
    CtlError::new(kind, e.to_string())
}

fn store_error(e: StoreError) -> CtlError {
    CtlError::internal(format!("cannot persist state, nothing changed: {e}"))
}

fn datapath_error(e: DatapathError) -> CtlError {
    CtlError::internal(format!("datapath: {e}"))
}

fn plumb_error(e: PlumbError) -> CtlError {
    CtlError::internal(e.to_string())
}

/// Refuses an endpoint whose interface name the sandbox's namespace
/// already has (an adopted namespace's own `eth0`, or a name asked for
/// with `--ifname`), before anything is made: the kernel's refusal to
/// rename would name the switch's TAP, not the name.
fn check_ifname_free(ns: &crate::sys::netns::NetNs, endpoint: &Endpoint) -> Result<(), CtlError> {
    let name = &endpoint.ifname_in_sandbox;
    let mut nl = crate::sys::netlink::Netlink::open_in(ns).map_err(|e| CtlError::internal(e.to_string()))?;
    match nl.link(name).map_err(|e| CtlError::internal(e.to_string()))? {
        None => Ok(()),
        Some(_) => Err(CtlError::new(
            ErrorKind::Conflict,
            format!("sandbox {}'s namespace already has an interface {name}", endpoint.sandbox),
        )),
    }
}

fn host_port_error(e: hostports::HostPortError) -> CtlError {
    CtlError::internal(e.to_string())
}

/// The datapath's id of a network.
fn network_id(network: &Network) -> NetworkId {
    NetworkId(network.network_index)
}

/// The datapath's configuration of an uplink's port on `network`: its MTU
/// and storm control (`-o flood-limit`).
fn access_port_config(network: &Network) -> PortConfig {
    PortConfig {
        mtu: network.mtu,
        flood_limit: network.flood_limit().and_then(crate::port::FloodLimit::new),
        ..PortConfig::access(network_id(network))
    }
}

/// The datapath's configuration of an endpoint's port on `network`: an
/// uplink's, isolated from the network's other endpoints when it has
/// inter-container communication off (`enable_icc=false`).
fn endpoint_port_config(network: &Network) -> PortConfig {
    PortConfig { isolated: !network.inter_container(), ..access_port_config(network) }
}

/// The datapath's view of a switched network: its bridge domain, the IPv4
/// and IPv6 sides of its gateway (each only when the network has that
/// family), and its overlay and egress settings.
fn network_spec(network: &Network) -> NetworkSpec {
    NetworkSpec {
        id: network_id(network),
        config: NetworkConfig::default(),
        mtu: network.mtu,
        gateway: plumbing::gateway_of(network).map(|(address, prefix_len)| GatewaySpec { address, prefix_len }),
        gateway6: plumbing::gateway6_of(network).map(|(address, prefix_len)| Gateway6Spec {
            address,
            prefix_len,
            default_route: !network.internal,
        }),
        vni: network.vni.and_then(vxlan::Vni::new),
        mss_clamp: network.options.contains_key(MSS_CLAMP_OPTION),
        key_epoch: network.is_encrypted().then_some(network.key_epoch),
        cipher: network.cipher(),
        // A cluster overlay's keys come from the store, which also rotates
        // them (`-o key-rotation` is the coordinator's period there).
        store_keys: store_keys(network),
        key_rotation: network.key_rotation().filter(|_| !store_keys(network)),
        egress: network.egress(),
        spread: network.spread(),
    }
}

/// Whether an encrypted overlay's keys come from the cluster store (those of
/// cluster networks) rather than from the cluster secret.
fn store_keys(network: &Network) -> bool {
    network.cluster && network.is_encrypted()
}

/// The name of a tunnel port in `show`, `fdb` and `stats`.
fn tunnel_port_name(remote: SocketAddr) -> String {
    super::events::tunnel_port_name(remote)
}

/// The name of a network's gateway port in `show`, `fdb` and `stats`.
fn gateway_port_name(network: &Network) -> String {
    super::events::gateway_port_name(&network.name)
}

impl Control {
    /// Restores everything the model holds into the datapath and the host
    /// (networks, re-attached or re-plumbed endpoints, static entries, aging
    /// time) and returns the running control plane. Endpoints that cannot be
    /// restored are logged and left out of the datapath, not dropped from the
    /// model. The embedded DNS gets the model's names, and every sandbox's
    /// resolv.conf is written again. `dns_upstreams` are the embedded DNS's
    /// upstreams (shown by `sandbox inspect`).
    pub fn restore(
        store: Store,
        model: Model,
        datapath: DatapathHandle,
        vtep: Option<VtepConfig>,
        has_secret: bool,
        dns_upstreams: Vec<SocketAddr>,
    ) -> Result<Control, DatapathError> {
        // A `stack_apply` the daemon died in: remove what it made that the
        // saved state does not hold, before restoring what it does.
        stack::journal::recover(store.dir(), &model);
        let events = EventHub::spawn(datapath.events()).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot start the event thread; the datapath's events are lost");
            EventHub::new()
        });
        events.update_names(&model);
        let mut control = Control {
            model,
            store,
            datapath,
            vtep,
            has_secret,
            dns_upstreams,
            events,
            captures: Default::default(),
            xdp_modes: Default::default(),
            uplinks_down: Default::default(),
            uplink_ifindex: Default::default(),
            cluster: None,
            cluster_keys: None,
        };
        control.datapath.set_aging(Duration::from_secs(control.model.config().aging_time_secs))?;
        // Before the peers' tunnel ports are made, which take it on.
        control.restore_tunnel_impairments();
        for network in control.model.networks() {
            if network.driver.is_switched() {
                control.add_network_to_datapath(network)?;
            }
            let ignored = network.ignored_options();
            if !ignored.is_empty() {
                tracing::warn!(network = %network.name, options = ?ignored, "the network holds options this version refuses and does not carry out (recreate it without them)");
            }
            if !network.inter_container() {
                tracing::info!(network = %network.name, "inter-container communication is off (enable_icc=false): the network's sandboxes are isolated from one another");
            }
        }
        let mut restored = std::collections::HashSet::new();
        let endpoints: Vec<Endpoint> = control.model.endpoints().cloned().collect();
        for endpoint in &endpoints {
            match control.restore_endpoint(endpoint) {
                Ok(()) => {
                    restored.insert(endpoint.id.clone());
                }
                Err(e) => {
                    tracing::error!(endpoint = %endpoint.host_tap_name, sandbox = %endpoint.sandbox, error = %e.message, "cannot restore endpoint");
                }
            }
        }
        control.restore_uplinks();
        control.restore_publications(&restored);
        for entry in control.model.static_fdb() {
            let restored = control
                .static_fdb_port(&control.model, entry)
                .map(|(net, port)| control.datapath.add_static(net, entry.mac, port));
            if !matches!(restored, Ok(Ok(()))) {
                tracing::error!(mac = %entry.mac, port = %entry.port_name, "cannot restore static FDB entry");
            }
        }
        let adopted: Vec<String> =
            control.model.sandboxes().filter(|s| !s.owns_netns).map(|s| s.name.clone()).collect();
        for name in adopted {
            control.reap_sandbox_if_gone(&name);
        }
        control.sync_dns();
        for sandbox in control.model.sandboxes() {
            control.write_sandbox_files(&sandbox.name);
            // A route lost to a crash mid-request, or one a TAP plumbed
            // anew did not get (only the default network's is plumbed).
            control.sync_default_routes(&sandbox.name);
        }
        let endpoints = control.model.endpoints().count();
        let sandboxes = control.model.sandboxes().count();
        let own_networks = control.model.networks().iter().filter(|n| !n.is_predefined()).count();
        if sandboxes + endpoints + own_networks == 0 {
            tracing::info!("no saved state: starting with the predefined networks only");
        } else {
            tracing::info!(networks = own_networks, sandboxes, endpoints, "state restored");
        }
        Ok(control)
    }

    fn restore_endpoint(&self, endpoint: &Endpoint) -> Result<(), CtlError> {
        let network = self.network_of(endpoint)?.clone();
        let network = &network;
        let sandbox = self.model.sandbox(&endpoint.sandbox).map_err(model_error)?;
        let ns = plumbing::open_sandbox_netns(sandbox).map_err(plumb_error)?;
        if endpoint.port_type == proto::PortType::Afxdp {
            let workers = self.datapath.workers_serving(network_id(network));
            let port = hostports::reattach_afxdp_endpoint(&ns, endpoint, network, workers).map_err(host_port_error)?;
            self.add_host_port_to_datapath(port, endpoint, network)?;
        } else {
            let tap = plumbing::reattach_endpoint(&ns, endpoint, network).map_err(plumb_error)?;
            self.add_tap_to_datapath(tap, &ns, endpoint, network)?;
        }
        self.restore_impairment(endpoint);
        self.events.port_up(&network.name, &endpoint.host_tap_name, Some(&endpoint.sandbox), PortChange::Restored);
        Ok(())
    }

    fn network_of(&self, endpoint: &Endpoint) -> Result<&Network, CtlError> {
        self.model
            .network_by_id(&endpoint.network_id)
            .ok_or_else(|| CtlError::internal(format!("endpoint {} has no network", endpoint.id)))
    }

    /// Creates `network` in the datapath, with its gateway and, for an
    /// overlay, a tunnel port to every peer that serves it.
    fn add_network_to_datapath(&self, network: &Network) -> Result<(), DatapathError> {
        let spec = network_spec(network);
        self.datapath.add_network(spec)?;
        if network.driver == proto::Driver::Overlay && self.vtep.is_some() {
            for peer in self.model.peers_of(&network.id) {
                if let Err(e) = self.datapath.add_peer(spec.id, peer.addr) {
                    tracing::error!(peer = %peer.addr, network = %network.name, error = %e, "cannot add peer");
                }
            }
        }
        Ok(())
    }

    /// Hands an endpoint's TAP to the datapath (on failure the TAP is
    /// destroyed). On a spread network it first gets one more queue per
    /// other worker, opened in the sandbox (`ns`), where the device lives.
    fn add_tap_to_datapath(
        &self,
        tap: crate::sys::tap::Tap,
        ns: &crate::sys::netns::NetNs,
        endpoint: &Endpoint,
        network: &Network,
    ) -> Result<(), CtlError> {
        let config = endpoint_port_config(network);
        let wanted = self.datapath.extra_queues(network_id(network));
        let mut extra = Vec::with_capacity(wanted);
        if wanted > 0 {
            let opened =
                crate::sys::netns::run_in(ns, || (0..wanted).map(|_| tap.open_queue()).collect::<Result<Vec<_>, _>>());
            match opened {
                Ok(Ok(queues)) => extra = queues,
                // The port still works on the owner's queue alone.
                Ok(Err(e)) => tracing::warn!(tap = tap.name(), error = %e, "cannot open the TAP's other queues"),
                Err(e) => tracing::warn!(tap = tap.name(), error = %e, "cannot open the TAP's other queues"),
            }
        }
        self.datapath.add_tap_queues(endpoint_port(endpoint.port_index), tap, extra, config).map_err(|(tap, e)| {
            if let Err(e) = plumbing::remove_source_routes(ns, endpoint) {
                tracing::warn!(tap = %endpoint.host_tap_name, error = %e, "cannot remove the endpoint's source rules");
            }
            if let Some(tap) = tap {
                plumbing::destroy_tap(tap);
            }
            datapath_error(e)
        })
    }

    /// Hands an AF_XDP endpoint's device to the datapath; on failure its
    /// veth pair is deleted.
    fn add_host_port_to_datapath(
        &self,
        port: hostports::HostPort,
        endpoint: &Endpoint,
        network: &Network,
    ) -> Result<(), CtlError> {
        let config = endpoint_port_config(network);
        if let Err(e) =
            self.datapath.add_device_queues(endpoint_port(endpoint.port_index), port.device, port.extra, config)
        {
            if let Ok(sandbox) = self.model.sandbox(&endpoint.sandbox) {
                self.remove_source_rules(sandbox, endpoint);
            }
            hostports::destroy_afxdp_endpoint(endpoint);
            return Err(datapath_error(e));
        }
        if let Some(mode) = port.mode {
            self.xdp_modes.borrow_mut().insert(endpoint.port_index, mode);
        }
        Ok(())
    }

    /// Saves `next`, makes it the model, and gives the embedded DNS its
    /// names (so they follow every acknowledged change at once).
    fn commit(&mut self, next: Model) -> Result<(), CtlError> {
        self.store.save(&next).map_err(store_error)?;
        self.model = next;
        self.events.update_names(&self.model);
        self.sync_dns();
        Ok(())
    }

    /// Runs `change`, a request that makes or destroys `journal`'s devices
    /// and namespaces on the host and commits, with `journal` written
    /// first and removed after: a daemon killed in between removes, at its
    /// next start, whichever of them the saved state does not hold
    /// ([`stack::journal::recover`]), so nothing is leaked.
    fn journaled<T>(
        &mut self,
        journal: stack::Journal,
        change: impl FnOnce(&mut Self) -> Result<T, CtlError>,
    ) -> Result<T, CtlError> {
        let dir = self.store.dir().to_path_buf();
        journal
            .write(&dir)
            .map_err(|e| CtlError::internal(format!("cannot write the change journal, nothing changed: {e}")))?;
        let result = change(self);
        stack::Journal::remove(&dir);
        result
    }

    /// Where the datapath reports TAP ports whose device vanished; the
    /// server hands them to [`Control::reap_port`].
    pub fn gone_ports(&self) -> crossbeam_channel::Receiver<crate::port::PortId> {
        self.datapath.gone_ports()
    }

    /// Every counter in the Prometheus text format (what
    /// `--metrics-listen` serves).
    pub fn metrics(&self) -> Result<String, CtlError> {
        self.metrics_text()
    }

    /// Answers one request.
    pub fn handle(&mut self, request: Request) -> Reply {
        match request {
            Request::Ping => ok(Ack {}),
            Request::Version => {
                ok(VersionInfo { version: env!("CARGO_PKG_VERSION").to_owned(), protocol: proto::PROTOCOL_VERSION })
            }
            Request::SandboxCreate { name, dns, dns_search, dns_options, extra_hosts, netns } => {
                let req = CreateSandbox { name, dns, dns_search, dns_options, extra_hosts, netns_path: netns };
                self.sandbox_create(req)
            }
            Request::SandboxInspect { name } => self.sandbox_inspect(&name),
            Request::DnsLs { network } => self.dns_ls(network.as_deref()),
            Request::Metrics => ok(proto::MetricsText { text: self.metrics_text()? }),
            Request::SandboxLs => ok(self.model.sandboxes().map(|s| self.sandbox_info(&s.name)).collect::<Vec<_>>()),
            Request::SandboxRm { name } => self.sandbox_rm(&name),
            Request::NetworkCreate(req) => self.network_create(req),
            Request::NetworkLs => {
                let mut summaries: Vec<_> =
                    self.model.networks().into_iter().map(|n| network_summary(&self.model, n)).collect();
                summaries.extend(self.model.config_networks().into_iter().map(views::config_network_summary));
                summaries.sort_by(|a, b| a.name.cmp(&b.name));
                ok(summaries)
            }
            Request::NetworkPrune => self.network_prune(),
            Request::NetworkInspect { name } => match self.model.network(&name) {
                Ok(network) => ok(self.network_info(network)),
                Err(ModelError::ConfigOnly(_)) => {
                    ok(self.config_network_info(self.model.config_network(&name).map_err(model_error)?))
                }
                Err(e) => Err(model_error(e)),
            },
            Request::NetworkRm { name } if matches!(self.model.network(&name), Err(ModelError::ConfigOnly(_))) => {
                self.config_network_rm(&name)
            }
            Request::NetworkRm { name } => self.cluster_network_rm(&name).unwrap_or_else(|| self.network_rm(&name)),
            Request::NetworkConnect {
                network,
                sandbox,
                ip,
                ip6,
                aliases,
                mac,
                publish,
                service,
                port_type,
                gw_priority,
                ifname,
            } => {
                // Chosen where they will listen: on the network's host binding.
                let publish = crate::model::pinned(self.model.network(&network).ok(), &publish);
                let publish = self.choose_host_ports(publish)?;
                let req = Connect {
                    network,
                    sandbox,
                    ipv4: ip,
                    ipv6: ip6,
                    aliases,
                    mac,
                    exempt_from_attachable: false,
                    publish,
                    service,
                    port_type,
                    gw_priority,
                    ifname,
                    reserved_ifnames: Vec::new(),
                    exclude: Default::default(),
                };
                self.cluster_connect(&req).unwrap_or_else(|| self.connect(req))
            }
            Request::PortAdd { network, interface, port_type, force } => {
                self.port_add(&network, &interface, port_type.unwrap_or(proto::PortType::Raw), force)
            }
            Request::PortRm { interface } => self.port_rm(&interface),
            Request::SandboxPublish { sandbox, network, publish } => {
                // Chosen where they will listen: on the network's host binding.
                let net = self.model.publish_target(&sandbox, network.as_deref()).ok().map(|e| e.network_id.clone());
                let publish =
                    crate::model::pinned(net.as_deref().and_then(|id| self.model.network_by_id(id)), &publish);
                let publish = self.choose_host_ports(publish)?;
                self.sandbox_publish(&sandbox, network.as_deref(), &publish)
            }
            Request::SandboxUnpublish { sandbox, network, publish } => {
                self.sandbox_unpublish(&sandbox, network.as_deref(), &publish)
            }
            Request::NatLs { network } => self.nat_ls(network.as_deref()),
            Request::ServicePublish { name, network, publish, mode } => {
                self.service_publish_mode(&name, network.as_deref(), publish, mode)
            }
            Request::ServiceLs => ok(self.model.services().map(|s| self.service_info(s)).collect::<Vec<_>>()),
            Request::ServiceInspect { name } => {
                let service = self.model.service(&name).map_err(model_error)?;
                ok(self.service_info(service))
            }
            Request::ServiceRm { name } => self.ingress_rm(&name).unwrap_or_else(|| self.service_rm(&name)),
            Request::NetworkDisconnect { network, sandbox } => {
                self.cluster_disconnect(&network, &sandbox).unwrap_or_else(|| self.disconnect(&network, &sandbox))
            }
            Request::NodeLs => self.node_ls(),
            Request::NodeRm { name } => self.node_rm(&name),
            Request::Show => self.show(),
            Request::FdbShow { network } => self.fdb_show(network.as_deref()),
            Request::FdbAdd { network, mac, port } => self.fdb_add(&network, mac, &port),
            Request::FdbFlush { network } => {
                let id = network
                    .as_deref()
                    .map(|n| self.model.network(n).map(network_id))
                    .transpose()
                    .map_err(model_error)?;
                let flushed = self.datapath.flush(id).map_err(datapath_error)?;
                ok(FlushResult { flushed: flushed as u64 })
            }
            Request::Stats { port } => self.stats(port.as_deref()),
            Request::Events { follow: false } => ok(self.events.history()),
            Request::Events { follow: true } => {
                Err(CtlError::new(ErrorKind::InvalidArgument, "events with follow is a stream; see PROTOCOL.md"))
            }
            Request::NetworkKeyRotate { network } => self.key_rotate(&network),
            Request::PeerAdd { addr, networks } => self.peer_add(addr, networks),
            Request::PeerLs => self.peer_ls(),
            Request::PeerRm { addr } => self.peer_rm(addr),
            // Streams are answered by `subscribe`.
            Request::Capture { .. } => {
                Err(CtlError::new(ErrorKind::BadRequest, format!("{} opens a stream", request.verb())))
            }
            Request::PortImpair { port, impair } => self.port_impair(&port, impair),
            Request::StackApply { stack, dry_run, source } => self.stack_apply(&stack, dry_run, source.as_ref()),
            Request::StackExport => self.stack_export(),
            Request::ConfigShow => ok(proto::ConfigInfo { aging_time: self.model.config().aging_time_secs }),
            Request::ConfigSet { key, value } => {
                let mut next = self.model.clone();
                next.set_config(&key, &value).map_err(model_error)?;
                let aging = Duration::from_secs(next.config().aging_time_secs);
                self.datapath.set_aging(aging).map_err(datapath_error)?;
                if let Err(e) = self.commit(next) {
                    let _ = self.datapath.set_aging(Duration::from_secs(self.model.config().aging_time_secs));
                    return Err(e);
                }
                ok(Ack {})
            }
        }
    }

    fn sandbox_create(&mut self, req: CreateSandbox) -> Reply {
        let (name, netns) = (req.name.clone(), req.netns_path.clone());
        let mut next = self.model.clone();
        let sandbox = next.create_sandbox(req).map_err(model_error)?;
        let journal = stack::Journal { sandboxes: vec![sandbox.clone()], taps: Vec::new() };
        self.journaled(journal, |c| {
            plumbing::create_sandbox_netns(&sandbox, netns.as_deref()).map_err(|e| {
                let kind = if netns.is_some() { ErrorKind::InvalidArgument } else { ErrorKind::Internal };
                CtlError::new(kind, format!("cannot set up the namespace of sandbox {name}: {e}"))
            })?;
            stack::pause_for_tests("sandbox");
            if let Err(e) = c.commit(next) {
                let _ = plumbing::remove_sandbox_netns(&sandbox);
                return Err(e);
            }
            Ok(())
        })?;
        ok(self.sandbox_info(&name))
    }

    fn sandbox_rm(&mut self, name: &str) -> Reply {
        let mut next = self.model.clone();
        let removed = next.remove_sandbox(name).map_err(model_error)?;
        let taps = removed.endpoints.iter().map(|e| stack::JournalTap::of(e, &removed.sandbox)).collect();
        let journal = stack::Journal { sandboxes: vec![removed.sandbox.clone()], taps };
        self.journaled(journal, |c| {
            c.commit(next)?;
            c.release_publications(&removed.endpoints);
            for endpoint in &removed.endpoints {
                // An adopted namespace outlives the sandbox, rules and all.
                if !removed.sandbox.owns_netns {
                    c.remove_source_rules(&removed.sandbox, endpoint);
                }
                c.teardown_endpoint(endpoint);
                c.port_down(endpoint, PortChange::SandboxRemoved);
            }
            if let Err(e) = plumbing::remove_sandbox_netns(&removed.sandbox) {
                tracing::warn!(sandbox = name, error = %e, "cannot remove the sandbox's namespace");
            }
            Ok(())
        })?;
        // Its cluster endpoints' records and claims go too.
        self.reconcile_cluster();
        ok(Ack {})
    }

    fn teardown_endpoint(&self, endpoint: &Endpoint) {
        self.xdp_modes.borrow_mut().remove(&endpoint.port_index);
        // Its source rules, while its sandbox lives on (`sandbox rm`
        // removes them before the sandbox leaves the model).
        if let Ok(sandbox) = self.model.sandbox(&endpoint.sandbox) {
            self.remove_source_rules(sandbox, endpoint);
        }
        match self.datapath.remove_port(endpoint_port(endpoint.port_index)) {
            Ok(Some(tap)) => plumbing::destroy_tap(tap),
            Ok(None) if endpoint.port_type == proto::PortType::Afxdp => {}
            Ok(None) => tracing::warn!(tap = %endpoint.host_tap_name, "endpoint had no TAP in the datapath"),
            Err(e) => tracing::error!(tap = %endpoint.host_tap_name, error = %e, "cannot remove port"),
        }
        if endpoint.port_type == proto::PortType::Afxdp {
            hostports::destroy_afxdp_endpoint(endpoint);
        }
        // Its translated connections end with it (reset on the host side):
        // those through it and those from either of its addresses; once
        // its device is gone, so that no frame of it opens another.
        if let Some(network) = self.model.network_by_id(&endpoint.network_id) {
            let addresses: Vec<IpAddr> =
                endpoint.ipv4.map(IpAddr::V4).into_iter().chain(endpoint.ipv6.map(IpAddr::V6)).collect();
            if let Err(e) = self.datapath.nat_forget(network_id(network), endpoint.mac, &addresses) {
                tracing::error!(tap = %endpoint.host_tap_name, error = %e, "cannot end the endpoint's flows");
            }
        }
    }

    /// Removes `endpoint`'s source rules from `sandbox`'s namespace, if it
    /// still has one (its address may go to another sandbox, or come back
    /// to this one on another interface).
    fn remove_source_rules(&self, sandbox: &crate::model::Sandbox, endpoint: &Endpoint) {
        if let Err(e) = plumbing::remove_source_routes_of(sandbox, endpoint) {
            tracing::warn!(tap = %endpoint.host_tap_name, error = %e, "cannot remove the endpoint's source rules");
        }
    }

    fn network_create(&mut self, mut req: CreateNetwork) -> Reply {
        if req.config_only {
            return self.config_network_create(req);
        }
        // Taken as if given here; checked below like any request.
        self.model.apply_config_from(&mut req).map_err(model_error)?;
        crate::model::fold_docker_options(&mut req).map_err(model_error)?;
        let encrypted = req.options.contains_key(ENCRYPTED_OPTION);
        // `-o encrypted` on a non-overlay network is refused by the model,
        // which says why; only an overlay needs the secret.
        // In cluster mode its keys come from the store instead.
        if encrypted && req.driver == proto::Driver::Overlay && !self.has_secret && !self.creates_in_cluster(&req) {
            return Err(CtlError::new(ErrorKind::NotSupported, DatapathError::NoSecret.to_string()));
        }
        if req.driver == proto::Driver::Overlay && req.mtu.is_none() {
            let sealing = if encrypted { crypto::OVERHEAD_OVER_VXLAN as u32 } else { 0 };
            req.mtu = Some(self.overlay_mtu() - sealing);
        }
        if self.creates_in_cluster(&req) {
            return self.cluster_network_create(req);
        }
        let mut next = self.model.clone();
        let network = next.create_network(req).map_err(model_error)?;
        // A macvlan network's parent is its uplink, checked before anything is made.
        let uplink = self.macvlan_uplink(&mut next, &network)?;
        // Its gateway's and tunnels' events are named from the start.
        self.events.update_names(&next);
        if network.driver.is_switched() {
            self.add_network_to_datapath(&network).map_err(datapath_error)?;
        }
        let mut brought_up = false;
        if let Some(uplink) = &uplink {
            match self.attach_uplink(uplink, &network) {
                Ok(up) => brought_up = up,
                Err(e) => {
                    let _ = self.datapath.remove_network(network_id(&network));
                    return Err(e);
                }
            }
        }
        if let Err(e) = self.commit(next) {
            if let Some(uplink) = &uplink {
                self.detach_uplink(uplink);
                if brought_up {
                    hostports::set_uplink_down(uplink);
                }
            }
            let _ = self.datapath.remove_network(network_id(&network));
            return Err(e);
        }
        ok(self.network_info(&network))
    }

    fn network_rm(&mut self, name: &str) -> Reply {
        self.remove_network_locally(name)
    }

    /// `network create --config-only`: settings only, so nothing but the
    /// saved state changes.
    fn config_network_create(&mut self, req: CreateNetwork) -> Reply {
        let mut next = self.model.clone();
        let config = next.create_config_network(req).map_err(model_error)?;
        self.commit(next)?;
        ok(self.config_network_info(&config))
    }

    /// `network rm` of a configuration-only network (refused while a
    /// network made from it exists).
    fn config_network_rm(&mut self, name: &str) -> Reply {
        let mut next = self.model.clone();
        next.remove_config_network(name).map_err(model_error)?;
        self.commit(next)?;
        ok(Ack {})
    }

    /// Removes network `name` (name or id) from the model, the datapath and
    /// the saved state, with its uplinks.
    ///
    /// Saved first: a removal that cannot be saved changes nothing (its
    /// uplinks go on forwarding, its static FDB entries stay). Once saved,
    /// the uplinks are detached and the datapath's network removed; a step
    /// that fails there is logged (as `port rm` and `disconnect` do).
    fn remove_network_locally(&mut self, name: &str) -> Reply {
        let mut next = self.model.clone();
        let uplinks: Vec<crate::model::Uplink> = self
            .model
            .network(name)
            .map(|n| self.model.uplinks_of(&n.id))
            .unwrap_or_default()
            .into_iter()
            .cloned()
            .collect();
        let network = next.remove_network(name).map_err(model_error)?;
        self.commit(next)?;
        for uplink in &uplinks {
            self.detach_uplink(uplink);
        }
        if network.driver.is_switched()
            && let Err(e) = self.datapath.remove_network(network_id(&network))
        {
            tracing::error!(network = %network.name, error = %e, "cannot remove the network from the datapath");
        }
        // Its datapath network is gone, with the cluster view it had.
        if let Some(link) = self.cluster.as_mut() {
            link.forget_view(network.network_index);
        }
        ok(Ack {})
    }

    /// `network prune`: removes, one by one as `network rm` would, every
    /// network nothing uses ([`Model::is_unused`]). A network that cannot
    /// be removed (its removal cannot be saved) is kept, and the reason
    /// logged.
    fn network_prune(&mut self) -> Reply {
        let unused: Vec<String> =
            self.model.networks().into_iter().filter(|n| self.model.is_unused(n)).map(|n| n.name.clone()).collect();
        let mut networks_deleted = Vec::with_capacity(unused.len());
        for name in unused {
            match self.remove_network_locally(&name) {
                Ok(_) => networks_deleted.push(name),
                Err(e) => tracing::warn!(network = %name, error = %e.message, "network prune keeps the network"),
            }
        }
        ok(proto::Pruned { networks_deleted })
    }

    fn connect(&mut self, req: Connect) -> Reply {
        let mut next = self.model.clone();
        let endpoint = next.connect(req).map_err(model_error)?;
        self.connect_endpoint(next, endpoint, None)
    }

    /// Makes `endpoint`, which `next` holds, and commits `next`; `publish`:
    /// the cluster store and the endpoint's record, published just before
    /// the commit (withdrawn again if the commit fails).
    fn connect_endpoint(
        &mut self,
        next: Model,
        endpoint: Endpoint,
        publish: Option<(&::cluster::Cluster, ::cluster::EndpointRecord)>,
    ) -> Reply {
        let network = next
            .network_by_id(&endpoint.network_id)
            .cloned()
            .ok_or_else(|| CtlError::internal("endpoint without network"))?;
        let sandbox = next.sandbox(&endpoint.sandbox).map_err(model_error)?.clone();
        let journal = stack::Journal { sandboxes: Vec::new(), taps: vec![stack::JournalTap::of(&endpoint, &sandbox)] };
        if let Err(e) = self.journaled(journal, |c| c.make_endpoint(next, &endpoint, &network, &sandbox, publish)) {
            // Plumbing it may have taken the default route over.
            self.sync_default_routes(&endpoint.sandbox);
            return Err(e);
        }
        self.join_service(&endpoint);
        self.write_sandbox_files(&endpoint.sandbox);
        self.sync_default_routes(&endpoint.sandbox);
        self.events.port_up(&network.name, &endpoint.host_tap_name, Some(&endpoint.sandbox), PortChange::Connected);
        ok(self.endpoint_info(&endpoint))
    }

    /// [`Control::connect_endpoint`]'s changes: the endpoint's device and
    /// port, its publications and record, the commit; all or nothing.
    fn make_endpoint(
        &mut self,
        next: Model,
        endpoint: &Endpoint,
        network: &Network,
        sandbox: &crate::model::Sandbox,
        publish: Option<(&::cluster::Cluster, ::cluster::EndpointRecord)>,
    ) -> Result<(), CtlError> {
        let ns = plumbing::open_sandbox_netns(sandbox).map_err(plumb_error)?;
        check_ifname_free(&ns, endpoint)?;
        if endpoint.port_type == proto::PortType::Afxdp {
            let workers = self.datapath.workers_serving(network_id(network));
            let port = hostports::plumb_afxdp_endpoint(&ns, endpoint, network, workers).map_err(host_port_error)?;
            self.events.update_names(&next);
            self.add_host_port_to_datapath(port, endpoint, network)?;
        } else {
            let tap = plumbing::plumb_endpoint(&ns, endpoint, network).map_err(plumb_error)?;
            // The port's first frames are named like the ones after the reply.
            self.events.update_names(&next);
            self.add_tap_to_datapath(tap, &ns, endpoint, network)?;
        }
        // Its ports, all or none: a port that cannot be opened leaves the
        // sandbox unconnected.
        if let Err(e) = self.publish_all(publish::endpoint_publications(&next, endpoint, &endpoint.publish)) {
            self.teardown_endpoint(endpoint);
            return Err(e);
        }
        stack::pause_for_tests("connect");
        if let Some((store, record)) = &publish
            && let Err(e) = store.publish_endpoint(record.clone())
        {
            self.unpublish_endpoint(endpoint);
            self.teardown_endpoint(endpoint);
            return Err(cluster::cluster_error(e));
        }
        if let Err(e) = self.commit(next) {
            if let Some((store, record)) = &publish
                && let Err(e) = store.withdraw_endpoint(&record.network_id, &record.endpoint_id)
            {
                tracing::warn!(error = %e, "cannot withdraw the endpoint's record; the next reconcile will");
            }
            self.unpublish_endpoint(endpoint);
            self.teardown_endpoint(endpoint);
            return Err(e);
        }
        Ok(())
    }

    /// Reports that `endpoint`'s port went down.
    fn port_down(&self, endpoint: &Endpoint, reason: PortChange) {
        let network = self.model.network_by_id(&endpoint.network_id).map(|n| n.name.as_str()).unwrap_or_default();
        self.events.port_down(network, &endpoint.host_tap_name, Some(&endpoint.sandbox), reason);
    }

    fn disconnect(&mut self, network: &str, sandbox: &str) -> Reply {
        self.disconnect_as(network, sandbox, PortChange::Disconnected)
    }

    /// Disconnects `sandbox` from `network`, reporting the port down for `reason`.
    fn disconnect_as(&mut self, network: &str, sandbox: &str, reason: PortChange) -> Reply {
        let mut next = self.model.clone();
        let gone = next.disconnect(network, sandbox).map_err(model_error)?;
        let taps = self.model.sandbox(sandbox).map(|s| stack::JournalTap::of(&gone.endpoint, s)).into_iter().collect();
        self.journaled(stack::Journal { sandboxes: Vec::new(), taps }, |c| {
            c.commit(next)?;
            c.release_publications(std::slice::from_ref(&gone.endpoint));
            c.teardown_endpoint(&gone.endpoint);
            Ok(())
        })?;
        self.port_down(&gone.endpoint, reason);
        self.write_sandbox_files(sandbox);
        self.sync_default_routes(sandbox);
        ok(Ack {})
    }

    /// Points `sandbox`'s default route of each family at the endpoint
    /// that carries it now (`Model::default_route_endpoint`): after a
    /// connect, which may give a family its first route, and after a
    /// disconnect, whose endpoint's routes went with its interface.
    ///
    /// Also after a connect or an apply that failed (plumbing the new
    /// endpoint may have moved a route before it was undone) and at a
    /// restart. A sandbox whose namespace is gone is left alone.
    pub(super) fn sync_default_routes(&self, sandbox: &str) {
        let Ok(sb) = self.model.sandbox(sandbox) else { return };
        let routes: Vec<(&Endpoint, &Network, bool)> = [false, true]
            .into_iter()
            .filter_map(|ipv6| self.model.default_route_endpoint(sandbox, ipv6).map(|(e, n)| (e, n, ipv6)))
            .collect();
        if routes.is_empty() {
            return;
        }
        let Some(ns) = plumbing::existing_sandbox_netns(sb) else { return };
        // Each family on its own: one that fails leaves the other set.
        for (endpoint, network, ipv6) in routes {
            if let Err(e) = plumbing::set_default_route(&ns, endpoint, network, ipv6) {
                let family = if ipv6 { "IPv6" } else { "IPv4" };
                tracing::warn!(sandbox, family, error = %e, "cannot set the default route");
            }
        }
    }

    fn fdb_add(&mut self, network: &str, mac: MacAddr, port: &str) -> Reply {
        let mut next = self.model.clone();
        let entry = next.add_static_fdb(network, mac, port).map_err(model_error)?;
        let (net_id, port_id) = self.static_fdb_port(&next, &entry)?;
        self.datapath.add_static(net_id, mac, port_id).map_err(|e| match e {
            DatapathError::Bridge(b) => CtlError::invalid_argument(b.to_string()),
            other => datapath_error(other),
        })?;
        if let Err(e) = self.commit(next) {
            let _ = self.datapath.remove_entry(net_id, mac);
            return Err(e);
        }
        ok(Ack {})
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use ctl::proto::{Driver, Request};
    use serde_json::{Value, json};

    use super::scratch::Scratch;
    use super::*;

    fn create(s: &mut Scratch, v: Value) -> Result<Value, CtlError> {
        let mut req = json!({"verb": "network_create"});
        req.as_object_mut().unwrap().extend(v.as_object().unwrap().clone());
        s.c().handle(serde_json::from_value::<Request>(req).unwrap())
    }

    #[test]
    fn the_datapath_gets_each_family_of_the_gateway() {
        let mut m = Model::new();
        let dual = CreateNetwork {
            subnet: Some("10.1.0.0/24".parse().unwrap()),
            enable_ipv6: true,
            subnet6: Some("fd00:1::/64".parse().unwrap()),
            ..CreateNetwork::new("dual", Driver::Bridge)
        };
        let spec = network_spec(&m.create_network(dual).unwrap());
        assert_eq!(spec.gateway, Some(GatewaySpec { address: "10.1.0.1".parse().unwrap(), prefix_len: 24 }));
        let want6 = Gateway6Spec { address: "fd00:1::1".parse().unwrap(), prefix_len: 64, default_route: true };
        assert_eq!(spec.gateway6, Some(want6));
        let six = CreateNetwork {
            enable_ipv4: false,
            enable_ipv6: true,
            internal: true,
            subnet6: Some("fd00:2::/56".parse().unwrap()),
            gateway6: Some("fd00:2::fe".parse().unwrap()),
            ..CreateNetwork::new("six", Driver::Bridge)
        };
        let spec = network_spec(&m.create_network(six).unwrap());
        assert_eq!(spec.gateway, None, "no IPv4 side on an IPv6-only network");
        let want6 = Gateway6Spec { address: "fd00:2::fe".parse().unwrap(), prefix_len: 56, default_route: false };
        assert_eq!(spec.gateway6, Some(want6), "--internal: no default route advertised");
        let four = network_spec(&m.create_network(CreateNetwork::new("four", Driver::Bridge)).unwrap());
        assert_eq!((four.gateway.is_some(), four.gateway6), (true, None));
    }

    #[test]
    fn configuration_networks_are_listed_inspected_and_removed_as_networks() {
        let mut s = Scratch::new("config");
        let cfg = create(&mut s, json!({"name": "cfg", "config_only": true, "subnet": "10.61.0.0/24"})).unwrap();
        assert_eq!(
            (&cfg["ConfigOnly"], &cfg["Driver"], &cfg["Scope"]),
            (&json!(true), &json!("none"), &json!("local"))
        );
        let lan = create(&mut s, json!({"name": "lan", "config_from": "cfg", "internal": true})).unwrap();
        assert_eq!((&lan["ConfigFrom"]["Network"], &lan["Internal"]), (&json!("cfg"), &json!(true)));
        assert_eq!(lan["IPAM"]["Config"][0]["Subnet"], json!("10.61.0.0/24"));
        let ls = s.c().handle(Request::NetworkLs).unwrap();
        let rows: Vec<(&str, &str, bool)> = ls
            .as_array()
            .unwrap()
            .iter()
            .map(|n| (n["name"].as_str().unwrap(), n["driver"].as_str().unwrap(), n["dangling"] == json!(true)))
            .collect();
        assert_eq!(
            rows,
            [
                ("bridge", "bridge", false),
                ("cfg", "none", false),
                ("host", "host", false),
                ("lan", "bridge", true),
                ("none", "none", false)
            ],
            "by name, the configuration never dangling"
        );
        let ls = s.c().handle(Request::NetworkLs).unwrap();
        let cfg_row = ls.as_array().unwrap().iter().find(|n| n["name"] == "cfg").unwrap();
        assert_eq!((&cfg_row["config_only"], &cfg_row["subnet"]), (&json!(true), &json!("10.61.0.0/24")));
        let inspect = s.c().handle(Request::NetworkInspect { name: cfg["Id"].as_str().unwrap()[..10].into() }).unwrap();
        assert_eq!(inspect["Name"], json!("cfg"), "by id prefix");
        let in_use = s.c().handle(Request::NetworkRm { name: "cfg".into() }).unwrap_err();
        assert_eq!(in_use.kind, ErrorKind::InUse, "{in_use:?}");
        // Pruning removes the unused network made from it, never the configuration.
        let pruned = s.c().handle(Request::NetworkPrune).unwrap();
        assert_eq!(pruned["networks_deleted"], json!(["lan"]));
        s.c().handle(Request::NetworkRm { name: "cfg".into() }).unwrap();
        let gone = s.c().handle(Request::NetworkInspect { name: "cfg".into() }).unwrap_err();
        assert_eq!(gone.kind, ErrorKind::NotFound);
    }

    #[test]
    fn ipv6_networks_are_docker_shaped_and_refusals_change_nothing() {
        let mut s = Scratch::new("ipv6");
        let info = create(
            &mut s,
            json!({"name": "dual", "subnet": "10.7.0.0/24", "enable_ipv6": true,
                                         "subnet6": "fd00:7::/64", "ip_range6": "fd00:7::100/120"}),
        )
        .unwrap();
        assert_eq!((&info["EnableIPv4"], &info["EnableIPv6"]), (&json!(true), &json!(true)));
        assert_eq!(
            info["IPAM"]["Config"],
            json!([{"Subnet": "10.7.0.0/24", "Gateway": "10.7.0.1"},
                   {"Subnet": "fd00:7::/64", "Gateway": "fd00:7::1", "IPRange": "fd00:7::100/120"}])
        );
        let info = create(&mut s, json!({"name": "six", "enable_ipv4": false, "enable_ipv6": true})).unwrap();
        assert_eq!(info["EnableIPv4"], json!(false));
        let config = info["IPAM"]["Config"].as_array().unwrap();
        assert_eq!(config.len(), 1);
        let subnet: ctl::Ipv6Net = config[0]["Subnet"].as_str().unwrap().parse().unwrap();
        assert_eq!((subnet.prefix_len(), subnet.addr().octets()[0]), (64, 0xfd), "a ULA /64: {subnet}");
        let gateway: Ipv6Addr = config[0]["Gateway"].as_str().unwrap().parse().unwrap();
        assert_eq!(gateway, Ipv6Addr::from(u128::from(subnet.network()) + 1));
        let ls = s.c().handle(Request::NetworkLs).unwrap();
        let six = ls.as_array().unwrap().iter().find(|n| n["name"] == "six").unwrap().clone();
        assert_eq!(
            (&six["enable_ipv4"], &six["enable_ipv6"], six["subnet"].is_null()),
            (&json!(false), &json!(true), true)
        );
        assert_eq!(six["subnet6"], json!(subnet.to_string()));
        // An IPv4 network's reply keeps its shape, with EnableIPv4 added.
        let four = create(&mut s, json!({"name": "four", "subnet": "10.8.0.0/24"})).unwrap();
        assert_eq!((&four["EnableIPv4"], &four["EnableIPv6"]), (&json!(true), &json!(false)));
        let four_row = s.c().handle(Request::NetworkLs).unwrap();
        let four_row = four_row.as_array().unwrap().iter().find(|n| n["name"] == "four").unwrap().clone();
        let keys: Vec<&str> = four_row.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["created", "dangling", "driver", "endpoints", "id", "name", "scope", "subnet"], "{four_row}");

        let before = s.state();
        for (req, kind, words) in [
            (json!({"name": "x", "enable_ipv4": false}), ErrorKind::InvalidArgument, "requires --ipv6"),
            (json!({"name": "x", "subnet6": "fd00:9::/64"}), ErrorKind::InvalidArgument, "requires --ipv6"),
            (
                json!({"name": "x", "enable_ipv6": true, "subnet6": "fd00:7::/48"}),
                ErrorKind::Conflict,
                "overlaps network dual",
            ),
            (
                json!({"name": "x", "enable_ipv6": true, "subnet6": "fe80::/64"}),
                ErrorKind::InvalidArgument,
                "link-local",
            ),
        ] {
            let e = create(&mut s, req.clone()).unwrap_err();
            assert_eq!(e.kind, kind, "{req}: {}", e.message);
            assert!(e.message.contains(words), "{req}: {}", e.message);
            assert_eq!(s.state(), before, "{req} changed the state");
        }
        let e = s.c().handle(Request::NetworkConnect {
            network: "four".into(),
            sandbox: "nope".into(),
            ip: None,
            ip6: Some("fd00:7::5".parse().unwrap()),
            aliases: Vec::new(),
            mac: None,
            publish: Vec::new(),
            service: None,
            port_type: proto::PortType::Tap,
            gw_priority: 0,
            ifname: None,
        });
        assert_eq!(e.unwrap_err().kind, ErrorKind::NotFound, "the sandbox is looked up first");
        assert_eq!(s.state(), before);
    }
}
