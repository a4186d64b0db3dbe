//! A real etcd for cluster tests: [`Etcd`] starts 1 or 3 members (Debian's
//! `etcd-server`, `/usr/bin/etcd`) listening on addresses inside network
//! namespaces the test made, each with its own name and data dir in a
//! per-run temp dir, optionally with TLS from a per-run CA (server
//! certificates carrying the members' IP addresses, one client certificate,
//! `--client-cert-auth`, peer TLS too). Readiness is polled with `etcdctl
//! endpoint health` on a deadline, never slept for. Members can be killed,
//! stopped and restarted on the same data dir (fault tests). Dropping the
//! guard kills every member and removes the temp dir.
//!
//! The certificates are made with the `openssl` command-line tool: the test
//! support then needs no crypto crate of its own (nothing to compile, no
//! dependency of the root package's library), and the files are plain PEM as
//! an operator would make them.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::names::unique_prefix;
use crate::netns::{NETNS_DIR, netns_exec};
use crate::process::{output_with_timeout, text, wait_deadline};
use crate::underlay::UnderlayHost;
use crate::wait::wait_for;

/// The etcd server binary.
pub const ETCD_BIN: &str = "/usr/bin/etcd";
/// The etcd client tool.
pub const ETCDCTL_BIN: &str = "etcdctl";
/// First client port in a namespace (`+ 10 * k` for the k-th member placed in the same one).
pub const CLIENT_PORT: u16 = 2379;
/// How long members may take to become healthy (the machine may be loaded).
pub const READY_TIMEOUT: Duration = Duration::from_secs(45);
/// Longest one `openssl` or `etcdctl` run may take.
const TOOL_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a member runs: a namespace the test made and an address of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdPlace {
    /// The namespace (`/run/netns/<ns>`).
    pub ns: String,
    /// The address the member listens on (clients and peers).
    pub addr: IpAddr,
}

impl From<&UnderlayHost> for EtcdPlace {
    fn from(h: &UnderlayHost) -> Self {
        EtcdPlace { ns: h.ns.clone(), addr: h.addr.into() }
    }
}

/// The PEM files of a TLS-enabled [`Etcd`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    /// The per-run CA certificate (trusted by members and clients).
    pub ca: PathBuf,
    /// A client certificate signed by the CA (extended key usage clientAuth).
    pub client_cert: PathBuf,
    /// Its private key.
    pub client_key: PathBuf,
    /// The CA's private key, to sign more certificates ([`Etcd::client_cert`]).
    ca_key: PathBuf,
}

/// One member.
struct Member {
    name: String,
    place: EtcdPlace,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    /// Server (and peer) certificate and key, with TLS.
    cert: Option<(PathBuf, PathBuf)>,
    child: Option<Child>,
}

impl Member {
    fn scheme(&self, tls: bool) -> &'static str {
        if tls { "https" } else { "http" }
    }

    fn client_addr(&self) -> SocketAddr {
        SocketAddr::new(self.place.addr, self.client_port)
    }

    fn peer_addr(&self) -> SocketAddr {
        SocketAddr::new(self.place.addr, self.peer_port)
    }
}

/// A running etcd cluster owned by a test (see the module doc).
pub struct Etcd {
    dir: PathBuf,
    token: String,
    tls: Option<EtcdTls>,
    members: Vec<Member>,
    serial: u32,
}

impl Etcd {
    /// Starts `members` members (1 or 3, normally), member `i` in
    /// `places[i % places.len()]` (members sharing a namespace get distinct
    /// ports), with TLS when `tls`, and waits until every member answers
    /// `etcdctl endpoint health`. Panics (with the members' logs) on failure.
    pub fn start(places: &[EtcdPlace], members: usize, tls: bool) -> Etcd {
        assert!(!places.is_empty() && members > 0, "Etcd::start needs at least one place and one member");
        let prefix = unique_prefix();
        let dir = std::env::temp_dir().join(format!("vswitch-etcd-{prefix}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let mut etcd = Etcd { dir, token: format!("vswitch-{prefix}"), tls: None, members: Vec::new(), serial: 1 };
        if tls {
            etcd.tls = Some(etcd.make_ca());
        }
        for i in 0..members {
            let place = places[i % places.len()].clone();
            let k = etcd.members.iter().filter(|m| m.place.ns == place.ns).count() as u16;
            let name = format!("etcd{i}");
            let cert = tls.then(|| etcd.make_leaf(&name, &[place.addr], true));
            etcd.members.push(Member {
                client_port: CLIENT_PORT + 10 * k,
                peer_port: CLIENT_PORT + 1 + 10 * k,
                data_dir: etcd.dir.join(format!("{name}.data")),
                log: etcd.dir.join(format!("{name}.log")),
                name,
                place,
                cert,
                child: None,
            });
        }
        for i in 0..members {
            etcd.spawn(i);
        }
        etcd.wait_healthy(READY_TIMEOUT);
        etcd
    }

    /// Starts one member in `place`, without TLS or with it.
    pub fn single(place: impl Into<EtcdPlace>, tls: bool) -> Etcd {
        Etcd::start(&[place.into()], 1, tls)
    }

    /// Number of members (running or not).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True if the cluster has no members (never, once started).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// True when the members use TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The TLS files (CA, client certificate and key), with TLS.
    pub fn tls(&self) -> Option<&EtcdTls> {
        self.tls.as_ref()
    }

    /// `host:port,host:port…` of every member's client address, for
    /// `--cluster-store etcd://…`.
    pub fn endpoints(&self) -> String {
        self.members.iter().map(|m| m.client_addr().to_string()).collect::<Vec<_>>().join(",")
    }

    /// `etcd://` + [`Etcd::endpoints`].
    pub fn store_url(&self) -> String {
        format!("etcd://{}", self.endpoints())
    }

    /// Member `i`'s client URL (`https://ip:port` with TLS, else `http://…`).
    pub fn client_url(&self, i: usize) -> String {
        let m = &self.members[i];
        format!("{}://{}", m.scheme(self.is_tls()), m.client_addr())
    }

    /// Every member's client URL.
    pub fn client_urls(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.client_url(i)).collect()
    }

    /// Member `i`'s name (`etcdI`).
    pub fn member_name(&self, i: usize) -> &str {
        &self.members[i].name
    }

    /// Where member `i` runs.
    pub fn place(&self, i: usize) -> &EtcdPlace {
        &self.members[i].place
    }

    /// Member `i`'s log so far.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.members[i].log).unwrap_or_default()
    }

    /// The `vswitchd` arguments that reach this store: `--cluster-store
    /// etcd://…` and either the three TLS files or `--cluster-insecure`.
    pub fn vswitchd_args(&self) -> Vec<String> {
        let mut args = vec!["--cluster-store".to_owned(), self.store_url()];
        match &self.tls {
            Some(t) => {
                for (flag, path) in
                    [("--cluster-ca", &t.ca), ("--cluster-cert", &t.client_cert), ("--cluster-key", &t.client_key)]
                {
                    args.push(flag.to_owned());
                    args.push(path.display().to_string());
                }
            }
            None => args.push("--cluster-insecure".to_owned()),
        }
        args
    }

    /// Signs a further client certificate (clientAuth) named `name` with the
    /// per-run CA and returns (certificate, key). Panics without TLS.
    pub fn client_cert(&mut self, name: &str) -> (PathBuf, PathBuf) {
        assert!(self.is_tls(), "client_cert needs a TLS etcd");
        self.make_leaf(name, &[], false)
    }

    /// True while member `i`'s process has not exited.
    pub fn is_running(&mut self, i: usize) -> bool {
        self.members[i].child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills member `i` with SIGKILL and reaps it (its data dir stays).
    pub fn kill(&mut self, i: usize) {
        let m = &mut self.members[i];
        let _ = writeln!(open_append(&m.log), "==== test support: kill -9 {} ====", m.name);
        if let Some(mut c) = m.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops member `i` with SIGTERM (SIGKILL after 20 s) and reaps it.
    pub fn stop(&mut self, i: usize) {
        let m = &mut self.members[i];
        let _ = writeln!(open_append(&m.log), "==== test support: stopping {} ====", m.name);
        if let Some(mut c) = m.child.take() {
            // SAFETY: kill(2) on the pid of a child we own and have not reaped.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
            if wait_deadline(&mut c, Duration::from_secs(20)).is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    /// Starts member `i` again on its data dir (killing it first if it
    /// runs) without waiting: a lone member of a 3-member cluster is not
    /// healthy until a second one is back. See [`Etcd::wait_healthy`].
    pub fn restart_nowait(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
    }

    /// Starts member `i` again on its data dir and waits until it is healthy
    /// (it needs a quorum of running members for that).
    pub fn restart(&mut self, i: usize) {
        self.restart_nowait(i);
        let ok = wait_for(READY_TIMEOUT, || self.member_healthy(i).then_some(()));
        if ok.is_none() {
            panic!("etcd member {i} not healthy {READY_TIMEOUT:?} after its restart; log:\n{}", self.log_tail(i));
        }
    }

    /// Runs `etcdctl endpoint health` against member `i` alone: true if it
    /// answered healthy (it can serve a quorum read).
    pub fn member_healthy(&self, i: usize) -> bool {
        self.etcdctl_at(&[i], &["endpoint", "health"]).status.success()
    }

    /// Waits until every running member is healthy; panics with the logs of
    /// those that are not after `timeout`.
    pub fn wait_healthy(&mut self, timeout: Duration) {
        let running: Vec<usize> = (0..self.members.len()).filter(|&i| self.is_running(i)).collect();
        let deadline = Instant::now() + timeout;
        let mut pending = running.clone();
        loop {
            pending.retain(|&i| !self.member_healthy(i));
            if pending.is_empty() {
                return;
            }
            for &i in &pending {
                if !self.is_running(i) {
                    panic!("etcd member {i} exited while starting; log:\n{}", self.log_tail(i));
                }
            }
            if Instant::now() >= deadline {
                let logs: Vec<String> =
                    pending.iter().map(|&i| format!("--- etcd{i} ---\n{}", self.log_tail(i))).collect();
                panic!("etcd members {pending:?} not healthy after {timeout:?}:\n{}", logs.join("\n"));
            }
            std::thread::sleep(crate::wait::POLL_INTERVAL);
        }
    }

    /// Runs `etcdctl` with the client certificate (with TLS) against every
    /// member, from the first member's namespace.
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        let all: Vec<usize> = (0..self.members.len()).collect();
        self.etcdctl_at(&all, args)
    }

    /// Runs `etcdctl args…` against the members `members` only, from the
    /// first one's namespace, with the client certificate (with TLS).
    pub fn etcdctl_at(&self, members: &[usize], args: &[&str]) -> Output {
        let mut full: Vec<String> = Vec::new();
        if let Some(t) = &self.tls {
            full.extend([
                format!("--cacert={}", t.ca.display()),
                format!("--cert={}", t.client_cert.display()),
                format!("--key={}", t.client_key.display()),
            ]);
        }
        full.extend(self.etcdctl_base(members));
        full.extend(args.iter().map(|s| (*s).to_owned()));
        self.etcdctl_raw(&self.members[members[0]].place.ns, &full)
    }

    /// The `--endpoints`/timeout arguments of `etcdctl` for `members`.
    pub fn etcdctl_base(&self, members: &[usize]) -> Vec<String> {
        let urls: Vec<String> = members.iter().map(|&i| self.client_url(i)).collect();
        vec![format!("--endpoints={}", urls.join(",")), "--dial-timeout=2s".into(), "--command-timeout=5s".into()]
    }

    /// Runs `etcdctl args…` in namespace `ns` exactly as given (no
    /// certificates added): for tests of what a client without them gets.
    pub fn etcdctl_raw(&self, ns: &str, args: &[String]) -> Output {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut out = netns_exec(ns, ETCDCTL_BIN, &args);
        if out.status.code().is_none() || out.stderr.is_empty() && !out.status.success() {
            out.stderr.extend_from_slice(b"(etcdctl printed nothing)");
        }
        out
    }

    /// `etcdctl put KEY VALUE` through every member; true if it succeeded
    /// (a write needs a quorum).
    pub fn put(&self, key: &str, value: &str) -> bool {
        self.etcdctl(&["put", key, value]).status.success()
    }

    /// The last 60 lines of member `i`'s log.
    fn log_tail(&self, i: usize) -> String {
        let log = self.log(i);
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    fn spawn(&mut self, i: usize) {
        let tls = self.is_tls();
        let initial: Vec<String> =
            self.members.iter().map(|m| format!("{}={}://{}", m.name, m.scheme(tls), m.peer_addr())).collect();
        let ca = self.tls.as_ref().map(|t| t.ca.clone());
        let m = &mut self.members[i];
        let (client, peer) =
            (format!("{}://{}", m.scheme(tls), m.client_addr()), format!("{}://{}", m.scheme(tls), m.peer_addr()));
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", Path::new(NETNS_DIR).join(&m.place.ns).display()))
            .arg("--")
            .arg(ETCD_BIN)
            .arg(format!("--name={}", m.name))
            .arg(format!("--data-dir={}", m.data_dir.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster={}", initial.join(",")))
            .arg(format!("--initial-cluster-token={}", self.token))
            .arg("--initial-cluster-state=new")
            .args(["--logger=zap", "--log-outputs=stderr"]);
        if let (Some((cert, key)), Some(ca)) = (&m.cert, &ca) {
            for side in ["", "peer-"] {
                cmd.arg(format!("--{side}cert-file={}", cert.display()))
                    .arg(format!("--{side}key-file={}", key.display()))
                    .arg(format!("--{side}trusted-ca-file={}", ca.display()))
                    .arg(format!("--{side}client-cert-auth"));
            }
        }
        let log = open_append(&m.log);
        let _ = writeln!(&log, "==== test support: starting {} ====", m.name);
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().map(Stdio::from).unwrap_or_else(|_| Stdio::null()))
            .stderr(Stdio::from(log));
        m.child = Some(cmd.spawn().unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}")));
    }

    /// Makes the per-run CA (an ECDSA P-256 key and a self-signed CA
    /// certificate) and a client certificate signed by it.
    fn make_ca(&mut self) -> EtcdTls {
        let (ca, ca_key) = (self.dir.join("ca.crt"), self.dir.join("ca.key"));
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN=vswitch test CA {}", self.token),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            &ca_key.display().to_string(),
            "-out",
            &ca.display().to_string(),
        ]);
        let mut tls = EtcdTls { ca, ca_key, client_cert: PathBuf::new(), client_key: PathBuf::new() };
        self.tls = Some(tls.clone());
        let (cert, key) = self.make_leaf("client", &[], false);
        (tls.client_cert, tls.client_key) = (cert, key);
        tls
    }

    /// Makes a key and a certificate signed by the CA for `name`: a server
    /// (and peer) certificate for `ips` when `server`, else a client one.
    fn make_leaf(&mut self, name: &str, ips: &[IpAddr], server: bool) -> (PathBuf, PathBuf) {
        let tls = self.tls.clone().expect("the CA is made first");
        let (cert, key, csr, ext) = (
            self.dir.join(format!("{name}.crt")),
            self.dir.join(format!("{name}.key")),
            self.dir.join(format!("{name}.csr")),
            self.dir.join(format!("{name}.ext")),
        );
        let mut extensions = String::from(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
             authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n",
        );
        if server {
            let mut sans: Vec<String> = ips.iter().map(|ip| format!("IP:{ip}")).collect();
            sans.extend(["IP:127.0.0.1".to_owned(), "DNS:localhost".to_owned()]);
            extensions
                .push_str(&format!("extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName={}\n", sans.join(",")));
        } else {
            extensions.push_str(&format!("extendedKeyUsage=clientAuth\nsubjectAltName=DNS:{name}\n"));
        }
        std::fs::write(&ext, extensions).unwrap_or_else(|e| panic!("write {}: {e}", ext.display()));
        let p = |p: &Path| p.display().to_string();
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &p(&key),
            "-out",
            &p(&csr),
        ]);
        self.serial += 1;
        openssl(&[
            "x509",
            "-req",
            "-in",
            &p(&csr),
            "-CA",
            &p(&tls.ca),
            "-CAkey",
            &p(&tls.ca_key),
            "-set_serial",
            &self.serial.to_string(),
            "-days",
            "2",
            "-extfile",
            &p(&ext),
            "-out",
            &p(&cert),
        ]);
        (cert, key)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        for i in 0..self.members.len() {
            if let Some(mut c) = self.members[i].child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
            if panicking {
                eprintln!("==== etcd{i} log (last lines) ====\n{}\n==== end of etcd{i} log ====", self.log_tail(i));
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn open_append(path: &Path) -> File {
    OpenOptions::new().create(true).append(true).open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// Runs `openssl args…` and panics with its output if it fails.
fn openssl(args: &[&str]) {
    let mut c = Command::new("openssl");
    c.args(args);
    let out = output_with_timeout(&mut c, TOOL_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "openssl {} failed: {}", args.join(" "), text(&out.stderr));
}

/// True if a cluster test may proceed: it runs as root (see
/// [`crate::require_root`]) and Debian's etcd is installed. Without etcd:
/// panics when `CI` is set (the test script installs it), otherwise prints
/// a loud SKIPPED line and returns false.
pub fn require_root_and_etcd(test: &str) -> bool {
    if !crate::require_root(test) {
        return false;
    }
    if !Path::new(ETCD_BIN).exists() {
        assert!(std::env::var_os("CI").is_none(), "{test}: CI needs {ETCD_BIN} (apt-get install etcd-server)");
        eprintln!("SKIPPED {test}: no {ETCD_BIN} (apt-get install etcd-server etcd-client)");
        return false;
    }
    true
}
