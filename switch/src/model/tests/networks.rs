//! Network creation, removal and lookup rules.

use super::*;

#[test]
fn fresh_model_has_predefined_networks() {
    let m = Model::new();
    m.check_invariants().unwrap();
    let names: Vec<_> = m.networks().iter().map(|n| n.name.clone()).collect();
    assert_eq!(names, ["bridge", "host", "none"]);
    let b = m.network("bridge").unwrap();
    assert_eq!((b.driver, b.subnet, b.gateway), (Driver::Bridge, Some(net("172.17.0.0/16")), Some(ip("172.17.0.1"))));
    assert_eq!(b.mtu, 1500);
    assert_eq!(b.id.len(), 64);
    assert_eq!(m.network("host").unwrap().driver, Driver::Host);
    assert_eq!(m.network("none").unwrap().subnet, None);
    let mut idx: Vec<u32> = m.networks().iter().map(|n| n.network_index).collect();
    idx.sort();
    assert_eq!(idx, [0, 1, 2]);
    assert!(m.networks().iter().all(|n| n.is_predefined()));
}

#[test]
fn default_pools_in_docker_order() {
    let pools: Vec<String> = default_pool_subnets().map(|s| s.to_string()).collect();
    assert_eq!(pools.len(), 15 + 16);
    assert_eq!(pools[0], "172.17.0.0/16");
    assert_eq!(pools[14], "172.31.0.0/16");
    assert_eq!(pools[15], "192.168.0.0/20");
    assert_eq!(pools[30], "192.168.240.0/20");
}

#[test]
fn allocation_skips_overlapping_subnets() {
    let mut m = Model::new();
    let n1 = m.create_network(CreateNetwork::new("n1", Driver::Bridge)).unwrap();
    assert_eq!(n1.subnet, Some(net("172.18.0.0/16")), "172.17/16 is the predefined bridge");
    assert_eq!(n1.gateway, Some(ip("172.18.0.1")));
    assert_eq!(n1.network_index, 3);
    assert_eq!((n1.mtu, n1.vni, n1.internal, n1.attachable), (1500, None, false, false));
    m.create_network(bridge("user", "172.19.4.0/24")).unwrap();
    let n2 = m.create_network(CreateNetwork::new("n2", Driver::Bridge)).unwrap();
    assert_eq!(n2.subnet, Some(net("172.20.0.0/16")), "172.19/16 overlaps user's /24");
    for i in 21..=31 {
        let n = m.create_network(CreateNetwork::new(format!("x{i}"), Driver::Bridge)).unwrap();
        assert_eq!(n.subnet, Some(net(&format!("172.{i}.0.0/16"))));
    }
    let small = m.create_network(CreateNetwork::new("s0", Driver::Overlay)).unwrap();
    assert_eq!(small.subnet, Some(net("192.168.0.0/20")));
    m.create_network(bridge("user2", "192.168.16.0/24")).unwrap();
    let s2 = m.create_network(CreateNetwork::new("s2", Driver::Bridge)).unwrap();
    assert_eq!(s2.subnet, Some(net("192.168.32.0/20")));
    for i in 3..16 {
        m.create_network(CreateNetwork::new(format!("t{i}"), Driver::Bridge)).unwrap();
    }
    let before = snapshot(&m);
    let r = m.create_network(CreateNetwork::new("full", Driver::Bridge));
    assert_refused(&m, &before, r, &["address pools", "--subnet"]);
    m.check_invariants().unwrap();
}

#[test]
fn name_rules() {
    let mut m = populated();
    let before = snapshot(&m);
    let r = m.create_network(CreateNetwork::new("bad name", Driver::Bridge));
    assert_refused(&m, &before, r, &["invalid network name", "\"bad name\""]);
    let r = m.create_network(CreateNetwork::new("_x", Driver::Bridge));
    assert_refused(&m, &before, r, &["\"_x\"", "start with"]);
    let r = m.create_network(CreateNetwork::new("a", Driver::Bridge));
    assert_refused(&m, &before, r, &["network with name a already exists"]);
    let r = m.create_network(CreateNetwork::new("bridge", Driver::Bridge));
    assert_refused(&m, &before, r, &["name bridge already exists"]);
}

#[test]
fn host_and_none_are_singletons() {
    let mut m = Model::new();
    let before = snapshot(&m);
    let r = m.create_network(CreateNetwork::new("h2", Driver::Host));
    assert_refused(&m, &before, r, &["only one instance of \"host\" network is allowed"]);
    let r = m.create_network(CreateNetwork::new("n2", Driver::None));
    assert_refused(&m, &before, r, &["only one instance of \"none\" network is allowed"]);
}

#[test]
fn user_subnet_rules() {
    let mut m = populated();
    let before = snapshot(&m);
    let r = m.create_network(bridge("x", "10.5.0.7/24"));
    assert_refused(&m, &before, r, &["10.5.0.7/24", "not a network address", "10.5.0.0/24"]);
    let r = m.create_network(bridge("x", "10.5.0.0/31"));
    assert_refused(&m, &before, r, &["10.5.0.0/31", "too small", "at most 30"]);
    let r = m.create_network(bridge("x", "127.1.0.0/16"));
    assert_refused(&m, &before, r, &["127.1.0.0/16", "127.0.0.0/8", "loopback"]);
    let r = m.create_network(bridge("x", "224.0.0.0/24"));
    assert_refused(&m, &before, r, &["multicast"]);
    let r = m.create_network(bridge("x", "172.17.5.0/24"));
    assert_refused(&m, &before, r, &["172.17.5.0/24", "overlaps network bridge", "172.17.0.0/16"]);
    let r = m.create_network(bridge("x", "10.0.0.0/8"));
    assert_refused(&m, &before, r, &["overlaps network a", "10.1.0.0/24"]);
    let n = m.create_network(bridge("x", "10.5.0.0/30")).unwrap();
    assert_eq!(n.gateway, Some(ip("10.5.0.1")));
}

#[test]
fn gateway_rules() {
    let mut m = Model::new();
    let before = snapshot(&m);
    let with_gw = |g: &str, s: Option<&str>| CreateNetwork {
        subnet: s.map(net),
        gateway: Some(ip(g)),
        ..CreateNetwork::new("g", Driver::Bridge)
    };
    let r = m.create_network(with_gw("10.0.0.1", None));
    assert_refused(&m, &before, r, &["--gateway requires --subnet"]);
    let r = m.create_network(with_gw("10.0.1.1", Some("10.0.0.0/24")));
    assert_refused(&m, &before, r, &["gateway 10.0.1.1 is not inside subnet 10.0.0.0/24"]);
    let r = m.create_network(with_gw("10.0.0.0", Some("10.0.0.0/24")));
    assert_refused(&m, &before, r, &["10.0.0.0", "network address"]);
    let r = m.create_network(with_gw("10.0.0.255", Some("10.0.0.0/24")));
    assert_refused(&m, &before, r, &["10.0.0.255", "broadcast address"]);
    let n = m.create_network(with_gw("10.0.0.254", Some("10.0.0.0/24"))).unwrap();
    assert_eq!(n.gateway, Some(ip("10.0.0.254")));
}

#[test]
fn ip_range_rules() {
    let mut m = Model::new();
    let before = snapshot(&m);
    let with_range = |r: &str, s: Option<&str>| CreateNetwork {
        subnet: s.map(net),
        ip_range: Some(net(r)),
        ..CreateNetwork::new("r", Driver::Overlay)
    };
    let r = m.create_network(with_range("10.0.0.128/25", None));
    assert_refused(&m, &before, r, &["--ip-range requires --subnet"]);
    let r = m.create_network(with_range("10.0.0.130/25", Some("10.0.0.0/24")));
    assert_refused(&m, &before, r, &["ip range 10.0.0.130/25 has host bits set", "10.0.0.128/25"]);
    for outside in ["10.0.1.0/25", "10.0.0.0/23", "9.0.0.0/8"] {
        let r = m.create_network(with_range(outside, Some("10.0.0.0/24")));
        assert_refused(&m, &before, r, &[&format!("ip range {outside} is not inside subnet 10.0.0.0/24")]);
    }
    // Ranges with nothing to give out: the subnet's network address, its
    // broadcast address, the gateway.
    for empty in ["10.0.0.0/32", "10.0.0.255/32", "10.0.0.1/32"] {
        let r = m.create_network(with_range(empty, Some("10.0.0.0/24")));
        assert_refused(&m, &before, r, &[&format!("ip range {empty} holds no address to give out")]);
    }
    let n = m.create_network(with_range("10.0.0.128/25", Some("10.0.0.0/24"))).unwrap();
    assert_eq!(n.ip_range, Some(net("10.0.0.128/25")));
    let whole = CreateNetwork { name: "r2".into(), ..with_range("10.1.0.0/24", Some("10.1.0.0/24")) };
    let n = m.create_network(whole).unwrap();
    assert_eq!(n.ip_range, Some(net("10.1.0.0/24")), "the whole subnet is a valid range");
}

#[test]
fn mtu_rules() {
    let mut m = Model::new();
    let before = snapshot(&m);
    for bad in [0, 67, 65536] {
        let r = m.create_network(CreateNetwork { mtu: Some(bad), ..CreateNetwork::new("m", Driver::Bridge) });
        assert_refused(&m, &before, r, &[&format!("mtu {bad} is out of range"), "68..=65535"]);
    }
    let n = m.create_network(CreateNetwork { mtu: Some(68), ..CreateNetwork::new("m", Driver::Overlay) }).unwrap();
    assert_eq!(n.mtu, 68);
    let n = m.create_network(CreateNetwork { mtu: Some(65535), ..CreateNetwork::new("m2", Driver::Bridge) }).unwrap();
    assert_eq!(n.mtu, 65535);
}

#[test]
fn vni_rules() {
    let mut m = Model::new();
    let ov = |name: &str, vni: Option<u32>| CreateNetwork { vni, ..CreateNetwork::new(name, Driver::Overlay) };
    assert_eq!(m.create_network(ov("o1", None)).unwrap().vni, Some(4096));
    assert_eq!(m.create_network(ov("o2", Some(4097))).unwrap().vni, Some(4097));
    assert_eq!(m.create_network(ov("o3", None)).unwrap().vni, Some(4098), "skips the used 4097");
    assert_eq!(m.create_network(ov("o4", Some(1))).unwrap().vni, Some(1));
    let before = snapshot(&m);
    let r = m.create_network(ov("o5", Some(4097)));
    assert_refused(&m, &before, r, &["vni 4097 is already used by network o2"]);
    for bad in [0, 16_777_216] {
        let r = m.create_network(ov("o5", Some(bad)));
        assert_refused(&m, &before, r, &[&format!("vni {bad} is out of range"), "1..=16777215"]);
    }
    let r = m.create_network(CreateNetwork { vni: Some(5), ..CreateNetwork::new("b", Driver::Bridge) });
    assert_refused(&m, &before, r, &["--vni is not supported by the bridge driver"]);
    m.remove_network("o1").unwrap();
    assert_eq!(m.create_network(ov("o6", None)).unwrap().vni, Some(4096), "released VNIs are reused");
}

#[test]
fn remove_rules_and_index_reuse() {
    let mut m = populated();
    let before = snapshot(&m);
    for p in ["bridge", "host", "none"] {
        let r = m.remove_network(p);
        assert_refused(&m, &before, r, &[&format!("{p} is a pre-defined network and cannot be removed")]);
    }
    let r = m.remove_network("nope");
    assert_refused(&m, &before, r, &["network nope not found"]);
    m.connect(Connect::new("a", "s1")).unwrap();
    m.connect(Connect::new("a", "s2")).unwrap();
    let before = snapshot(&m);
    let r = m.remove_network("a");
    assert_refused(
        &m,
        &before,
        r,
        &["network a has active endpoints", "s1/eth0 10.1.0.2", "s2/eth0 10.1.0.3", "disconnect"],
    );
    m.disconnect("a", "s1").unwrap();
    m.disconnect("a", "s2").unwrap();
    let a = m.remove_network("a").unwrap();
    assert_eq!(a.network_index, 3);
    // Not `m.network("a")`: "a" may also be the unique id prefix of another network.
    assert!(m.networks().iter().all(|n| n.name != "a"));
    let again = m.create_network(bridge("a", "10.1.0.0/24")).unwrap();
    assert_eq!(again.network_index, 3, "lowest free index is reused");
    assert_ne!(again.id, a.id);
    m.check_invariants().unwrap();
}

#[test]
fn lookup_by_id_and_prefix() {
    let mut m = populated();
    let a = m.network("a").unwrap().clone();
    assert_eq!(m.network(&a.id).unwrap().name, "a");
    assert_eq!(m.network(&a.id[..12]).unwrap().name, "a");
    assert_eq!(m.network_by_id(&a.id).unwrap().name, "a");
    assert_eq!(m.network_by_index(a.network_index).unwrap().name, "a");
    assert!(matches!(m.network(""), Err(ModelError::NoSuchNetwork(_))));
    // Force two ids sharing a prefix.
    let b = m.network("b").unwrap().clone();
    for (old, new_id) in [(&a.id, format!("abcd{}", &a.id[4..])), (&b.id, format!("abcd{}", &b.id[4..]))] {
        let mut n = m.networks.remove(old).unwrap();
        n.id = new_id;
        m.networks.insert(n.id.clone(), n);
    }
    let e = m.network("abcd").unwrap_err().to_string();
    assert!(e.contains("abcd is ambiguous") && e.contains("a, b"), "{e}");
}

#[test]
fn driver_parsing() {
    assert_eq!("overlay".parse::<Driver>().unwrap(), Driver::Overlay);
    assert_eq!("null".parse::<Driver>().unwrap(), Driver::None);
    assert_eq!("macvlan".parse::<Driver>().unwrap(), Driver::Macvlan);
    let e = "ipvlan".parse::<Driver>().unwrap_err().to_string();
    assert!(e.contains("\"ipvlan\"") && e.contains("bridge, host, none, overlay, macvlan"), "{e}");
}

#[test]
fn overlay_only_options_are_refused_elsewhere() {
    let mut m = Model::new();
    for option in [ENCRYPTED_OPTION, MSS_CLAMP_OPTION] {
        let mut req = CreateNetwork::new("b1", Driver::Bridge);
        req.options.insert(option.to_owned(), String::new());
        let err = m.create_network(req).unwrap_err().to_string();
        assert!(err.contains(option) && err.contains("bridge"), "{err}");
    }
}

#[test]
fn key_rotation_moves_encrypted_overlays_forward_only() {
    let mut m = Model::new();
    let mut req = CreateNetwork::new("sec", Driver::Overlay);
    req.options.insert(ENCRYPTED_OPTION.to_owned(), String::new());
    m.create_network(req).unwrap();
    m.create_network(CreateNetwork::new("plain", Driver::Overlay)).unwrap();
    assert!(m.network("sec").unwrap().is_encrypted());
    assert_eq!(m.rotate_key("sec").unwrap(), 1);
    assert_eq!(m.rotate_key("sec").unwrap(), 2);
    assert_eq!(m.network("sec").unwrap().key_epoch, 2);
    let before = serde_json::to_string(&m).unwrap();
    assert!(m.rotate_key("plain").unwrap_err().to_string().contains("not an encrypted overlay"));
    assert!(m.rotate_key("bridge").is_err());
    assert_eq!(serde_json::to_string(&m).unwrap(), before, "a refused rotation changes nothing");
}

#[test]
fn key_rotation_needs_an_encrypted_overlay_and_a_sane_period() {
    let mut m = Model::new();
    let with = |opts: &[(&str, &str)]| {
        let mut req = CreateNetwork::new("ov", Driver::Overlay);
        for (k, v) in opts {
            req.options.insert((*k).to_owned(), (*v).to_owned());
        }
        req
    };
    let err = m.clone().create_network(with(&[(KEY_ROTATION_OPTION, "3600")])).unwrap_err().to_string();
    assert!(err.contains(KEY_ROTATION_OPTION), "{err}");
    for bad in ["0", "59", "soon"] {
        let err = m.clone().create_network(with(&[(ENCRYPTED_OPTION, ""), (KEY_ROTATION_OPTION, bad)])).unwrap_err();
        assert!(err.to_string().contains("at least 60"), "{err}");
    }
    let net = m.create_network(with(&[(ENCRYPTED_OPTION, ""), (KEY_ROTATION_OPTION, "43200")])).unwrap();
    assert_eq!(net.key_rotation().map(|p| p.get()), Some(43200));
}

#[test]
fn cipher_needs_an_encrypted_overlay_and_a_known_name() {
    let mut m = Model::new();
    let with = |driver, opts: &[(&str, &str)]| {
        let mut req = CreateNetwork::new("ov", driver);
        for (k, v) in opts {
            req.options.insert((*k).to_owned(), (*v).to_owned());
        }
        req
    };
    for req in [
        with(Driver::Overlay, &[(CIPHER_OPTION, "aes-256-gcm")]),
        with(Driver::Bridge, &[(CIPHER_OPTION, "aes-256-gcm")]),
    ] {
        let err = m.create_network(req).unwrap_err().to_string();
        assert!(err.contains("--cipher is not supported"), "{err}");
    }
    for bad in ["", "aes", "AES-256-GCM", "rot13"] {
        let err = m.create_network(with(Driver::Overlay, &[(ENCRYPTED_OPTION, ""), (CIPHER_OPTION, bad)]));
        let err = err.unwrap_err().to_string();
        assert!(err.contains("chacha20-poly1305 (the default) or aes-256-gcm"), "{bad:?}: {err}");
    }
    assert!(m.network("ov").is_err(), "a refused request changes nothing");
    // A cluster record of a cipher this build does not know is refused too.
    let mut record =
        m.create_network(with(Driver::Overlay, &[(ENCRYPTED_OPTION, ""), (CIPHER_OPTION, "aes-256-gcm")])).unwrap();
    m.remove_network("ov").unwrap();
    record.options.insert(CIPHER_OPTION.into(), "aes-512-ocb".into());
    let err = m.adopt_network(record).unwrap_err().to_string();
    assert!(err.contains("aes-512-ocb"), "{err}");
    assert!(m.network("ov").is_err(), "a refused record changes nothing");
    let net =
        m.create_network(with(Driver::Overlay, &[(ENCRYPTED_OPTION, ""), (CIPHER_OPTION, "aes-256-gcm")])).unwrap();
    assert_eq!(net.cipher(), crypto::Cipher::Aes256Gcm);
    let mut req = with(Driver::Overlay, &[(ENCRYPTED_OPTION, ""), (CIPHER_OPTION, "chacha20-poly1305")]);
    req.name = "ov2".into();
    assert_eq!(m.create_network(req).unwrap().cipher(), crypto::Cipher::ChaCha20Poly1305);
    let mut req = with(Driver::Overlay, &[(ENCRYPTED_OPTION, "")]);
    req.name = "ov3".into();
    assert_eq!(m.create_network(req).unwrap().cipher(), crypto::Cipher::ChaCha20Poly1305, "the default");
}

#[test]
fn spread_is_a_bridge_or_overlay_option_true_or_false() {
    let mut m = Model::new();
    for (name, subnet, value, spread) in
        [("s1", "10.5.1.0/24", "", true), ("s2", "10.5.2.0/24", "true", true), ("s3", "10.5.3.0/24", "false", false)]
    {
        let mut req = bridge(name, subnet);
        req.options.insert(SPREAD_OPTION.into(), value.into());
        assert_eq!(m.create_network(req).unwrap().spread(), spread, "-o spread={value}");
    }
    assert!(!m.create_network(bridge("plain", "10.5.4.0/24")).unwrap().spread());
    let before = snapshot(&m);
    let mut bad = bridge("bad", "10.5.9.0/24");
    bad.options.insert(SPREAD_OPTION.into(), "yes".into());
    let r = m.create_network(bad);
    assert_refused(&m, &before, r, &["spread", "true or false"]);
    let mut ov = CreateNetwork { attachable: true, ..CreateNetwork::new("ov", Driver::Overlay) };
    ov.options.insert(SPREAD_OPTION.into(), String::new());
    assert!(m.create_network(ov.clone()).unwrap().spread(), "a plain overlay is spread");
    let mut encrypted = CreateNetwork { name: "enc".into(), ..ov };
    encrypted.options.insert(ENCRYPTED_OPTION.into(), String::new());
    assert!(m.create_network(encrypted).unwrap().spread(), "an encrypted overlay is spread");
}

#[test]
fn flood_limit_is_a_positive_whole_number_of_frames_a_second() {
    let mut m = Model::new();
    let mut req = bridge("storm", "10.5.1.0/24");
    req.options.insert(FLOOD_LIMIT_OPTION.into(), "1000".into());
    assert_eq!(m.create_network(req).unwrap().flood_limit(), Some(1000));
    assert_eq!(m.create_network(bridge("plain", "10.5.2.0/24")).unwrap().flood_limit(), None, "no limit by default");
    for bad in ["0", "-1", "1k", "", "4294967296"] {
        let before = snapshot(&m);
        let mut req = bridge("bad", "10.5.9.0/24");
        req.options.insert(FLOOD_LIMIT_OPTION.into(), bad.into());
        let r = m.create_network(req);
        assert_refused(&m, &before, r, &["flood-limit", "frames a second"]);
    }
}

#[test]
fn a_network_is_unused_without_endpoints_services_or_uplinks_of_its_own() {
    let mut m = populated();
    let unused = |m: &Model, name: &str| m.is_unused(m.network(name).unwrap());
    assert!(unused(&m, "a") && unused(&m, "b"), "fresh custom networks");
    for predefined in ["bridge", "host", "none"] {
        assert!(!unused(&m, predefined), "{predefined} is never pruned");
    }
    m.connect(Connect::new("a", "s1")).unwrap();
    assert!(!unused(&m, "a"), "an endpoint uses it");
    m.publish_service("api", Some("b"), &ctl::parse_publish("9000:80").unwrap()).unwrap();
    assert!(!unused(&m, "b"), "a service publishes on it");
    m.create_network(bridge("c", "10.3.0.0/24")).unwrap();
    m.add_uplink("c", "eth9", ctl::proto::PortType::Raw, false).unwrap();
    assert!(!unused(&m, "c"), "a host interface is attached to it");
    // A macvlan network's own parent does not keep it.
    let mut mac = CreateNetwork { subnet: Some(net("10.4.0.0/24")), ..CreateNetwork::new("lan", Driver::Macvlan) };
    mac.options.insert(PARENT_OPTION.into(), "eth8".into());
    m.create_network(mac).unwrap();
    m.add_uplink("lan", "eth8", ctl::proto::PortType::Raw, false).unwrap();
    assert!(unused(&m, "lan"), "its parent is part of the network");
    m.add_uplink("lan", "eth7", ctl::proto::PortType::Raw, false).unwrap();
    assert!(!unused(&m, "lan"), "another uplink keeps it");
}

#[test]
fn dockers_mtu_and_vni_options_are_the_settings_themselves() {
    let mut req = bridge("m", "10.5.1.0/24");
    req.options.insert(DOCKER_MTU_OPTION.into(), "1400".into());
    fold_docker_options(&mut req).unwrap();
    assert_eq!((req.mtu, req.options.get(DOCKER_MTU_OPTION)), (Some(1400), None));
    let mut m = Model::new();
    assert_eq!(m.create_network(req).unwrap().mtu, 1400);
    // The same value both ways is fine; different ones, or garbage, are refused.
    let mut same = CreateNetwork { mtu: Some(1400), ..bridge("s", "10.5.2.0/24") };
    same.options.insert(DOCKER_MTU_OPTION.into(), "1400".into());
    fold_docker_options(&mut same).unwrap();
    for (given, value, needle) in [(Some(1300), "1400", "differs from --mtu"), (None, "big", "whole number")] {
        let mut req = CreateNetwork { mtu: given, ..bridge("x", "10.5.3.0/24") };
        req.options.insert(DOCKER_MTU_OPTION.into(), value.into());
        let e = fold_docker_options(&mut req).unwrap_err().to_string();
        assert!(e.contains(DOCKER_MTU_OPTION) && e.contains(needle), "{e}");
    }
    let mut ov = CreateNetwork { attachable: true, ..CreateNetwork::new("ov", Driver::Overlay) };
    ov.options.insert(DOCKER_VNI_OPTION.into(), "4242".into());
    fold_docker_options(&mut ov).unwrap();
    assert_eq!(m.create_network(ov).unwrap().vni, Some(4242));
    let mut two = CreateNetwork::new("ov2", Driver::Overlay);
    two.options.insert(DOCKER_VNI_OPTION.into(), "4243,4244".into());
    let e = fold_docker_options(&mut two).unwrap_err().to_string();
    assert!(e.contains("one VNI"), "{e}");
    let mut bridged = bridge("b", "10.5.4.0/24");
    bridged.options.insert(DOCKER_VNI_OPTION.into(), "7".into());
    let e = fold_docker_options(&mut bridged).unwrap_err().to_string();
    assert!(e.contains(DOCKER_VNI_OPTION), "the option the user gave is named: {e}");
}

#[test]
fn a_stack_files_docker_mtu_option_is_its_mtu_and_old_states_lose_the_ignored_option() {
    let mut m = Model::new();
    let stack = ctl::stack::Stack {
        networks: vec![ctl::stack::StackNetwork {
            options: [(DOCKER_MTU_OPTION.to_owned(), "1400".to_owned())].into(),
            name: "s".to_owned(),
            ..ctl::stack::StackNetwork::default()
        }],
        ..ctl::stack::Stack::default()
    };
    let defaults = StackDefaults { overlay_mtu: 1450, encrypted_overlay_mtu: 1418, has_secret: false };
    let plan = m.plan_stack(&stack, &defaults).expect("a plan");
    let net = plan.next.network("s").unwrap();
    assert_eq!((net.mtu, net.options.get(DOCKER_MTU_OPTION)), (1400, None));
    // Applied again to the network it made: nothing differs.
    m = plan.next;
    assert!(m.plan_stack(&stack, &defaults).is_ok());

    // A state file from before, with the option kept and ignored.
    let mut old = m.clone();
    old.networks.values_mut().for_each(|n| {
        n.options.insert(DOCKER_MTU_OPTION.into(), "1400".into());
        n.mtu = 1500;
    });
    let json = serde_json::to_string(&crate::model::state::StateFile::from(old)).unwrap();
    let loaded = Model::try_from(serde_json::from_str::<crate::model::state::StateFile>(&json).unwrap()).unwrap();
    let net = loaded.network("s").unwrap();
    assert_eq!((net.mtu, net.options.get(DOCKER_MTU_OPTION)), (1500, None), "the MTU it had, shown as it is");
}

#[test]
fn icc_is_a_bridge_option_true_or_false_and_masquerade_stays_on() {
    let mut m = Model::new();
    for (name, subnet, value, icc) in [
        ("i1", "10.5.1.0/24", "false", false),
        ("i2", "10.5.2.0/24", "true", true),
        ("i3", "10.5.5.0/24", "0", false),
        ("i4", "10.5.6.0/24", "T", true),
    ] {
        let mut req = bridge(name, subnet);
        req.options.insert(ICC_OPTION.into(), value.into());
        assert_eq!(m.create_network(req).unwrap().inter_container(), icc, "enable_icc={value}");
    }
    assert!(m.create_network(bridge("plain", "10.5.3.0/24")).unwrap().inter_container(), "on by default");
    let mut masq = bridge("masq", "10.5.4.0/24");
    masq.options.insert(MASQUERADE_OPTION.into(), "true".into());
    m.create_network(masq).unwrap();
    let before = snapshot(&m);
    for (option, value, needle) in [
        (ICC_OPTION, "no", "true or false"),
        (MASQUERADE_OPTION, "false", "egress=false"),
        (MASQUERADE_OPTION, "0", "egress=false"),
        (MASQUERADE_OPTION, "off", "true or false"),
    ] {
        let mut req = bridge("bad", "10.5.9.0/24");
        req.options.insert(option.into(), value.into());
        let r = m.create_network(req);
        assert_refused(&m, &before, r, &[option, needle]);
    }
    let mut ov = CreateNetwork { attachable: true, ..CreateNetwork::new("ov", Driver::Overlay) };
    ov.options.insert(ICC_OPTION.into(), "false".into());
    let r = m.create_network(ov);
    assert_refused(&m, &before, r, &[ICC_OPTION]);
}

/// Docker options whose meaning the switch does not carry out are refused
/// with what to do instead, not stored and ignored; options without effect
/// here (the kernel bridge's name) are kept.
#[test]
fn docker_options_the_switch_cannot_honour_are_refused_with_a_way_out() {
    let mut m = Model::new();
    let before = snapshot(&m);
    for (option, value, needle) in [
        ("com.docker.network.bridge.inhibit_ipv4", "true", "--gateway"),
        ("com.docker.network.bridge.gateway_mode_ipv4", "routed", "only nat"),
        ("com.docker.network.bridge.gateway_mode_ipv6", "isolated", "only nat"),
    ] {
        let mut req = bridge("x", "10.5.1.0/24");
        req.options.insert(option.into(), value.into());
        let r = m.create_network(req);
        assert_refused(&m, &before, r, &[option, "not supported", needle]);
    }
    let mut req = bridge("named", "10.5.2.0/24");
    req.options.insert("com.docker.network.bridge.name".into(), "br-named".into());
    req.options.insert("com.docker.network.bridge.gateway_mode_ipv4".into(), "nat".into());
    m.create_network(req).unwrap();
}

/// Docker's `host_binding_ipv4`: a port published without a host address
/// on the network (at connect, by `sandbox publish`, as a service) is bound
/// to the network's address, one naming its address keeps it; unpublishing
/// it as it was asked for finds it; a bad address or another driver is
/// refused.
#[test]
fn host_binding_is_where_ports_without_an_address_are_published() {
    let mut m = Model::new();
    let mut req = bridge("lo", "10.5.1.0/24");
    req.options.insert(HOST_BINDING_OPTION.into(), "127.0.0.1".into());
    m.create_network(req).unwrap();
    m.create_network(bridge("open", "10.5.2.0/24")).unwrap();
    for s in ["a", "b"] {
        m.create_sandbox(CreateSandbox::new(s)).unwrap();
    }
    // A request's mapping; as published (the request's flag cleared).
    let p = |s: &str| s.parse::<ctl::PortMapping>().unwrap();
    let published = |s: &str| ctl::PortMapping { host_ip_named: false, ..p(s) };
    let e =
        m.connect(Connect { publish: vec![p("8080:80"), p("10.0.0.9:8081:81")], ..Connect::new("lo", "a") }).unwrap();
    assert_eq!(e.publish, [published("127.0.0.1:8080:80"), published("10.0.0.9:8081:81")]);
    let e = m.publish("a", None, &[p("8082:82")]).unwrap();
    assert_eq!(e.publish.last(), Some(&published("127.0.0.1:8082:82")));
    // Naming every address keeps it, as in Docker.
    let e = m.publish("a", None, &[p("0.0.0.0:8083:83")]).unwrap();
    assert_eq!(e.publish.last(), Some(&published("0.0.0.0:8083:83")));
    let taken = m.publish("a", None, &[p("8083:84")]).unwrap_err().to_string();
    assert!(taken.contains("8083"), "127.0.0.1:8083 meets 0.0.0.0:8083: {taken}");
    // Another network's ports are not bound; the same host port elsewhere is free.
    let e = m.connect(Connect { publish: vec![p("8080:80")], ..Connect::new("open", "b") });
    let e = e.unwrap_err().to_string();
    assert!(e.contains("8080"), "0.0.0.0:8080 meets 127.0.0.1:8080: {e}");
    let e = m.connect(Connect { publish: vec![p("9090:90")], ..Connect::new("open", "b") }).unwrap();
    assert_eq!(e.publish, [published("0.0.0.0:9090:90")]);
    // Unpublished as asked; one mapping named twice is closed once; the
    // explicit 0.0.0.0 is not what `-p 8083:83` names here.
    m.unpublish("a", None, &[p("8082:82"), p("127.0.0.1:8082:82")]).unwrap();
    assert!(!m.endpoint_for("lo", "a").unwrap().publish.contains(&published("127.0.0.1:8082:82")));
    let before = snapshot(&m);
    let r = m.unpublish("a", None, &[p("8083:83")]);
    assert_refused(&m, &before, r, &["127.0.0.1:8083:83"]);
    m.unpublish("a", None, &[p("0.0.0.0:8083:83")]).unwrap();
    assert!(!m.endpoint_for("lo", "a").unwrap().publish.contains(&published("0.0.0.0:8083:83")));
    // Off a bound network, naming 0.0.0.0 or not is the same.
    m.unpublish("b", None, &[p("0.0.0.0:9090:90")]).unwrap();
    let service = m.publish_service("web", Some("lo"), &[p("7070:70"), p("0.0.0.0:7071:71")]).unwrap();
    assert_eq!(service.publish, [published("127.0.0.1:7070:70"), published("0.0.0.0:7071:71")]);
    // A new service without a network: on its replicas' network, bound there.
    m.create_sandbox(CreateSandbox::new("r")).unwrap();
    m.connect(Connect { service: Some("api".into()), ..Connect::new("lo", "r") }).unwrap();
    assert_eq!(m.service_network_id("api", None).unwrap(), m.network("lo").unwrap().id);
    let service = m.publish_service("api", None, &[p("0.0.0.0:7072:72"), p("7073:73")]).unwrap();
    assert_eq!(service.publish, [published("0.0.0.0:7072:72"), published("127.0.0.1:7073:73")]);

    let before = snapshot(&m);
    let bad = bridge("bad", "10.5.9.0/24");
    for value in ["localhost", "::1", "::ffff:127.0.0.1"] {
        let mut bad = bad.clone();
        bad.options.insert(HOST_BINDING_OPTION.into(), value.into());
        let r = m.create_network(bad);
        assert_refused(&m, &before, r, &[HOST_BINDING_OPTION, "IPv4 address"]);
    }
    let mut ov = CreateNetwork { attachable: true, ..CreateNetwork::new("ov", Driver::Overlay) };
    ov.options.insert(HOST_BINDING_OPTION.into(), "127.0.0.1".into());
    let r = m.create_network(ov);
    assert_refused(&m, &before, r, &[HOST_BINDING_OPTION]);
}

/// A network recorded by an older daemon or another node with options
/// `network create` now refuses: isolation and the host binding are a
/// bridge network's only, and the rest are listed as ignored (the daemon
/// warns at start).
#[test]
fn options_refused_now_have_no_effect_on_networks_recorded_before() {
    let mut m = Model::new();
    let ov = m.create_network(CreateNetwork { attachable: true, ..CreateNetwork::new("ov", Driver::Overlay) }).unwrap();
    let mut old = ov.clone();
    for (option, value) in [
        (ICC_OPTION, "false"),
        (HOST_BINDING_OPTION, "127.0.0.1"),
        ("com.docker.network.bridge.inhibit_ipv4", "true"),
        ("com.docker.network.bridge.gateway_mode_ipv4", "routed"),
        (MASQUERADE_OPTION, "false"),
    ] {
        old.options.insert(option.into(), value.into());
    }
    assert!(old.inter_container(), "no isolation on an overlay");
    assert_eq!(old.host_binding(), None, "no host binding on an overlay");
    let mut ignored = old.ignored_options();
    ignored.sort_unstable();
    assert_eq!(
        ignored,
        [
            "com.docker.network.bridge.enable_ip_masquerade",
            "com.docker.network.bridge.gateway_mode_ipv4",
            HOST_BINDING_OPTION,
            "com.docker.network.bridge.inhibit_ipv4",
        ]
    );
    assert!(m.create_network(bridge("plain", "10.5.1.0/24")).unwrap().ignored_options().is_empty());
}
