//! Side effects of the network model on the host: creating sandboxes'
//! namespaces and plumbing an endpoint's TAP into its sandbox (move, rename,
//! IPv4 and IPv6 addresses, default routes), all over netlink. Every function either completes or
//! undoes what it did.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use crate::model::{Endpoint, Network, Sandbox};
use crate::sys::netlink::{self, LinkConfig, Netlink, NetlinkError};
use crate::sys::netns::{self, NetNs, NetNsError};
use crate::sys::tap::{Tap, TapError, TapMode, TapOptions};

/// Where `ip netns exec` looks for a namespace's own resolv.conf.
const NETNS_ETC: &str = "/etc/netns";

/// The transmit queue length (`txqueuelen`) of every endpoint TAP. A TAP
/// queues what its sandbox sends in a ring of this many frames per queue
/// until the switch reads it; a frame that finds the ring full is dropped
/// and counted by the kernel only (the interface's `tx_dropped`, shown by
/// `stats` as `tap_queue_dropped`). The kernel's default, 1000, is 0.5 ms of
/// a 2 Mpps flood of small frames, less than one scheduler time slice of a
/// busy 2-core host, so a burst sent while the datapath thread waits for a
/// core overflows it. 4096 frames ride out ~2 ms at that rate and bound the
/// memory a port can hold: a queued frame costs its skb truesize, about
/// 1 KiB for a small frame and 2.3 KiB for a 1500-byte one, so at most
/// ~4-10 MiB per queue while the switch is stalled (only a sandbox sending
/// 64 KiB GSO frames could queue more, and its TCP stops at its window).
pub const TAP_TXQUEUELEN: u32 = 4096;

/// Why plumbing failed.
#[derive(Debug, thiserror::Error)]
pub enum PlumbError {
    /// Namespace operation failed.
    #[error(transparent)]
    NetNs(#[from] NetNsError),
    /// TAP operation failed.
    #[error(transparent)]
    Tap(#[from] TapError),
    /// Netlink operation failed.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// Writing one of the sandbox's files (resolv.conf, hosts) failed.
    #[error("cannot write {}: {source}", path.display())]
    SandboxFile {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// Creates (or, for an attached namespace, opens) `sandbox`'s namespace
/// (at `attach`, if given) and writes its resolv.conf for a sandbox on no
/// network yet ([`ResolvConf::standalone`]) when DNS settings were given,
/// and its hosts file when `--add-host` entries were ([`write_hosts`]).
pub fn create_sandbox_netns(sandbox: &Sandbox, attach: Option<&Path>) -> Result<NetNs, PlumbError> {
    let name = sandbox.name.as_str();
    // The sandbox's file directory, if this call makes it: gone again on failure.
    let made_dir = !Path::new(NETNS_ETC).join(name).exists();
    let ns = match attach {
        Some(path) => NetNs::open_path(path)?,
        None => NetNs::create_named(name)?,
    };
    let written = write_resolv_conf(name, &ResolvConf::standalone(sandbox))
        .and_then(|()| write_hosts(name, &sandbox.extra_hosts, None));
    if let Err(e) = written {
        if made_dir {
            let _ = std::fs::remove_dir_all(Path::new(NETNS_ETC).join(name));
        }
        if attach.is_none() {
            let _ = NetNs::remove_named(name);
        }
        return Err(e);
    }
    Ok(ns)
}

/// Removes what [`create_sandbox_netns`] made.
pub fn remove_sandbox_netns(sandbox: &Sandbox) -> Result<(), PlumbError> {
    let _ = std::fs::remove_dir_all(Path::new(NETNS_ETC).join(&sandbox.name));
    if sandbox.owns_netns {
        match NetNs::remove_named(&sandbox.name) {
            Ok(()) | Err(NetNsError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Opens a sandbox's namespace; recreates one vswitch owns if it vanished
/// (e.g. after a reboot).
pub fn open_sandbox_netns(sandbox: &Sandbox) -> Result<NetNs, PlumbError> {
    match NetNs::open_path(&sandbox.netns_path) {
        Ok(ns) => Ok(ns),
        Err(_) if sandbox.owns_netns => Ok(create_sandbox_netns(sandbox, None)?),
        Err(e) => Err(e.into()),
    }
}

/// The lines of a sandbox's resolv.conf.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    /// `nameserver` lines.
    pub nameservers: Vec<IpAddr>,
    /// The `search` line's domains.
    pub search: Vec<String>,
    /// The `options` line's options.
    pub options: Vec<String>,
}

impl ResolvConf {
    /// What a sandbox on no network with the embedded DNS is told: its own
    /// servers, search domains and options, as given.
    pub fn standalone(sandbox: &Sandbox) -> ResolvConf {
        ResolvConf {
            nameservers: sandbox.dns.clone(),
            search: sandbox.dns_search.clone(),
            options: sandbox.dns_options.clone(),
        }
    }

    /// Nothing to say: no file is written.
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty() && self.search.is_empty() && self.options.is_empty()
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut text = String::from("# Written by vswitchd; it is rewritten when the sandbox's networks change.\n");
        for server in &self.nameservers {
            text.push_str(&format!("nameserver {server}\n"));
        }
        if !self.search.is_empty() {
            text.push_str(&format!("search {}\n", self.search.join(" ")));
        }
        if !self.options.is_empty() {
            text.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        text
    }
}

/// Where sandbox `name`'s resolv.conf lives: `ip netns exec` mounts it as
/// /etc/resolv.conf, and a container runtime can bind-mount it.
pub fn resolv_conf_path(name: &str) -> String {
    format!("{NETNS_ETC}/{name}/resolv.conf")
}

/// Writes sandbox `name`'s resolv.conf. A file that exists is rewritten in
/// place, never removed or replaced, so a container's bind mount of it sees
/// every change; the new text is written over the old before the file is
/// cut to its length, so a reader never finds it empty. With nothing to
/// say, no file is created (and an existing one keeps only its comment).
pub fn write_resolv_conf(name: &str, conf: &ResolvConf) -> Result<(), PlumbError> {
    let path = PathBuf::from(resolv_conf_path(name));
    if conf.is_empty() && !path.exists() {
        return Ok(());
    }
    rewrite_in_place(name, path, &conf.render())
}

/// Where sandbox `name`'s hosts file lives: `ip netns exec` mounts it as
/// /etc/hosts, and a container runtime can bind-mount it.
pub fn hosts_path(name: &str) -> String {
    format!("{NETNS_ETC}/{name}/hosts")
}

/// The sandbox's own line in its hosts file, as Docker writes the
/// container's: its hostname at its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnHost {
    /// The hostname of vswitchd's UTS namespace, which the namespaces it
    /// creates share (see [`hostname`]).
    pub hostname: String,
    /// The sandbox's addresses (one per network and family, the first of
    /// each family the one to find it by, see
    /// [`Model::own_addresses`](crate::model::Model::own_addresses)).
    pub addresses: Vec<IpAddr>,
}

/// The hosts file of a sandbox with `--add-host` entries (each `NAME:IP`,
/// as the model keeps them): Docker's standard lines, one line per entry,
/// in order, then the sandbox's own hostname at each of its addresses
/// (after the entries, as Docker 25 writes them, so an entry for the same
/// name wins).
pub fn render_hosts(extra_hosts: &[String], own: Option<&OwnHost>) -> String {
    let mut text = format!(
        "{HOSTS_MARKER} from the sandbox's --add-host entries.\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::\tip6-localnet\n\
         ff00::\tip6-mcastprefix\n\
         ff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n",
    );
    for entry in extra_hosts {
        if let Some((name, ip)) = entry.split_once(':') {
            // The libc resolver matches names as written: a fully
            // qualified `db.example.` is also listed as `db.example`.
            match name.strip_suffix('.') {
                Some(bare) => text.push_str(&format!("{ip}\t{name} {bare}\n")),
                None => text.push_str(&format!("{ip}\t{name}\n")),
            }
        }
    }
    if let Some(own) = own {
        // A domain name is listed with its first label too, as Docker does.
        let short = own.hostname.split_once('.').map(|(short, _)| format!(" {short}")).unwrap_or_default();
        for ip in &own.addresses {
            text.push_str(&format!("{ip}\t{}{short}\n", own.hostname));
        }
    }
    text
}

/// The hostname of vswitchd's UTS namespace, for [`OwnHost`]: none when it
/// cannot be read or is not a host name (letters, digits, `-`, `_`, `.`),
/// since the kernel takes any bytes and a hosts file line must not break.
pub fn hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim_end_matches('\n');
    let fits = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    fits.then(|| name.to_owned())
}

/// The first line of every hosts file vswitchd writes.
const HOSTS_MARKER: &str = "# Written by vswitchd";

/// Writes sandbox `name`'s hosts file (see [`render_hosts`]) as
/// [`write_resolv_conf`] writes its resolv.conf: in place, and not at all
/// for a sandbox that never had an entry (it then sees the host's
/// /etc/hosts). A file vswitchd wrote keeps the standard lines when the
/// entries are gone; a file someone else put there is left alone unless
/// the sandbox has entries.
pub fn write_hosts(name: &str, extra_hosts: &[String], own: Option<&OwnHost>) -> Result<(), PlumbError> {
    let path = PathBuf::from(hosts_path(name));
    if extra_hosts.is_empty() {
        let ours = std::fs::read_to_string(&path).is_ok_and(|text| text.starts_with(HOSTS_MARKER));
        if !ours {
            return Ok(());
        }
    }
    rewrite_in_place(name, path, &render_hosts(extra_hosts, own))
}

/// Writes `text` to `path` in sandbox `name`'s directory: over the old
/// text, then cut to its length (see [`write_resolv_conf`]).
fn rewrite_in_place(name: &str, path: PathBuf, text: &str) -> Result<(), PlumbError> {
    use std::io::{Seek, Write};
    let dir = Path::new(NETNS_ETC).join(name);
    std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path))
        .and_then(|mut file| {
            file.rewind()?;
            file.write_all(text.as_bytes())?;
            file.set_len(text.len() as u64)
        })
        .map_err(|source| PlumbError::SandboxFile { path, source })
}

/// Creates an endpoint's persistent TAP, moves it into the sandbox and
/// configures it there (name, MAC, MTU, its IPv4 and IPv6 addresses with
/// their on-link routes, default routes). On error the TAP is destroyed
/// again, and with it everything configured on it.
pub fn plumb_endpoint(ns: &NetNs, endpoint: &Endpoint, network: &Network) -> Result<Tap, PlumbError> {
    let tap = Tap::create(&endpoint.host_tap_name, TapOptions { persist: true, mode: TapMode::CreateNew })?;
    match configure_in_sandbox(ns, endpoint, network) {
        Ok(()) => Ok(tap),
        Err(e) => {
            if let Err(e) = remove_source_routes(ns, endpoint) {
                tracing::warn!(tap = tap.name(), error = %e, "cannot remove the endpoint's source rules");
            }
            destroy_tap(tap);
            Err(e)
        }
    }
}

fn configure_in_sandbox(ns: &NetNs, endpoint: &Endpoint, network: &Network) -> Result<(), PlumbError> {
    netlink::move_link_to_netns(&endpoint.host_tap_name, ns)?;
    let config = LinkConfig {
        new_name: Some(endpoint.ifname_in_sandbox.clone()),
        mac: Some(endpoint.mac.0),
        mtu: Some(network.mtu),
        ipv4: endpoint.ipv4.map(|a| (a, endpoint.prefix_len)),
        ipv6: endpoint.ipv6.map(|a| (a, endpoint.prefix_len6)),
        txqueuelen: Some(TAP_TXQUEUELEN),
        up: true,
    };
    netlink::configure_link(ns, &endpoint.host_tap_name, &config)?;
    add_source_routes(ns, endpoint, network)?;
    if endpoint.is_default_gateway_network {
        add_default_route(ns, endpoint, network)?;
    }
    Ok(())
}

/// The endpoint's addresses with its network's gateway of each family,
/// for those it routes through (none on `--internal` networks).
fn routed_addresses(endpoint: &Endpoint, network: &Network) -> Vec<(IpAddr, IpAddr)> {
    if network.internal {
        return Vec::new();
    }
    let v4 = endpoint.ipv4.zip(network.gateway).map(|(a, g)| (IpAddr::V4(a), IpAddr::V4(g)));
    let v6 = endpoint.ipv6.zip(network.gateway6).map(|(a, g)| (IpAddr::V6(a), IpAddr::V6(g)));
    v4.into_iter().chain(v6).collect()
}

/// Makes the sandbox answer from the endpoint's addresses through the
/// endpoint's own gateway, whichever network carries its default route
/// (source-based routing, see `sys::netlink::source_routes`): a port
/// published on any of its networks is answered through the gateway that
/// carried the client in, and a socket bound to the endpoint's address
/// leaves through it. Idempotent.
///
/// A kernel without policy routing for a family is said in the log and
/// otherwise ignored: the endpoint works, answering through the default
/// route as before.
pub fn add_source_routes(ns: &NetNs, endpoint: &Endpoint, network: &Network) -> Result<(), PlumbError> {
    let routed = routed_addresses(endpoint, network);
    if routed.is_empty() {
        return Ok(());
    }
    let mut netlink = Netlink::open_in(ns)?;
    for (address, gateway) in routed {
        match netlink.add_source_route(address, gateway, &endpoint.ifname_in_sandbox) {
            Ok(()) => {}
            Err(e) if e.is_unsupported() => {
                tracing::warn!(%address, error = %e, "no policy routing in this kernel: the address answers through the default route");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Removes the endpoint's source rules from the sandbox (its table goes
/// with its interface): its address may go to another sandbox, or come
/// back to this one on another interface.
pub fn remove_source_routes(ns: &NetNs, endpoint: &Endpoint) -> Result<(), PlumbError> {
    let addresses = endpoint.ipv4.map(IpAddr::V4).into_iter().chain(endpoint.ipv6.map(IpAddr::V6));
    let mut netlink = Netlink::open_in(ns)?;
    for address in addresses {
        match netlink.remove_source_route(address) {
            Err(e) if !e.is_unsupported() => return Err(e.into()),
            _ => {}
        }
    }
    Ok(())
}

/// Removes the endpoint's source rules from `sandbox`'s namespace if it
/// still has one (never recreating it, unlike [`open_sandbox_netns`]).
pub fn remove_source_routes_of(sandbox: &Sandbox, endpoint: &Endpoint) -> Result<(), PlumbError> {
    match existing_sandbox_netns(sandbox) {
        Some(ns) => remove_source_routes(&ns, endpoint),
        // Gone (the container ended): its rules went with it.
        None => Ok(()),
    }
}

/// The sandbox's namespace if it exists (never recreated, unlike
/// [`open_sandbox_netns`]): for changes that only matter to a live one.
pub fn existing_sandbox_netns(sandbox: &Sandbox) -> Option<NetNs> {
    NetNs::open_path(&sandbox.netns_path).ok()
}

/// Points the sandbox's default routes at `network`'s gateway through the
/// endpoint's interface: the IPv4 one when the endpoint has IPv4, the IPv6
/// one (via the IPv6 gateway) when it has IPv6; none on `--internal`
/// networks.
pub fn add_default_route(ns: &NetNs, endpoint: &Endpoint, network: &Network) -> Result<(), PlumbError> {
    if network.internal {
        return Ok(());
    }
    set_default_route(ns, endpoint, network, false)?;
    set_default_route(ns, endpoint, network, true)
}

/// Points the sandbox's default route of one family (IPv6 when `ipv6`) at
/// `network`'s gateway of that family through the endpoint's interface,
/// replacing the one it had (see `Model::default_route_endpoint`).
pub fn set_default_route(ns: &NetNs, endpoint: &Endpoint, network: &Network, ipv6: bool) -> Result<(), PlumbError> {
    match (ipv6, network.gateway, network.gateway6) {
        (false, Some(gateway), _) if endpoint.ipv4.is_some() => {
            netlink::add_default_route(ns, gateway, &endpoint.ifname_in_sandbox)?;
        }
        (true, _, Some(gateway)) if endpoint.ipv6.is_some() => {
            netlink::add_default_route6(ns, gateway, &endpoint.ifname_in_sandbox)?;
        }
        _ => {}
    }
    Ok(())
}

/// Re-attaches to an endpoint's persistent TAP after a restart (it lives in
/// the sandbox under its sandbox name), or plumbs a new one if it is gone.
/// A TAP made by an older version gets [`TAP_TXQUEUELEN`] too.
pub fn reattach_endpoint(ns: &NetNs, endpoint: &Endpoint, network: &Network) -> Result<Tap, PlumbError> {
    let ifname = endpoint.ifname_in_sandbox.clone();
    let attached =
        netns::run_in(ns, move || Tap::create(&ifname, TapOptions { persist: true, mode: TapMode::AttachExisting }))?;
    match attached {
        Ok(tap) => {
            if let Err(e) = netlink::set_txqueuelen(ns, &endpoint.ifname_in_sandbox, TAP_TXQUEUELEN) {
                // The port works with the shallower queue; say so and go on.
                tracing::warn!(tap = tap.name(), error = %e, "cannot set the TAP's txqueuelen");
            }
            // A sandbox plumbed by an older version has none yet.
            if let Err(e) = add_source_routes(ns, endpoint, network) {
                tracing::warn!(tap = tap.name(), error = %e, "cannot add the endpoint's source routes");
            }
            Ok(tap)
        }
        Err(TapError::NotFound(_)) => plumb_endpoint(ns, endpoint, network),
        Err(e) => Err(e.into()),
    }
}

/// Makes a TAP non-persistent and closes it, which deletes the device
/// wherever it lives.
pub fn destroy_tap(tap: Tap) {
    match tap.set_persist(false) {
        Ok(()) => {}
        // The device is already gone (its namespace ended): nothing to clear.
        Err(TapError::Ioctl { ref source, .. }) if source.raw_os_error() == Some(libc::EBADFD) => {}
        Err(e) => tracing::warn!(tap = tap.name(), error = %e, "cannot clear TAP persistence"),
    }
    drop(tap);
}

/// The gateway address as the datapath's gateway needs it, for networks the
/// switch serves a gateway on.
pub fn gateway_of(network: &Network) -> Option<(Ipv4Addr, u8)> {
    Some((network.gateway?, network.subnet?.prefix_len()))
}

/// The IPv6 gateway address and prefix length, for networks with IPv6.
pub fn gateway6_of(network: &Network) -> Option<(Ipv6Addr, u8)> {
    Some((network.gateway6?, network.subnet6?.prefix_len()))
}

#[cfg(test)]
mod tests {
    use super::{OwnHost, render_hosts};

    #[test]
    fn a_hosts_file_is_dockers_standard_lines_then_the_entries_then_its_own_name() {
        let own = OwnHost {
            hostname: "node1.example.com".into(),
            addresses: vec!["10.0.0.2".parse().unwrap(), "fd00::2".parse().unwrap()],
        };
        let entries = ["db:10.0.0.5".into(), "db6:fd00::5".into(), "db:10.0.0.6".into(), "db.example.:10.0.0.7".into()];
        let text = render_hosts(&entries, Some(&own));
        let lines: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(
            lines,
            [
                "127.0.0.1\tlocalhost",
                "::1\tlocalhost ip6-localhost ip6-loopback",
                "fe00::\tip6-localnet",
                "ff00::\tip6-mcastprefix",
                "ff02::1\tip6-allnodes",
                "ff02::2\tip6-allrouters",
                "10.0.0.5\tdb",
                "fd00::5\tdb6",
                "10.0.0.6\tdb",
                "10.0.0.7\tdb.example. db.example",
                "10.0.0.2\tnode1.example.com node1",
                "fd00::2\tnode1.example.com node1",
            ]
        );
        assert!(text.starts_with('#') && text.ends_with('\n'));
        assert_eq!(render_hosts(&[], None).lines().count(), 7, "the standard lines stay when the entries go");
    }
}
