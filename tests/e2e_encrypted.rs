//! Encrypted VXLAN overlays (`-o encrypted`) across simulated hosts that
//! share a cluster secret: sandboxes ping and stream TCP over them, a known
//! plaintext marker sent between sandboxes never shows on the underlay (and,
//! as a positive control, does show on a plain overlay between the same
//! hosts), and every datagram on the VXLAN port starts with the encrypted
//! header (type 0xE1, or 0xE3 when the inner checksum was left partial; the
//! network's VNI); a sandbox's UDP datagram, whose checksum its kernel left
//! to the device, crosses with the checksum partial and still arrives. The daemon refuses a secret file
//! open to group or others, ctl refuses `-o encrypted` without a secret, and
//! encrypted overlays default to an MTU of underlay − 50 − 32 = 1418, which
//! full-size DF packets really fit. Needs root.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use vswitch::encrypted::CRYPTO_DROPS;
use vswitch::encrypted::{
    ENCRYPTED_HEADER_LEN, EncryptedHeader, SecretFile, TAG_LEN, UdpDatagram, contains_bytes, encrypted_vtep_daemon,
    is_encrypted_type, udp_datagram,
};
use vswitch::overlay::VTEP_ROW;
use vswitch::overlay::{ip_of, mtu_of, sandbox_on};
use vswitch::underlay::VXLAN_PORT;
use vswitch::{
    Binaries, Capture, Daemon, Frame, Underlay, in_netns, netns_exec, output_with_timeout, ping, require_root,
    tcp_transfer, text, udp_send, vtep_daemon,
};

const ENC_VNI: u32 = 5001;
const PLAIN_VNI: u32 = 5002;

/// A marker no other traffic contains: `VSWITCH-PLAINTEXT-MARKER-<random>`.
fn marker() -> Vec<u8> {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let mut x = (nanos as u64) ^ (u64::from(std::process::id()) << 32) ^ 0x9e37_79b9_7f4a_7c15;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    format!("VSWITCH-PLAINTEXT-MARKER-{x:016x}").into_bytes()
}

/// Sends `marker` from `from` (address `from_ip`) to `to` (address `to_ip`)
/// in one UDP datagram and over one TCP connection, and checks that both
/// arrive intact (so the marker really crossed the overlay).
fn send_marker(from: &str, from_ip: Ipv4Addr, to: &str, to_ip: Ipv4Addr, marker: &[u8]) {
    let rx = in_netns(to, move || UdpSocket::bind(SocketAddr::from((to_ip, 0)))).expect("netns").expect("UDP bind");
    let dst = rx.local_addr().expect("local addr");
    udp_send(from, from_ip, dst, &[marker.to_vec()]).expect("UDP send of the marker");
    let mut buf = [0u8; 2048];
    let (n, _) = vswitch::recv_within(&rx, Duration::from_secs(5), |s| s.recv_from(&mut buf))
        .unwrap_or_else(|e| panic!("the UDP marker did not reach {to}: {e}"));
    assert_eq!(&buf[..n], marker, "UDP marker arrived altered");

    let listener =
        in_netns(to, move || TcpListener::bind(SocketAddr::from((to_ip, 0)))).expect("netns").expect("TCP bind");
    let addr = listener.local_addr().expect("local addr");
    let server = std::thread::spawn(move || -> std::io::Result<Vec<u8>> {
        let (mut s, _) = listener.accept()?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut got = Vec::new();
        s.read_to_end(&mut got)?;
        Ok(got)
    });
    let mut client = in_netns(from, move || TcpStream::connect_timeout(&addr, Duration::from_secs(10)))
        .expect("netns")
        .unwrap_or_else(|e| panic!("TCP connect to {addr} from {from}: {e}"));
    client.write_all(marker).expect("TCP write of the marker");
    client.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let got = server.join().expect("server thread").expect("TCP read of the marker");
    assert_eq!(got, marker, "TCP marker arrived altered");
}

/// Sends `payload` to the broadcast address `to_broadcast` from `from` and
/// checks that a socket in `to` bound to the wildcard address receives it.
fn send_broadcast(from: &str, from_ip: Ipv4Addr, to: &str, to_broadcast: Ipv4Addr, payload: &'static [u8]) {
    let rx =
        in_netns(to, || UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))).expect("netns").expect("bind");
    let dst = SocketAddr::from((to_broadcast, rx.local_addr().expect("local addr").port()));
    in_netns(from, move || -> std::io::Result<()> {
        let tx = UdpSocket::bind(SocketAddr::from((from_ip, 0)))?;
        tx.set_broadcast(true)?;
        tx.send_to(payload, dst).map(drop)
    })
    .expect("netns")
    .expect("broadcast send");
    let mut buf = [0u8; 256];
    let (n, _) = vswitch::recv_within(&rx, Duration::from_secs(5), |s| s.recv_from(&mut buf))
        .unwrap_or_else(|e| panic!("the broadcast did not reach {to}: {e}"));
    assert_eq!(&buf[..n], payload, "broadcast arrived altered");
}

/// The UDP datagrams to or from the VXLAN port in `frames`.
fn vxlan_port_datagrams(frames: &[Frame]) -> Vec<UdpDatagram> {
    frames
        .iter()
        .filter_map(|f| udp_datagram(&f.bytes))
        .filter(|d| d.dst_port == VXLAN_PORT || d.src_port == VXLAN_PORT)
        .collect()
}

fn describe(d: &UdpDatagram) -> String {
    let head: Vec<String> = d.payload.iter().take(24).map(|b| format!("{b:02x}")).collect();
    format!("{}:{} -> {}:{} len {} [{}]", d.src, d.src_port, d.dst, d.dst_port, d.payload.len(), head.join(""))
}

fn crypto_drops(d: &Daemon) -> Vec<(&'static str, u64)> {
    CRYPTO_DROPS.iter().map(|r| (*r, d.drops_of(VTEP_ROW, r))).collect()
}

#[test]
fn encrypted_overlay_carries_traffic_and_hides_plaintext_on_the_underlay() {
    if !require_root("encrypted_overlay_carries_traffic_and_hides_plaintext_on_the_underlay") {
        return;
    }
    let u = Underlay::new([10, 210, 30], 2);
    let (h1, h2) = (u.host(0), u.host(1));
    let secret = SecretFile::generate(0o600);
    let d1 = encrypted_vtep_daemon(h1, &secret, &[]);
    let d2 = encrypted_vtep_daemon(h2, &secret, &[]);
    let (enc, plain) = (u.name("en"), u.name("pl"));
    for d in [&d1, &d2] {
        let info = d.overlay_create(&enc, "10.211.30.0/24", ENC_VNI, &["--attachable", "-o", "encrypted"]);
        assert!(info.options.contains_key("encrypted"), "network options lack 'encrypted': {info:?}");
        assert_eq!(info.options.get("com.docker.network.driver.mtu").map(String::as_str), Some("1418"), "{info:?}");
        d.overlay_create(&plain, "10.211.31.0/24", PLAIN_VNI, &["--attachable"]);
    }
    d1.peer_add(h2.vtep(), &[]);
    d2.peer_add(h1.vtep(), &[]);
    let (s1, e1) = sandbox_on(&d1, &enc, "s", "10.211.30.11");
    let (s2, e2) = sandbox_on(&d2, &enc, "s", "10.211.30.12");
    assert_eq!(mtu_of(&s1, &e1.ifname), 1418, "encrypted overlay endpoint MTU on host 1");
    assert_eq!(mtu_of(&s2, &e2.ifname), 1418, "encrypted overlay endpoint MTU on host 2");

    assert!(ping(&s1, ip_of(&e2), 3), "{s1} (host 1) cannot ping {s2} (host 2) over the encrypted overlay");
    assert!(ping(&s2, ip_of(&e1), 2), "{s2} (host 2) cannot ping {s1} (host 1) over the encrypted overlay");
    // Full-size DF packets fit: 1390 + 28 = 1418 inside, 1418 + 14 + 40 + 8 + 20 = 1500 outside.
    let e2_ip = ip_of(&e2).to_string();
    let out = netns_exec(&s1, "ping", &["-n", "-M", "do", "-s", "1390", "-c", "2", "-i", "0.2", "-W", "1", &e2_ip]);
    assert!(out.status.success(), "1418-byte DF ping over the encrypted overlay failed: {}", text(&out.stdout));
    let r = tcp_transfer(&s2, ip_of(&e2), &s1, 4 << 20).expect("TCP host 1 -> host 2 (encrypted)");
    eprintln!("encrypted tcp host1 -> host2: {} bytes in {:?} ({:.0} Mbit/s)", r.bytes, r.elapsed, r.mbit_per_s());
    assert!(r.intact, "TCP over the encrypted overlay corrupted: {r:?}");
    let r = tcp_transfer(&s1, ip_of(&e1), &s2, 1 << 20).expect("TCP host 2 -> host 1 (encrypted)");
    assert!(r.intact, "TCP host 2 -> host 1 over the encrypted overlay corrupted: {r:?}");

    // The marker crosses the encrypted overlay both ways; host 2's underlay
    // sees both directions.
    let secret_marker = marker();
    let cap = Capture::start(&h2.ns, &h2.ifname).expect("capture on host 2's underlay");
    send_marker(&s1, ip_of(&e1), &s2, ip_of(&e2), &secret_marker);
    send_marker(&s2, ip_of(&e2), &s1, ip_of(&e1), &secret_marker);
    // The markers crossed host 2's underlay before they arrived, so their
    // datagrams are queued for the capture: wait until it has read the
    // tunnel datagrams counted below (both ways, both UDP markers).
    let sealed_len = 14 + 20 + 8 + secret_marker.len() + ENCRYPTED_HEADER_LEN + TAG_LEN;
    let tunnel_counts = |frames: &[Frame]| {
        let datagrams = vxlan_port_datagrams(frames);
        let to_h2 = datagrams.iter().filter(|d| d.src == h1.addr && d.dst == h2.addr).count();
        let to_h1 = datagrams.iter().filter(|d| d.src == h2.addr && d.dst == h1.addr).count();
        let sealed_markers = datagrams.iter().filter(|d| d.payload.len() == sealed_len).count();
        (to_h2, to_h1, sealed_markers)
    };
    cap.wait_for(Duration::from_secs(10), |f| {
        let (to_h2, to_h1, sealed_markers) = tunnel_counts(f);
        to_h2 >= 3 && to_h1 >= 3 && sealed_markers >= 2
    });
    let frames = cap.stop();
    let leaked: Vec<String> =
        frames.iter().filter(|f| contains_bytes(&f.bytes, &secret_marker)).map(|f| f.to_string()).collect();
    assert!(leaked.is_empty(), "the plaintext marker is visible on the underlay of the encrypted overlay: {leaked:#?}");
    let datagrams = vxlan_port_datagrams(&frames);
    let (to_h2, to_h1, _) = tunnel_counts(&frames);
    assert!(to_h2 >= 3 && to_h1 >= 3, "too few tunnel datagrams captured ({to_h2} to host 2, {to_h1} to host 1)");
    let wrong: Vec<String> = datagrams
        .iter()
        .filter(|d| {
            !d.payload.first().is_some_and(|&b| is_encrypted_type(b))
                || d.payload.get(1..4) != Some(&ENC_VNI.to_be_bytes()[1..])
        })
        .map(describe)
        .collect();
    assert!(wrong.is_empty(), "tunnel datagrams without the encrypted header of VNI {ENC_VNI}: {wrong:#?}");
    // The UDP marker's frame (Ethernet + IPv4 + UDP + marker) travelled
    // whole in one datagram, 40 bytes (header and tag) bigger (`sealed_len`).
    let sealed: Vec<EncryptedHeader> = datagrams
        .iter()
        .filter(|d| d.payload.len() == sealed_len)
        .filter_map(|d| EncryptedHeader::parse(&d.payload))
        .collect();
    assert!(
        sealed.len() >= 2,
        "no {sealed_len}-byte sealed datagrams (the UDP markers, both ways): {:#?}",
        datagrams.iter().map(describe).collect::<Vec<_>>()
    );
    assert!(sealed.iter().all(|h| h.vni == ENC_VNI && h.epoch == 0), "headers of the UDP markers: {sealed:?}");
    // The sandboxes' kernels leave UDP checksums to the TAP (tx-csum on): the
    // markers crossed with their checksum partial, and arrived intact.
    assert!(sealed.iter().all(|h| h.csum_partial), "UDP markers not sent with a partial checksum: {sealed:?}");
    // A partial-checksum broadcast is flooded on host 2 (to the sandbox and
    // the gateway) and still arrives.
    send_broadcast(&s1, ip_of(&e1), &s2, Ipv4Addr::new(10, 211, 30, 255), b"vswitch partial broadcast");

    // Positive control: the same procedure on a plain overlay between the
    // same hosts shows the marker on the underlay.
    let (p1, f1) = sandbox_on(&d1, &plain, "p", "10.211.31.11");
    let (p2, f2) = sandbox_on(&d2, &plain, "p", "10.211.31.12");
    assert_eq!(mtu_of(&p1, &f1.ifname), 1450, "plain overlay endpoint MTU");
    assert!(ping(&p1, ip_of(&f2), 3), "{p1} cannot ping {p2} over the plain overlay");
    let plain_marker = marker();
    let cap = Capture::start(&h2.ns, &h2.ifname).expect("capture on host 2's underlay");
    send_marker(&p1, ip_of(&f1), &p2, ip_of(&f2), &plain_marker);
    let markers_seen = |frames: &[Frame]| frames.iter().filter(|f| contains_bytes(&f.bytes, &plain_marker)).count();
    let is_plain = |d: &UdpDatagram| {
        d.payload.first() == Some(&0x08) && d.payload.get(4..7) == Some(&PLAIN_VNI.to_be_bytes()[1..])
    };
    // As above: wait until the capture has read what the control looks for.
    cap.wait_for(Duration::from_secs(10), |f| markers_seen(f) >= 2 && vxlan_port_datagrams(f).iter().any(is_plain));
    let frames = cap.stop();
    let seen = markers_seen(&frames);
    assert!(seen >= 2, "positive control: the marker (UDP and TCP) is not visible on the plain overlay's underlay");
    let plain_dg = vxlan_port_datagrams(&frames);
    assert!(
        plain_dg.iter().any(is_plain),
        "positive control: no plain VXLAN datagram of VNI {PLAIN_VNI}: {:#?}",
        plain_dg.iter().map(describe).collect::<Vec<_>>()
    );

    // Both overlays still work side by side, and nothing was refused.
    assert!(ping(&s1, ip_of(&e2), 1), "encrypted overlay stopped working");
    for d in [&d1, &d2] {
        let drops = crypto_drops(d);
        assert!(drops.iter().all(|(_, n)| *n == 0), "crypto drops between hosts sharing a secret: {drops:?}");
    }
}

#[test]
fn insecure_secret_files_and_missing_secrets_are_refused_and_encrypted_mtu_is_1418() {
    if !require_root("insecure_secret_files_and_missing_secrets_are_refused_and_encrypted_mtu_is_1418") {
        return;
    }
    // A secret file readable by others (0644) or by the group (0640) stops the daemon at start.
    for mode in [0o644, 0o640] {
        let secret = SecretFile::generate(mode);
        let dir = std::env::temp_dir().join(format!("vswitch-e2e-{}", vswitch::unique_prefix()));
        std::fs::create_dir_all(dir.join("state")).expect("temp dir");
        let mut c = std::process::Command::new(&Binaries::get().vswitchd);
        c.arg("--ctl-socket")
            .arg(dir.join("ctl.sock"))
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--secret-file")
            .arg(secret.path())
            .env("NO_COLOR", "1")
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE");
        let started = Instant::now();
        let out = output_with_timeout(&mut c, Duration::from_secs(10));
        let _ = std::fs::remove_dir_all(&dir);
        let out = out.unwrap_or_else(|e| panic!("vswitchd with a {mode:o} secret file kept running: {e}"));
        let stderr = text(&out.stderr);
        eprintln!("vswitchd --secret-file <mode {mode:o}> ({:?}): {stderr}", started.elapsed());
        assert!(!out.status.success(), "vswitchd started with a secret file of mode {mode:o}: {stderr}");
        assert!(
            stderr.contains(&format!("{mode:o}")) && stderr.contains("chmod 600"),
            "vswitchd's error for a {mode:o} secret file should give the mode and say `chmod 600`: {stderr}"
        );
    }

    let u = Underlay::new([10, 210, 31], 2);
    // Without --secret-file, ctl refuses an encrypted overlay and creates nothing.
    let plain = vtep_daemon(u.host(0), &[]);
    let net = u.name("en");
    let vni = ENC_VNI.to_string();
    let err = plain.ctl_err(&[
        "network",
        "create",
        "-d",
        "overlay",
        &net,
        "--subnet",
        "10.211.32.0/24",
        "--vni",
        &vni,
        "--attachable",
        "-o",
        "encrypted",
    ]);
    eprintln!("network create -o encrypted without a secret: {err}");
    assert!(err.contains("--secret-file"), "the refusal should mention --secret-file: {err}");
    let listed = plain.ctl_ok(&["network", "ls"]);
    assert!(!listed.contains(&net), "refused encrypted network is listed: {listed}");
    // On a bridge network the option is refused for what it is, secret or not.
    let err = plain.ctl_err(&["network", "create", &net, "--subnet", "10.211.33.0/24", "-o", "encrypted"]);
    assert!(err.contains("encrypted") && err.contains("bridge") && !err.contains("--secret-file"), "{err}");

    // With a secret, the endpoint MTU inside the sandbox is 1500 - 50 - 32.
    let secret = SecretFile::generate(0o600);
    let d = encrypted_vtep_daemon(u.host(1), &secret, &[]);
    let info = d.overlay_create(&net, "10.211.32.0/24", ENC_VNI, &["--attachable", "-o", "encrypted"]);
    assert_eq!(info.options.get("com.docker.network.driver.mtu").map(String::as_str), Some("1418"), "{info:?}");
    let (s, e) = sandbox_on(&d, &net, "s", "10.211.32.11");
    assert_eq!(mtu_of(&s, &e.ifname), 1418, "encrypted overlay endpoint MTU on a 1500-byte underlay");
}

/// `-o cipher=aes-256-gcm`: two hosts whose network both say so carry
/// ping and TCP over it, every datagram of it on the underlay has the
/// AES-256-GCM type byte (0xE5, or 0xE7 with a partial checksum) and no
/// plaintext shows; a network one host created with the default cipher
/// and the other with AES-256-GCM carries nothing, each host counting the
/// other's packets as `cipher_mismatch`. Unknown cipher names and a cipher
/// without `-o encrypted` are refused and create nothing.
#[test]
fn aes_256_gcm_overlays_carry_traffic_and_refuse_the_other_cipher_by_name() {
    if !require_root("aes_256_gcm_overlays_carry_traffic_and_refuse_the_other_cipher_by_name") {
        return;
    }
    const AES_VNI: u32 = 5003;
    const MIXED_VNI: u32 = 5004;
    let u = Underlay::new([10, 210, 53], 2);
    let (h1, h2) = (u.host(0), u.host(1));
    let secret = SecretFile::generate(0o600);
    let d1 = encrypted_vtep_daemon(h1, &secret, &[]);
    let d2 = encrypted_vtep_daemon(h2, &secret, &[]);
    let (aes, mixed) = (u.name("ae"), u.name("mx"));

    let create = |extra: &[&str]| {
        let mut args = vec!["network", "create", "-d", "overlay", &aes, "--subnet", "10.211.36.0/24", "--attachable"];
        args.extend_from_slice(extra);
        d1.ctl_err(&args)
    };
    let err = create(&["-o", "encrypted", "-o", "cipher=aes-128-gcm"]);
    assert!(err.contains("aes-128-gcm") && err.contains("aes-256-gcm"), "unknown cipher: {err}");
    let err = create(&["-o", "cipher=aes-256-gcm"]);
    assert!(err.contains("--cipher is not supported"), "a cipher without -o encrypted: {err}");
    let listed = d1.ctl_ok(&["network", "ls"]);
    assert!(!listed.contains(&aes), "a refused network is listed: {listed}");

    let with_aes = ["--attachable", "-o", "encrypted", "-o", "cipher=aes-256-gcm"];
    for d in [&d1, &d2] {
        let info = d.overlay_create(&aes, "10.211.36.0/24", AES_VNI, &with_aes);
        assert_eq!(info.options.get("cipher").map(String::as_str), Some("aes-256-gcm"), "{info:?}");
        assert_eq!(info.options.get("com.docker.network.driver.mtu").map(String::as_str), Some("1418"), "{info:?}");
    }
    d1.overlay_create(&mixed, "10.211.37.0/24", MIXED_VNI, &with_aes);
    d2.overlay_create(&mixed, "10.211.37.0/24", MIXED_VNI, &["--attachable", "-o", "encrypted"]);
    d1.peer_add(h2.vtep(), &[]);
    d2.peer_add(h1.vtep(), &[]);

    let (s1, e1) = sandbox_on(&d1, &aes, "s", "10.211.36.11");
    let (s2, e2) = sandbox_on(&d2, &aes, "s", "10.211.36.12");
    let cap = Capture::start(&h2.ns, &h2.ifname).expect("capture on host 2's underlay");
    assert!(ping(&s1, ip_of(&e2), 3), "{s1} (host 1) cannot ping {s2} (host 2) over the AES-256-GCM overlay");
    let r = tcp_transfer(&s2, ip_of(&e2), &s1, 4 << 20).expect("TCP host 1 -> host 2 (AES-256-GCM)");
    assert!(r.intact, "TCP over the AES-256-GCM overlay corrupted: {r:?}");
    let r = tcp_transfer(&s1, ip_of(&e1), &s2, 1 << 20).expect("TCP host 2 -> host 1 (AES-256-GCM)");
    assert!(r.intact, "TCP host 2 -> host 1 over the AES-256-GCM overlay corrupted: {r:?}");
    let secret_marker = marker();
    send_marker(&s1, ip_of(&e1), &s2, ip_of(&e2), &secret_marker);
    let of_vni = |d: &&UdpDatagram| d.payload.get(1..4) == Some(&AES_VNI.to_be_bytes()[1..]);
    cap.wait_for(Duration::from_secs(10), |f| {
        let datagrams = vxlan_port_datagrams(f);
        datagrams.iter().filter(of_vni).filter(|d| d.src == h1.addr).count() >= 3
            && datagrams.iter().filter(of_vni).filter(|d| d.src == h2.addr).count() >= 3
    });
    let frames = cap.stop();
    assert!(!frames.iter().any(|f| contains_bytes(&f.bytes, &secret_marker)), "plaintext on the underlay");
    let datagrams = vxlan_port_datagrams(&frames);
    let headers: Vec<EncryptedHeader> =
        datagrams.iter().filter(of_vni).filter_map(|d| EncryptedHeader::parse(&d.payload)).collect();
    assert!(headers.len() >= 6, "too few sealed datagrams: {:#?}", datagrams.iter().map(describe).collect::<Vec<_>>());
    let chacha: Vec<&EncryptedHeader> = headers.iter().filter(|h| !h.aes_256_gcm).collect();
    assert!(chacha.is_empty(), "datagrams of the AES-256-GCM network without its type byte: {chacha:?}");
    for d in [&d1, &d2] {
        let drops = crypto_drops(d);
        assert!(drops.iter().all(|(_, n)| *n == 0), "crypto drops between hosts of one cipher: {drops:?}");
    }

    // One host says AES-256-GCM, the other the default: nothing crosses,
    // and each names why.
    let (m1, f1) = sandbox_on(&d1, &mixed, "m", "10.211.37.11");
    let (m2, f2) = sandbox_on(&d2, &mixed, "m", "10.211.37.12");
    assert!(!ping(&m1, ip_of(&f2), 2), "{m1} reached {m2} across a cipher mismatch");
    assert!(!ping(&m2, ip_of(&f1), 2), "{m2} reached {m1} across a cipher mismatch");
    for d in [&d1, &d2] {
        vswitch::wait_until(
            Duration::from_secs(10),
            || format!("cipher_mismatch drops: {:?}", crypto_drops(d)),
            || (d.drops_of(VTEP_ROW, "cipher_mismatch") > 0).then_some(()),
        );
        let drops = crypto_drops(d);
        let others: Vec<_> = drops.iter().filter(|(r, n)| *r != "cipher_mismatch" && *n > 0).collect();
        assert!(others.is_empty(), "a cipher mismatch counted as something else: {drops:?}");
    }
}
