//! Support for tests of the switch's embedded DNS: running `dig` inside a
//! sandbox and parsing what it printed ([`dig`]), a `dnsmasq` upstream kept
//! in the foreground and killed on drop ([`Dnsmasq`]), a lab where the
//! daemon runs in its own namespace and reaches upstream servers in another
//! one over a veth ([`DnsLab`]), minimal DNS messages and Ethernet/IPv4/UDP
//! frames for raw injection ([`query_message`], [`parse_message`],
//! [`ipv4_udp_frame`]), and the daemon's DNS verbs and counters.

use std::fmt;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ctl::proto::{DnsRecord, DnsStats, EndpointInfo, PortStats, SandboxInfo};

use crate::daemon::Daemon;
use crate::names::unique_prefix;
use crate::netns::{NETNS_DIR, in_netns, netns_exec};
use crate::process::{output_with_timeout, text, wait_deadline};
use crate::underlay::{UNDERLAY_IF, Underlay, UnderlayHost, ip};

/// Where Debian's `dnsmasq-base` installs dnsmasq.
pub const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// Where the daemon writes a sandbox's resolver configuration (`ip netns
/// exec` bind-mounts the files of `/etc/netns/NAME/` over `/etc/`).
pub fn resolv_conf_path(sandbox: &str) -> PathBuf {
    Path::new("/etc/netns").join(sandbox).join("resolv.conf")
}

/// The meaningful lines of a `resolv.conf` (comments and blank lines
/// dropped, whitespace runs collapsed to one space).
pub fn resolv_conf_lines(content: &str) -> Vec<String> {
    content
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .collect()
}

/// True if `dig` and `dnsmasq` can run. Without them: panics when `CI` is
/// set (their packages are in `scripts/test`'s list), otherwise prints a
/// loud SKIP line and returns false.
pub fn require_dns_tools(test: &str) -> bool {
    let runs = |cmd: &str, arg: &str| {
        let mut c = Command::new(cmd);
        c.arg(arg);
        output_with_timeout(&mut c, Duration::from_secs(30)).is_ok_and(|o| o.status.success())
    };
    let missing: Vec<&str> =
        [("dig", runs("dig", "-v"), "bind9-dnsutils"), ("dnsmasq", runs(DNSMASQ, "--version"), "dnsmasq-base")]
            .into_iter()
            .filter(|(_, ok, _)| !ok)
            .map(|(_, _, pkg)| pkg)
            .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "{test}: {missing:?} not installed, and CI is set");
    eprintln!("SKIP {test}: needs {} (apt-get install {}) ==================", missing.join(", "), missing.join(" "));
    false
}

pub use crate::wait::wait_for;

// ---------------------------------------------------------------------------- dig

/// One resource record of dig's ANSWER section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigAnswer {
    /// Owner name as printed (with the trailing dot).
    pub name: String,
    /// Time to live.
    pub ttl: u32,
    /// Type, e.g. `A`, `PTR`, `TXT`.
    pub rtype: String,
    /// The record data as printed (TXT strings keep their quotes).
    pub data: String,
}

/// What one `dig` run printed, parsed (the last answer it got, when it
/// retried over TCP after a truncated UDP answer).
#[derive(Debug, Clone)]
pub struct Dig {
    /// The command line (for messages).
    pub command: String,
    /// True if dig exited with status 0.
    pub exited_ok: bool,
    /// The answer's RCODE (`NOERROR`, `NXDOMAIN`, `SERVFAIL`, `REFUSED`, …);
    /// None if no answer arrived.
    pub status: Option<String>,
    /// Header flags (`qr`, `aa`, `tc`, `rd`, `ra`, …).
    pub flags: Vec<String>,
    /// The ANSWER section.
    pub answers: Vec<DigAnswer>,
    /// Transport of the last answer as dig reports it (`UDP` or `TCP`).
    pub transport: Option<String>,
    /// True if dig said "Truncated, retrying in TCP mode".
    pub retried_over_tcp: bool,
    /// dig's whole stdout and stderr.
    pub output: String,
}

impl Dig {
    /// The addresses of the A records, in answer order.
    pub fn addrs(&self) -> Vec<Ipv4Addr> {
        self.answers.iter().filter(|a| a.rtype == "A").filter_map(|a| a.data.parse().ok()).collect()
    }

    /// The data of the answers of type `rtype`, in answer order.
    pub fn data_of(&self, rtype: &str) -> Vec<String> {
        self.answers.iter().filter(|a| a.rtype == rtype).map(|a| a.data.clone()).collect()
    }

    /// True if the status is `status`.
    pub fn is(&self, status: &str) -> bool {
        self.status.as_deref() == Some(status)
    }

    /// True if the header has flag `flag` (e.g. `tc`).
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

impl fmt::Display for Dig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` -> {}:\n{}", self.command, self.status.as_deref().unwrap_or("no answer"), self.output)
    }
}

/// Runs `dig +time=4 +tries=2 ARGS…` inside sandbox `ns` (with `ip netns
/// exec`, so without `@SERVER` dig asks the nameserver of the sandbox's
/// `/etc/netns/NS/resolv.conf`) and parses what it printed. Later options
/// in `args` override the defaults.
pub fn dig(ns: &str, args: &[&str]) -> Dig {
    let mut full = vec!["+time=4", "+tries=2"];
    full.extend_from_slice(args);
    let out = netns_exec(ns, "dig", &full);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut d = parse_dig(&stdout);
    d.command = format!("dig {} (in {ns})", full.join(" "));
    d.exited_ok = out.status.success();
    d.output = format!("{stdout}{stderr}");
    d
}

/// Parses dig's default output (the last answer block wins).
pub fn parse_dig(output: &str) -> Dig {
    let mut d = Dig {
        command: String::new(),
        exited_ok: false,
        status: None,
        flags: Vec::new(),
        answers: Vec::new(),
        transport: None,
        retried_over_tcp: false,
        output: output.to_owned(),
    };
    let mut in_answer = false;
    for line in output.lines() {
        let line = line.trim_end();
        if line.contains("Truncated, retrying in TCP mode") {
            d.retried_over_tcp = true;
        }
        if let Some(rest) = line.strip_prefix(";; ->>HEADER<<-") {
            // A new answer block: forget the previous one.
            d.answers.clear();
            d.flags.clear();
            d.status = rest.split(',').find_map(|p| p.trim().strip_prefix("status: ").map(str::to_owned));
            in_answer = false;
        } else if let Some(rest) = line.strip_prefix(";; flags:") {
            let flags = rest.split(';').next().unwrap_or("");
            d.flags = flags.split_whitespace().map(str::to_owned).collect();
        } else if line.starts_with(";; ANSWER SECTION:") {
            in_answer = true;
        } else if line.is_empty() || line.starts_with(";;") {
            in_answer = false;
            if let Some(rest) = line.strip_prefix(";; SERVER:") {
                d.transport = rest.rsplit_once('(').map(|(_, t)| t.trim_end_matches(')').to_owned());
            }
        } else if in_answer && !line.starts_with(';') {
            let mut words = line.split_whitespace();
            let (Some(name), Some(ttl), Some(_class), Some(rtype)) =
                (words.next(), words.next(), words.next(), words.next())
            else {
                continue;
            };
            d.answers.push(DigAnswer {
                name: name.to_owned(),
                ttl: ttl.parse().unwrap_or(u32::MAX),
                rtype: rtype.to_owned(),
                data: words.collect::<Vec<_>>().join(" "),
            });
        }
    }
    d
}

/// `getent hosts KEY` inside `ns` (the libc resolver: the sandbox's
/// `resolv.conf`, search domains, `ndots`): each line as (address, names).
/// Empty when nothing was found.
pub fn getent_hosts(ns: &str, key: &str) -> Vec<(String, Vec<String>)> {
    let out = netns_exec(ns, "getent", &["hosts", key]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.to_owned(), w.map(str::to_owned).collect()))
        })
        .collect()
}

// ---------------------------------------------------------------------------- dnsmasq

/// dnsmasq options making every name it has no data for local, so that it
/// answers NXDOMAIN for them (dotted names and bare ones).
pub const NXDOMAIN_FOR_UNKNOWN: [&str; 2] = ["--local=/#/", "--local=//"];

/// A `dnsmasq` serving a test zone on `ADDR:53` inside a namespace, in the
/// foreground, logging every query; killed when dropped.
pub struct Dnsmasq {
    child: Option<Child>,
    dir: PathBuf,
    addr: IpAddr,
    ns: String,
}

impl Dnsmasq {
    /// Starts `dnsmasq` in namespace `ns`, listening on `addr` port 53 (UDP
    /// and TCP) only, with no upstream servers, no `/etc/hosts`, no config
    /// file, every query logged, and `extra` options (e.g.
    /// `--address=/up.test/192.0.2.77`). Names it has no data for are
    /// answered REFUSED (it has no server to ask), or NXDOMAIN with
    /// [`NXDOMAIN_FOR_UNKNOWN`] among `extra`. Waits until it answers a
    /// query; panics with its log if it does not within 10 s.
    pub fn start(ns: &str, addr: impl Into<IpAddr>, extra: &[String]) -> Dnsmasq {
        let addr = addr.into();
        let dir = std::env::temp_dir().join(format!("vswitch-dnsmasq-{}", unique_prefix()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let log = File::create(dir.join("dnsmasq.log")).unwrap_or_else(|e| panic!("create dnsmasq log: {e}"));
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", Path::new(NETNS_DIR).join(ns).display()))
            .args(["--", DNSMASQ, "--keep-in-foreground", "--no-resolv", "--no-hosts", "--conf-file=/dev/null"])
            .args(["--log-facility=-", "--log-queries", "--pid-file=", "--bind-interfaces", "--port=53"])
            .arg(format!("--listen-address={addr}"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map(Stdio::from).unwrap_or_else(|_| Stdio::null()))
            .stderr(Stdio::from(log));
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
        let mut d = Dnsmasq { child: Some(child), dir, addr, ns: ns.to_owned() };
        let target = SocketAddr::from((addr, 53));
        let ready = wait_for(Duration::from_secs(10), || {
            if let Some(c) = d.child.as_mut()
                && !matches!(c.try_wait(), Ok(None))
            {
                panic!("dnsmasq exited at startup; log:\n{}", d.log());
            }
            udp_query(ns, target, 0x5eed, "ready.probe.invalid", TYPE_A, Duration::from_millis(200)).ok()
        });
        assert!(ready.is_some(), "dnsmasq on {addr} in {ns} does not answer; log:\n{}", d.log());
        d
    }

    /// The IPv4 address it listens on (port 53); panics for a dnsmasq
    /// started on an IPv6 address (see [`Dnsmasq::ip`]).
    pub fn addr(&self) -> Ipv4Addr {
        match self.addr {
            IpAddr::V4(addr) => addr,
            IpAddr::V6(addr) => panic!("this dnsmasq listens on IPv6 {addr}: ask Dnsmasq::ip"),
        }
    }

    /// The address it listens on (port 53), of either family.
    pub fn ip(&self) -> IpAddr {
        self.addr
    }

    /// Its namespace.
    pub fn netns(&self) -> &str {
        &self.ns
    }

    /// Its log so far (startup lines, then one `query[TYPE] NAME from ADDR`
    /// line per query).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dnsmasq.log")).unwrap_or_default()
    }

    /// The `query[…] NAME from …` lines for `name` (case-insensitive).
    pub fn queries_for(&self, name: &str) -> Vec<String> {
        let needle = format!("] {} from ", name.to_ascii_lowercase());
        self.log()
            .lines()
            .filter(|l| l.contains("query[") && l.to_ascii_lowercase().contains(&needle))
            .map(str::to_owned)
            .collect()
    }

    /// Waits until a query for `name` shows in the log.
    pub fn wait_queried(&self, name: &str, timeout: Duration) -> bool {
        wait_for(timeout, || (!self.queries_for(name).is_empty()).then_some(())).is_some()
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = wait_deadline(&mut c, Duration::from_secs(5));
        }
        if std::thread::panicking() {
            eprintln!("==== dnsmasq {} log ====\n{}==== end of dnsmasq log ====", self.addr, self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------- lab

/// The answer of the primary upstream for `*.up.test` (and `up.test`).
pub const UP1_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 77);
/// The answer of the secondary upstream for `*.up.test`.
pub const UP2_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 88);
/// `web.corp.test` on the primary upstream (for search-domain tests).
pub const WEB_CORP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
/// A TXT name on the primary upstream whose answer does not fit 512 bytes.
pub const BIG_TXT: &str = "big.up.test";
/// A TXT name on the primary upstream whose answer (about 2 KB, sent over
/// UDP when the asker offers EDNS 4096) does not fit a 1500-byte MTU.
pub const HUGE_TXT: &str = "huge.up.test";

/// The three 250-byte strings of [`BIG_TXT`] (about 800 bytes in all).
pub fn big_txt_strings() -> [String; 3] {
    ['a', 'b', 'c'].map(|c| std::iter::repeat_n(c, 250).collect())
}

/// The eight 250-byte strings of [`HUGE_TXT`] (about 2 KB in all).
pub fn huge_txt_strings() -> [String; 8] {
    ['p', 'q', 'r', 's', 't', 'u', 'v', 'w'].map(|c| std::iter::repeat_n(c, 250).collect())
}

/// A daemon in its own network namespace (a host on an [`Underlay`]) whose
/// upstream DNS servers live in a second namespace on the same segment:
///
/// - `up1` (`NET.2`): dnsmasq answering `*.up.test` with [`UP1_ANSWER`],
///   `web.corp.test` with [`WEB_CORP`], [`BIG_TXT`] and [`HUGE_TXT`] (UDP
///   answers up to 4096 bytes), NXDOMAIN otherwise;
/// - `up2` (`NET.4`): dnsmasq answering `*.up.test` with [`UP2_ANSWER`],
///   REFUSED otherwise;
/// - `dead` (`NET.3`): an address of the upstream host where nothing
///   listens on port 53 (ICMP port unreachable);
/// - `silent` (`NET.9`): an address of the upstream host where a UDP socket
///   bound to port 53 never reads: queries vanish, with no ICMP error (an
///   address nobody has would turn into "host unreachable" errors once ARP
///   gives up).
///
/// Fields drop in order: the daemon (and the sandboxes it made) first, then
/// the dnsmasqs, then the namespaces.
pub struct DnsLab {
    /// The daemon, running in [`DnsLab::daemon_host`]'s namespace.
    pub daemon: Daemon,
    /// Primary upstream.
    pub up1: Dnsmasq,
    /// Secondary upstream.
    pub up2: Dnsmasq,
    /// Address with nothing listening on port 53.
    pub dead: Ipv4Addr,
    /// Address where UDP queries to port 53 go unanswered.
    pub silent: Ipv4Addr,
    /// The socket that swallows them.
    _black_hole: UdpSocket,
    /// The daemon's host.
    pub daemon_host: UnderlayHost,
    /// The upstreams' host.
    pub upstream_host: UnderlayHost,
    underlay: Underlay,
}

impl DnsLab {
    /// Builds the lab on the underlay `net.0/24` (the daemon's host is
    /// `net.1`) and starts the daemon with the arguments
    /// `daemon_args(up1, up2, dead, silent)` returns (e.g. `["--dns", up1]`):
    /// a closure, since they name addresses the lab picks.
    pub fn start(
        net: [u8; 3],
        daemon_args: impl FnOnce(Ipv4Addr, Ipv4Addr, Ipv4Addr, Ipv4Addr) -> Vec<String>,
    ) -> DnsLab {
        let underlay = Underlay::new(net, 2);
        let (daemon_host, upstream_host) = (underlay.host(0).clone(), underlay.host(1).clone());
        let addr = |last: u8| Ipv4Addr::new(net[0], net[1], net[2], last);
        let (up1_addr, dead, up2_addr, silent) = (addr(2), addr(3), addr(4), addr(9));
        for extra in [dead, up2_addr, silent] {
            ip(&["-n", &upstream_host.ns, "addr", "add", &format!("{extra}/24"), "dev", UNDERLAY_IF]);
        }
        let black_hole = in_netns(&upstream_host.ns, move || UdpSocket::bind((silent, 53)))
            .and_then(|r| r)
            .unwrap_or_else(|e| panic!("bind {silent}:53 in {}: {e}", upstream_host.ns));
        let (txt, huge) = (big_txt_strings().join(","), huge_txt_strings().join(","));
        let up1 = Dnsmasq::start(
            &upstream_host.ns,
            up1_addr,
            &[
                format!("--address=/up.test/{UP1_ANSWER}"),
                format!("--host-record=web.corp.test,{WEB_CORP}"),
                format!("--txt-record={BIG_TXT},{txt}"),
                format!("--txt-record={HUGE_TXT},{huge}"),
                "--edns-packet-max=4096".to_owned(),
                NXDOMAIN_FOR_UNKNOWN[0].to_owned(),
                NXDOMAIN_FOR_UNKNOWN[1].to_owned(),
            ],
        );
        let up2 = Dnsmasq::start(&upstream_host.ns, up2_addr, &[format!("--address=/up.test/{UP2_ANSWER}")]);
        let args = daemon_args(up1_addr, up2_addr, dead, silent);
        let daemon = Daemon::builder().in_netns(daemon_host.netns_path()).args(&args).start();
        DnsLab { daemon, up1, up2, dead, silent, _black_hole: black_hole, daemon_host, upstream_host, underlay }
    }

    /// The underlay (for extra namespaces).
    pub fn underlay(&mut self) -> &mut Underlay {
        &mut self.underlay
    }
}

// ---------------------------------------------------------------------------- daemon verbs

impl Daemon {
    /// `sandbox create NAME [--dns IP]… [--dns-search DOMAIN]…`.
    pub fn sandbox_create_dns(&self, name: &str, dns: &[Ipv4Addr], search: &[&str]) -> SandboxInfo {
        let dns: Vec<String> = dns.iter().map(ToString::to_string).collect();
        let mut args = vec!["sandbox", "create", name];
        for d in &dns {
            args.extend(["--dns", d.as_str()]);
        }
        for s in search {
            args.extend(["--dns-search", s]);
        }
        self.ctl_json(&args)
    }

    /// `network connect NET SANDBOX [--ip IP] [--alias A]…`.
    pub fn connect_aliases(&self, network: &str, sandbox: &str, ip: Option<&str>, aliases: &[&str]) -> EndpointInfo {
        let mut args = vec!["network", "connect", network, sandbox];
        if let Some(ip) = ip {
            args.extend(["--ip", ip]);
        }
        for a in aliases {
            args.extend(["--alias", a]);
        }
        self.ctl_json(&args)
    }

    /// `sandbox inspect NAME`: its one element (the verb prints a JSON
    /// array, like `docker inspect`).
    pub fn sandbox_inspect(&self, name: &str) -> SandboxInfo {
        let mut list: Vec<SandboxInfo> = self.ctl_json(&["sandbox", "inspect", name]);
        assert_eq!(list.len(), 1, "sandbox inspect {name}: expected one element: {list:#?}");
        list.remove(0)
    }

    /// `dns ls [NET]`.
    pub fn dns_ls(&self, network: Option<&str>) -> Vec<DnsRecord> {
        match network {
            Some(n) => self.ctl_json(&["dns", "ls", n]),
            None => self.ctl_json(&["dns", "ls"]),
        }
    }

    /// The DNS counters of network `net`'s gateway port (`gw:NET` in
    /// `stats`). Panics if the row or its `dns` object is missing.
    pub fn dns_stats(&self, net: &str) -> DnsStats {
        let port = format!("gw:{net}");
        let rows: Vec<PortStats> = self.ctl_json(&["stats"]);
        let row = rows.iter().find(|r| r.port == port).unwrap_or_else(|| {
            panic!("no {port} row in stats: {:?}", rows.iter().map(|r| &r.port).collect::<Vec<_>>())
        });
        row.dns.unwrap_or_else(|| panic!("{port} has no dns counters: {row:?}"))
    }
}

/// Field-by-field `after - before` of DNS counters (saturating), for
/// messages and assertions on what a step moved.
pub fn dns_delta(before: &DnsStats, after: &DnsStats) -> DnsStats {
    let d = |a: u64, b: u64| a.saturating_sub(b);
    DnsStats {
        queries: d(after.queries, before.queries),
        answered_locally: d(after.answered_locally, before.answered_locally),
        nxdomain: d(after.nxdomain, before.nxdomain),
        nodata: d(after.nodata, before.nodata),
        forwarded: d(after.forwarded, before.forwarded),
        upstream_failures: d(after.upstream_failures, before.upstream_failures),
        malformed: d(after.malformed, before.malformed),
        refused: d(after.refused, before.refused),
        refused_over_limit: d(after.refused_over_limit, before.refused_over_limit),
        truncated: d(after.truncated, before.truncated),
        tcp_closed_idle: d(after.tcp_closed_idle, before.tcp_closed_idle),
    }
}

/// The reverse-lookup name of `ip` (`d.c.b.a.in-addr.arpa`).
pub fn ptr_name(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("{d}.{c}.{b}.{a}.in-addr.arpa")
}

// ---------------------------------------------------------------------------- DNS messages

/// QTYPE A.
pub const TYPE_A: u16 = 1;
/// QTYPE PTR.
pub const TYPE_PTR: u16 = 12;
/// QTYPE AAAA.
pub const TYPE_AAAA: u16 = 28;
/// RCODE SERVFAIL.
pub const RCODE_SERVFAIL: u8 = 2;
/// RCODE REFUSED.
pub const RCODE_REFUSED: u8 = 5;

/// A DNS query (RD set, one question, class IN) for `name` and `qtype`.
pub fn query_message(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // QD=1
    for label in name.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    m
}

/// One resource record of a parsed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Owner name, lowercase, without the trailing dot.
    pub name: String,
    /// Type.
    pub rtype: u16,
    /// Time to live.
    pub ttl: u32,
    /// Raw RDATA.
    pub data: Vec<u8>,
}

impl Record {
    /// The address of an A record.
    pub fn ipv4(&self) -> Option<Ipv4Addr> {
        (self.rtype == TYPE_A && self.data.len() == 4)
            .then(|| Ipv4Addr::new(self.data[0], self.data[1], self.data[2], self.data[3]))
    }
}

/// A parsed DNS message (header, questions, answers; the other sections
/// are not decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// ID.
    pub id: u16,
    /// QR bit: a response.
    pub response: bool,
    /// TC bit.
    pub truncated: bool,
    /// RCODE (low 4 bits).
    pub rcode: u8,
    /// Questions as (name, type).
    pub questions: Vec<(String, u16)>,
    /// The answer section.
    pub answers: Vec<Record>,
}

/// Parses a DNS message; None if it is malformed.
pub fn parse_message(b: &[u8]) -> Option<Message> {
    let u16_at = |i: usize| Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]));
    let id = u16_at(0)?;
    let flags = u16_at(2)?;
    let (qd, an) = (u16_at(4)?, u16_at(6)?);
    let mut pos = 12;
    let mut questions = Vec::new();
    for _ in 0..qd {
        let (name, next) = read_name(b, pos)?;
        questions.push((name, u16_at(next)?));
        pos = next + 4;
    }
    let mut answers = Vec::new();
    for _ in 0..an {
        let (name, next) = read_name(b, pos)?;
        let rtype = u16_at(next)?;
        let ttl = u32::from_be_bytes(b.get(next + 4..next + 8)?.try_into().ok()?);
        let len = usize::from(u16_at(next + 8)?);
        let data = b.get(next + 10..next + 10 + len)?.to_vec();
        answers.push(Record { name, rtype, ttl, data });
        pos = next + 10 + len;
    }
    Some(Message {
        id,
        response: flags & 0x8000 != 0,
        truncated: flags & 0x0200 != 0,
        rcode: (flags & 0x000f) as u8,
        questions,
        answers,
    })
}

/// Reads a (possibly compressed) name at `pos`: (lowercase name without
/// the trailing dot, position after the name).
pub fn read_name(b: &[u8], mut pos: usize) -> Option<(String, usize)> {
    let mut labels = Vec::new();
    let mut end = None;
    for _ in 0..128 {
        let len = *b.get(pos)?;
        match len {
            0 => {
                let name = labels.join(".");
                return Some((name, end.unwrap_or(pos + 1)));
            }
            l if l & 0xc0 == 0xc0 => {
                end.get_or_insert(pos + 2);
                pos = usize::from(u16::from_be_bytes([l & 0x3f, *b.get(pos + 1)?]));
            }
            l if l & 0xc0 == 0 => {
                let label = b.get(pos + 1..pos + 1 + usize::from(l))?;
                labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
                pos += 1 + usize::from(l);
            }
            _ => return None,
        }
    }
    None
}

/// Sends one query for `name`/`qtype` from namespace `ns` to `server` over
/// UDP and waits up to `timeout` for the response with the same ID.
pub fn udp_query(
    ns: &str,
    server: SocketAddr,
    id: u16,
    name: &str,
    qtype: u16,
    timeout: Duration,
) -> std::io::Result<Message> {
    let any: SocketAddr = if server.is_ipv4() { (Ipv4Addr::UNSPECIFIED, 0).into() } else { "[::]:0".parse().unwrap() };
    let socket = in_netns(ns, move || UdpSocket::bind(any))??;
    socket.connect(server)?;
    socket.send(&query_message(id, name, qtype))?;
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no answer from {server}")));
        }
        socket.set_read_timeout(Some(left))?;
        let n = match socket.recv(&mut buf) {
            // Cut short by a stop and continue: wait what is left.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            got => got?,
        };
        if let Some(m) = parse_message(&buf[..n])
            && m.id == id
            && m.response
        {
            return Ok(m);
        }
    }
}

/// Sends `count` queries for `name(i)` (type A, IDs 1..=count) from one UDP
/// socket in namespace `ns` to `server`, `gap` apart, and collects the
/// responses that arrive until `collect` has passed since the first send.
pub fn udp_burst(
    ns: &str,
    server: SocketAddr,
    count: u16,
    name: impl Fn(u16) -> String,
    gap: Duration,
    collect: Duration,
) -> std::io::Result<Vec<Message>> {
    let any: SocketAddr = if server.is_ipv4() { (Ipv4Addr::UNSPECIFIED, 0).into() } else { "[::]:0".parse().unwrap() };
    let socket = in_netns(ns, move || UdpSocket::bind(any))??;
    socket.connect(server)?;
    let receiver = socket.try_clone()?;
    let start = Instant::now();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let left = collect.saturating_sub(start.elapsed());
            if left.is_zero() || receiver.set_read_timeout(Some(left)).is_err() {
                return got;
            }
            match receiver.recv(&mut buf) {
                Ok(n) => got.extend(parse_message(&buf[..n])),
                // Timeouts end the wait; ICMP errors (ECONNREFUSED) and
                // interruptions (EINTR) do not.
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    return got;
                }
                Err(_) => {}
            }
        }
    });
    for id in 1..=count {
        let due = gap * u32::from(id - 1);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        socket.send(&query_message(id, &name(id), TYPE_A))?;
    }
    reader.join().map_err(|_| std::io::Error::other("receiver thread panicked"))
}

// ---------------------------------------------------------------------------- frames

/// An Ethernet/IPv4/UDP frame (TTL 64, DF, valid IPv4 and UDP checksums).
pub fn ipv4_udp_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let mut f = Vec::with_capacity(14 + total);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    let ip_start = f.len();
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&(total as u16).to_be_bytes());
    f.extend_from_slice(&[0x12, 0x34, 0x40, 0x00, 64, 17, 0, 0]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    let ip_sum = checksum(&[&f[ip_start..ip_start + 20]]);
    f[ip_start + 10..ip_start + 12].copy_from_slice(&ip_sum.to_be_bytes());
    let udp_start = f.len();
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&(udp_len as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&(udp_len as u16).to_be_bytes());
    let sum = match checksum(&[&pseudo, &f[udp_start..]]) {
        0 => 0xffff,
        s => s,
    };
    f[udp_start + 6..udp_start + 8].copy_from_slice(&sum.to_be_bytes());
    f
}

/// The Internet checksum of the concatenation of `parts` (each of even
/// length except possibly the last).
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for part in parts {
        for chunk in part.chunks(2) {
            let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
            sum += u32::from(word);
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// If `frame` is Ethernet/IPv4/UDP: (source, source port, destination,
/// destination port, payload).
pub fn parse_udp_frame(frame: &[u8]) -> Option<(Ipv4Addr, u16, Ipv4Addr, u16, &[u8])> {
    if frame.get(12..14)? != [0x08, 0x00] || frame.get(23)? != &17 {
        return None;
    }
    let ihl = usize::from(frame.get(14)? & 0x0f) * 4;
    let ip = frame.get(14..14 + ihl)?;
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let udp = frame.get(14 + ihl..)?;
    let sport = u16::from_be_bytes([*udp.first()?, *udp.get(1)?]);
    let dport = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    let len = usize::from(u16::from_be_bytes([*udp.get(4)?, *udp.get(5)?]));
    Some((src, sport, dst, dport, udp.get(8..len.max(8))?))
}

/// Every DNS response (UDP from port 53) in `frames`, with the frame's
/// destination address.
pub fn dns_responses(frames: &[crate::Frame]) -> Vec<(Ipv4Addr, Message)> {
    frames
        .iter()
        .filter_map(|f| {
            let (_, sport, dst, _, payload) = parse_udp_frame(&f.bytes)?;
            if sport != 53 {
                return None;
            }
            Some((dst, parse_message(payload)?))
        })
        .collect()
}

/// Text of a file, or a note saying why it could not be read.
pub fn read_or_note(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()))
}

/// The `ip netns exec NS cat /etc/resolv.conf` view of a sandbox's resolver file.
pub fn resolv_conf_inside(ns: &str) -> String {
    let out = netns_exec(ns, "cat", &["/etc/resolv.conf"]);
    format!("{}{}", String::from_utf8_lossy(&out.stdout), text(&out.stderr))
}
