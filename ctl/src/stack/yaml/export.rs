//! Writing a [`Stack`] as a stack file: compose's keys, in the stack's
//! order (the daemon's export is sorted by name), empty keys left out, so
//! the text is deterministic and [`super::parse`] reads back the same stack.

use indexmap::IndexMap;
use serde::Serialize;
use serde_saphyr::DoubleQuoted;

use crate::stack::{MTU_OPTION, Stack, StackAttachment, StackNetwork, StackSandbox, VNI_OPTION, port_spec};

#[derive(Serialize)]
struct OutDoc {
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    networks: IndexMap<String, OutNetwork>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    sandboxes: IndexMap<String, OutSandbox>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    services: IndexMap<String, OutService>,
}

#[derive(Serialize)]
struct OutNetwork {
    #[serde(skip_serializing_if = "Option::is_none")]
    external: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    driver: Option<String>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    driver_opts: IndexMap<String, String>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    labels: IndexMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attachable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    internal: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enable_ipv4: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enable_ipv6: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ipam: Option<OutIpam>,
}

#[derive(Serialize)]
struct OutIpam {
    config: Vec<OutIpamConfig>,
}

#[derive(Serialize)]
struct OutIpamConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    subnet: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip_range: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway: Option<String>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    aux_addresses: IndexMap<String, String>,
}

impl OutIpamConfig {
    /// The entry of one family's settings, if any is set.
    fn of(
        subnet: Option<String>,
        ip_range: Option<String>,
        gateway: Option<String>,
        aux_addresses: IndexMap<String, String>,
    ) -> Option<Self> {
        (subnet.is_some() || ip_range.is_some() || gateway.is_some() || !aux_addresses.is_empty()).then_some(Self {
            subnet,
            ip_range,
            gateway,
            aux_addresses,
        })
    }
}

#[derive(Serialize)]
struct OutSandbox {
    #[serde(skip_serializing_if = "Option::is_none")]
    netns: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    dns: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    dns_search: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    dns_opt: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    extra_hosts: Vec<DoubleQuoted<String>>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    networks: IndexMap<String, OutAttachment>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ports: Vec<DoubleQuoted<String>>,
}

#[derive(Serialize)]
struct OutAttachment {
    #[serde(skip_serializing_if = "Option::is_none")]
    ipv4_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ipv6_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mac_address: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    aliases: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gw_priority: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interface_name: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ports: Vec<DoubleQuoted<String>>,
}

#[derive(Serialize)]
struct OutService {
    network: String,
    ports: Vec<DoubleQuoted<String>>,
}

/// Ports in compose's short syntax, quoted: YAML 1.1 readers take an
/// unquoted `8080:80` for a base-60 number.
fn quoted_ports(ports: &[crate::publish::PortMapping]) -> Vec<DoubleQuoted<String>> {
    ports.iter().map(|m| DoubleQuoted(port_spec(m))).collect()
}

fn network(n: &StackNetwork) -> OutNetwork {
    if n.external {
        return OutNetwork {
            external: Some(true),
            driver: None,
            driver_opts: IndexMap::new(),
            labels: IndexMap::new(),
            attachable: None,
            internal: None,
            enable_ipv4: None,
            enable_ipv6: None,
            ipam: None,
        };
    }
    let mut driver_opts: IndexMap<String, String> = n.options.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    if let Some(mtu) = n.mtu {
        driver_opts.insert(MTU_OPTION.to_owned(), mtu.to_string());
    }
    if let Some(vni) = n.vni {
        driver_opts.insert(VNI_OPTION.to_owned(), vni.to_string());
    }
    fn text<T: ToString>(v: Option<T>) -> Option<String> {
        v.map(|v| v.to_string())
    }
    // One config per family, IPv4 first, as compose writes them.
    let aux = |v6: bool| -> IndexMap<String, String> {
        n.aux_addresses.iter().filter(|(_, ip)| ip.is_ipv6() == v6).map(|(k, ip)| (k.clone(), ip.to_string())).collect()
    };
    let config: Vec<OutIpamConfig> = [
        OutIpamConfig::of(text(n.subnet), text(n.ip_range), text(n.gateway), aux(false)),
        OutIpamConfig::of(text(n.subnet6), text(n.ip_range6), text(n.gateway6), aux(true)),
    ]
    .into_iter()
    .flatten()
    .collect();
    OutNetwork {
        external: None,
        driver: Some(n.driver.to_string()),
        driver_opts,
        labels: n.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        attachable: n.attachable.then_some(true),
        internal: n.internal.then_some(true),
        enable_ipv4: (!n.enable_ipv4).then_some(false),
        enable_ipv6: n.enable_ipv6.then_some(true),
        ipam: (!config.is_empty()).then_some(OutIpam { config }),
    }
}

fn attachment(a: &StackAttachment) -> OutAttachment {
    OutAttachment {
        ipv4_address: a.ipv4_address.map(|ip| ip.to_string()),
        ipv6_address: a.ipv6_address.map(|ip| ip.to_string()),
        mac_address: a.mac_address.map(|m| m.to_string()),
        aliases: a.aliases.clone(),
        service: a.service.clone(),
        gw_priority: (a.gw_priority != 0).then_some(a.gw_priority),
        interface_name: a.interface_name.clone(),
        ports: quoted_ports(&a.ports),
    }
}

fn sandbox(s: &StackSandbox) -> OutSandbox {
    OutSandbox {
        netns: s.netns.as_ref().map(|p| p.display().to_string()),
        dns: s.dns.iter().map(|ip| ip.to_string()).collect(),
        dns_search: s.dns_search.clone(),
        dns_opt: s.dns_options.clone(),
        extra_hosts: s.extra_hosts.iter().cloned().map(DoubleQuoted).collect(),
        networks: s.networks.iter().map(|a| (a.network.clone(), attachment(a))).collect(),
        ports: quoted_ports(&s.ports),
    }
}

/// `stack` as a stack file, beginning with a comment line saying what
/// wrote it.
pub fn to_yaml(stack: &Stack) -> Result<String, serde_saphyr::SerializeError> {
    let doc = OutDoc {
        networks: stack.networks.iter().map(|n| (n.name.clone(), network(n))).collect(),
        sandboxes: stack.sandboxes.iter().map(|s| (s.name.clone(), sandbox(s))).collect(),
        services: stack
            .services
            .iter()
            .map(|v| (v.name.clone(), OutService { network: v.network.clone(), ports: quoted_ports(&v.ports) }))
            .collect(),
    };
    let body = if doc.networks.is_empty() && doc.sandboxes.is_empty() && doc.services.is_empty() {
        "{}\n".to_owned()
    } else {
        serde_saphyr::to_string(&doc)?
    };
    Ok(format!("# vswitch stack: vswitchctl apply -f FILE creates what it describes\n{body}"))
}
