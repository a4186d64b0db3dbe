//! Helpers for encrypted overlay tests: cluster secret files made with
//! `vswitchctl secret generate` ([`SecretFile`]), VTEP daemons that load
//! one, `network key rotate`, the encrypted VXLAN header as captured on the
//! underlay ([`EncryptedHeader`]), UDP payloads of captured frames, and the
//! summary of a `ping` flood.

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::bins::Binaries;
use crate::daemon::Daemon;
use crate::names::unique_prefix;
use crate::netns::netns_exec;
use crate::process::{output_with_timeout, text};
use crate::underlay::UnderlayHost;

/// Drop reasons of encrypted traffic that must stay zero between hosts that
/// share a secret.
pub const CRYPTO_DROPS: [&str; 7] = [
    "auth_failed",
    "cipher_mismatch",
    "replayed",
    "unknown_epoch",
    "crypto_malformed",
    "unencrypted",
    "unexpected_encrypted",
];

/// First byte of an encrypted VXLAN packet (with [`FLAG_CSUM_PARTIAL`]
/// clear).
pub const ENCRYPTED_TYPE: u8 = 0xE1;
/// Bit of the first byte set when the inner frame's TCP/UDP checksum was
/// left partial (type byte 0xE3).
pub const FLAG_CSUM_PARTIAL: u8 = 0x02;
/// Bit of the first byte set when the packet is sealed with AES-256-GCM
/// (`-o cipher=aes-256-gcm`; type bytes 0xE5 and 0xE7).
pub const FLAG_AES_256_GCM: u8 = 0x04;
/// Length of the encrypted VXLAN header (all of it authenticated).
pub const ENCRYPTED_HEADER_LEN: usize = 24;
/// Length of the Poly1305 tag after the ciphertext.
pub const TAG_LEN: usize = 16;

/// Runs `vswitchctl secret generate` (no daemon needed) and returns the
/// secret it printed, after checking it is 64 hexadecimal characters.
pub fn generate_secret() -> String {
    let mut c = Command::new(&Binaries::get().vswitchctl);
    c.args(["secret", "generate"]);
    let out = output_with_timeout(&mut c, Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "vswitchctl secret generate failed: {}", text(&out.stderr));
    let secret = text(&out.stdout);
    assert!(
        secret.len() == 64 && secret.bytes().all(|b| b.is_ascii_hexdigit()),
        "vswitchctl secret generate printed {secret:?}, not 64 hex characters"
    );
    secret
}

/// A cluster secret in a file of its own temp dir, removed on drop.
pub struct SecretFile {
    dir: PathBuf,
    path: PathBuf,
    secret: String,
}

impl SecretFile {
    /// A new secret from `vswitchctl secret generate`, saved with `mode`.
    pub fn generate(mode: u32) -> SecretFile {
        SecretFile::with_secret(&generate_secret(), mode)
    }

    /// `secret` (plus a line ending) saved with permission bits `mode`.
    pub fn with_secret(secret: &str, mode: u32) -> SecretFile {
        let dir = std::env::temp_dir().join(format!("vswitch-secret-{}", unique_prefix()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let path = dir.join("secret");
        std::fs::write(&path, format!("{secret}\n")).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
        SecretFile { dir, path, secret: secret.to_owned() }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The secret, in hex.
    pub fn secret(&self) -> &str {
        &self.secret
    }
}

impl Drop for SecretFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts `vswitchd --vtep <host's address> --secret-file <secret> extra…`
/// inside `host`'s namespace and waits until it is ready.
pub fn encrypted_vtep_daemon(host: &UnderlayHost, secret: &SecretFile, extra: &[&str]) -> Daemon {
    let path = secret.path().to_string_lossy().into_owned();
    let mut args = vec!["--secret-file", path.as_str()];
    args.extend_from_slice(extra);
    crate::overlay::vtep_daemon(host, &args)
}

impl Daemon {
    /// `network key rotate NAME`: checks that it printed `NAME: key epoch N`
    /// and returns N.
    pub fn key_rotate(&self, network: &str) -> u32 {
        let out = self.ctl_ok(&["network", "key", "rotate", network]);
        let line = out.trim();
        line.strip_prefix(network)
            .and_then(|rest| rest.strip_prefix(": key epoch "))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("network key rotate {network}: expected '{network}: key epoch N', got {line:?}"))
    }
}

/// The fields of an encrypted VXLAN header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncryptedHeader {
    /// Overlay network (bytes 1..4).
    pub vni: u32,
    /// Key epoch (bytes 4..8).
    pub epoch: u32,
    /// Sender session id (bytes 8..16).
    pub session: u64,
    /// Packet counter (bytes 16..24).
    pub counter: u64,
    /// The inner checksum was left partial ([`FLAG_CSUM_PARTIAL`]).
    pub csum_partial: bool,
    /// Sealed with AES-256-GCM ([`FLAG_AES_256_GCM`]), not ChaCha20-Poly1305.
    pub aes_256_gcm: bool,
}

impl EncryptedHeader {
    /// Parses the header of a UDP payload that starts with
    /// [`ENCRYPTED_TYPE`] (with or without [`FLAG_CSUM_PARTIAL`] and
    /// [`FLAG_AES_256_GCM`]) and is long
    /// enough for a header and a tag.
    pub fn parse(payload: &[u8]) -> Option<EncryptedHeader> {
        if payload.len() < ENCRYPTED_HEADER_LEN + TAG_LEN || !is_encrypted_type(payload[0]) {
            return None;
        }
        let u32_at = |r: std::ops::Range<usize>| {
            let mut b = [0u8; 4];
            b[4 - r.len()..].copy_from_slice(&payload[r]);
            u32::from_be_bytes(b)
        };
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&payload[at..at + 8]);
            u64::from_be_bytes(b)
        };
        Some(EncryptedHeader {
            vni: u32_at(1..4),
            epoch: u32_at(4..8),
            session: u64_at(8),
            counter: u64_at(16),
            csum_partial: payload[0] & FLAG_CSUM_PARTIAL != 0,
            aes_256_gcm: payload[0] & FLAG_AES_256_GCM != 0,
        })
    }
}

/// Whether a first byte is an encrypted VXLAN type byte.
pub fn is_encrypted_type(first: u8) -> bool {
    first & !(FLAG_CSUM_PARTIAL | FLAG_AES_256_GCM) == ENCRYPTED_TYPE
}

/// One UDP datagram found in a captured Ethernet frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpDatagram {
    /// IPv4 source address.
    pub src: Ipv4Addr,
    /// IPv4 destination address.
    pub dst: Ipv4Addr,
    /// UDP source port.
    pub src_port: u16,
    /// UDP destination port.
    pub dst_port: u16,
    /// The UDP payload.
    pub payload: Vec<u8>,
}

/// If `frame` is Ethernet/IPv4/UDP (no VLAN tag, first fragment or not
/// fragmented): its addresses, ports and payload.
pub fn udp_datagram(frame: &[u8]) -> Option<UdpDatagram> {
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = frame.get(14..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if ip.get(9)? != &17 || u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]) & 0x1fff != 0 {
        return None;
    }
    let addr = |at: usize| Some(Ipv4Addr::new(*ip.get(at)?, *ip.get(at + 1)?, *ip.get(at + 2)?, *ip.get(at + 3)?));
    let udp = ip.get(ihl..)?;
    let port = |at: usize| Some(u16::from_be_bytes([*udp.get(at)?, *udp.get(at + 1)?]));
    Some(UdpDatagram {
        src: addr(12)?,
        dst: addr(16)?,
        src_port: port(0)?,
        dst_port: port(2)?,
        payload: udp.get(8..)?.to_vec(),
    })
}

/// True if `needle` occurs anywhere in `haystack` (an empty needle never does).
pub fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// What `ping` printed in its summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingSummary {
    /// Echo requests sent.
    pub transmitted: u64,
    /// Echo replies received.
    pub received: u64,
    /// ping's whole output (stdout, then stderr).
    pub output: String,
}

/// Runs `ping -n -q -c COUNT -i INTERVAL -W 1 IP` in `ns` (intervals under
/// 0.2 s need root) and parses its summary line `N packets transmitted, M
/// received`. Panics if there is no summary.
pub fn ping_flood(ns: &str, ip: Ipv4Addr, count: u32, interval: Duration) -> PingSummary {
    let (ip, count, interval) = (ip.to_string(), count.to_string(), format!("{:.3}", interval.as_secs_f64()));
    let out = netns_exec(ns, "ping", &["-n", "-q", "-c", &count, "-i", &interval, "-W", "1", &ip]);
    let output = format!("{}\n{}", text(&out.stdout), text(&out.stderr));
    let summary = output
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("ping in {ns} printed no summary:\n{output}"));
    let number_before = |word: &str| -> u64 {
        let words: Vec<&str> = summary.split([' ', ',']).filter(|w| !w.is_empty()).collect();
        words
            .iter()
            .position(|w| *w == word)
            .and_then(|i| i.checked_sub(1))
            .and_then(|i| words[i].parse().ok())
            .unwrap_or_else(|| panic!("cannot read '{word}' in ping summary {summary:?}"))
    };
    PingSummary { transmitted: number_before("packets"), received: number_before("received"), output }
}
