//! The switch's embedded DNS, end to end: `vswitchd` runs in its own
//! namespace and serves DNS at each network's gateway; sandboxes ask with
//! `dig` and the libc resolver (`getent hosts`, through the `resolv.conf`
//! the daemon writes). Upstream servers are dnsmasq instances in another
//! namespace, reached from the daemon's namespace over a veth, so nothing
//! leaves the machine. Covers names, aliases, `name.NETWORK`, case, PTR,
//! round robin, NODATA, TTL, scope by network, refused spoofed sources,
//! forwarding with failover, SERVFAIL, TCP for large answers, `--internal`
//! networks, a sandbox's own `--dns` upstreams, `dns ls`, the gateway's DNS
//! counters, and recovery after `kill -9`. Needs root, dig and dnsmasq.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use ctl::proto::{DnsRecord, DnsStats, EndpointInfo};
use vswitch::dns::{
    BIG_TXT, DnsLab, HUGE_TXT, Message, RCODE_REFUSED, RCODE_SERVFAIL, TYPE_A, UP1_ANSWER, UP2_ANSWER, WEB_CORP,
    big_txt_strings, dig, dns_delta, dns_responses, getent_hosts, huge_txt_strings, ipv4_udp_frame, ptr_name,
    query_message, read_or_note, require_dns_tools, resolv_conf_inside, resolv_conf_lines, resolv_conf_path, udp_burst,
    wait_for,
};
use vswitch::overlay::ip_of;
use vswitch::{Capture, Daemon, inject_frame, require_root};

/// Root and the DNS tools, or skip.
fn prerequisites(test: &str) -> bool {
    require_root(test) && require_dns_tools(test)
}

/// `["--dns", a, "--dns", b, …]`.
fn dns_args(upstreams: &[Ipv4Addr]) -> Vec<String> {
    upstreams.iter().flat_map(|u| ["--dns".to_owned(), u.to_string()]).collect()
}

/// Asserts `dig` got NOERROR with exactly the A records `want` (in any order).
#[track_caller]
fn assert_resolves(r: &vswitch::dns::Dig, want: &[Ipv4Addr]) {
    assert!(r.is("NOERROR"), "expected NOERROR with {want:?}; {r}");
    let got: BTreeSet<Ipv4Addr> = r.addrs().into_iter().collect();
    assert_eq!(got, want.iter().copied().collect::<BTreeSet<_>>(), "wrong addresses; {r}");
    assert_eq!(r.addrs().len(), want.len(), "duplicate addresses; {r}");
}

/// Asserts `dig` got an answer with status `status` and no answer records.
#[track_caller]
fn assert_empty(r: &vswitch::dns::Dig, status: &str) {
    assert!(r.is(status), "expected {status}; {r}");
    assert!(r.answers.is_empty(), "expected no answer records; {r}");
}

/// The resolv.conf lines a sandbox should get.
fn expected_conf(gateway: Ipv4Addr, search: &[&str]) -> Vec<String> {
    let mut v = vec![format!("nameserver {gateway}")];
    if !search.is_empty() {
        v.push(format!("search {}", search.join(" ")));
    }
    v.push("options ndots:0".to_owned());
    v
}

/// Asserts the daemon wrote `/etc/netns/SANDBOX/resolv.conf` with exactly
/// `want` and that the sandbox sees it as its `/etc/resolv.conf`.
#[track_caller]
fn assert_resolv_conf(sandbox: &str, want: &[String]) {
    let path = resolv_conf_path(sandbox);
    let written = read_or_note(&path);
    assert_eq!(resolv_conf_lines(&written), want, "{} says:\n{written}", path.display());
    let inside = resolv_conf_inside(sandbox);
    assert_eq!(resolv_conf_lines(&inside), want, "/etc/resolv.conf inside {sandbox} says:\n{inside}");
}

fn gateway_of(subnet_prefix: [u8; 3]) -> Ipv4Addr {
    Ipv4Addr::new(subnet_prefix[0], subnet_prefix[1], subnet_prefix[2], 1)
}

/// Records of `dns ls` matching (name, type, value); values compared
/// without a trailing dot.
fn find<'a>(records: &'a [DnsRecord], name: &str, rtype: &str, value: &str) -> Vec<&'a DnsRecord> {
    records
        .iter()
        .filter(|r| {
            r.name.trim_end_matches('.') == name
                && r.record_type == rtype
                && r.value.trim_end_matches('.') == value.trim_end_matches('.')
        })
        .collect()
}

/// Endpoints sharing one alias whose A records do not fit a 512-byte answer
/// (12 bytes of header, 10 of question, 16 per record with the owner name
/// compressed: 31 records need 518).
const MANY: usize = 32;

#[test]
fn names_aliases_ptr_round_robin_resolv_conf_and_dns_ls() {
    if !prerequisites("names_aliases_ptr_round_robin_resolv_conf_and_dns_ls") {
        return;
    }
    let lab = DnsLab::start([10, 216, 1], |up1, _, _, _| dns_args(&[up1]));
    let d = &lab.daemon;
    let net = d.name("n");
    d.network_create(&net, "10.215.0.0/24");
    let gw = gateway_of([10, 215, 0]);
    let (a, b, c) = (d.name("a"), d.name("b"), d.name("c"));
    d.sandbox_create_dns(&a, &[], &["corp.test", "example.test"]);
    d.sandbox_create(&b);
    let ea = d.connect_aliases(&net, &a, None, &[]);
    let eb = d.connect_aliases(&net, &b, None, &["db", "cache"]);
    let (ip_a, ip_b) = (ip_of(&ea), ip_of(&eb));
    let pool_members: Vec<String> = (1..=3).map(|i| d.name(&format!("p{i}"))).collect();
    let mut pool = Vec::new();
    for p in &pool_members {
        d.sandbox_create(p);
        pool.push(ip_of(&d.connect_aliases(&net, p, None, &["pool"])));
    }
    let before = d.dns_stats(&net);
    let mut digs = 0u64;
    let mut local = 0u64;

    // resolv.conf: the gateway, the search domains, ndots:0; also seen inside.
    assert_resolv_conf(&a, &expected_conf(gw, &["corp.test", "example.test"]));
    assert_resolv_conf(&b, &expected_conf(gw, &[]));
    let info = d.sandbox_inspect(&a);
    let r = info.resolver.clone().unwrap_or_else(|| panic!("sandbox inspect {a}: no resolver: {info:?}"));
    assert_eq!(r.resolv_conf.as_deref(), Some(resolv_conf_path(&a).as_path()), "{r:?}");
    assert_eq!(r.nameservers, vec![IpAddr::V4(gw)], "{r:?}");
    assert_eq!(r.search, ["corp.test", "example.test"], "{r:?}");
    assert_eq!(r.options, ["ndots:0"], "{r:?}");
    assert_eq!(r.upstreams, vec![SocketAddr::from((lab.up1.addr(), 53))], "the daemon's --dns: {r:?}");
    assert!(r.forwarding, "{r:?}");

    // Sandbox names and aliases, bare and NAME.NETWORK, any case, TTL 60
    // (dig asks the nameserver of the sandbox's resolv.conf: the gateway).
    let q = dig(&a, &[&b]);
    assert_resolves(&q, &[ip_b]);
    assert_eq!(q.answers[0].ttl, 60, "TTL; {q}");
    assert!(q.transport.as_deref() == Some("UDP") && q.output.contains(&format!("SERVER: {gw}#53")), "{q}");
    let upper = |s: &str| s.to_ascii_uppercase();
    for name in [
        format!("{b}.{net}"),
        upper(&b),
        format!("{}.{}", upper(&b), upper(&net)),
        "db".to_owned(),
        "CaChE".to_owned(),
        format!("db.{net}"),
        format!("cache.{}", upper(&net)),
    ] {
        assert_resolves(&dig(&a, &[&name]), &[ip_b]);
        digs += 1;
        local += 1;
    }
    assert_resolves(&dig(&b, &[&a]), &[ip_a]);
    assert_resolves(&dig(&b, &[&format!("@{gw}"), &format!("{a}.{net}")]), &[ip_a]);
    // Over TCP too.
    let q = dig(&a, &["+tcp", &b]);
    assert_resolves(&q, &[ip_b]);
    assert_eq!(q.transport.as_deref(), Some("TCP"), "{q}");
    // PTR of assigned addresses: sandbox.network.
    let q = dig(&a, &["-x", &ip_b.to_string()]);
    assert!(q.is("NOERROR") && q.data_of("PTR") == [format!("{b}.{net}.")], "PTR of {ip_b}; {q}");
    assert_eq!(q.answers[0].ttl, 60, "PTR TTL; {q}");
    let q = dig(&b, &["-x", &ip_a.to_string()]);
    assert!(q.is("NOERROR") && q.data_of("PTR") == [format!("{a}.{net}.")], "PTR of {ip_a}; {q}");
    // A known name asked AAAA: NODATA.
    assert_empty(&dig(&a, &["AAAA", &b]), "NOERROR");
    digs += 7; // and the first one above
    local += 7;

    // The libc resolver (getent: AAAA then A, search domains, ndots:0).
    for name in [b.clone(), "db".to_owned(), format!("{b}.{net}")] {
        let got = getent_hosts(&a, &name);
        assert_eq!(
            got.iter().map(|(ip, _)| ip.as_str()).collect::<Vec<_>>(),
            [ip_b.to_string()],
            "getent hosts {name} in {a}: {got:?}"
        );
    }
    let got = getent_hosts(&a, &ip_b.to_string());
    assert!(
        got.iter().any(|(_, names)| names.first().map(|n| n.trim_end_matches('.')) == Some(&format!("{b}.{net}"))),
        "getent hosts {ip_b} (PTR) in {a}: {got:?}"
    );

    // Round robin: every member in each answer, the first one changing
    // with each query, and each member first at some point.
    let mut firsts = Vec::new();
    for _ in 0..6 {
        let q = dig(&a, &["pool"]);
        assert_resolves(&q, &pool);
        firsts.push(q.addrs()[0]);
        digs += 1;
        local += 1;
    }
    assert!(firsts.windows(2).all(|w| w[0] != w[1]), "the first address did not rotate between queries: {firsts:?}");
    for p in &pool {
        assert!(firsts.contains(p), "{p} never came first in {firsts:?}");
    }

    // A local answer too large for 512 bytes: truncated over UDP (TC),
    // whole over TCP, and whole over UDP with EDNS (dig offers 1232 bytes).
    let mut many = Vec::new();
    for i in 0..MANY {
        let name = d.name(&format!("m{i}"));
        d.sandbox_create(&name);
        many.push(ip_of(&d.connect_aliases(&net, &name, None, &["many"])));
    }
    let t0 = d.dns_stats(&net).truncated;
    let q = dig(&a, &["+noedns", "+ignore", "many"]);
    assert!(q.is("NOERROR") && q.has_flag("tc") && q.transport.as_deref() == Some("UDP"), "no TC; {q}");
    let q = dig(&a, &["+noedns", "many"]);
    assert!(q.retried_over_tcp && q.transport.as_deref() == Some("TCP"), "dig did not retry over TCP; {q}");
    assert_resolves(&q, &many);
    let q = dig(&a, &["many"]);
    assert_resolves(&q, &many);
    assert!(!q.has_flag("tc") && q.transport.as_deref() == Some("UDP"), "{q}");
    let truncated = d.dns_stats(&net).truncated - t0;
    assert!(truncated >= 2, "the truncated counter moved by {truncated}, expected 2 (two UDP answers with TC)");
    digs += 4;
    local += 4;

    // dns ls: A records of names and aliases, PTR records, TTL 60.
    let records = d.dns_ls(Some(&net));
    let all = d.dns_ls(None);
    for r in &records {
        assert_eq!((r.network.as_str(), r.ttl), (net.as_str(), 60), "{r:?}");
        assert!(all.contains(r), "dns ls without a network lacks {r:?}");
    }
    let list = || records.iter().map(|r| format!("  {r:?}\n")).collect::<String>();
    for name in [b.as_str(), "db", "cache"] {
        let hits = find(&records, name, "A", &ip_b.to_string());
        assert!(hits.iter().any(|r| r.sandbox == b), "no A {name} -> {ip_b} of {b} in dns ls {net}:\n{}", list());
    }
    assert_eq!(
        find(&records, &ptr_name(ip_b), "PTR", &format!("{b}.{net}")).len(),
        1,
        "PTR of {ip_b} in dns ls:\n{}",
        list()
    );
    for ip in &pool {
        assert_eq!(find(&records, "pool", "A", &ip.to_string()).len(), 1, "pool -> {ip} in dns ls:\n{}", list());
    }

    // Records follow connect, disconnect and sandbox rm at once.
    d.sandbox_create(&c);
    let ec = d.connect_aliases(&net, &c, None, &["late"]);
    assert_resolves(&dig(&a, &["late"]), &[ip_of(&ec)]);
    assert_resolves(&dig(&a, &[&c]), &[ip_of(&ec)]);
    d.ctl_ok(&["network", "disconnect", &net, &b]);
    for name in [b.as_str(), "db", "cache"] {
        assert_empty(&dig(&a, &[name]), "NXDOMAIN");
    }
    assert_empty(&dig(&a, &["-x", &ip_b.to_string()]), "NXDOMAIN");
    let records = d.dns_ls(Some(&net));
    assert!(!records.iter().any(|r| r.sandbox == b), "dns ls still lists {b} after disconnect: {records:#?}");
    d.ctl_ok(&["sandbox", "rm", &pool_members[2]]);
    assert_resolves(&dig(&a, &["pool"]), &pool[..2]);
    digs += 7;
    local += 3;

    // Counters of the network's gateway.
    let delta = dns_delta(&before, &d.dns_stats(&net));
    eprintln!("dns counters moved by {delta:?}");
    assert!(delta.queries >= digs, "queries moved by {} < {digs} dig queries: {delta:?}", delta.queries);
    assert!(delta.answered_locally >= local, "answered_locally < {local}: {delta:?}");
    assert!(delta.nodata >= 1, "nodata did not move after an AAAA query: {delta:?}");
    assert_eq!((delta.malformed, delta.refused, delta.upstream_failures), (0, 0, 0), "{delta:?}");
}

#[test]
fn scope_is_the_askers_networks_and_spoofed_sources_are_refused() {
    if !prerequisites("scope_is_the_askers_networks_and_spoofed_sources_are_refused") {
        return;
    }
    let lab = DnsLab::start([10, 216, 2], |up1, _, _, _| dns_args(&[up1]));
    let d = &lab.daemon;
    let (x, y) = (d.name("x"), d.name("y"));
    d.network_create(&x, "10.215.1.0/24");
    // Y is an overlay (local: no --vtep): its gateway serves DNS too.
    d.ctl_json::<serde_json::Value>(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--attachable",
        "--subnet",
        "10.215.2.0/24",
        &y,
    ]);
    let (gx, gy) = (gateway_of([10, 215, 1]), gateway_of([10, 215, 2]));
    let (both, xonly, yonly) = (d.name("both"), d.name("xonly"), d.name("yonly"));
    for s in [&both, &xonly, &yonly] {
        d.sandbox_create(s);
    }
    let both_x = d.connect_aliases(&x, &both, None, &[]);
    let both_y = d.connect_aliases(&y, &both, None, &[]);
    let ex = d.connect_aliases(&x, &xonly, None, &[]);
    let ey = d.connect_aliases(&y, &yonly, None, &["secret"]);
    let (ip_both_x, ip_both_y, ip_x, ip_y) = (ip_of(&both_x), ip_of(&both_y), ip_of(&ex), ip_of(&ey));
    // The first network's gateway is the nameserver.
    assert_resolv_conf(&both, &expected_conf(gx, &[]));
    assert_resolv_conf(&yonly, &expected_conf(gy, &[]));
    let (x0, y0) = (d.dns_stats(&x), d.dns_stats(&y));

    // On X and Y: names of both networks, at either gateway.
    assert_resolves(&dig(&both, &[&yonly]), &[ip_y]);
    assert_resolves(&dig(&both, &["secret"]), &[ip_y]);
    assert_resolves(&dig(&both, &[&format!("{yonly}.{y}")]), &[ip_y]);
    assert_resolves(&dig(&both, &[&xonly]), &[ip_x]);
    assert_resolves(&dig(&both, &[&format!("@{gy}"), &xonly]), &[ip_x]);
    assert_resolves(&dig(&yonly, &[&format!("{both}.{y}")]), &[ip_both_y]);
    // A name on two networks: the address on the asker's network.
    assert_resolves(&dig(&xonly, &[&both]), &[ip_both_x]);
    assert_resolves(&dig(&yonly, &[&both]), &[ip_both_y]);
    // Only on X: names that live only on Y are not ours to answer;
    // the upstream (which does not know them) says NXDOMAIN.
    for name in [yonly.clone(), "secret".to_owned(), format!("{yonly}.{y}")] {
        assert_empty(&dig(&xonly, &[&name]), "NXDOMAIN");
        assert!(lab.up1.wait_queried(&name, Duration::from_secs(5)), "{name} was not forwarded upstream");
    }
    assert_empty(&dig(&yonly, &[&xonly]), "NXDOMAIN");
    let q = dig(&xonly, &["-x", &ip_y.to_string()]);
    assert!(q.data_of("PTR").is_empty(), "{xonly} got the PTR of {ip_y} on a network it is not on; {q}");
    let (dx, dy) = (dns_delta(&x0, &d.dns_stats(&x)), dns_delta(&y0, &d.dns_stats(&y)));
    eprintln!("X moved by {dx:?}\nY moved by {dy:?}");
    assert!(dx.forwarded >= 3, "X: forwarded < 3: {dx:?}");
    assert!(dy.queries >= 1 && dy.answered_locally >= 1, "Y's gateway (overlay) answered nothing: {dy:?}");

    // Spoofing: a query from xonly's port with both's source address asks
    // for a name only both may see. The switch must refuse it.
    spoofed_source_is_refused(d, &xonly, &ex, &both, &both_x, gx, ip_y);
}

/// Injects DNS queries from `xonly`'s port: with its own address (answered),
/// then with `both`'s address asking for `secret` (only `both` may see it:
/// refused, counted, never answered with `ip_secret`).
fn spoofed_source_is_refused(
    d: &Daemon,
    xonly: &str,
    ex: &EndpointInfo,
    both: &str,
    both_x: &EndpointInfo,
    gx: Ipv4Addr,
    ip_secret: Ipv4Addr,
) {
    let x = &ex.network;
    let gw_mac = switch::gateway::gateway_mac(gx).0;
    let send = |src: Ipv4Addr, id: u16, name: &str| {
        let frame = ipv4_udp_frame(ex.mac.octets(), gw_mac, src, gx, 40_053, 53, &query_message(id, name, TYPE_A));
        inject_frame(xonly, &ex.ifname, &frame).expect("inject a query");
    };
    let cap_x = Capture::start(xonly, &ex.ifname).expect("capture in xonly");
    let cap_both = Capture::start(both, &both_x.ifname).expect("capture in both");
    let responses = |cap: &Capture| dns_responses(&cap.frames());
    let answered = |id: u16| {
        wait_for(Duration::from_secs(10), || {
            let hit = responses(&cap_x).into_iter().chain(responses(&cap_both)).find(|(_, m)| m.id == id);
            hit.map(|(_, m)| m)
        })
    };

    // Positive control: injected with xonly's own address, it is answered.
    send(ip_of(ex), 0x1111, both);
    let m = answered(0x1111).unwrap_or_else(|| panic!("no answer to an injected query from {xonly}'s own address"));
    assert_eq!(m.answers.iter().filter_map(|r| r.ipv4()).collect::<Vec<_>>(), [ip_of(both_x)], "{m:?}");

    // The spoofed query: refused (counted), never answered with the secret.
    let refused0 = d.dns_stats(x).refused;
    send(ip_of(both_x), 0x2222, "secret");
    let moved = wait_for(Duration::from_secs(10), || (d.dns_stats(x).refused > refused0).then_some(()));
    // A second control after it: once it is answered, any answer to the
    // spoofed query would have been sent already.
    send(ip_of(ex), 0x3333, both);
    assert!(answered(0x3333).is_some(), "no answer to the control query sent after the spoofed one");
    let seen: Vec<(Ipv4Addr, Message)> = responses(&cap_x).into_iter().chain(responses(&cap_both)).collect();
    drop((cap_x, cap_both));
    for (dst, m) in &seen {
        let leaked = m.answers.iter().any(|r| r.ipv4() == Some(ip_secret));
        assert!(!leaked, "a spoofed query got the secret's address {ip_secret} (sent to {dst}): {m:?}");
        if m.id == 0x2222 {
            assert_eq!(m.rcode, RCODE_REFUSED, "the spoofed query was answered (to {dst}) but not REFUSED: {m:?}");
        }
    }
    assert!(moved.is_some(), "the refused counter of {x} did not move after a spoofed query: {:?}", d.dns_stats(x));
}

#[test]
fn forwarding_failover_servfail_tcp_internal_and_own_upstreams() {
    if !prerequisites("forwarding_failover_servfail_tcp_internal_and_own_upstreams") {
        return;
    }
    // The daemon's first upstream is down (nothing listens there).
    let lab = DnsLab::start([10, 216, 3], |up1, _, dead, _| dns_args(&[dead, up1]));
    let d = &lab.daemon;
    let (up1, up2) = (&lab.up1, &lab.up2);
    let (fnet, inet) = (d.name("fn"), d.name("in"));
    d.network_create(&fnet, "10.215.3.0/24");
    d.ctl_json::<serde_json::Value>(&["network", "create", &inet, "--subnet", "10.215.4.0/24", "--internal"]);
    let (gf, gi) = (gateway_of([10, 215, 3]), gateway_of([10, 215, 4]));
    let (f, g, t, s, i) = (d.name("f"), d.name("g"), d.name("t"), d.name("s"), d.name("i"));
    let (r, o) = (d.name("r"), d.name("o"));
    d.sandbox_create_dns(&f, &[], &["corp.test"]);
    d.sandbox_create_dns(&o, &[lab.silent], &[]);
    d.sandbox_create_dns(&g, &[up2.addr()], &[]);
    d.sandbox_create_dns(&r, &[up2.addr(), up1.addr()], &[]);
    d.sandbox_create_dns(&t, &[lab.silent, up2.addr()], &[]);
    d.sandbox_create_dns(&s, &[lab.dead, lab.silent], &[]);
    d.sandbox_create(&i);
    for sb in [&f, &g, &r, &t, &s, &o] {
        d.connect_aliases(&fnet, sb, None, &[]);
    }
    let ei = d.connect_aliases(&inet, &i, None, &[]);
    let eg_ip = ip_of(&d.sandbox_inspect(&g).endpoints[0]);
    let (f0, i0) = (d.dns_stats(&fnet), d.dns_stats(&inet));

    // Resolver configuration: the gateway is always the nameserver; a
    // sandbox's --dns servers are its upstreams.
    assert_resolv_conf(&f, &expected_conf(gf, &["corp.test"]));
    assert_resolv_conf(&g, &expected_conf(gf, &[]));
    assert_resolv_conf(&i, &expected_conf(gi, &[]));
    let sock = |ip: Ipv4Addr| SocketAddr::from((ip, 53));
    let rf = d.sandbox_inspect(&f).resolver.expect("resolver of f");
    assert_eq!(rf.upstreams, [sock(lab.dead), sock(up1.addr())], "{rf:?}");
    assert!(rf.forwarding, "{rf:?}");
    let rg = d.sandbox_inspect(&g).resolver.expect("resolver of g");
    assert_eq!(rg.upstreams, [sock(up2.addr())], "{rg:?}");
    assert_eq!(rg.nameservers, [IpAddr::V4(gf)], "{rg:?}");
    let ri = d.sandbox_inspect(&i).resolver.expect("resolver of i");
    assert!(!ri.forwarding, "a sandbox only on an --internal network must not forward: {ri:?}");
    assert_eq!(ri.nameservers, [IpAddr::V4(gi)], "{ri:?}");

    // Forwarded past the dead first upstream; the answer is relayed
    // unchanged (the same as asking the upstream directly from the
    // daemon's namespace: TTL 0 as dnsmasq gives it).
    let q = dig(&f, &["up.test"]);
    assert_resolves(&q, &[UP1_ANSWER]);
    assert!(up1.wait_queried("up.test", Duration::from_secs(5)), "up1 never saw up.test");
    let direct = dig(&lab.daemon_host.ns, &[&format!("@{}", up1.addr()), "up.test"]);
    assert_eq!(q.answers, direct.answers, "the relayed answer differs from the upstream's; {q}\n{direct}");
    // Search domains through the libc resolver: web -> web.corp.test.
    let got = getent_hosts(&f, "web");
    assert_eq!(got.first().map(|(ip, _)| ip.clone()), Some(WEB_CORP.to_string()), "getent hosts web in {f}: {got:?}");
    assert_empty(&dig(&f, &["web"]), "NXDOMAIN");

    // Large answers: truncated over UDP as the upstream sent it, then TCP.
    let txt = big_txt_strings().map(|s| format!("\"{s}\"")).join(" ");
    let q = dig(&f, &["+noedns", "+ignore", "TXT", BIG_TXT]);
    assert!(q.is("NOERROR") && q.has_flag("tc") && q.transport.as_deref() == Some("UDP"), "no TC over UDP; {q}");
    for opts in [&["+noedns"][..], &["+bufsize=512"][..]] {
        let mut args = opts.to_vec();
        args.extend(["TXT", BIG_TXT]);
        let q = dig(&f, &args);
        assert!(q.retried_over_tcp && q.transport.as_deref() == Some("TCP"), "dig did not retry over TCP; {q}");
        assert!(q.is("NOERROR") && q.data_of("TXT") == [txt.clone()], "wrong TXT over TCP; {q}");
    }
    // An upstream UDP answer larger than the network's MTU: cut to header
    // and question with TC, so the client retries over TCP.
    let huge = huge_txt_strings().map(|s| format!("\"{s}\"")).join(" ");
    let q = dig(&f, &["+bufsize=4096", "+ignore", "TXT", HUGE_TXT]);
    assert!(q.is("NOERROR") && q.has_flag("tc") && q.answers.is_empty(), "a 2 KB UDP answer was not cut; {q}");
    let q = dig(&f, &["+bufsize=4096", "TXT", HUGE_TXT]);
    assert!(q.retried_over_tcp && q.transport.as_deref() == Some("TCP"), "dig did not retry over TCP; {q}");
    assert!(q.is("NOERROR") && q.data_of("TXT") == [huge], "wrong TXT over TCP; {q}");
    let q = dig(&f, &["+tcp", "tcp.up.test"]);
    assert_resolves(&q, &[UP1_ANSWER]);
    assert_eq!(q.transport.as_deref(), Some("TCP"), "{q}");
    let q = dig(&f, &["+tcp", &g]);
    assert_resolves(&q, &[eg_ip]);

    // A sandbox's own --dns upstream replaces the daemon's.
    assert_resolves(&dig(&g, &["g1.up.test"]), &[UP2_ANSWER]);
    assert!(up2.wait_queried("g1.up.test", Duration::from_secs(5)), "up2 never saw g1.up.test");
    assert!(up1.queries_for("g1.up.test").is_empty(), "g's query reached the daemon's upstream:\n{}", up1.log());
    // Failover on REFUSED: up2 refuses names outside up.test.
    assert_resolves(&dig(&r, &["web.corp.test"]), &[WEB_CORP]);
    assert!(up2.wait_queried("web.corp.test", Duration::from_secs(5)), "r's first upstream was not asked");
    // Failover on timeout: the first of t's upstreams never answers.
    assert_resolves(&dig(&t, &["+time=8", "+tries=1", "t1.up.test"]), &[UP2_ANSWER]);
    // No upstream answers: SERVFAIL.
    let before = d.dns_stats(&fnet);
    assert_empty(&dig(&s, &["+time=10", "+tries=1", "s1.up.test"]), "SERVFAIL");
    let failed = dns_delta(&before, &d.dns_stats(&fnet));
    assert!(failed.upstream_failures >= 1, "upstream_failures did not move on SERVFAIL: {failed:?}");

    // Only on an --internal network: NXDOMAIN, never forwarded.
    assert_resolves(&dig(&i, &[&i]), &[ip_of(&ei)]);
    assert_empty(&dig(&i, &["i1.up.test"]), "NXDOMAIN");
    assert_empty(&dig(&i, &["AAAA", "i2.up.test"]), "NXDOMAIN");
    // A marker through a forwarding sandbox: once up1 logged it, a query
    // forwarded before it would be logged too.
    assert_resolves(&dig(&f, &["marker.up.test"]), &[UP1_ANSWER]);
    assert!(up1.wait_queried("marker.up.test", Duration::from_secs(5)), "up1 never saw marker.up.test");
    for (up, name) in [(up1, "i1.up.test"), (up2, "i1.up.test"), (up1, "i2.up.test"), (up2, "i2.up.test")] {
        assert!(up.queries_for(name).is_empty(), "{name} from an internal-only sandbox was forwarded:\n{}", up.log());
    }

    // Counters.
    let (df, di): (DnsStats, DnsStats) = (dns_delta(&f0, &d.dns_stats(&fnet)), dns_delta(&i0, &d.dns_stats(&inet)));
    eprintln!("{fnet} moved by {df:?}\n{inet} moved by {di:?}");
    assert!(df.queries >= 15, "{df:?}");
    assert!(df.forwarded >= 11, "forwarded: {df:?}");
    assert!(df.answered_locally >= 1, "answered_locally: {df:?}");
    assert!(df.upstream_failures >= 1, "upstream_failures: {df:?}");
    assert!(di.queries >= 3 && di.answered_locally >= 3, "internal network: {di:?}");
    assert!(di.nxdomain >= 2, "internal network: nxdomain: {di:?}");
    assert_eq!(di.forwarded, 0, "internal network forwarded: {di:?}");

    // Over the bound of forwarded queries in flight: a burst towards an
    // upstream that never answers. Queries past the bound are refused at
    // once and counted; the others get SERVFAIL when their upstream times out.
    assert_resolves(&dig(&o, &[&f]), &[ip_of(&d.sandbox_inspect(&f).endpoints[0])]);
    let bound = u16::try_from(switch::daemon::dns_forward::MAX_IN_FLIGHT).expect("bound fits u16");
    let before = d.dns_stats(&fnet);
    let gap = Duration::from_micros(250);
    let answers = udp_burst(&o, SocketAddr::from((gf, 53)), bound + 200, |n| format!("o{n}.up.test"), gap, WAIT_OUT)
        .expect("UDP burst from o");
    let delta = dns_delta(&before, &d.dns_stats(&fnet));
    let count = |rcode: u8| answers.iter().filter(|m| m.rcode == rcode).count();
    let (refused, servfail) = (count(RCODE_REFUSED), count(RCODE_SERVFAIL));
    eprintln!("burst of {}: {refused} REFUSED, {servfail} SERVFAIL, {} answers; {delta:?}", bound + 200, answers.len());
    assert!(refused >= 1 && delta.refused_over_limit >= 1, "nothing refused past {bound} in flight: {delta:?}");
    assert!(servfail >= 1, "no SERVFAIL for queries whose upstream never answered: {delta:?}");
}

/// How long the burst waits for answers: past the 1.5 s upstream timeout of
/// the queries it sent first.
const WAIT_OUT: Duration = Duration::from_millis(3000);

#[test]
fn names_resolve_again_after_kill_9_and_restart() {
    if !prerequisites("names_resolve_again_after_kill_9_and_restart") {
        return;
    }
    let mut lab = DnsLab::start([10, 216, 4], |up1, _, _, _| dns_args(&[up1]));
    let up2 = lab.up2.addr();
    let d = &lab.daemon;
    let net = d.name("r");
    d.network_create(&net, "10.215.5.0/24");
    let (a, b, c) = (d.name("a"), d.name("b"), d.name("c"));
    d.sandbox_create_dns(&a, &[], &["corp.test"]);
    d.sandbox_create(&b);
    d.sandbox_create_dns(&c, &[up2], &[]);
    d.connect_aliases(&net, &a, None, &[]);
    let ip_b = ip_of(&d.connect_aliases(&net, &b, None, &["peer"]));
    d.connect_aliases(&net, &c, None, &[]);
    assert_resolves(&dig(&a, &[&b]), &[ip_b]);
    let resolvers = [&a, &c].map(|s| d.sandbox_inspect(s).resolver);
    let conf = read_or_note(&resolv_conf_path(&a));

    lab.daemon.restart();
    let d = &lab.daemon;
    let back = wait_for(Duration::from_secs(30), || {
        let q = dig(&a, &["+time=1", "+tries=1", &b]);
        (q.addrs() == [ip_b]).then_some(q)
    });
    assert!(back.is_some(), "{b} does not resolve 30 s after kill -9 and restart; last try: {}", dig(&a, &[&b]));
    assert_resolves(&dig(&a, &["peer"]), &[ip_b]);
    let q = dig(&a, &["-x", &ip_b.to_string()]);
    assert_eq!(q.data_of("PTR"), [format!("{b}.{net}.")], "{q}");
    assert_resolves(&dig(&a, &["r1.up.test"]), &[UP1_ANSWER]);
    assert_resolves(&dig(&c, &["r2.up.test"]), &[UP2_ANSWER]);
    assert_eq!(read_or_note(&resolv_conf_path(&a)), conf, "resolv.conf changed across the restart");
    assert_eq!([&a, &c].map(|s| d.sandbox_inspect(s).resolver), resolvers, "resolvers changed across the restart");
    assert!(!d.dns_ls(Some(&net)).is_empty(), "dns ls is empty after the restart");
}

/// A sandbox's `--dns` server that runs in another sandbox on its network
/// (reachable only through the switch, not from the daemon's namespace) is
/// asked from the gateway: names the switch does not own resolve through
/// it, over UDP and TCP, and an unassigned address listed first (no
/// endpoint holds it, so it cannot be asked) is skipped.
#[test]
fn a_dns_server_in_another_sandbox_is_asked_from_the_gateway() {
    if !prerequisites("a_dns_server_in_another_sandbox_is_asked_from_the_gateway") {
        return;
    }
    let d = Daemon::start();
    let net = d.name("n");
    d.network_create(&net, "10.217.0.0/24");
    let gw = gateway_of([10, 217, 0]);
    let (srv, cli, cli2) = (d.name("srv"), d.name("cli"), d.name("cli2"));
    d.sandbox_create(&srv);
    let server = ip_of(&d.connect_aliases(&net, &srv, Some("10.217.0.53"), &[]));
    let dnsmasq = vswitch::dns::Dnsmasq::start(&srv, server, &["--address=/inner.test/192.0.2.55".to_owned()]);
    d.sandbox_create_dns(&cli, &[server], &[]);
    d.connect_aliases(&net, &cli, None, &[]);
    // An unassigned address of the subnet first: no endpoint holds it.
    d.sandbox_create_dns(&cli2, &[Ipv4Addr::new(10, 217, 0, 250), server], &[]);
    d.connect_aliases(&net, &cli2, None, &[]);
    assert_resolv_conf(&cli, &expected_conf(gw, &[]));

    let r = dig(&cli, &["inner.test"]);
    assert_resolves(&r, &[Ipv4Addr::new(192, 0, 2, 55)]);
    assert!(dnsmasq.wait_queried("inner.test", Duration::from_secs(5)), "the server never saw the query");
    let r = dig(&cli, &["+tcp", "inner.test"]);
    assert_resolves(&r, &[Ipv4Addr::new(192, 0, 2, 55)]);
    // The switch's own names stay local.
    assert_resolves(&dig(&cli, &[&srv]), &[server]);
    assert_resolves(&dig(&cli2, &["inner.test"]), &[Ipv4Addr::new(192, 0, 2, 55)]);
    let stats = d.dns_stats(&net);
    assert!(stats.forwarded >= 3 && stats.upstream_failures == 0, "{stats:?}");
    // With the server gone, its sandbox's kernel answers "port unreachable"
    // and the client gets SERVFAIL (well within dig's own 5 s).
    drop(dnsmasq);
    let r = dig(&cli, &["+tries=1", "gone.test"]);
    assert_empty(&r, "SERVFAIL");
    assert_eq!(d.dns_stats(&net).upstream_failures, 1);
}

/// As [`a_dns_server_in_another_sandbox_is_asked_from_the_gateway`], over
/// IPv6 on an IPv6-only network: the server at the other sandbox's IPv6
/// address is asked from the gateway's IPv6 address, over UDP for UDP and
/// TCP clients, and a kernel's ICMPv6 "port unreachable" moves a query on
/// at once when no server listens.
#[test]
fn a_dns_server_in_another_sandbox_is_asked_over_ipv6() {
    if !prerequisites("a_dns_server_in_another_sandbox_is_asked_over_ipv6") {
        return;
    }
    let d = Daemon::start();
    let net = d.name("n6");
    d.ctl_ok(&["network", "create", &net, "--ipv6", "--ipv4=false", "--subnet", "fd00:217::/64"]);
    let (srv, cli) = (d.name("srv"), d.name("cli"));
    d.sandbox_create(&srv);
    let server: std::net::Ipv6Addr = "fd00:217::53".parse().unwrap();
    let e: EndpointInfo = d.ctl_json(&["network", "connect", &net, &srv, "--ip6", &server.to_string()]);
    assert_eq!(e.ipv6.map(|a| a.addr()), Some(server), "{e:?}");
    let dnsmasq = vswitch::dns::Dnsmasq::start(&srv, server, &["--address=/inner.test/2001:db8::55".to_owned()]);
    let _: serde_json::Value = d.ctl_json(&["sandbox", "create", &cli, "--dns", &server.to_string()]);
    d.ctl_ok(&["network", "connect", &net, &cli]);
    let conf = resolv_conf_inside(&cli);
    assert_eq!(resolv_conf_lines(&conf), ["nameserver fd00:217::1", "options ndots:0"], "{conf}");
    let before = d.dns_stats(&net);

    for transport in ["+notcp", "+tcp"] {
        let r = dig(&cli, &[transport, "AAAA", "inner.test"]);
        assert!(r.is("NOERROR"), "{r}");
        assert_eq!(r.data_of("AAAA"), ["2001:db8::55"], "{r}");
    }
    assert!(dnsmasq.wait_queried("inner.test", Duration::from_secs(5)), "the server never saw the query");
    let asked_from: Vec<String> =
        dnsmasq.log().lines().filter(|l| l.contains("inner.test from")).map(str::to_owned).collect();
    assert!(asked_from.iter().all(|l| l.ends_with("from fd00:217::1")), "asked from the gateway: {asked_from:?}");
    // The switch's own names stay local.
    let r = dig(&cli, &["AAAA", &srv]);
    assert_eq!(r.data_of("AAAA"), [server.to_string()], "{r}");
    let stats = d.dns_stats(&net);
    assert!(stats.forwarded >= before.forwarded + 2 && stats.upstream_failures == 0, "{stats:?}");

    // With no server listening, each sandbox's kernel answers "port
    // unreachable", which moves the query on at once: a client listing
    // two such servers gets SERVFAIL within dig's 2 s, where waiting out
    // the switch's 1.5 s per server would take 3 s.
    drop(dnsmasq);
    let (quiet, cli2) = (d.name("quiet"), d.name("cli2"));
    d.sandbox_create(&quiet);
    let quiet_ip: EndpointInfo = d.ctl_json(&["network", "connect", &net, &quiet, "--ip6", "fd00:217::54"]);
    assert!(quiet_ip.ipv6.is_some(), "{quiet_ip:?}");
    let _: serde_json::Value =
        d.ctl_json(&["sandbox", "create", &cli2, "--dns", "fd00:217::54", "--dns", &server.to_string()]);
    d.ctl_ok(&["network", "connect", &net, &cli2]);
    let r = dig(&cli2, &["+time=2", "+tries=1", "AAAA", "gone.test"]);
    assert_empty(&r, "SERVFAIL");
    assert_eq!(d.dns_stats(&net).upstream_failures, 1);
}

/// `--dns-option` (Docker's, compose's `dns_opt`) are the sandbox's
/// resolv.conf options: as given while it is on no network, with Docker's
/// `ndots:0` joining them on a network with the embedded DNS unless they
/// give an ndots; kept across `kill -9`; a value that could add a line to
/// resolv.conf is refused.
#[test]
fn dns_options_are_the_resolv_conf_options() {
    if !prerequisites("dns_options_are_the_resolv_conf_options") {
        return;
    }
    let mut d = Daemon::start();
    let net = d.name("o");
    d.network_create(&net, "10.217.2.0/24");
    let (a, b) = (d.name("a"), d.name("b"));
    let injected = d.ctl_err(&["sandbox", "create", &a, "--dns-option", "rotate\nnameserver 192.0.2.66"]);
    assert!(injected.contains("invalid dns option"), "{injected}");
    d.ctl_ok(&["sandbox", "create", &a, "--dns-option", "timeout:2", "--dns-opt", "rotate"]);
    d.ctl_ok(&["sandbox", "create", &b, "--dns-option", "ndots:3"]);
    assert_resolv_conf(&a, &["options timeout:2 rotate".to_owned()]);
    d.connect_aliases(&net, &a, None, &[]);
    d.connect_aliases(&net, &b, None, &[]);
    let gw = gateway_of([10, 217, 2]);
    assert_resolv_conf(&a, &[format!("nameserver {gw}"), "options timeout:2 rotate ndots:0".to_owned()]);
    assert_resolv_conf(&b, &[format!("nameserver {gw}"), "options ndots:3".to_owned()]);
    d.restart();
    let info = d.sandbox_inspect(&a);
    assert_eq!(info.dns_options, ["timeout:2", "rotate"], "{info:?}");
    assert_eq!(info.resolver.expect("a resolver").options, ["timeout:2", "rotate", "ndots:0"]);
    assert_resolv_conf(&a, &[format!("nameserver {gw}"), "options timeout:2 rotate ndots:0".to_owned()]);
}

/// `sandbox create --add-host` (Docker's; compose's `extra_hosts`): the
/// sandbox's own hosts file, which `ip netns exec` shows as /etc/hosts,
/// holds Docker's standard lines and the entries, and the libc resolver
/// finds them there before any DNS, then the sandbox's hostname at its
/// address once it is on a network (gone again on disconnect); a bad
/// entry is refused and creates nothing; a sandbox without entries keeps
/// the hosts file it has (someone else's here) or the host's; the entries
/// survive `kill -9`, and a restart writes the file again; `sandbox rm`
/// takes the file with it.
#[test]
fn extra_hosts_are_the_sandbox_hosts_file() {
    if !prerequisites("extra_hosts_are_the_sandbox_hosts_file") {
        return;
    }
    let mut d = Daemon::start();
    let (a, b) = (d.name("h"), d.name("n"));
    let injected = d.ctl_err(&["sandbox", "create", &a, "--add-host", "db:10.217.9.5\n192.0.2.66 evil"]);
    assert!(injected.contains("invalid extra host"), "{injected}");
    assert!(d.ctl_err(&["sandbox", "inspect", &a]).contains("not found"), "a refused sandbox was created");
    assert!(!std::path::Path::new(&format!("/etc/netns/{a}")).exists(), "a refused sandbox left its files");
    d.ctl_ok(&["sandbox", "create", &a, "--add-host", "db:10.217.9.5", "--add-host", "db6=[fd00:217::5]"]);
    // b's own hosts file, not vswitchd's: left as it is.
    let theirs = std::path::PathBuf::from(format!("/etc/netns/{b}/hosts"));
    std::fs::create_dir_all(theirs.parent().expect("a directory")).expect("/etc/netns/B");
    std::fs::write(&theirs, "192.0.2.7\tmine\n").expect("b's hosts file");
    d.ctl_ok(&["sandbox", "create", &b]);
    let hosts = std::path::PathBuf::from(format!("/etc/netns/{a}/hosts"));
    let resolved = |sb: &str, name: &str| getent_hosts(sb, name).into_iter().map(|(ip, _)| ip).collect::<Vec<_>>();
    // On a network, the sandbox's hostname (the host's: its namespace has
    // no UTS namespace of its own) names its address, as in a container.
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("the hostname");
    let hostname = hostname.trim_end();
    let net = d.name("hn");
    d.network_create(&net, "10.217.10.0/24");
    let ip = d.connect(&net, &a, None).ipv4.expect("an address").addr().to_string();
    let short = hostname.split_once('.').map(|(short, _)| format!(" {short}")).unwrap_or_default();
    let own_line = format!("{ip}\t{hostname}{short}");
    let usable = hostname.bytes().all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c));
    for round in ["created", "after kill -9"] {
        let written = std::fs::read_to_string(&hosts).expect("the hosts file");
        if usable {
            assert_eq!(written.lines().last(), Some(own_line.as_str()), "{round}: {written}");
            assert_eq!(resolved(&a, hostname).first(), Some(&ip), "{round}");
        } else {
            assert!(!written.contains(hostname), "{round}: an unusable hostname {hostname:?} was written");
        }
        assert_eq!(resolved(&a, "db"), ["10.217.9.5"], "{round}");
        assert_eq!(resolved(&a, "db6"), ["fd00:217::5"], "{round}");
        let inside = vswitch::netns_exec_ok(&a, "cat", &["/etc/hosts"]);
        assert_eq!(inside, std::fs::read_to_string(&hosts).expect("the hosts file"), "{round}");
        assert!(inside.lines().any(|l| l == "127.0.0.1\tlocalhost"), "{round}: {inside}");
        let info = d.sandbox_inspect(&a);
        assert_eq!(info.extra_hosts, ["db:10.217.9.5", "db6:fd00:217::5"], "{round}");
        assert_eq!(std::fs::read_to_string(&theirs).expect("b's hosts file"), "192.0.2.7\tmine\n", "{round}");
        assert_eq!(resolved(&b, "mine"), ["192.0.2.7"], "{round}");
        assert!(resolved(&b, "db").is_empty(), "{round}: {b} resolves {a}'s entry");
        assert!(!std::fs::read_to_string(&theirs).expect("b's hosts file").contains(&ip), "{round}");
        // Gone before a restart: the restart writes it again.
        std::fs::remove_file(&hosts).expect("remove the hosts file");
        d.restart();
    }
    // A second network adds a line, as Docker adds one per network; the
    // default route's address stays first, the one a lookup finds.
    let net2 = d.name("hn2");
    d.network_create(&net2, "10.217.11.0/24");
    let ip2 = d.connect(&net2, &a, None).ipv4.expect("an address").addr().to_string();
    if usable {
        let written = std::fs::read_to_string(&hosts).expect("the hosts file");
        let own: Vec<&str> = written.lines().rev().take(2).collect();
        assert_eq!(own, [format!("{ip2}\t{hostname}{short}"), own_line.clone()], "{written}");
        assert_eq!(resolved(&a, hostname).first(), Some(&ip), "the default route's first");
    }
    d.ctl_ok(&["network", "disconnect", &net2, &a]);
    let written = std::fs::read_to_string(&hosts).expect("the hosts file");
    assert!(!written.contains(&ip2), "disconnect left the second network's line: {written}");
    d.ctl_ok(&["network", "disconnect", &net, &a]);
    let written = std::fs::read_to_string(&hosts).expect("the hosts file");
    assert!(!written.contains(&ip), "disconnect left the sandbox's own line: {written}");
    d.ctl_ok(&["sandbox", "rm", &a]);
    assert!(!hosts.exists(), "sandbox rm left {}", hosts.display());
}
