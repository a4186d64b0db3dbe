//! `vswitchd`: the vswitch daemon. Owns the packet path between containers
//! and takes control requests on a Unix socket. Runs in the foreground;
//! logs to stderr (`RUST_LOG` selects the level, default `info`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use cluster::{Cluster, ClusterConfig, TlsFiles, parse_store_url};
use crypto::ClusterSecret;
use crypto::sealed::NodeKeypair;
use switch::daemon::control::Control;
use switch::daemon::datapath::DatapathHandle;
use switch::daemon::dns_forward::system_upstreams;
use switch::daemon::server;
use switch::daemon::tunnel::VtepConfig;
use switch::model::Store;
use switch::sys::ifaddr::mtu_for_address;

/// The vswitch daemon: a userspace virtual switch for containers.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Path of the control socket.
    #[arg(long, env = "VSWITCH_CTL_SOCKET", default_value = ctl::client::DEFAULT_CTL_SOCKET)]
    ctl_socket: PathBuf,
    /// Directory holding the persistent state.
    #[arg(long, env = "VSWITCH_STATE_DIR", default_value = "/var/lib/vswitch")]
    state_dir: PathBuf,
    /// Group (name or gid) allowed to use the control socket, besides root.
    #[arg(long)]
    ctl_group: Option<String>,
    /// Local underlay address (and UDP port, default 4789) for VXLAN overlay
    /// networks, IPv4 or IPv6: e.g. `192.0.2.10`, `192.0.2.10:4789`,
    /// `2001:db8::10` or `[2001:db8::10]:4789`. Peers are of the same family.
    #[arg(long, value_name = "ADDR[:PORT]", value_parser = parse_vtep)]
    vtep: Option<SocketAddr>,
    /// Accept VXLAN from hosts that are not configured peers, and make them
    /// peers (they age out when silent).
    #[arg(long)]
    learn_peers: bool,
    /// File holding the cluster secret (64 hex characters, mode 0600) that
    /// encrypted overlays derive their keys from; `vswitchctl secret
    /// generate` makes one. Hosts sharing an encrypted overlay share it.
    #[arg(long, value_name = "PATH")]
    secret_file: Option<PathBuf>,
    /// MTU of the underlay; by default that of the interface holding the
    /// VTEP address (1500 if it cannot be found).
    #[arg(long, value_name = "BYTES")]
    underlay_mtu: Option<u32>,
    /// Upstream DNS server (repeatable, up to 3 are asked per query) for
    /// names the embedded DNS does not own, asked from the daemon's own
    /// namespace; default: the nameservers of /etc/resolv.conf. A sandbox
    /// created with `--dns` uses its own instead.
    #[arg(long = "dns", value_name = "ADDR[:PORT]", value_parser = parse_dns)]
    dns: Vec<SocketAddr>,
    /// Serve every counter for Prometheus at http://ADDR:PORT/metrics
    /// (OpenMetrics text); e.g. `127.0.0.1:9477`.
    #[arg(long, value_name = "ADDR:PORT")]
    metrics_listen: Option<SocketAddr>,
    /// Most flows the L4 translator holds at once (egress connections, UDP
    /// flows, pings, published-port connections together); a new flow
    /// beyond it is refused and counted (`table_full`).
    #[arg(long, value_name = "N", default_value_t = switch::nat::Limits::default().max_flows)]
    nat_max_flows: usize,
    /// Datapath worker threads (default: the number of cores). Each
    /// network (bridge domain) is owned by one worker with all its ports;
    /// overlays go to worker VNI % N, whose underlay socket the kernel
    /// steers their packets to. 1 is a single datapath thread.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    workers: Option<u16>,
    /// Where the datapath workers run: `auto` moves a worker that waits
    /// for its CPU (a container sending into it runs there) to an idler
    /// CPU; a CPU list (`0,2-3`) binds worker K to the K-th CPU, as OVS's
    /// pmd-cpu-mask; `none` leaves it to the kernel's scheduler.
    #[arg(long, value_name = "auto|none|LIST", default_value = "auto")]
    cpu_affinity: switch::daemon::placement::CpuAffinity,
    /// After a wake-up that found frames, a datapath worker keeps polling
    /// its ports for this many microseconds before it sleeps again, as the
    /// kernel's net.core.busy_read (whose recommended value is also 50):
    /// steady traffic then arrives without a wake-up per burst, while an
    /// idle switch still sleeps (0% CPU). 0 sleeps at once.
    #[arg(long, value_name = "MICROSECONDS", default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    busy_poll_us: u32,
    /// Join a cluster whose store is this etcd cluster
    /// (`etcd://HOST:PORT[,HOST:PORT...]`): overlay networks, their
    /// addresses and endpoints become cluster-wide. Needs --advertise-addr
    /// and either the TLS files (--cluster-ca, --cluster-cert,
    /// --cluster-key) or --cluster-insecure.
    #[arg(long, value_name = "URL")]
    cluster_store: Option<String>,
    /// This node's name in the cluster (default: the hostname).
    #[arg(long, value_name = "NAME", requires = "cluster_store")]
    node_name: Option<String>,
    /// The VTEP address other nodes send this node's overlay traffic to
    /// (ADDR[:PORT], port 4789 by default); the VTEP binds it unless --vtep
    /// is given too.
    #[arg(long, value_name = "ADDR[:PORT]", value_parser = parse_vtep, requires = "cluster_store")]
    advertise_addr: Option<SocketAddr>,
    /// CA certificate (PEM) that signed the store's certificates.
    #[arg(long, value_name = "PATH", requires = "cluster_store")]
    cluster_ca: Option<PathBuf>,
    /// This node's client certificate (PEM) for the store.
    #[arg(long, value_name = "PATH", requires = "cluster_store")]
    cluster_cert: Option<PathBuf>,
    /// This node's client key (PEM) for the store.
    #[arg(long, value_name = "PATH", requires = "cluster_store")]
    cluster_key: Option<PathBuf>,
    /// Talk to the store without TLS (plain http): anyone on the path can
    /// read and forge the cluster's state. For tests and trusted networks.
    #[arg(long, requires = "cluster_store", conflicts_with_all = ["cluster_ca", "cluster_cert", "cluster_key"])]
    cluster_insecure: bool,
    /// Seconds a node's lease lives without keep-alives: a dead node leaves
    /// the other nodes' peer sets within it.
    #[arg(long, value_name = "SECS", requires = "cluster_store", value_parser = clap::value_parser!(u64).range(1..=3600))]
    cluster_ttl: Option<u64>,
}

/// The cluster configuration the flags describe (`None` without
/// `--cluster-store`), checked: TLS files all or none, none only with
/// `--cluster-insecure`, an advertised address that other nodes can reach.
fn cluster_config(args: &Args, hostname: impl FnOnce() -> Option<String>) -> anyhow::Result<Option<ClusterConfig>> {
    let Some(url) = &args.cluster_store else { return Ok(None) };
    let tls = match (&args.cluster_ca, &args.cluster_cert, &args.cluster_key) {
        (Some(ca), Some(cert), Some(key)) => Some(TlsFiles { ca: ca.clone(), cert: cert.clone(), key: key.clone() }),
        (None, None, None) if args.cluster_insecure => None,
        (None, None, None) => anyhow::bail!(
            "--cluster-store needs TLS: give --cluster-ca, --cluster-cert and --cluster-key (or --cluster-insecure to talk to the store in plain text)"
        ),
        _ => anyhow::bail!("give all three of --cluster-ca, --cluster-cert and --cluster-key"),
    };
    let Some(vtep) = args.advertise_addr else {
        anyhow::bail!("--cluster-store needs --advertise-addr: the address other nodes reach this node's VTEP at")
    };
    if vtep.ip().is_unspecified() {
        anyhow::bail!(
            "--advertise-addr {vtep}: other nodes cannot send to the unspecified address; give this node's underlay address"
        );
    }
    if let Some(local) = args.vtep
        && vxlan::IpVersion::of(local.ip()) != vxlan::IpVersion::of(vtep.ip())
    {
        anyhow::bail!("--advertise-addr {vtep} and --vtep {local} are of different address families");
    }
    let node = match args.node_name.clone().or_else(hostname) {
        Some(name) if !name.is_empty() => name,
        _ => anyhow::bail!("cannot read the hostname; give --node-name"),
    };
    let endpoints = parse_store_url(url, tls.is_some()).context("--cluster-store")?;
    let mut config = ClusterConfig::new(endpoints, node, vtep, tls);
    if let Some(secs) = args.cluster_ttl {
        config.lease_ttl = std::time::Duration::from_secs(secs);
    }
    Ok(Some(config))
}

/// The file holding a cluster node's X25519 keypair, in the state dir.
const NODE_KEY_FILE: &str = "node.key";

/// The node's keypair for the overlay keys of the cluster (sealed to its
/// public key): loaded from the state dir, or made there (mode 0600) on the
/// first start. Never logged; the public key is.
fn node_keypair(state_dir: &std::path::Path) -> anyhow::Result<NodeKeypair> {
    let path = state_dir.join(NODE_KEY_FILE);
    let (keypair, generated) = NodeKeypair::load_or_generate(&path)
        .with_context(|| format!("cannot load or make the node keypair {}", path.display()))?;
    let public = keypair.public().to_hex();
    if generated {
        tracing::info!(path = %path.display(), %public, "node keypair generated");
    } else {
        tracing::info!(path = %path.display(), %public, "node keypair loaded");
    }
    Ok(keypair)
}

/// The machine's hostname (the default node name).
fn hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    Some(name.trim().to_owned()).filter(|n| !n.is_empty())
}

/// Parses `ADDR`, `ADDR:PORT` or `[V6]:PORT`, defaulting to port 53.
fn parse_dns(s: &str) -> Result<SocketAddr, String> {
    parse_addr_port(s, 53)
}

/// Parses `ADDR`, `ADDR:PORT` or `[V6]:PORT`, defaulting to the VXLAN port,
/// and refuses addresses no underlay can use (multicast, IPv6 link-local,
/// IPv4-mapped).
fn parse_vtep(s: &str) -> Result<SocketAddr, String> {
    let addr = parse_addr_port(s, vxlan::UDP_PORT)?;
    vxlan::check_vtep(addr).map_err(|e| e.to_string())?;
    Ok(addr)
}

/// The underlay MTU the VTEP `local` works with: `given` (`--underlay-mtu`)
/// or the MTU of the interface holding the address (1500 when none does),
/// checked against the underlay's family.
fn underlay_mtu(local: SocketAddr, given: Option<u32>) -> anyhow::Result<u32> {
    let mtu = given.or_else(|| mtu_for_address(local.ip())).unwrap_or_else(|| {
        tracing::warn!(vtep = %local, "cannot find the interface holding the VTEP address; assuming MTU 1500");
        1500
    });
    vxlan::check_underlay_mtu(mtu, vxlan::IpVersion::of(local.ip()))?;
    Ok(mtu)
}

/// Why the datapath did not start, with a hint when the VTEP address could
/// not be bound.
fn datapath_context(vtep: Option<SocketAddr>, e: &std::io::Error) -> String {
    match vtep {
        Some(addr) if e.kind() == std::io::ErrorKind::AddrNotAvailable => format!(
            "cannot start the datapath: VTEP {addr}: the address is not on an interface of this network namespace{}",
            if addr.is_ipv6() { " (or is still tentative: IPv6 duplicate address detection)" } else { "" }
        ),
        Some(addr) => format!("cannot start the datapath (VTEP {addr})"),
        None => "cannot start the datapath".to_owned(),
    }
}

/// Parses `ADDR`, `ADDR:PORT` or `[V6]:PORT`, defaulting to `port`.
fn parse_addr_port(s: &str, port: u16) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    // A bracketed address must be closed: `[V6` is a typo, not `V6`.
    let ip = match s.strip_prefix('[') {
        Some(rest) => rest.strip_suffix(']'),
        None => Some(s),
    };
    ip.and_then(|ip| ip.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, port))
        .ok_or_else(|| format!("{s:?} is not ADDR or ADDR:PORT"))
}

fn main() -> std::process::ExitCode {
    use std::io::IsTerminal;
    switch::sys::mem::tune_allocator();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, not in log files.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // An error at this edge is a message for the operator, never a
    // backtrace (whatever RUST_BACKTRACE says).
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    server::check_not_running(&args.ctl_socket)?;
    let group = args.ctl_group.as_deref().map(server::lookup_group).transpose()?;
    let cluster_config = cluster_config(&args, hostname)?;
    let (store, model) =
        Store::open(&args.state_dir).with_context(|| format!("cannot open state dir {}", args.state_dir.display()))?;
    // In a cluster the VTEP binds the advertised address unless told otherwise.
    let vtep_addr = args.vtep.or(cluster_config.as_ref().map(|c| c.vtep));
    if vtep_addr.is_none() && (args.learn_peers || args.underlay_mtu.is_some()) {
        anyhow::bail!("--learn-peers and --underlay-mtu need a VTEP: give --vtep (or --advertise-addr in a cluster)");
    }
    let vtep = vtep_addr
        .map(|local| {
            let underlay_mtu = underlay_mtu(local, args.underlay_mtu)?;
            anyhow::Ok(VtepConfig { local, learn_peers: args.learn_peers, underlay_mtu })
        })
        .transpose()?;
    let secret = args.secret_file.as_deref().map(ClusterSecret::from_file).transpose().with_context(|| {
        let path = args.secret_file.as_deref().unwrap_or_else(|| std::path::Path::new("?"));
        format!("cannot load the cluster secret from {}", path.display())
    })?;
    let has_secret = secret.is_some();
    let dns = if args.dns.is_empty() {
        let found = system_upstreams(std::path::Path::new("/etc/resolv.conf"));
        if found.is_empty() {
            tracing::warn!(
                "no nameserver in /etc/resolv.conf and no --dns: names the switch does not own get SERVFAIL"
            );
        }
        found
    } else {
        args.dns.clone()
    };
    tracing::info!(upstreams = ?dns, "embedded DNS forwards to");
    let workers = args
        .workers
        .map(usize::from)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get));
    tracing::info!(workers, "datapath workers");
    let nat_limits = switch::nat::Limits { max_flows: args.nat_max_flows };
    let mut datapath = DatapathHandle::spawn_workers(
        workers,
        vtep,
        secret,
        dns.clone(),
        nat_limits,
        std::time::Duration::from_micros(args.busy_poll_us.into()),
    )
    .map_err(|e| {
        let context = datapath_context(vtep_addr, &e);
        anyhow::Error::new(e).context(context)
    })?;
    datapath
        .place_workers(&args.cpu_affinity)
        .with_context(|| format!("cannot place the datapath workers (--cpu-affinity {})", args.cpu_affinity))?;
    tracing::info!(affinity = %args.cpu_affinity, "datapath worker placement");
    let mut control = Control::restore(store, model, datapath, vtep, has_secret, dns)
        .context("cannot restore state into the datapath")?;
    let mut leaving = None;
    if let Some(mut config) = cluster_config {
        let keypair = node_keypair(&args.state_dir)?;
        config.public_key = Some(keypair.public().to_hex());
        let (node, endpoints) = (config.node.clone(), config.endpoints.clone());
        let cluster = Cluster::start(config).context("cannot start the cluster store's client")?;
        tracing::info!(%node, store = ?endpoints, "cluster node: following the cluster store");
        control.attach_cluster_keys(cluster.clone(), keypair);
        leaving = Some(cluster.clone());
        control.attach_cluster(cluster, endpoints);
    }
    let metrics = args
        .metrics_listen
        .map(|addr| tiny_http::Server::http(addr).map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr}: {e}")))
        .transpose()?;
    let listener = server::bind(&args.ctl_socket, group)?;
    stop_on_signals(args.ctl_socket.clone(), leaving)?;
    tracing::info!(socket = %args.ctl_socket.display(), state = %args.state_dir.display(), "vswitchd ready");
    if let Some(addr) = args.metrics_listen {
        tracing::info!(%addr, "metrics at http://{addr}/metrics");
    }
    server::serve(listener, control, metrics);
    Ok(())
}

/// On SIGTERM or SIGINT: leave the cluster (if this is a node: its lease is
/// revoked, so the other nodes stop tunnelling to it at once rather than
/// after the TTL; its address claims stay), remove the ctl socket and exit
/// 0. Every acknowledged change is already on disk and endpoint TAPs are
/// persistent, so a restarted daemon picks up where this one stopped.
fn stop_on_signals(socket: PathBuf, cluster: Option<Cluster>) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGTERM, SIGINT]).context("cannot install signal handlers")?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        if let Some(signal) = signals.forever().next() {
            tracing::info!(signal, "stopping");
            if let Some(cluster) = cluster
                && let Err(e) = cluster.leave()
            {
                tracing::warn!(error = %e, "cannot leave the cluster; the other nodes drop this one when its lease expires");
            }
            let _ = std::fs::remove_file(&socket);
            std::process::exit(0);
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn args(extra: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(["vswitchd"].iter().chain(extra))
    }

    fn config(extra: &[&str]) -> anyhow::Result<Option<ClusterConfig>> {
        cluster_config(&args(extra).map_err(|e| anyhow::anyhow!("{e}"))?, || Some("host1".into()))
    }

    #[test]
    fn cluster_flags_are_checked() {
        assert!(config(&[]).unwrap().is_none(), "no cluster without --cluster-store");
        let base = ["--cluster-store", "etcd://10.0.0.1:2379,10.0.0.2:2379", "--advertise-addr", "192.0.2.1"];
        let insecure = config(&[&base[..], &["--cluster-insecure"]].concat()).unwrap().unwrap();
        assert_eq!(insecure.endpoints, ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]);
        assert_eq!((insecure.node.as_str(), insecure.vtep), ("host1", sa("192.0.2.1:4789")));
        assert!(insecure.tls.is_none());
        let tls =
            [&base[..], &["--cluster-ca", "ca", "--cluster-cert", "c", "--cluster-key", "k", "--node-name", "n1"]]
                .concat();
        let tls = config(&tls).unwrap().unwrap();
        assert_eq!((tls.endpoints[0].as_str(), tls.node.as_str()), ("https://10.0.0.1:2379", "n1"));
        let ttl = config(&[&base[..], &["--cluster-insecure", "--cluster-ttl", "3"]].concat()).unwrap().unwrap();
        assert_eq!(ttl.lease_ttl, std::time::Duration::from_secs(3));

        for (flags, needle) in [
            (&base[..], "needs TLS"),
            (&[&base[..], &["--cluster-ca", "ca"]].concat()[..], "all three"),
            (&["--cluster-store", "etcd://10.0.0.1:2379", "--cluster-insecure"][..], "needs --advertise-addr"),
            (
                &["--cluster-store", "etcd://h:1", "--cluster-insecure", "--advertise-addr", "0.0.0.0"][..],
                "unspecified",
            ),
            (
                &[&base[..], &["--cluster-insecure", "--vtep", "[2001:db8::1]:4789"]].concat()[..],
                "different address families",
            ),
            (&[&base[..], &["--cluster-insecure", "--cluster-ca", "ca"]].concat()[..], "cannot be used with"),
            (&["--node-name", "n1"][..], "--cluster-store"),
        ] {
            let message = format!("{:#}", config(flags).unwrap_err());
            assert!(message.contains(needle), "{flags:?}: {message:?} lacks {needle:?}");
        }
    }

    #[test]
    fn vtep_addresses_of_either_family() {
        assert_eq!(parse_vtep("192.0.2.10"), Ok(sa("192.0.2.10:4789")));
        assert_eq!(parse_vtep("192.0.2.10:8472"), Ok(sa("192.0.2.10:8472")));
        assert_eq!(parse_vtep("2001:db8::10"), Ok(sa("[2001:db8::10]:4789")));
        assert_eq!(parse_vtep("[2001:db8::10]"), Ok(sa("[2001:db8::10]:4789")));
        assert_eq!(parse_vtep("[fd00:1::2]:8472"), Ok(sa("[fd00:1::2]:8472")));
        assert_eq!(parse_vtep("::"), Ok(sa("[::]:4789")));
        // Without brackets a trailing group is part of the address, as in
        // every tool that takes IPv6 literals.
        assert_eq!(parse_vtep("fd00::1:8472"), Ok(sa("[fd00::1:8472]:4789")));
    }

    #[test]
    fn unusable_vtep_addresses_are_refused() {
        for (given, needle) in [
            ("host.example", "is not ADDR or ADDR:PORT"),
            ("[2001:db8::10", "is not ADDR or ADDR:PORT"),
            ("2001:db8::10]:4789", "is not ADDR or ADDR:PORT"),
            ("[fe80::1]:4789", "link-local"),
            ("::ffff:192.0.2.1", "give the IPv4 address itself"),
            ("[ff02::1]", "multicast"),
        ] {
            let message = parse_vtep(given).unwrap_err();
            assert!(message.contains(needle), "{given}: {message:?} lacks {needle:?}");
        }
    }

    #[test]
    fn an_ipv6_underlay_mtu_below_1280_is_refused() {
        let v6 = sa("[2001:db8::10]:4789");
        assert_eq!(underlay_mtu(v6, Some(1500)).unwrap(), 1500);
        assert_eq!(underlay_mtu(v6, Some(1280)).unwrap(), 1280);
        let message = underlay_mtu(v6, Some(1279)).unwrap_err().to_string();
        assert!(message.contains("below IPv6's minimum of 1280"), "{message}");
        assert_eq!(underlay_mtu(sa("192.0.2.10:4789"), Some(576)).unwrap(), 576);
    }

    #[test]
    fn a_vtep_address_that_is_not_there_gets_a_hint() {
        let unavailable = std::io::Error::from(std::io::ErrorKind::AddrNotAvailable);
        let v6 = datapath_context(Some(sa("[2001:db8::10]:4789")), &unavailable);
        assert!(v6.contains("not on an interface") && v6.contains("duplicate address detection"), "{v6}");
        let v4 = datapath_context(Some(sa("192.0.2.10:4789")), &unavailable);
        assert!(v4.contains("not on an interface") && !v4.contains("duplicate"), "{v4}");
        let other = datapath_context(Some(sa("192.0.2.10:4789")), &std::io::Error::from(std::io::ErrorKind::AddrInUse));
        assert_eq!(other, "cannot start the datapath (VTEP 192.0.2.10:4789)");
    }
}
