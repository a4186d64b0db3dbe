//! Configuration-only networks and the networks made from them.

use super::*;

/// `--config-only` with an IPv4 and an IPv6 subnet, a gateway, a range,
/// an auxiliary address, a label and a macvlan parent.
fn config(name: &str) -> CreateNetwork {
    CreateNetwork {
        config_only: true,
        subnet: Some(net("10.50.0.0/24")),
        gateway: Some(ip("10.50.0.254")),
        ip_range: Some(net("10.50.0.128/25")),
        enable_ipv6: true,
        subnet6: Some("fd00:50::/64".parse().unwrap()),
        aux_addresses: [("router".to_owned(), "10.50.0.1".parse().unwrap())].into(),
        labels: [("site".to_owned(), "lab".to_owned())].into(),
        options: [(PARENT_OPTION.to_owned(), "eth9".to_owned()), (DOCKER_MTU_OPTION.to_owned(), "1400".to_owned())]
            .into(),
        ..CreateNetwork::new(name, Driver::Bridge)
    }
}

/// `network create -d DRIVER --config-from FROM NAME`.
fn from(name: &str, driver: Driver, config: &str) -> CreateNetwork {
    CreateNetwork { config_from: Some(config.to_owned()), ..CreateNetwork::new(name, driver) }
}

#[test]
fn a_config_network_holds_settings_and_takes_no_subnet() {
    let mut m = Model::new();
    let c = m.create_config_network(config("cfg")).unwrap();
    assert_eq!(m.config_network("cfg").unwrap(), &c);
    assert_eq!(m.config_network(&c.id[..8]).unwrap().name, "cfg", "a unique id prefix finds it");
    assert_eq!(c.settings.subnet, Some(net("10.50.0.0/24")));
    assert_eq!(c.settings.options.get(PARENT_OPTION).map(String::as_str), Some("eth9"));
    assert!(m.networks().iter().all(|n| n.name != "cfg"), "not a network: nothing walks it");
    // Its subnet is not taken: a network may use it, and so may another configuration.
    m.create_config_network(config("cfg2")).unwrap();
    m.create_network(bridge("plain", "10.50.0.0/24")).unwrap();
    m.check_invariants().unwrap();
}

#[test]
fn what_a_network_could_never_be_is_refused_at_once() {
    let mut m = Model::new();
    m.create_network(bridge("taken", "10.9.0.0/24")).unwrap();
    let before = snapshot(&m);
    let bad_gateway = CreateNetwork { gateway: Some(ip("10.99.0.1")), ..config("c") };
    assert_refused(&m, &before, m.clone().create_config_network(bad_gateway), &["gateway", "10.99.0.1"]);
    let host_bits = CreateNetwork { subnet: Some(net("10.50.0.1/24")), ip_range: None, ..config("c") };
    assert_refused(&m, &before, m.clone().create_config_network(host_bits), &["host bits"]);
    let no_family = CreateNetwork { enable_ipv4: false, subnet: None, gateway: None, ip_range: None, ..config("c") };
    let six_only_aux = m.clone().create_config_network(no_family);
    assert!(six_only_aux.is_err(), "an IPv4 aux address on an IPv6-only configuration: {six_only_aux:?}");
    let mut bad_mtu = CreateNetwork { mtu: Some(20), ..config("c") };
    bad_mtu.options.remove(DOCKER_MTU_OPTION);
    assert_refused(&m, &before, m.clone().create_config_network(bad_mtu), &["mtu 20"]);
    let differing = CreateNetwork { mtu: Some(9000), ..config("c") };
    assert_refused(&m, &before, m.clone().create_config_network(differing), &["differs from --mtu"]);
    // Docker's operator fields belong to the networks made from it.
    for (req, what) in [
        (CreateNetwork { internal: true, ..config("c") }, "--internal"),
        (CreateNetwork { attachable: true, ..config("c") }, "--attachable"),
        (CreateNetwork { config_from: Some("x".into()), ..config("c") }, "--config-from"),
    ] {
        assert_refused(&m, &before, m.clone().create_config_network(req), &[what]);
    }
    // One name space for networks and configurations.
    assert_refused(&m, &before, m.clone().create_config_network(config("taken")), &["already exists"]);
    let mut with_config = m.clone();
    with_config.create_config_network(config("cfg")).unwrap();
    let before = snapshot(&with_config);
    assert_refused(
        &with_config,
        &before,
        with_config.clone().create_network(bridge("cfg", "10.7.0.0/24")),
        &["already exists"],
    );
}

#[test]
fn a_network_from_a_config_takes_its_settings_and_names_it() {
    let mut m = Model::new();
    m.create_config_network(config("cfg")).unwrap();
    let mut req = CreateNetwork { internal: true, ..from("lan", Driver::Macvlan, "cfg") };
    m.apply_config_from(&mut req).unwrap();
    fold_docker_options(&mut req).unwrap();
    let n = m.create_network(req).unwrap();
    assert_eq!((n.driver, n.internal, n.attachable), (Driver::Macvlan, true, false), "its own driver and flags");
    assert_eq!(
        (n.subnet, n.gateway, n.ip_range),
        (Some(net("10.50.0.0/24")), Some(ip("10.50.0.254")), Some(net("10.50.0.128/25")))
    );
    assert_eq!(n.subnet6, Some("fd00:50::/64".parse().unwrap()));
    assert_eq!(n.mtu, 1400, "Docker's MTU option, read by the network's driver");
    assert_eq!(n.options.get(PARENT_OPTION).map(String::as_str), Some("eth9"));
    assert_eq!(n.labels.get("site").map(String::as_str), Some("lab"));
    assert_eq!(n.aux_addresses.len(), 1);
    assert_eq!(n.config_from.as_deref(), Some("cfg"));
    // By id too; recorded by name, as Docker keeps it.
    let id = m.config_network("cfg").unwrap().id.clone();
    let mut req = from("lan2", Driver::Bridge, &id);
    m.apply_config_from(&mut req).unwrap();
    assert_eq!(req.config_from.as_deref(), Some("cfg"));
    // The subnet is the network's now: a second network from it overlaps.
    req.options.clear();
    let refused = m.create_network(req);
    assert!(matches!(refused, Err(ModelError::SubnetOverlap { .. })), "{refused:?}");
    // It survives a save and load.
    let back: Model = serde_json::from_str(&snapshot(&m)).unwrap();
    assert_eq!(back, m);
}

#[test]
fn a_network_from_a_config_gives_no_settings_of_its_own() {
    let mut m = Model::new();
    m.create_config_network(config("cfg")).unwrap();
    m.create_network(bridge("plain", "10.8.0.0/24")).unwrap();
    let given = [
        (CreateNetwork { subnet: Some(net("10.6.0.0/24")), ..from("n", Driver::Bridge, "cfg") }, "--subnet"),
        (
            CreateNetwork { gateway6: Some("fd00:50::9".parse().unwrap()), ..from("n", Driver::Bridge, "cfg") },
            "--gateway",
        ),
        (CreateNetwork { enable_ipv6: true, ..from("n", Driver::Bridge, "cfg") }, "--ipv6"),
        (CreateNetwork { enable_ipv4: false, ..from("n", Driver::Bridge, "cfg") }, "--ipv4=false"),
        (CreateNetwork { mtu: Some(9000), ..from("n", Driver::Bridge, "cfg") }, "--mtu"),
        (CreateNetwork { labels: [("a".into(), "b".into())].into(), ..from("n", Driver::Bridge, "cfg") }, "--label"),
        (
            CreateNetwork { options: [("spread".into(), String::new())].into(), ..from("n", Driver::Bridge, "cfg") },
            "-o",
        ),
        (CreateNetwork { config_only: true, ..from("n", Driver::Bridge, "cfg") }, "--config-from"),
    ];
    for (mut req, what) in given {
        let msg = m.apply_config_from(&mut req).unwrap_err().to_string();
        assert!(msg.contains(what), "{what}: {msg}");
    }
    let mut missing = from("n", Driver::Bridge, "nothing");
    assert!(matches!(m.apply_config_from(&mut missing), Err(ModelError::NoSuchConfigNetwork(_))));
    let mut not_config = from("n", Driver::Bridge, "plain");
    let msg = m.apply_config_from(&mut not_config).unwrap_err().to_string();
    assert!(msg.contains("not a configuration-only network"), "{msg}");
}

#[test]
fn nothing_attaches_to_a_config_and_it_stays_while_used() {
    let mut m = Model::new();
    m.create_config_network(config("cfg")).unwrap();
    m.create_sandbox(CreateSandbox::new("s1")).unwrap();
    let before = snapshot(&m);
    assert_refused(
        &m,
        &before,
        m.clone().connect(Connect::new("cfg", "s1")),
        &["configuration-only", "--config-from cfg"],
    );
    let mut req = from("lan", Driver::Bridge, "cfg");
    m.apply_config_from(&mut req).unwrap();
    req.options.clear();
    m.create_network(req).unwrap();
    let before = snapshot(&m);
    assert_refused(&m, &before, m.clone().remove_config_network("cfg"), &["in use", "lan"]);
    m.remove_network("lan").unwrap();
    let removed = m.remove_config_network("cfg").unwrap();
    assert_eq!(removed.name, "cfg");
    assert!(matches!(m.network("cfg"), Err(ModelError::NoSuchNetwork(_))));
}

#[test]
fn a_state_file_naming_a_missing_config_is_refused() {
    let mut m = Model::new();
    m.create_config_network(config("cfg")).unwrap();
    let mut req = from("lan", Driver::Bridge, "cfg");
    m.apply_config_from(&mut req).unwrap();
    req.options.clear();
    m.create_network(req).unwrap();
    let mut state: serde_json::Value = serde_json::to_value(&m).unwrap();
    state["config_networks"] = serde_json::json!([]);
    let err = serde_json::from_value::<Model>(state).unwrap_err().to_string();
    assert!(err.contains("names configuration network cfg"), "{err}");
}

#[test]
fn networks_and_configs_share_one_name_space_as_in_docker() {
    let mut m = Model::new();
    let lan = m.create_network(bridge("lan", "10.3.0.0/24")).unwrap();
    // A configuration named after the start of the network's id: the exact
    // name wins over the prefix, both ways.
    let prefix = lan.id[..4].to_owned();
    let c = m
        .create_config_network(CreateNetwork {
            subnet: None,
            gateway: None,
            ip_range: None,
            aux_addresses: Default::default(),
            enable_ipv6: false,
            subnet6: None,
            ..config(&prefix)
        })
        .unwrap();
    assert!(matches!(m.network(&prefix), Err(ModelError::ConfigOnly(n)) if n == prefix));
    assert_eq!(m.config_network(&prefix).unwrap().id, c.id);
    assert_eq!(m.network("lan").unwrap().id, lan.id);
    assert!(matches!(m.config_network("lan"), Err(ModelError::NotAConfigNetwork(n)) if n == "lan"));
    // A prefix of both ids is ambiguous, naming both.
    let common: String = lan.id.chars().zip(c.id.chars()).take_while(|(a, b)| a == b).map(|(a, _)| a).collect();
    if !common.is_empty() {
        let msg = m.network(&common).unwrap_err().to_string();
        assert!(msg.contains("ambiguous") && msg.contains("lan") && msg.contains(&prefix), "{msg}");
    }
    // A network's id by a unique prefix still finds it.
    assert_eq!(m.network(&lan.id[..12]).unwrap().name, "lan");
    // A network may name only a configuration network that exists.
    let stray = CreateNetwork { config_from: Some("nothing".into()), ..bridge("x", "10.4.0.0/24") };
    assert!(matches!(m.create_network(stray), Err(ModelError::NoSuchConfigNetwork(_))));
}
