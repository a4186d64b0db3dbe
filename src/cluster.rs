//! Clusters of `vswitchd` "hosts" sharing a real etcd store, for the cluster
//! tests and benchmarks: [`ClusterHosts`] makes an [`Underlay`] with one
//! namespace per host plus one per etcd member, starts an [`Etcd`] (1 or 3
//! members, TLS or not) on the member namespaces and one `vswitchd` per host
//! with `--cluster-store etcd://… --node-name hostN --advertise-addr IP`
//! and the TLS files (or `--cluster-insecure`), each with its own ctl
//! socket and state dir ([`Daemon`]). Dropping it stops the daemons first
//! (they withdraw their sandboxes while the store is still up), then etcd,
//! then removes the namespaces.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;

use crate::daemon::Daemon;
use crate::etcd::{Etcd, EtcdPlace};
use crate::underlay::Underlay;
use crate::wait::wait_until;

/// The store as a daemon sees it (`node ls --json`'s `store`; decoded here
/// from the contract's JSON, independently of the ctl crate's types).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StoreView {
    /// Connected to the store now.
    pub connected: bool,
    /// The last revision the daemon has seen.
    #[serde(default)]
    pub revision: i64,
    /// Why the last attempt to reach the store failed.
    #[serde(default)]
    pub last_error: Option<String>,
}

/// Whether a node is alive (`node ls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    /// Its record (under its lease) is in the store.
    Ready,
    /// It holds claims but has no live record.
    Down,
}

/// One row of `node ls --json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NodeRow {
    /// The node's name.
    pub name: String,
    /// Its VTEP (none for a node that is down).
    #[serde(default)]
    pub vtep: Option<SocketAddr>,
    /// `ready` or `down`.
    pub status: NodeStatus,
    /// True for the node answering.
    #[serde(rename = "self")]
    pub is_self: bool,
    /// Its endpoints (a down node's: its address claims).
    pub endpoints: u64,
    /// Networks it has endpoints on.
    #[serde(default)]
    pub networks: Vec<String>,
}

/// `node ls --json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NodeTable {
    /// The store as the daemon sees it.
    pub store: StoreView,
    /// The nodes.
    pub nodes: Vec<NodeRow>,
}

/// How long a cluster may take to settle (every node sees every other one).
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Options of [`ClusterHosts`]: `ClusterHosts::builder(3).tls(true).ttl(3).start()`.
#[derive(Debug, Clone)]
pub struct ClusterHostsBuilder {
    hosts: usize,
    members: usize,
    tls: bool,
    ttl: Option<u64>,
    net: [u8; 3],
    extra: Vec<String>,
}

impl ClusterHostsBuilder {
    /// Number of etcd members (default 1; 3 for fault tests).
    pub fn etcd_members(mut self, n: usize) -> Self {
        self.members = n;
        self
    }

    /// TLS between the daemons and etcd (and between members): default on.
    pub fn tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    /// `--cluster-ttl SECS` of every daemon (default: the daemon's own).
    pub fn ttl(mut self, secs: u64) -> Self {
        self.ttl = Some(secs);
        self
    }

    /// The underlay subnet's first three octets (default 10.230.1): tests
    /// that run in parallel use different ones for readable logs (names
    /// and namespaces are unique per run anyway).
    pub fn underlay(mut self, net: [u8; 3]) -> Self {
        self.net = net;
        self
    }

    /// Further `vswitchd` arguments for every host.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.extra.extend(args.iter().map(|s| (*s).to_owned()));
        self
    }

    /// Makes the namespaces, starts etcd and the daemons, and waits until
    /// every daemon lists every host as `ready` in `node ls`.
    pub fn start(self) -> ClusterHosts {
        let underlay = Underlay::new(self.net, self.hosts + self.members);
        let places: Vec<EtcdPlace> = underlay.hosts()[self.hosts..].iter().map(EtcdPlace::from).collect();
        let etcd = Etcd::start(&places, self.members, self.tls);
        let mut c = ClusterHosts { daemons: Vec::new(), etcd, underlay, builder: self };
        for i in 0..c.builder.hosts {
            let d = c.start_host(i);
            c.daemons.push(d);
        }
        c.wait_settled();
        c
    }
}

/// N `vswitchd` hosts on an underlay with a shared etcd (see the module doc).
pub struct ClusterHosts {
    // Field order is drop order: daemons, then etcd, then the namespaces.
    daemons: Vec<Daemon>,
    etcd: Etcd,
    underlay: Underlay,
    builder: ClusterHostsBuilder,
}

impl ClusterHosts {
    /// Options for `hosts` hosts (1 etcd member, TLS, the default TTL).
    pub fn builder(hosts: usize) -> ClusterHostsBuilder {
        ClusterHostsBuilder { hosts, members: 1, tls: true, ttl: None, net: [10, 230, 1], extra: Vec::new() }
    }

    /// `n` hosts with `members` etcd members, TLS or not, default options.
    pub fn start(n: usize, members: usize, tls: bool) -> ClusterHosts {
        ClusterHosts::builder(n).etcd_members(members).tls(tls).start()
    }

    /// The node name of host `i` (0-based): `host{i + 1}`.
    pub fn node_name(i: usize) -> String {
        format!("host{}", i + 1)
    }

    /// Number of hosts.
    pub fn len(&self) -> usize {
        self.daemons.len()
    }

    /// True without hosts.
    pub fn is_empty(&self) -> bool {
        self.daemons.is_empty()
    }

    /// Host `i`'s daemon.
    pub fn host(&self, i: usize) -> &Daemon {
        &self.daemons[i]
    }

    /// Host `i`'s daemon, to kill or restart it.
    pub fn host_mut(&mut self, i: usize) -> &mut Daemon {
        &mut self.daemons[i]
    }

    /// All daemons.
    pub fn hosts(&self) -> &[Daemon] {
        &self.daemons
    }

    /// Host `i`'s namespace.
    pub fn ns(&self, i: usize) -> &str {
        &self.underlay.host(i).ns
    }

    /// Host `i`'s underlay (and advertised) address.
    pub fn addr(&self, i: usize) -> IpAddr {
        self.underlay.host(i).addr.into()
    }

    /// The etcd cluster.
    pub fn etcd(&self) -> &Etcd {
        &self.etcd
    }

    /// The etcd cluster, to kill or restart members.
    pub fn etcd_mut(&mut self) -> &mut Etcd {
        &mut self.etcd
    }

    /// The underlay.
    pub fn underlay(&self) -> &Underlay {
        &self.underlay
    }

    /// A name unique to this cluster (`prefix + suffix`), for networks that
    /// exist on every host.
    pub fn name(&self, suffix: &str) -> String {
        self.underlay.name(suffix)
    }

    /// The `vswitchd` arguments of host `i`.
    pub fn host_args(&self, i: usize) -> Vec<String> {
        let mut args = self.etcd.vswitchd_args();
        args.extend(["--node-name".to_owned(), Self::node_name(i)]);
        args.extend(["--advertise-addr".to_owned(), self.addr(i).to_string()]);
        if let Some(ttl) = self.builder.ttl {
            args.extend(["--cluster-ttl".to_owned(), ttl.to_string()]);
        }
        args.extend(self.builder.extra.iter().cloned());
        args
    }

    fn start_host(&self, i: usize) -> Daemon {
        Daemon::builder().in_netns(self.underlay.host(i).netns_path()).args(&self.host_args(i)).start()
    }

    /// `node ls` on host `i`.
    pub fn node_ls(&self, i: usize) -> NodeTable {
        self.daemons[i].node_ls()
    }

    /// Waits until host `i` is connected to the store and lists each of
    /// `names` as a ready node.
    pub fn wait_sees_ready(&self, i: usize, names: &[String]) {
        let d = &self.daemons[i];
        wait_until(
            SETTLE_TIMEOUT,
            || format!("{} to see {names:?} ready: {:?}", Self::node_name(i), d.ctl(&["--json", "node", "ls"])),
            || {
                let l = d.try_node_ls()?;
                let ready = |n: &String| l.nodes.iter().any(|x| &x.name == n && x.status == NodeStatus::Ready);
                (l.store.connected && names.iter().all(ready)).then_some(())
            },
        );
    }

    /// Waits until every host is connected and sees every host ready.
    pub fn wait_settled(&self) {
        let names: Vec<String> = (0..self.daemons.len()).map(Self::node_name).collect();
        for i in 0..self.daemons.len() {
            self.wait_sees_ready(i, &names);
        }
    }

    /// Waits until host `i` lists network `name` (created on another host).
    pub fn wait_network(&self, i: usize, name: &str) {
        let d = &self.daemons[i];
        wait_until(
            SETTLE_TIMEOUT,
            || format!("network {name} to appear on {}", Self::node_name(i)),
            || d.ctl(&["network", "inspect", name]).status.success().then_some(()),
        );
    }
}

impl Daemon {
    /// `node ls` (panics if it fails).
    pub fn node_ls(&self) -> NodeTable {
        self.ctl_json(&["node", "ls"])
    }

    /// `node ls`, or None if it failed or did not decode.
    pub fn try_node_ls(&self) -> Option<NodeTable> {
        let out = self.ctl(&["--json", "node", "ls"]);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// The node named `name` in `node ls`, if listed.
    pub fn node_info(&self, name: &str) -> Option<NodeRow> {
        self.node_ls().nodes.into_iter().find(|n| n.name == name)
    }

    /// `network create -d overlay NAME --subnet SUBNET extra…` (no `--vni`:
    /// in cluster mode the store allocates it).
    pub fn cluster_overlay_create(&self, name: &str, subnet: &str, extra: &[&str]) -> ctl::proto::NetworkInfo {
        let mut args = vec!["network", "create", "-d", "overlay", name, "--subnet", subnet];
        args.extend_from_slice(extra);
        self.ctl_json(&args)
    }
}
