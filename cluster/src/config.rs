//! The client's configuration: the store's URL, TLS files, timeouts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::ClusterError;

/// The default lease TTL: a dead node vanishes from its peers within it.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);

/// The default bound on a mutation that cannot reach the store.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// etcd's client port, used when the store URL names a host without one.
pub const DEFAULT_ETCD_PORT: u16 = 2379;

/// The PEM files of a TLS client: the CA that signed the store's certificate,
/// and this node's client certificate and key (etcd `--client-cert-auth`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificate(s), PEM.
    pub ca: PathBuf,
    /// Client certificate (chain), PEM.
    pub cert: PathBuf,
    /// Client private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// TLS material read and checked from [`TlsFiles`].
#[derive(Clone)]
pub(crate) struct TlsPem {
    pub(crate) ca: Vec<u8>,
    pub(crate) cert: Vec<u8>,
    pub(crate) key: Vec<u8>,
}

/// Never prints the key.
impl std::fmt::Debug for TlsPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsPem").finish_non_exhaustive()
    }
}

impl TlsFiles {
    /// Reads the three files and checks that each holds what it should, so a
    /// wrong path or a bad file is a clear [`ClusterError::Config`] at start
    /// rather than a handshake failure later.
    pub(crate) fn load(&self) -> Result<TlsPem, ClusterError> {
        let read = |what: &str, path: &Path| {
            std::fs::read(path)
                .map_err(|e| ClusterError::Config(format!("cannot read the {what} file {}: {e}", path.display())))
        };
        let certs = |what: &str, path: &Path, pem: &[u8]| {
            let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem).collect();
            match certs {
                Ok(certs) if !certs.is_empty() => Ok(()),
                Ok(_) => {
                    Err(ClusterError::Config(format!("the {what} file {} holds no PEM certificate", path.display())))
                }
                Err(e) => {
                    Err(ClusterError::Config(format!("the {what} file {} is not valid PEM: {e}", path.display())))
                }
            }
        };
        let ca = read("CA", &self.ca)?;
        certs("CA", &self.ca, &ca)?;
        let cert = read("certificate", &self.cert)?;
        certs("certificate", &self.cert, &cert)?;
        let key = read("key", &self.key)?;
        PrivateKeyDer::from_pem_slice(&key).map_err(|e| {
            ClusterError::Config(format!("the key file {} holds no PEM private key: {e}", self.key.display()))
        })?;
        Ok(TlsPem { ca, cert, key })
    }
}

/// Everything [`crate::Cluster::start`] needs.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Store endpoints from [`parse_store_url`]: `https://10.0.0.1:2379` (TLS)
    /// or `http://…` (insecure).
    pub endpoints: Vec<String>,
    /// This node's name (`--node-name`), unique in the cluster.
    pub node: String,
    /// The advertised VTEP (`--advertise-addr`).
    pub vtep: SocketAddr,
    /// Client TLS; `None` only with `--cluster-insecure`.
    pub tls: Option<TlsFiles>,
    /// The node lease's TTL ([`DEFAULT_LEASE_TTL`]).
    pub lease_ttl: Duration,
    /// A mutation that cannot reach the store fails after this
    /// ([`DEFAULT_REQUEST_TIMEOUT`]).
    pub request_timeout: Duration,
    /// The key prefix ([`crate::schema::DEFAULT_PREFIX`]).
    pub prefix: String,
    /// This node's X25519 public key (hex), published in its node record.
    pub public_key: Option<String>,
}

impl ClusterConfig {
    /// A configuration with the defaults for TTL, timeout and prefix.
    pub fn new(endpoints: Vec<String>, node: impl Into<String>, vtep: SocketAddr, tls: Option<TlsFiles>) -> Self {
        ClusterConfig {
            endpoints,
            node: node.into(),
            vtep,
            tls,
            lease_ttl: DEFAULT_LEASE_TTL,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            prefix: crate::schema::DEFAULT_PREFIX.to_string(),
            public_key: None,
        }
    }

    /// Checks what can be checked without the store.
    pub(crate) fn validate(&self) -> Result<(), ClusterError> {
        let bad = |m: String| Err(ClusterError::Config(m));
        if self.endpoints.is_empty() {
            return bad("no store endpoints".into());
        }
        if self.node.is_empty() || self.node.contains('/') {
            return bad(format!("node name {:?} must be non-empty and without '/'", self.node));
        }
        if self.lease_ttl < Duration::from_secs(1) {
            return bad(format!("lease TTL {:?} is below etcd's 1 s granularity", self.lease_ttl));
        }
        if self.request_timeout.is_zero() {
            return bad("request timeout must be positive".into());
        }
        if !self.prefix.starts_with('/') {
            return bad(format!("key prefix {:?} must start with '/'", self.prefix));
        }
        for e in &self.endpoints {
            let tls = e.starts_with("https://");
            if !tls && !e.starts_with("http://") {
                return bad(format!("store endpoint {e:?} is neither http:// nor https://"));
            }
            if tls != self.tls.is_some() {
                return bad(format!(
                    "store endpoint {e:?}: https needs TLS files and http needs none (--cluster-insecure)"
                ));
            }
        }
        Ok(())
    }
}

/// Parses `etcd://HOST:PORT[,HOST:PORT...]` into client endpoints: the scheme
/// of each is `https` when `tls`, else `http`. A host without a port gets
/// etcd's 2379; IPv6 hosts are written in brackets (`[fd00::1]:2379`).
pub fn parse_store_url(url: &str, tls: bool) -> Result<Vec<String>, ClusterError> {
    let bad = |m: String| ClusterError::Config(format!("store URL {url:?}: {m}"));
    let rest = url.strip_prefix("etcd://").ok_or_else(|| bad("must start with etcd://".into()))?;
    let scheme = if tls { "https" } else { "http" };
    let mut endpoints = Vec::new();
    for hostport in rest.split(',') {
        let hostport = hostport.trim().trim_end_matches('/');
        if hostport.is_empty() {
            return Err(bad("empty host".into()));
        }
        if hostport.contains('/') || hostport.contains('@') {
            return Err(bad(format!("{hostport:?} is not HOST:PORT")));
        }
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad(format!("unclosed '[' in {hostport:?}")))?;
            host.parse::<std::net::Ipv6Addr>().map_err(|_| bad(format!("{host:?} is not an IPv6 address")))?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| bad(format!("{hostport:?} is not [HOST]:PORT")))?),
            };
            (format!("[{host}]"), port)
        } else {
            match hostport.split_once(':') {
                Some((_, p)) if p.contains(':') => {
                    return Err(bad(format!("write the IPv6 address of {hostport:?} in brackets")));
                }
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err(bad(format!("{hostport:?} has no host")));
        }
        let port = match port {
            None => DEFAULT_ETCD_PORT,
            Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| bad(format!("bad port {p:?}")))?,
        };
        endpoints.push(format!("{scheme}://{host}:{port}"));
    }
    Ok(endpoints)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls() {
        assert_eq!(parse_store_url("etcd://10.0.0.1:2379", true).unwrap(), ["https://10.0.0.1:2379"]);
        assert_eq!(
            parse_store_url("etcd://a:1,b, [fd00::1]:3", false).unwrap(),
            ["http://a:1", "http://b:2379", "http://[fd00::1]:3"]
        );
        assert_eq!(parse_store_url("etcd://[::1]", false).unwrap(), ["http://[::1]:2379"]);
        for bad in [
            "http://a:1",
            "etcd://",
            "etcd://a:1,",
            "etcd://a:x",
            "etcd://a:0",
            "etcd://a:70000",
            "etcd://fd00::1:2379",
            "etcd://[fd00::1",
            "etcd://[zz]:1",
            "etcd://:2379",
            "etcd://a:1/path",
            "etcd://user@a:1",
        ] {
            let err = parse_store_url(bad, true).unwrap_err();
            assert!(matches!(err, ClusterError::Config(_)), "{bad}: {err:?}");
        }
    }

    #[test]
    fn config_checks() {
        let vtep = "10.0.0.1:4789".parse().unwrap();
        let ok = ClusterConfig::new(vec!["http://a:1".into()], "n1", vtep, None);
        ok.validate().unwrap();
        let mut c = ok.clone();
        c.node = "a/b".into();
        assert!(c.validate().is_err());
        let mut c = ok.clone();
        c.endpoints = vec!["https://a:1".into()];
        assert!(c.validate().unwrap_err().to_string().contains("TLS"));
        let mut c = ok.clone();
        c.lease_ttl = Duration::from_millis(500);
        assert!(c.validate().is_err());
        let mut c = ok;
        c.endpoints.clear();
        assert!(c.validate().is_err());
    }

    #[test]
    fn tls_files_errors_are_clear() {
        let dir = tempfile::tempdir().unwrap();
        let path = |n: &str| dir.path().join(n);
        std::fs::write(path("garbage.pem"), "hello").unwrap();
        std::fs::write(path("broken.pem"), "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n").unwrap();
        let files = TlsFiles { ca: path("missing.pem"), cert: path("garbage.pem"), key: path("garbage.pem") };
        let err = files.load().unwrap_err().to_string();
        assert!(err.contains("cannot read the CA file") && err.contains("missing.pem"), "{err}");
        let files = TlsFiles { ca: path("garbage.pem"), ..files };
        let err = files.load().unwrap_err().to_string();
        assert!(err.contains("holds no PEM certificate"), "{err}");
        let files = TlsFiles { ca: path("broken.pem"), ..files };
        let err = files.load().unwrap_err().to_string();
        assert!(err.contains("not valid PEM"), "{err}");
    }
}
