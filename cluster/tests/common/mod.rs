//! Test support: a real single-member etcd on 127.0.0.1 with ephemeral ports
//! and a temporary data dir, killed by its guard's `Drop`; optional TLS with
//! certificates made by the `openssl` CLI; waiting on conditions.

#![allow(dead_code, unreachable_pub)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cluster::{Cluster, ClusterConfig, TlsFiles};

/// The etcd binary (Debian `etcd-server`).
pub const ETCD: &str = "/usr/bin/etcd";
/// The etcd CLI (Debian `etcd-client`).
pub const ETCDCTL: &str = "/usr/bin/etcdctl";

/// Whether etcd is installed: when it is not, fails when `CI` is set and
/// skips loudly otherwise.
pub fn require_etcd(test: &str) -> bool {
    if Path::new(ETCD).exists() && Path::new(ETCDCTL).exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: needs {ETCD} and {ETCDCTL} (Debian etcd-server, etcd-client), and CI is set"
    );
    eprintln!("SKIP {test}: needs {ETCD} and {ETCDCTL} (apt-get install etcd-server etcd-client) ==================");
    false
}

/// Polls `f` every 20 ms until it returns `Some`, panicking after `timeout`
/// with what was awaited.
pub fn wait_until<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Server-side TLS of the etcd under test, and the client files it trusts.
#[derive(Debug, Clone)]
pub struct Certs {
    /// The CA that signed the server and the good client certificate.
    pub ca: PathBuf,
    /// etcd's certificate (SAN IP 127.0.0.1) and key.
    pub server_cert: PathBuf,
    /// etcd's key.
    pub server_key: PathBuf,
    /// A client certificate signed by the CA.
    pub client: TlsFiles,
    /// A client certificate signed by another CA (trusts the right CA, so
    /// only the client side is wrong).
    pub rogue_client: TlsFiles,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Makes a CA, a server certificate for 127.0.0.1, a client certificate and a
/// rogue client certificate (from a second CA) in `dir`.
pub fn make_certs(dir: &Path) -> Certs {
    let key = |name: &str| {
        openssl(dir, &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", name])
    };
    let ca = |name: &str| {
        key(&format!("{name}.key"));
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.pem"),
                "-days",
                "2",
                "-subj",
                &format!("/CN={name}"),
            ],
        );
    };
    let leaf = |name: &str, ca: &str, ext: &str| {
        key(&format!("{name}.key"));
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-key",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                &format!("{ca}.pem"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
            ],
        );
    };
    ca("ca");
    ca("rogue-ca");
    leaf("server", "ca", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n");
    leaf("client", "ca", "extendedKeyUsage=clientAuth\n");
    leaf("rogue", "rogue-ca", "extendedKeyUsage=clientAuth\n");
    let p = |n: &str| dir.join(n);
    Certs {
        ca: p("ca.pem"),
        server_cert: p("server.pem"),
        server_key: p("server.key"),
        client: TlsFiles { ca: p("ca.pem"), cert: p("client.pem"), key: p("client.key") },
        rogue_client: TlsFiles { ca: p("ca.pem"), cert: p("rogue.pem"), key: p("rogue.key") },
    }
}

/// A running etcd; `Drop` kills it (the temp dir goes with the guard).
pub struct Etcd {
    child: Option<Child>,
    /// Data dir, certificates and the log live here.
    pub dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT` or `https://…` with TLS.
    pub client_url: String,
    peer_url: String,
    /// TLS files when started with TLS.
    pub certs: Option<Certs>,
}

impl Etcd {
    /// Starts an insecure etcd.
    pub fn start() -> Etcd {
        Self::start_with(false)
    }

    /// Starts an etcd that requires client certificates.
    pub fn start_tls() -> Etcd {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Etcd {
        let dir = tempfile::Builder::new().prefix("vswitch-etcd-").tempdir().unwrap();
        let certs = tls.then(|| make_certs(dir.path()));
        let scheme = if tls { "https" } else { "http" };
        let mut etcd = Etcd {
            child: None,
            client_url: format!("{scheme}://127.0.0.1:{}", free_port()),
            peer_url: format!("http://127.0.0.1:{}", free_port()),
            dir,
            certs,
        };
        etcd.restart();
        etcd
    }

    /// The `etcd://` URL of this store.
    pub fn store_url(&self) -> String {
        format!("etcd://{}", self.client_url.split("://").nth(1).unwrap())
    }

    /// A client configuration for node `name` with a short TTL and timeout.
    pub fn config(&self, name: &str, vtep_last_octet: u8) -> ClusterConfig {
        let endpoints = cluster::parse_store_url(&self.store_url(), self.certs.is_some()).unwrap();
        let vtep = format!("192.0.2.{vtep_last_octet}:4789").parse().unwrap();
        let mut config = ClusterConfig::new(endpoints, name, vtep, self.certs.as_ref().map(|c| c.client.clone()));
        config.lease_ttl = Duration::from_secs(2);
        config.request_timeout = Duration::from_secs(1);
        config.prefix = "/vswitch-test/v1".into();
        config
    }

    /// Starts a client for node `name`.
    pub fn client(&self, name: &str, vtep_last_octet: u8) -> Cluster {
        Cluster::start(self.config(name, vtep_last_octet)).unwrap()
    }

    /// Kills etcd (as an outage would), keeping its data dir.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes (`SIGSTOP`) or thaws (`SIGCONT`) etcd: a store that accepts
    /// connections but never answers, like one behind a partition.
    pub fn freeze(&self, frozen: bool) {
        let pid = self.child.as_ref().expect("etcd is running").id().to_string();
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// (Re)starts etcd on the same ports and data dir, and waits until it is healthy.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "etcd is running");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("etcd.log")).unwrap();
        let mut cmd = Command::new(ETCD);
        cmd.args(["--name", "test", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &self.client_url, "--advertise-client-urls", &self.client_url])
            .args(["--listen-peer-urls", &self.peer_url, "--initial-advertise-peer-urls", &self.peer_url])
            .args(["--initial-cluster", &format!("test={}", self.peer_url), "--initial-cluster-state", "new"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some(c) = &self.certs {
            cmd.arg("--cert-file").arg(&c.server_cert);
            cmd.arg("--key-file").arg(&c.server_key);
            cmd.arg("--trusted-ca-file").arg(&c.ca);
            cmd.arg("--client-cert-auth");
        }
        self.child = Some(cmd.spawn().expect("spawn etcd"));
        wait_until(Duration::from_secs(30), "etcd to become healthy", || {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let log = std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
                panic!("etcd exited ({status}):\n{log}");
            }
            self.etcdctl(&["endpoint", "health"]).map(|_| ())
        });
    }

    /// Runs etcdctl against this store; its stdout when it succeeded.
    pub fn etcdctl(&self, args: &[&str]) -> Option<String> {
        let mut cmd = Command::new(ETCDCTL);
        cmd.env("ETCDCTL_API", "3").arg("--endpoints").arg(&self.client_url).arg("--command-timeout=2s");
        if let Some(c) = &self.certs {
            cmd.arg("--cacert").arg(&c.ca).arg("--cert").arg(&c.client.cert).arg("--key").arg(&c.client.key);
        }
        let out = cmd.args(args).stdin(Stdio::null()).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A three-member etcd cluster on 127.0.0.1 (for failover); `Drop` kills all.
pub struct EtcdCluster {
    children: Vec<Option<Child>>,
    /// Data dirs and logs.
    pub dir: tempfile::TempDir,
    /// Each member's client URL.
    pub client_urls: Vec<String>,
    peer_urls: Vec<String>,
}

impl EtcdCluster {
    /// Starts `n` members and waits until each is healthy.
    pub fn start(n: usize) -> EtcdCluster {
        let dir = tempfile::Builder::new().prefix("vswitch-etcd3-").tempdir().unwrap();
        let client_urls: Vec<String> = (0..n).map(|_| format!("http://127.0.0.1:{}", free_port())).collect();
        let peer_urls: Vec<String> = (0..n).map(|_| format!("http://127.0.0.1:{}", free_port())).collect();
        let initial: Vec<String> = peer_urls.iter().enumerate().map(|(i, u)| format!("m{i}={u}")).collect();
        let mut children = Vec::new();
        for i in 0..n {
            let log = std::fs::File::create(dir.path().join(format!("m{i}.log"))).unwrap();
            let child = Command::new(ETCD)
                .args(["--name", &format!("m{i}"), "--data-dir"])
                .arg(dir.path().join(format!("m{i}")))
                .args(["--listen-client-urls", &client_urls[i], "--advertise-client-urls", &client_urls[i]])
                .args(["--listen-peer-urls", &peer_urls[i], "--initial-advertise-peer-urls", &peer_urls[i]])
                .args(["--initial-cluster", &initial.join(","), "--initial-cluster-state", "new"])
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("spawn etcd");
            children.push(Some(child));
        }
        let cluster = EtcdCluster { children, dir, client_urls, peer_urls };
        for url in &cluster.client_urls {
            wait_until(Duration::from_secs(30), "an etcd member to become healthy", || {
                let out = Command::new(ETCDCTL)
                    .env("ETCDCTL_API", "3")
                    .args(["--endpoints", url, "--command-timeout=2s", "endpoint", "health"])
                    .output()
                    .ok()?;
                out.status.success().then_some(())
            });
        }
        cluster
    }

    /// The `etcd://` URL naming every member.
    pub fn store_url(&self) -> String {
        let hosts: Vec<&str> = self.client_urls.iter().map(|u| u.split("://").nth(1).unwrap()).collect();
        format!("etcd://{}", hosts.join(","))
    }

    /// The index of the member that leads (from `etcdctl endpoint status`).
    pub fn leader(&self) -> usize {
        wait_until(Duration::from_secs(30), "a leader", || {
            let out = Command::new(ETCDCTL)
                .env("ETCDCTL_API", "3")
                .args([
                    "--endpoints",
                    &self.client_urls.join(","),
                    "--command-timeout=2s",
                    "endpoint",
                    "status",
                    "-w",
                    "json",
                ])
                .output()
                .ok()?;
            let status: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            let members = status.as_array()?;
            let leader = members.iter().find(|m| {
                let id = &m["Status"]["header"]["member_id"];
                id.is_u64() && *id == m["Status"]["leader"]
            })?;
            let endpoint = leader["Endpoint"].as_str()?;
            self.client_urls.iter().position(|u| u == endpoint)
        })
    }

    /// Kills member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
    }
}
