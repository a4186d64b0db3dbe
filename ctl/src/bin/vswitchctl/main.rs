//! `vswitchctl`: the admin tool for `vswitchd`. See `vswitchctl --help`.

mod capture;
mod cli;
mod events;
mod format;
mod listing;
mod render;
mod stack;
mod table;

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Result;
use clap::{CommandFactory, Parser};
use ctl::client::{Client, ClientError};
use ctl::proto::{
    CreateNetwork, DnsRecord, EndpointInfo, FdbEntry, FlushResult, NatFlow, NetworkInfo, NetworkSummary, PortStats,
    Request, SandboxInfo, ServiceInfo, ShowTree, VersionInfo,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use cli::{
    Cli, Command, ConfigCmd, DnsCmd, FdbCmd, NatCmd, NetworkCmd, NodeCmd, PeerCmd, SandboxCmd, ServiceCmd, mappings,
};
use format::Format;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed stdout (e.g. `| head`) is not worth an error message.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Whether `e` is (or wraps) a write to a closed pipe, from printing a table
/// or from serializing JSON.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        let io_kind = c.downcast_ref::<io::Error>().map(io::Error::kind);
        let json_kind = c.downcast_ref::<serde_json::Error>().and_then(serde_json::Error::io_error_kind);
        io_kind.or(json_kind) == Some(io::ErrorKind::BrokenPipe)
    })
}

/// Connects to the daemon at `socket`, waiting `timeout` seconds for each
/// answer, or as long as it takes with 0.
pub(crate) fn connect(socket: &std::path::Path, timeout: u64) -> Result<Client, ClientError> {
    match timeout {
        0 => Client::connect_waiting(socket),
        secs => Client::connect_with_timeout(socket, std::time::Duration::from_secs(secs)),
    }
}

/// The connection in `slot`, opened to `socket` with `timeout` (see
/// [`connect`]) on first use. (A function of the fields, not of `Ctx`, so
/// the caller may still write to `Ctx::out` while it holds the client.)
pub(crate) fn opened<'a>(
    slot: &'a mut Option<Client>,
    socket: &std::path::Path,
    timeout: u64,
) -> Result<&'a mut Client, ClientError> {
    if slot.is_none() {
        *slot = Some(connect(socket, timeout)?);
    }
    Ok(slot.as_mut().expect("just connected"))
}

/// Output context: the lazily opened connection, `--json`, and stdout.
struct Ctx {
    cli_socket: std::path::PathBuf,
    /// `--timeout`: seconds to wait for an answer (0: as long as it takes).
    timeout: u64,
    client: Option<Client>,
    json: bool,
    out: io::StdoutLock<'static>,
}

impl Ctx {
    /// Sends one request, connecting on first use.
    fn call(&mut self, req: &Request) -> Result<Value> {
        Ok(opened(&mut self.client, &self.cli_socket, self.timeout)?.call_value(req)?)
    }

    /// Prints `value` as pretty JSON.
    fn print_json(&mut self, value: &Value) -> Result<()> {
        serde_json::to_writer_pretty(&mut self.out, value)?;
        writeln!(self.out)?;
        Ok(())
    }

    /// Sends `req`; with `--json` prints the raw payload, otherwise decodes it as `T` and renders it.
    fn show<T: DeserializeOwned>(
        &mut self,
        req: &Request,
        human: impl FnOnce(&mut dyn Write, T) -> io::Result<()>,
    ) -> Result<()> {
        let value = self.call(req)?;
        if self.json {
            return self.print_json(&value);
        }
        let typed: T =
            serde_json::from_value(value).map_err(|e| anyhow::anyhow!("unexpected reply from vswitchd: {e}"))?;
        human(&mut self.out, typed)?;
        Ok(())
    }
}

/// `network ls`: the daemon's list, filtered here; IDs only with `-q`.
fn network_ls(ctx: &mut Ctx, quiet: bool, filter: &[String], no_trunc: bool, format: Option<&str>) -> Result<()> {
    // A usage error, as clap reports one filter's (exit code 2).
    let filter = ctl::filter::NetworkFilter::parse(filter)
        .unwrap_or_else(|e| cli::Cli::command().error(clap::error::ErrorKind::ValueValidation, e).exit());
    let value = ctx.call(&Request::NetworkLs)?;
    let unexpected = |e: serde_json::Error| anyhow::anyhow!("unexpected reply from vswitchd: {e}");
    let raw: Vec<Value> = serde_json::from_value(value).map_err(unexpected)?;
    // The rows that pass, each as the daemon sent it and as read here.
    let mut kept = Vec::with_capacity(raw.len());
    for row in raw {
        let net: NetworkSummary = serde_json::from_value(row.clone()).map_err(unexpected)?;
        if filter.matches(&net) {
            kept.push((row, net));
        }
    }
    if ctx.json {
        return ctx.print_json(&Value::Array(kept.into_iter().map(|(row, _)| row).collect()));
    }
    let nets: Vec<NetworkSummary> = kept.into_iter().map(|(_, net)| net).collect();
    let format = format.map(Format::for_list).transpose().map_err(anyhow::Error::msg)?;
    // As Docker's: -q is the table's quiet form; a template or `json` wins.
    if quiet && matches!(format, None | Some(Format::Default)) {
        for n in &nets {
            let id = if no_trunc { n.id.as_str() } else { &n.id[..n.id.len().min(12)] };
            writeln!(ctx.out, "{id}")?;
        }
        return Ok(());
    }
    render::networks(&nets, no_trunc).print(&mut ctx.out, format.as_ref())
}

/// A list verb: with `--json`, the daemon's reply as it is; otherwise
/// decoded as `T` and printed by `human` (its table), or, given a
/// `--format` other than `table`, through the format over `listing`'s rows.
fn list<T: DeserializeOwned, const N: usize>(
    ctx: &mut Ctx,
    req: &Request,
    path: &[&str],
    format: Option<&str>,
    human: impl FnOnce(&mut dyn Write, &T) -> io::Result<()>,
    listing: impl FnOnce(&T) -> listing::Listing<N>,
) -> Result<()> {
    refuse_format_with_json(ctx, path, format);
    match format.map(Format::for_list).transpose().map_err(anyhow::Error::msg)? {
        None | Some(Format::Default) => ctx.show(req, |w, items: T| human(w, &items)),
        Some(format) => {
            let value = ctx.call(req)?;
            let items: T =
                serde_json::from_value(value).map_err(|e| anyhow::anyhow!("unexpected reply from vswitchd: {e}"))?;
            listing(&items).print(&mut ctx.out, Some(&format))
        }
    }
}

/// [`list`] of a verb whose table is its listing's.
fn list_of<T: DeserializeOwned, const N: usize>(
    ctx: &mut Ctx,
    req: &Request,
    path: &[&str],
    format: Option<&str>,
    listing: fn(&T) -> listing::Listing<N>,
) -> Result<()> {
    list(ctx, req, path, format, |w, items| listing(items).write_table(w), listing)
}

/// `network prune`: asks (unless `--force`), then has the daemon remove
/// every unused custom network; prints what went, as Docker does.
fn network_prune(ctx: &mut Ctx, force: bool) -> Result<()> {
    if !force {
        eprint!(
            "WARNING! This will remove all custom networks not used by at least one sandbox or uplink.\nAre you \
             sure you want to continue? [y/N] "
        );
        let mut answer = String::new();
        io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(());
        }
    }
    let value = ctx.call(&Request::NetworkPrune)?;
    if ctx.json {
        return ctx.print_json(&value);
    }
    let pruned: ctl::proto::Pruned =
        serde_json::from_value(value).map_err(|e| anyhow::anyhow!("unexpected reply from vswitchd: {e}"))?;
    if !pruned.networks_deleted.is_empty() {
        writeln!(ctx.out, "Deleted Networks:")?;
        for name in &pruned.networks_deleted {
            writeln!(ctx.out, "{name}")?;
        }
    }
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    let mut ctx =
        Ctx { cli_socket: cli.socket, timeout: cli.timeout, client: None, json: cli.json, out: io::stdout().lock() };
    match cli.command {
        Command::Completions { shell } => {
            // clap_complete panics on a failed write; write it ourselves so
            // a closed pipe (`| head`) is an ordinary, quiet error.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "vswitchctl", &mut script);
            ctx.out.write_all(&script)?;
            Ok(())
        }
        Command::Sandbox(cmd) => sandbox(&mut ctx, cmd),
        Command::Network(cmd) => network(&mut ctx, cmd),
        Command::Show => ctx.show(&Request::Show, |w, t: ShowTree| render::show(w, &t)),
        Command::Fdb(cmd) => fdb(&mut ctx, cmd),
        Command::Stats { prometheus: true, .. } => {
            ctx.show(&Request::Metrics, |w, m: ctl::proto::MetricsText| w.write_all(m.text.as_bytes()))
        }
        Command::Stats { port, prometheus: false, format } => list(
            &mut ctx,
            &Request::Stats { port },
            &["stats"],
            format.as_deref(),
            |w, s: &Vec<PortStats>| render::stats(w, s),
            |s| render::port_counters(s, false),
        ),
        Command::Events { follow, format } => {
            refuse_format_with_json(&ctx, &["events"], format.as_deref());
            let format = format.as_deref().map(Format::for_stream).transpose().map_err(anyhow::Error::msg)?;
            let shape = match format {
                None | Some(Format::Default) if ctx.json => events::Shape::Json,
                None | Some(Format::Default) => events::Shape::Human,
                Some(format) => events::Shape::Format(Box::new(format)),
            };
            if follow { events::follow(&mut ctx, &shape) } else { events::history(&mut ctx, &shape) }
        }
        Command::Dns(DnsCmd::Ls { network, format }) => {
            list_of(&mut ctx, &Request::DnsLs { network }, &["dns", "ls"], format.as_deref(), |r: &Vec<DnsRecord>| {
                render::dns_records(r)
            })
        }
        Command::Port(cli::PortArgs {
            command: Some(cli::PortCmd::Add { network, interface, port_type, force }),
            ..
        }) => {
            let req = Request::PortAdd { network, interface, port_type: Some(port_type.into()), force };
            ctx.show(&req, |_, _: Value| Ok(()))
        }
        Command::Port(cli::PortArgs { command: Some(cli::PortCmd::Rm { interface }), .. }) => {
            let name = interface.clone();
            ctx.show(&Request::PortRm { interface }, |w, _: Value| writeln!(w, "{name}"))
        }
        Command::Port(cli::PortArgs { command: Some(cli::PortCmd::Impair(args)), .. }) => {
            let req = Request::PortImpair { port: args.port.clone(), impair: args.impairment() };
            ctx.show(&req, |_, _: ctl::proto::PortImpairInfo| Ok(()))
        }
        Command::Port(cli::PortArgs { sandbox, port, .. }) => {
            // clap requires SANDBOX when no verb is given.
            port_cmd(&mut ctx, sandbox.unwrap_or_default(), port)
        }
        Command::Service(cmd) => service(&mut ctx, cmd),
        Command::Nat(NatCmd::Ls { network, format }) => {
            list_of(&mut ctx, &Request::NatLs { network }, &["nat", "ls"], format.as_deref(), |f: &Vec<NatFlow>| {
                render::nat_flows(f)
            })
        }
        Command::Config(ConfigCmd::Show) => {
            ctx.show(&Request::ConfigShow, |w, c: ctl::proto::ConfigInfo| writeln!(w, "aging-time {}", c.aging_time))
        }
        Command::Config(ConfigCmd::Set { key, value }) => {
            ctx.show(&Request::ConfigSet { key, value }, |_, _: Value| Ok(()))
        }
        Command::Peer(cmd) => peer(&mut ctx, cmd),
        Command::Node(cmd) => node(&mut ctx, cmd),
        Command::Secret(cli::SecretCmd::Generate) => {
            let secret = crypto::ClusterSecret::generate()?;
            writeln!(ctx.out, "{}", secret.as_str())?;
            Ok(())
        }
        Command::Capture { target, write, count, snaplen, filter, outer, pcapng } => {
            let args = capture::CaptureArgs { target, write, count, snaplen, filter, outer, pcapng };
            capture::run(connect(&ctx.cli_socket, ctx.timeout)?, ctx.json, args)
        }
        Command::Apply(args) => stack::apply(&mut ctx, &args),
        Command::Export => stack::export(&mut ctx),
        Command::Version => {
            if !ctx.json {
                writeln!(ctx.out, "vswitchctl {}", env!("CARGO_PKG_VERSION"))?;
            }
            ctx.show(&Request::Version, |w, v: VersionInfo| {
                writeln!(w, "vswitchd {} (protocol {})", v.version, v.protocol)
            })
        }
        Command::Ping => {
            let path = ctx.cli_socket.display().to_string();
            ctx.show(&Request::Ping, |w, _: Value| writeln!(w, "vswitchd at {path} is alive"))
        }
    }
}

fn sandbox(ctx: &mut Ctx, cmd: SandboxCmd) -> Result<()> {
    match cmd {
        SandboxCmd::Create { name, dns, dns_search, dns_options, extra_hosts, netns } => {
            let req = Request::SandboxCreate { name, dns, dns_search, dns_options, extra_hosts, netns };
            ctx.show(&req, |w, s: SandboxInfo| writeln!(w, "{}", s.name))
        }
        SandboxCmd::Ls { format } => {
            list_of(ctx, &Request::SandboxLs, &["sandbox", "ls"], format.as_deref(), |s: &Vec<SandboxInfo>| {
                render::sandboxes(s)
            })
        }
        SandboxCmd::Inspect { names, pretty, format } => {
            if pretty && ctx.json {
                usage_conflict(&["sandbox", "inspect"], "the argument '--pretty' cannot be used with '--json'");
            }
            refuse_format_with_json(ctx, &["sandbox", "inspect"], format.as_deref());
            let (values, infos) = inspect_each::<SandboxInfo>(ctx, names, |name| Request::SandboxInspect { name })?;
            if pretty {
                render::sandbox_inspect(&mut ctx.out, &infos)?;
                Ok(())
            } else {
                print_inspected(ctx, values, format.as_deref())
            }
        }
        SandboxCmd::Rm { names } => remove_each(ctx, names, |name| Request::SandboxRm { name }),
        SandboxCmd::Publish { sandbox, network, publish } => {
            let req = Request::SandboxPublish { sandbox, network, publish: mappings(publish) };
            ctx.show(&req, |_, _: SandboxInfo| Ok(()))
        }
        SandboxCmd::Unpublish { sandbox, network, publish } => {
            let req = Request::SandboxUnpublish { sandbox, network, publish: mappings(publish) };
            ctx.show(&req, |_, _: SandboxInfo| Ok(()))
        }
    }
}

/// `port SANDBOX [PORT[/PROTO]]`: the sandbox's published ports, printed as `docker port` prints
/// them (with `--json`: the mappings as the daemon keeps them).
fn port_cmd(ctx: &mut Ctx, sandbox: String, port: Option<String>) -> Result<()> {
    let value = ctx.call(&Request::SandboxInspect { name: sandbox.clone() })?;
    let info: SandboxInfo =
        serde_json::from_value(value).map_err(|e| anyhow::anyhow!("unexpected reply from vswitchd: {e}"))?;
    let all: Vec<ctl::PortMapping> = info.endpoints.iter().flat_map(|e| e.publish.iter().copied()).collect();
    let lines = match &port {
        None => ctl::publish::docker_port_lines(&all, info.listens_ipv6),
        Some(port) => ctl::publish::docker_port_lookup(&sandbox, port, &all, info.listens_ipv6)?,
    };
    if ctx.json {
        let shown: Vec<&ctl::PortMapping> = match &port {
            None => all.iter().collect(),
            Some(_) => all.iter().filter(|m| m.answers_port_query(port.as_deref().unwrap_or_default())).collect(),
        };
        return ctx.print_json(&serde_json::to_value(shown)?);
    }
    for line in lines {
        writeln!(ctx.out, "{line}")?;
    }
    Ok(())
}

fn service(ctx: &mut Ctx, cmd: ServiceCmd) -> Result<()> {
    match cmd {
        ServiceCmd::Publish { name, network, publish, mode } => {
            let req = Request::ServicePublish { name, network, publish: mappings(publish), mode };
            ctx.show(&req, |_, _: ServiceInfo| Ok(()))
        }
        ServiceCmd::Ls { format } => {
            list_of(ctx, &Request::ServiceLs, &["service", "ls"], format.as_deref(), |s: &Vec<ServiceInfo>| {
                render::services(s)
            })
        }
        ServiceCmd::Inspect { names, format } => {
            refuse_format_with_json(ctx, &["service", "inspect"], format.as_deref());
            let (values, _) = inspect_each::<ServiceInfo>(ctx, names, |name| Request::ServiceInspect { name })?;
            print_inspected(ctx, values, format.as_deref())
        }
        ServiceCmd::Rm { names } => remove_each(ctx, names, |name| Request::ServiceRm { name }),
    }
}

fn network(ctx: &mut Ctx, cmd: NetworkCmd) -> Result<()> {
    match cmd {
        NetworkCmd::Create {
            name,
            driver,
            subnet,
            gateway,
            ip_range,
            aux_addresses,
            ipv4,
            ipv6,
            internal,
            mtu,
            attachable,
            vni,
            opts,
            labels,
            config_only,
            config_from,
            ipam_driver: _,
        } => {
            let (subnet, subnet6) = cli::per_family("subnet", subnet).map_err(anyhow::Error::msg)?;
            let (gateway, gateway6) = cli::per_family("gateway", gateway).map_err(anyhow::Error::msg)?;
            let (ip_range, ip_range6) = cli::per_family("ip-range", ip_range).map_err(anyhow::Error::msg)?;
            let req = Request::NetworkCreate(CreateNetwork {
                name,
                driver: driver.into(),
                subnet,
                gateway,
                ip_range,
                enable_ipv4: ipv4,
                enable_ipv6: ipv6,
                subnet6,
                gateway6,
                ip_range6,
                aux_addresses: aux_addresses.into_iter().collect(),
                internal,
                mtu,
                attachable,
                vni,
                options: opts.into_iter().collect(),
                labels: labels.into_iter().collect(),
                config_only,
                config_from,
            });
            ctx.show(&req, |w, n: NetworkInfo| writeln!(w, "{}", n.id))
        }
        NetworkCmd::Ls { quiet, filter, no_trunc, format } => {
            refuse_format_with_json(ctx, &["network", "ls"], format.as_deref());
            network_ls(ctx, quiet, &filter, no_trunc, format.as_deref())
        }
        NetworkCmd::Prune { force } => network_prune(ctx, force),
        NetworkCmd::Inspect { names, format } => {
            refuse_format_with_json(ctx, &["network", "inspect"], format.as_deref());
            let (values, _) = inspect_each::<NetworkInfo>(ctx, names, |name| Request::NetworkInspect { name })?;
            print_inspected(ctx, values, format.as_deref())
        }
        NetworkCmd::Rm { names } => remove_each(ctx, names, |name| Request::NetworkRm { name }),
        NetworkCmd::Connect {
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
            driver_opts,
        } => {
            // --ifname and Docker's --driver-opt name the interface alike: once.
            let mut names = ifname.into_iter().chain(driver_opts);
            let ifname = names.next();
            if names.any(|other| Some(&other) != ifname.as_ref()) {
                usage_conflict(&["network", "connect"], "the interface is named twice, differently");
            }
            let req = Request::NetworkConnect {
                network,
                sandbox,
                ip,
                ip6,
                aliases,
                mac,
                publish: mappings(publish),
                service,
                port_type: port_type.into(),
                gw_priority,
                ifname,
            };
            ctx.show(&req, |_, _: EndpointInfo| Ok(()))
        }
        NetworkCmd::Disconnect { network, sandbox } => {
            ctx.show(&Request::NetworkDisconnect { network, sandbox }, |_, _: Value| Ok(()))
        }
        NetworkCmd::Key(cli::KeyCmd::Rotate { network }) => ctx
            .show(&Request::NetworkKeyRotate { network }, |w, r: ctl::proto::KeyEpoch| {
                writeln!(w, "{}: key epoch {}", r.network, r.epoch)
            }),
    }
}

fn peer(ctx: &mut Ctx, cmd: PeerCmd) -> Result<()> {
    match cmd {
        PeerCmd::Add { addr, networks } => ctx.show(&Request::PeerAdd { addr, networks }, |_, _: Value| Ok(())),
        PeerCmd::Ls { format } => {
            list_of(ctx, &Request::PeerLs, &["peer", "ls"], format.as_deref(), |p: &Vec<ctl::proto::PeerInfo>| {
                render::peers(p)
            })
        }
        PeerCmd::Rm { addr } => ctx.show(&Request::PeerRm { addr }, |_, _: Value| Ok(())),
    }
}

fn node(ctx: &mut Ctx, cmd: NodeCmd) -> Result<()> {
    match cmd {
        NodeCmd::Ls { format } => list(
            ctx,
            &Request::NodeLs,
            &["node", "ls"],
            format.as_deref(),
            |w, l: &ctl::proto::NodeList| render::nodes(w, l),
            |l| render::node_rows(l, false),
        ),
        NodeCmd::Rm { name } => ctx.show(&Request::NodeRm { name: name.clone() }, |w, r: ctl::proto::NodeRmResult| {
            writeln!(w, "{name}: released {} keys", r.released)
        }),
    }
}

fn fdb(ctx: &mut Ctx, cmd: FdbCmd) -> Result<()> {
    match cmd {
        FdbCmd::Show { network, format } => {
            list_of(ctx, &Request::FdbShow { network }, &["fdb", "show"], format.as_deref(), |e: &Vec<FdbEntry>| {
                render::fdb(e)
            })
        }
        FdbCmd::Add { network, mac, port } => ctx.show(&Request::FdbAdd { network, mac, port }, |_, _: Value| Ok(())),
        FdbCmd::Flush { network } => {
            ctx.show(&Request::FdbFlush { network }, |w, r: FlushResult| writeln!(w, "flushed {} entries", r.flushed))
        }
    }
}

/// Exits with clap's usage error (code 2) for the verb at `path`: for a
/// conflict with the global `--json`, which clap's own check misses when
/// it is given before the verb.
fn usage_conflict(path: &[&str], msg: &str) -> ! {
    let mut cmd = Cli::command();
    cmd.build();
    let verb = path.iter().try_fold(&mut cmd, |c, name| c.find_subcommand_mut(name));
    verb.expect("the verb exists").error(clap::error::ErrorKind::ArgumentConflict, msg).exit()
}

/// Refuses `--format` together with `--json`: each says how to print.
fn refuse_format_with_json(ctx: &Ctx, path: &[&str], format: Option<&str>) {
    if format.is_some() && ctx.json {
        usage_conflict(path, "the argument '--format' cannot be used with '--json'");
    }
}

/// What `inspect` prints: the replies as a JSON array, as `docker … inspect`
/// does, or each through `--format`.
fn print_inspected(ctx: &mut Ctx, values: Vec<Value>, format: Option<&str>) -> Result<()> {
    match format.map(Format::for_inspect).transpose().map_err(anyhow::Error::msg)? {
        None | Some(Format::Default) => ctx.print_json(&Value::Array(values)),
        Some(format) => format.write(&mut ctx.out, &values, &Value::Null),
    }
}

/// Inspects each of `names` in turn (stopping at the first error), checking
/// that every reply is a `T`: the raw replies, for the JSON array `inspect`
/// prints, and the decoded ones.
fn inspect_each<T: DeserializeOwned>(
    ctx: &mut Ctx,
    names: Vec<String>,
    req: impl Fn(String) -> Request,
) -> Result<(Vec<Value>, Vec<T>)> {
    let mut values = Vec::with_capacity(names.len());
    let mut typed = Vec::with_capacity(names.len());
    for name in names {
        let value = ctx.call(&req(name))?;
        typed.push(
            serde_json::from_value::<T>(value.clone())
                .map_err(|e| anyhow::anyhow!("unexpected reply from vswitchd: {e}"))?,
        );
        values.push(value);
    }
    Ok((values, typed))
}

/// Removes each of `names` in turn, as `docker network rm` does: a refusal
/// is reported and the rest are still removed; the command fails if any was
/// refused.
fn remove_each(ctx: &mut Ctx, names: Vec<String>, req: impl Fn(String) -> Request) -> Result<()> {
    let mut replies = Vec::new();
    let mut refused = 0usize;
    let several = names.len() > 1;
    for name in names {
        match ctx.call(&req(name.clone())) {
            Ok(reply) => {
                if !ctx.json {
                    writeln!(ctx.out, "{name}")?;
                }
                replies.push(reply);
            }
            // The daemon refused this one (its message says why): go on.
            Err(e) if several && matches!(e.downcast_ref::<ClientError>(), Some(ClientError::Daemon(_))) => {
                eprintln!("Error: {e:#}");
                refused += 1;
            }
            Err(e) => return Err(e),
        }
    }
    if ctx.json {
        ctx.print_json(&Value::Array(replies))?;
    }
    match refused {
        0 => Ok(()),
        n => Err(anyhow::anyhow!("{n} of the names given could not be removed")),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;
    use std::time::Duration;

    /// `--timeout 0` (the default) waits for every answer as long as the
    /// daemon takes; any other value is the limit of each read and write.
    #[test]
    fn the_default_connection_waits_and_timeout_bounds_it() {
        let dir = std::env::temp_dir().join(format!("vswitchctl-timeout-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("ctl.sock");
        let _ = std::fs::remove_file(&socket);
        let _listener = UnixListener::bind(&socket).unwrap();
        assert_eq!(super::connect(&socket, 0).unwrap().timeout(), None);
        assert_eq!(super::connect(&socket, 7).unwrap().timeout(), Some(Duration::from_secs(7)));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
