//! Unit tests of stack files: the YAML form, its errors, the source map
//! and the checks that need no daemon.

use super::*;
use crate::publish::PortProto;

const GOOD: &str = r#"version: "3.8"
networks:
  front:
    driver: bridge
    ipam:
      config:
        - subnet: 10.1.0.0/24
          gateway: 10.1.0.254
          ip_range: 10.1.0.128/25
  back:
    internal: true
    driver_opts:
      com.docker.network.driver.mtu: 1400
      egress: "false"
  ov:
    driver: overlay
    attachable: true
    driver_opts:
      encrypted: ""
      mss-clamp:
      com.docker.network.driver.overlay.vxlanid_list: "4242"
  legacy:
    external: true
sandboxes:
  web:
    dns: [192.0.2.53]
    dns_search: [example.com]
    dns_opt: [ndots:2, rotate]
    networks:
      front:
        ipv4_address: 10.1.0.10
        aliases: [api, www]
        mac_address: 02:00:00:00:00:0a
      back:
    ports:
      - "8080:80"
      - 127.0.0.1:5353:53/udp
  db:
    networks: [back, front]
  replica:
    networks:
      front:
        service: lb
services:
  lb:
    network: front
    ports: ["9090:90"]
"#;

fn parse(text: &str) -> Result<(Stack, SourceMap), yaml::ParseError> {
    yaml::parse("stack.yaml", text)
}

fn errors(text: &str) -> Vec<String> {
    parse(text).expect_err("the file should be refused").0
}

#[test]
fn a_compose_style_file_becomes_the_typed_stack() {
    let (stack, source) = parse(GOOD).unwrap();
    let names: Vec<&str> = stack.networks.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["front", "back", "ov", "legacy"], "the file's order");
    let front = &stack.networks[0];
    assert_eq!(front.driver, Driver::Bridge);
    assert_eq!(front.subnet, Some("10.1.0.0/24".parse().unwrap()));
    assert_eq!(front.gateway, Some(Ipv4Addr::new(10, 1, 0, 254)));
    assert_eq!(front.ip_range, Some("10.1.0.128/25".parse().unwrap()));
    let back = &stack.networks[1];
    assert!(back.internal && back.mtu == Some(1400));
    assert_eq!(back.options, BTreeMap::from([("egress".to_owned(), "false".to_owned())]));
    let ov = &stack.networks[2];
    assert_eq!((ov.driver, ov.attachable, ov.vni), (Driver::Overlay, true, Some(4242)));
    let keys: Vec<&str> = ov.options.keys().map(String::as_str).collect();
    assert_eq!(keys, ["encrypted", "mss-clamp"], "bare options are empty strings, the VNI is not an option");
    assert!(stack.networks[3].external);

    let web = &stack.sandboxes[0];
    assert_eq!(web.dns, [IpAddr::from([192, 0, 2, 53])]);
    assert_eq!(web.dns_search, ["example.com"]);
    assert_eq!(web.dns_options, ["ndots:2", "rotate"]);
    assert_eq!(web.networks.len(), 2);
    let a = &web.networks[0];
    assert_eq!(a.ipv4_address, Some(Ipv4Addr::new(10, 1, 0, 10)));
    assert_eq!(a.aliases, ["api", "www"]);
    assert_eq!(a.mac_address, Some("02:00:00:00:00:0a".parse().unwrap()));
    assert_eq!(web.networks[1], StackAttachment { network: "back".into(), ..Default::default() });
    assert_eq!(web.ports[0], PortMapping::tcp(8080, 80));
    assert_eq!(web.ports[1].proto, PortProto::Udp);
    assert_eq!(web.ports[1].host_ip, Ipv4Addr::LOCALHOST);
    let db: Vec<&str> = stack.sandboxes[1].networks.iter().map(|a| a.network.as_str()).collect();
    assert_eq!(db, ["back", "front"], "the list form keeps its order");
    assert_eq!(stack.sandboxes[2].networks[0].service.as_deref(), Some("lb"));
    assert_eq!(
        stack.services,
        [StackService { name: "lb".into(), network: "front".into(), ports: vec![PortMapping::tcp(9090, 90)] }]
    );

    // Where things are: object keys at their own line, values at theirs.
    let at = |key: &str| source.keys.get(key).map(|k| (k.path.as_str(), k.line));
    assert_eq!(at("networks.front"), Some(("networks.front", 3)));
    assert_eq!(at("networks.front.subnet"), Some(("networks.front.ipam.config[0].subnet", 7)));
    assert_eq!(at("networks.back.mtu"), Some(("networks.back.driver_opts.com.docker.network.driver.mtu", 13)));
    assert_eq!(
        at("networks.ov.vni"),
        Some(("networks.ov.driver_opts.com.docker.network.driver.overlay.vxlanid_list", 21))
    );
    assert_eq!(at("sandboxes.web.networks.front"), Some(("sandboxes.web.networks.front", 30)));
    assert_eq!(at("sandboxes.web.networks.back"), Some(("sandboxes.web.networks.back", 34)));
    assert_eq!(at("sandboxes.web.ports"), Some(("sandboxes.web.ports", 36)));
    assert_eq!(at("sandboxes.db.networks.front"), Some(("sandboxes.db.networks.front", 39)));
    assert_eq!(at("services.lb.network"), Some(("services.lb.network", 46)));
}

#[test]
fn issues_name_the_line_and_the_key_as_written() {
    let (_, source) = parse(GOOD).unwrap();
    let issue = StackIssue::new("networks.front.subnet", "subnet 10.1.0.0/24 overlaps network x (10.1.0.0/16)");
    assert_eq!(
        issue.render(Some(&source)),
        "stack.yaml:7: networks.front.ipam.config[0].subnet: subnet 10.1.0.0/24 overlaps network x (10.1.0.0/16)"
    );
    // A key the file does not write: the enclosing object's line, the key's own name.
    let issue = StackIssue::new("networks.back.gateway", "no");
    assert_eq!(issue.render(Some(&source)), "stack.yaml:10: networks.back.gateway: no");
    assert_eq!(issue.render(None), "networks.back.gateway: no");
    let issue = StackIssue::new("elsewhere", "no");
    assert_eq!(issue.render(Some(&source)), "elsewhere: no");
}

#[test]
fn yaml_and_type_errors_name_the_line_and_key() {
    let e = errors("networks:\n  front:\n    ipam:\n      config:\n        - subnet: 10.1.0.0/24\n          foo: 1\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("stack.yaml:6: networks.front.ipam.config[0].foo: unknown field `foo`"), "{e:?}");
    let e = errors("networks:\n  front:\n    internal: maybe\n");
    assert!(e[0].starts_with("stack.yaml:3: networks.front.internal: "), "{e:?}");
    let e = errors("sandboxes:\n  web:\n    networks:\n      front:\n        aliases: {a: 1}\n");
    assert!(e[0].starts_with("stack.yaml:5: sandboxes.web.networks.front.aliases: "), "{e:?}");
    let e = errors("sandboxes:\n  web:\n    image: nginx\n");
    assert!(e[0].starts_with("stack.yaml:3: sandboxes.web.image: unknown field `image`"), "{e:?}");
    let e = errors("networks: [\n");
    assert!(e[0].starts_with("stack.yaml:1: "), "{e:?}");
    let e = errors("networks:\n  a: {}\n  a: {}\n");
    assert!(e[0].starts_with("stack.yaml:3: ") && e[0].contains("duplicate"), "{e:?}");
}

#[test]
fn every_value_error_is_reported_at_its_line() {
    let text = "networks:\n  a:\n    driver: nope\n    ipam:\n      config:\n        - subnet: 10.0.0.0\n          \
                gateway: nope\n    driver_opts:\n      com.docker.network.driver.mtu: big\nsandboxes:\n  s:\n    \
                networks:\n      a:\n        ipv4_address: 10.0.0.300\n        mac_address: zz\n    ports: [\"80\"]\n";
    let e = errors(text);
    let expected = [
        "stack.yaml:3: networks.a.driver: unknown driver \"nope\"",
        "stack.yaml:6: networks.a.ipam.config[0].subnet: invalid CIDR",
        "stack.yaml:7: networks.a.ipam.config[0].gateway: \"nope\" is not an IPv4 address",
        "stack.yaml:9: networks.a.driver_opts.com.docker.network.driver.mtu: \"big\" is not a whole number",
        "stack.yaml:16: sandboxes.s.ports[0]: a stack file gives every host port",
        "stack.yaml:14: sandboxes.s.networks.a.ipv4_address: \"10.0.0.300\" is not an IPv4 address",
        "stack.yaml:15: sandboxes.s.networks.a.mac_address: invalid MAC address",
    ];
    assert_eq!(e.len(), expected.len(), "{e:#?}");
    for want in expected {
        assert!(e.iter().any(|line| line.starts_with(want)), "no {want:?} in {e:#?}");
    }
}

/// A dual-stack network with every IPv6 key, an IPv6-only one and one
/// with an automatic IPv6 subnet; a sandbox with fixed addresses on both.
const DUAL: &str = r#"networks:
  front:
    enable_ipv6: true
    ipam:
      config:
        - subnet: 10.1.0.0/24
        - subnet: fd00:1::/64
          gateway: fd00:1::fe
          ip_range: fd00:1::100/120
  v6only:
    enable_ipv4: false
    enable_ipv6: true
    ipam:
      config:
        - subnet: fd00:2::/64
  auto:
    enable_ipv6: true
sandboxes:
  web:
    dns: ["fd00:1::53"]
    networks:
      front:
        ipv4_address: 10.1.0.10
        ipv6_address: fd00:1::10
      v6only:
        ipv6_address: fd00:2::5
      auto:
"#;

#[test]
fn ipv6_keys_become_the_typed_stack() {
    let (stack, source) = parse(DUAL).unwrap();
    let front = &stack.networks[0];
    assert!(front.enable_ipv4 && front.enable_ipv6);
    assert_eq!(front.subnet, Some("10.1.0.0/24".parse().unwrap()));
    assert_eq!(front.subnet6, Some("fd00:1::/64".parse().unwrap()));
    assert_eq!(front.gateway6, Some("fd00:1::fe".parse().unwrap()));
    assert_eq!(front.ip_range6, Some("fd00:1::100/120".parse().unwrap()));
    assert_eq!((front.gateway, front.ip_range), (None, None), "the IPv6 config's keys are not the IPv4 ones");
    let v6only = &stack.networks[1];
    assert_eq!((v6only.enable_ipv4, v6only.enable_ipv6, v6only.subnet), (false, true, None));
    assert_eq!(v6only.subnet6, Some("fd00:2::/64".parse().unwrap()));
    let auto = &stack.networks[2];
    assert_eq!((auto.enable_ipv6, auto.subnet6, auto.subnet), (true, None, None));
    let web = &stack.sandboxes[0];
    assert_eq!(web.dns, ["fd00:1::53".parse::<IpAddr>().unwrap()]);
    assert_eq!(web.networks[0].ipv4_address, Some(Ipv4Addr::new(10, 1, 0, 10)));
    assert_eq!(web.networks[0].ipv6_address, Some("fd00:1::10".parse().unwrap()));
    assert_eq!(
        (web.networks[1].ipv4_address, web.networks[1].ipv6_address),
        (None, Some("fd00:2::5".parse().unwrap()))
    );
    assert_eq!(web.networks[2], StackAttachment { network: "auto".into(), ..Default::default() });

    // The IPv6 keys are located where the file writes them.
    let at = |key: &str| source.keys.get(key).map(|k| (k.path.as_str(), k.line));
    assert_eq!(at("networks.front.enable_ipv6"), Some(("networks.front.enable_ipv6", 3)));
    assert_eq!(at("networks.front.subnet"), Some(("networks.front.ipam.config[0].subnet", 6)));
    assert_eq!(at("networks.front.subnet6"), Some(("networks.front.ipam.config[1].subnet", 7)));
    assert_eq!(at("networks.front.gateway6"), Some(("networks.front.ipam.config[1].gateway", 8)));
    assert_eq!(at("networks.front.ip_range6"), Some(("networks.front.ipam.config[1].ip_range", 9)));
    assert_eq!(at("networks.v6only.enable_ipv4"), Some(("networks.v6only.enable_ipv4", 11)));
    assert_eq!(at("networks.v6only.subnet6"), Some(("networks.v6only.ipam.config[0].subnet", 15)));
    assert_eq!(
        at("sandboxes.web.networks.front.ipv6_address"),
        Some(("sandboxes.web.networks.front.ipv6_address", 24))
    );
    // A daemon's refusal of an IPv6 key names its line.
    let issue = StackIssue::new("networks.front.subnet6", "subnet fd00:1::/64 overlaps network x (fd00::/16)");
    assert_eq!(
        issue.render(Some(&source)),
        "stack.yaml:7: networks.front.ipam.config[1].subnet: subnet fd00:1::/64 overlaps network x (fd00::/16)"
    );
}

#[test]
fn ipv6_mistakes_are_refused_at_their_line() {
    let text = r#"networks:
  two:
    enable_ipv6: true
    ipam:
      config:
        - subnet: fd00:1::/64
        - subnet: fd00:2::/64
        - subnet: 10.0.0.0/24
        - subnet: 10.0.1.0/24
  off:
    ipam:
      config:
        - subnet: fd00:3::/64
          gateway: fd00:3::1
  bare:
    enable_ipv4: false
  v6only:
    enable_ipv4: false
    enable_ipv6: true
    ipam:
      config:
        - subnet: 10.9.0.0/24
  bad:
    enable_ipv6: true
    ipam:
      config:
        - subnet: fd00:4::/300
          gateway: 10.0.0.1
sandboxes:
  s:
    networks:
      off:
        ipv6_address: fd00:3::5
      v6only:
        ipv4_address: 10.9.0.5
      two:
        ipv4_address: fd00:1::6
        ipv6_address: 10.0.0.6
  t:
    networks:
      two:
        ipv6_address: fd00:1::zz
"#;
    let e = errors(text);
    let expected = [
        "stack.yaml:7: networks.two.ipam.config[1]: a network has one IPv6 subnet: remove this config",
        "stack.yaml:9: networks.two.ipam.config[3]: a network has one IPv4 subnet: remove this config",
        "stack.yaml:13: networks.off.ipam.config[0].subnet: an IPv6 subnet needs enable_ipv6: true on the network",
        "stack.yaml:14: networks.off.ipam.config[0].gateway: an IPv6 gateway needs enable_ipv6: true",
        "stack.yaml:16: networks.bare.enable_ipv4: a network needs an address family",
        "stack.yaml:22: networks.v6only.ipam.config[0].subnet: an IPv4 subnet cannot be configured with enable_ipv4: \
         false",
        "stack.yaml:27: networks.bad.ipam.config[0].subnet: invalid CIDR \"fd00:4::/300\"",
        "stack.yaml:28: networks.bad.ipam.config[0].gateway: \"10.0.0.1\" is not an IPv6 address",
        "stack.yaml:33: sandboxes.s.networks.off.ipv6_address: network off has no IPv6: give it enable_ipv6: true",
        "stack.yaml:35: sandboxes.s.networks.v6only.ipv4_address: network v6only is IPv6-only",
        "stack.yaml:37: sandboxes.s.networks.two.ipv4_address: fd00:1::6 is an IPv6 address: give it as ipv6_address",
        "stack.yaml:38: sandboxes.s.networks.two.ipv6_address: 10.0.0.6 is an IPv4 address: give it as ipv4_address",
        "stack.yaml:42: sandboxes.t.networks.two.ipv6_address: \"fd00:1::zz\" is not an IPv6 address",
    ];
    assert_eq!(e.len(), expected.len(), "{e:#?}");
    for want in expected {
        assert!(e.iter().any(|line| line.starts_with(want)), "no {want:?} in {e:#?}");
    }
    // The same family checks hold for a stack sent as JSON, without a file.
    let stack: Stack = serde_json::from_str(
        r#"{"networks":[{"name":"a","subnet6":"fd00:1::/64"}],
            "sandboxes":[{"name":"s","networks":[{"network":"a","ipv6_address":"fd00:1::5"}]}]}"#,
    )
    .unwrap();
    let keys: Vec<String> = validate(&stack).into_iter().map(|i| i.key).collect();
    assert_eq!(keys, ["networks.a.subnet6", "sandboxes.s.networks.a.ipv6_address"]);
    // `enable_ipv6: false` and `enable_ipv4: true` say what is the default.
    let (stack, _) = parse("networks:\n  a:\n    enable_ipv6: false\n    enable_ipv4: true\n").unwrap();
    assert_eq!(stack.networks[0], StackNetwork { name: "a".into(), ..StackNetwork::default() });
    // An IPv6 host address in a port is the port parser's to accept or refuse.
    let file = "sandboxes:\n  s:\n    networks: [bridge]\n    ports: [\"[::1]:80:80\"]\n";
    match crate::publish::parse_publish("[::1]:80:80") {
        Ok(ports) => assert_eq!(parse(file).unwrap().0.sandboxes[0].ports, ports),
        Err(e) => assert_eq!(errors(file), [format!("stack.yaml:4: sandboxes.s.ports[0]: {e}")]),
    }
    // Exported as written: `[::]` (IPv6 only) keeps its address, `0.0.0.0`
    // (both families) is the short form.
    for (spec, exported) in [("[::]:80:81", "[::]:80:81"), ("[::1]:80:81/udp", "[::1]:80:81/udp"), ("80:81", "80:81")] {
        let ports = crate::parse_publish(spec).unwrap();
        assert_eq!(super::port_spec(&ports[0]), exported);
        assert_eq!(crate::parse_publish(exported).unwrap(), ports, "{spec} reads back");
    }
}

#[test]
fn an_ipv6_stack_exports_and_reads_back_the_same() {
    let (stack, _) = parse(DUAL).unwrap();
    let text = yaml::to_yaml(&stack).unwrap();
    for line in [
        "    enable_ipv6: true\n",
        "    enable_ipv4: false\n",
        "      - subnet: fd00:1::/64\n",
        "        ip_range: fd00:1::100/120\n",
        "        gateway: fd00:1::fe\n",
        "        ipv6_address: fd00:1::10\n",
    ] {
        assert!(text.contains(line), "no {line:?} in\n{text}");
    }
    let front = text.split_once("  front:").unwrap().1;
    let (v4, v6) = (front.find("10.1.0.0/24").unwrap(), front.find("fd00:1::/64").unwrap());
    assert!(v4 < v6, "the IPv4 config first, as compose writes them:\n{text}");
    let (again, _) = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(again, stack, "{text}");
    assert_eq!(yaml::to_yaml(&again).unwrap(), text, "deterministic");
    // As the protocol carries it: defaults left out, the rest kept.
    let json = serde_json::to_value(&stack).unwrap();
    assert_eq!(json["networks"][1]["enable_ipv4"], false);
    assert_eq!(json["networks"][0].get("enable_ipv4"), None, "true is the default");
    assert_eq!(json["networks"][0]["subnet6"], "fd00:1::/64");
    assert_eq!(json["sandboxes"][0]["networks"][0]["ipv6_address"], "fd00:1::10");
    assert_eq!(serde_json::from_value::<Stack>(json).unwrap(), stack);
}

#[test]
fn references_are_checked_without_a_daemon() {
    let text = "networks:\n  bridge:\n    driver: bridge\n  ext:\n    external: true\n    internal: true\nsandboxes:\n  \
                s:\n    networks: [nope, bridge, bridge]\n  t:\n    ports: [\"80:80\"]\nservices:\n  v:\n    network: gone\n    \
                ports: [\"81:81\"]\n  w:\n    ports: [\"82:82\"]\n";
    let e = errors(text);
    let expected = [
        "stack.yaml:2: networks.bridge: bridge is a predefined network",
        "stack.yaml:5: networks.ext.external: an external network",
        "stack.yaml:9: sandboxes.s.networks.nope: network nope is not declared",
        "stack.yaml:9: sandboxes.s.networks.bridge: network bridge is listed twice",
        "stack.yaml:11: sandboxes.t.ports: ports need a network",
        "stack.yaml:14: services.v.network: network gone is not declared",
        "stack.yaml:16: services.w: a service needs network:",
    ];
    assert_eq!(e.len(), expected.len(), "{e:#?}");
    for want in expected {
        assert!(e.iter().any(|line| line.starts_with(want)), "no {want:?} in {e:#?}");
    }
}

#[test]
fn export_writes_a_file_that_reads_back_the_same() {
    let (stack, _) = parse(GOOD).unwrap();
    let text = yaml::to_yaml(&stack).unwrap();
    assert!(text.starts_with("# vswitch stack"), "{text}");
    let (again, _) = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(again, stack, "{text}");
    assert_eq!(yaml::to_yaml(&again).unwrap(), text, "deterministic");
    // Nothing at all is still a file.
    let empty = yaml::to_yaml(&Stack::default()).unwrap();
    assert_eq!(parse(&empty).unwrap().0, Stack::default());
    assert_eq!(parse("").unwrap().0, Stack::default());
}

#[test]
fn network_labels_are_read_and_written_as_compose_writes_them() {
    let text = "networks:\n  back:\n    labels:\n      tier: data\n      backup:\n";
    let (stack, source) = parse(text).unwrap();
    let labels: Vec<(&str, &str)> = stack.networks[0].labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(labels, [("backup", ""), ("tier", "data")], "a bare key is an empty label");
    assert_eq!(source.keys.get("networks.back.labels").map(|k| k.line), Some(4), "where the labels start");
    let written = yaml::to_yaml(&stack).unwrap();
    assert_eq!(parse(&written).unwrap().0, stack, "{written}");
    // Compose's list form says the same.
    let list = "networks:\n  back:\n    labels: [\"tier=data\", backup]\n";
    assert_eq!(parse(list).unwrap().0, stack);
}

#[test]
fn aux_addresses_are_read_per_family_and_written_back() {
    let text = "networks:\n  lan:\n    enable_ipv6: true\n    ipam:\n      config:\n        - subnet: 10.9.0.0/24\n          \
                aux_addresses:\n            router: 10.9.0.2\n            printer: 10.9.0.3\n        - subnet: fd00:9::/64\n          \
                aux_addresses:\n            router6: fd00:9::2\n";
    let (stack, source) = parse(text).unwrap_or_else(|e| panic!("{e}"));
    let aux: Vec<String> = stack.networks[0].aux_addresses.iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert_eq!(aux, ["printer=10.9.0.3", "router=10.9.0.2", "router6=fd00:9::2"]);
    assert_eq!(source.keys.get("networks.lan.aux_addresses.router").map(|k| k.line), Some(8));
    let written = yaml::to_yaml(&stack).unwrap();
    assert!(written.contains("        aux_addresses:\n          printer: \"10.9.0.3\"\n"), "{written}");
    assert_eq!(parse(&written).unwrap().0, stack, "{written}");
    // A name given in both configs would lose one address: refused.
    let twice = text.replace("router6: fd00:9::2", "router: fd00:9::2");
    let e = errors(&twice);
    assert!(e.iter().any(|l| l.contains("router names an address of the other ipam config too")), "{e:#?}");
    // An address of the other family than its config's is refused at its line.
    let wrong = text.replace("router6: fd00:9::2", "router6: 10.9.0.4");
    let e = errors(&wrong);
    assert!(
        e.iter().any(|l| l.starts_with(
            "stack.yaml:12: networks.lan.ipam.config[1].aux_addresses.router6: \"10.9.0.4\" is not an IPv6"
        )),
        "{e:#?}"
    );
}

#[test]
fn the_stack_travels_as_json() {
    let (stack, source) = parse(GOOD).unwrap();
    let json = serde_json::to_string(&stack).unwrap();
    assert_eq!(serde_json::from_str::<Stack>(&json).unwrap(), stack);
    let json = serde_json::to_string(&source).unwrap();
    assert_eq!(serde_json::from_str::<SourceMap>(&json).unwrap(), source);
    // Only names are needed.
    let minimal: Stack = serde_json::from_str(r#"{"networks":[{"name":"a"}],"sandboxes":[{"name":"s"}]}"#).unwrap();
    assert_eq!(minimal.networks[0].driver, Driver::Bridge);
    assert!(validate(&minimal).is_empty());
}

#[test]
fn the_readme_example_is_a_valid_stack() {
    let readme = include_str!("../../../README.md");
    let section = readme.split_once("## Stack files").expect("README section").1;
    let yaml = section.split_once("```yaml\n").expect("example").1.split_once("```").expect("end").0;
    let (stack, _) = parse(yaml).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((stack.networks.len(), stack.sandboxes.len(), stack.services.len()), (4, 3, 1));
    assert_eq!(stack.networks[2].vni, Some(4242));
    assert_eq!(
        (stack.networks[0].enable_ipv6, stack.networks[0].subnet6),
        (true, Some("fd00:1::/64".parse().unwrap()))
    );
    assert_eq!(stack.sandboxes[0].networks[0].ipv6_address, Some("fd00:1::10".parse().unwrap()));
    assert_eq!(stack.sandboxes[0].networks[0].gw_priority, 1);
    let again = parse(&yaml::to_yaml(&stack).unwrap()).unwrap().0;
    assert_eq!(again, stack, "written back as it was read");
    assert_eq!(stack.sandboxes[2].networks[0].service.as_deref(), Some("lb"));
}

#[test]
fn a_macvlan_network_takes_its_parent_from_driver_opts() {
    let text = "networks:\n  lan:\n    driver: macvlan\n    driver_opts:\n      parent: enp3s0\n      port-type: afxdp\n    \
                ipam:\n      config:\n        - subnet: 192.168.1.0/24\n";
    let (stack, _) = parse(text).unwrap();
    let lan = &stack.networks[0];
    assert_eq!(lan.driver, Driver::Macvlan);
    assert_eq!(lan.options.get("parent").map(String::as_str), Some("enp3s0"));
    assert_eq!(lan.options.get("port-type").map(String::as_str), Some("afxdp"));
    // Written back the same way (an export of a macvlan network applies).
    let again = parse(&yaml::to_yaml(&stack).unwrap()).unwrap().0;
    assert_eq!(again, stack);
    // Without a parent it is refused at the driver's line.
    let e = errors("networks:\n  lan:\n    driver: macvlan\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("stack.yaml:3: networks.lan.driver: the macvlan driver needs driver_opts.parent"),
        "{e:?}"
    );
}

/// Compose's `extra_hosts`, in its list form, read as given and written
/// back; its map form (an address or a list of them per name) read as one
/// entry per address; anything else refused at its line.
#[test]
fn extra_hosts_are_read_and_written_back() {
    let text = "sandboxes:\n  web:\n    extra_hosts: [\"db:10.0.0.5\", \"db6=fd00::5\"]\n";
    let (stack, _) = parse(text).unwrap();
    assert_eq!(stack.sandboxes[0].extra_hosts, ["db:10.0.0.5", "db6=fd00::5"]);
    let written = yaml::to_yaml(&stack).unwrap();
    assert_eq!(parse(&written).unwrap().0, stack, "{written}");
    let text = "sandboxes:\n  web:\n    extra_hosts:\n      db: 10.0.0.5\n      db6: [\"fd00::5\", \"::1\"]\n";
    let (stack, _) = parse(text).unwrap();
    assert_eq!(stack.sandboxes[0].extra_hosts, ["db=10.0.0.5", "db6=fd00::5", "db6=::1"]);
    let e = errors("sandboxes:\n  web:\n    extra_hosts: 10.0.0.5\n");
    assert!(e[0].starts_with("stack.yaml:3") && e[0].contains("extra_hosts"), "{e:?}");
    for bad in ["db: {ip: 10.0.0.5}", "db:", "db: 10"] {
        let e = errors(&format!("sandboxes:\n  web:\n    extra_hosts:\n      {bad}\n"));
        assert!(e[0].starts_with("stack.yaml:") && e[0].contains("extra_hosts"), "{bad}: {e:?}");
        assert!(e[0].contains("an address or a list of addresses"), "{bad}: {e:?}");
    }
}

/// Compose's `interface_name` of a sandbox's network, and Docker's
/// `com.docker.network.endpoint.ifname` endpoint option, name the
/// interface; they must agree, other endpoint options are refused, and an
/// export writes the name back.
#[test]
fn interface_names_from_compose_and_docker_endpoint_options() {
    let text = "networks:\n  a: {}\n  b: {}\nsandboxes:\n  s:\n    networks:\n      a:\n        interface_name: lan0\n      \
                b:\n        driver_opts:\n          com.docker.network.endpoint.ifname: wan0\n";
    let (stack, _) = parse(text).unwrap();
    let names: Vec<_> = stack.sandboxes[0].networks.iter().map(|a| a.interface_name.as_deref()).collect();
    assert_eq!(names, [Some("lan0"), Some("wan0")]);
    let again = parse(&yaml::to_yaml(&stack).unwrap()).unwrap().0;
    assert_eq!(again, stack, "written back as it was read");

    let text = "networks:\n  a: {}\nsandboxes:\n  s:\n    networks:\n      a:\n        interface_name: lan0\n        \
                driver_opts:\n          com.docker.network.endpoint.ifname: wan0\n          \
                com.docker.network.endpoint.sysctls: x\n";
    let e = errors(text);
    assert!(e.iter().any(|e| e.starts_with("stack.yaml:7: ") && e.contains("differ")), "{e:?}");
    assert!(e.iter().any(|e| e.contains("\"com.docker.network.endpoint.sysctls\" is not supported")), "{e:?}");
}
