//! The YAML form of a [`Stack`]: [`parse`] reads a stack file (compose's
//! `networks:` plus vswitch's `sandboxes:` and `services:`) into the typed
//! desired state and a [`SourceMap`]; [`to_yaml`] writes a stack back
//! (what `vswitchctl export` prints), sorted and re-applicable.
//!
//! YAML goes through `serde-saphyr` (panic-free parser, spans on values)
//! and `serde_path_to_error` (the key path of a type error), so every error
//! names the file's line and key: `stack.yaml:7: networks.front.ipam.config[0]:
//! unknown field `foo``.

mod doc;
mod export;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde_saphyr::Spanned;

use super::{
    IFNAME_OPTION, MTU_OPTION, SourceMap, Stack, StackAttachment, StackIssue, StackNetwork, StackSandbox, StackService,
    VNI_OPTION,
};
use crate::addr::{Ipv6Net, MacAddr, parse_ipv4_net};
use crate::proto::Driver;
use crate::publish::{PortMapping, parse_publish};
use doc::{AttachmentDoc, Attachments, Doc, IpamConfigDoc, NetworkDoc, SandboxDoc, Scalar, ServiceDoc};

pub use export::to_yaml;

/// A stack file that cannot be applied: one line per problem, each naming
/// the file, line and key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct ParseError(pub Vec<String>);

/// Reads stack file `text` (named `file` in messages). Every problem the
/// file has on its own is reported, not only the first; the daemon checks
/// the rest against its state.
pub fn parse(file: &str, text: &str) -> Result<(Stack, SourceMap), ParseError> {
    let mut source = SourceMap::new(file);
    if text.trim().is_empty() {
        return Ok((Stack::default(), source));
    }
    let mut error_path = None;
    let doc: Result<Doc, serde_saphyr::Error> = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            error_path = Some(clean_path(e.path()));
            e.into_inner()
        })
    });
    let doc = doc.map_err(|e| {
        let line = e.location().map_or(0, |l| l.line());
        let message = e.without_snippet().to_string();
        let message = message.rsplit_once(" at line ").map_or(message.as_str(), |(m, _)| m).to_owned();
        let at = error_path.filter(|p| !p.is_empty()).map(|p| format!(" {p}:")).unwrap_or_default();
        ParseError(vec![format!("{file}:{line}:{at} {message}")])
    })?;
    let mut conv = Converter { lines: text.lines().collect(), source: &mut source, issues: Vec::new() };
    let stack = conv.stack(doc);
    let mut issues = std::mem::take(&mut conv.issues);
    issues.extend(super::validate(&stack));
    if issues.is_empty() {
        Ok((stack, source))
    } else {
        Err(ParseError(issues.iter().map(|i| i.render(Some(&source))).collect()))
    }
}

/// The file's key path of a serde error path: the `value` segments that
/// [`Spanned`] adds (after a named object, and at a scalar) are dropped.
fn clean_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out: Vec<String> = Vec::new();
    let mut skip_value = false;
    let segments: Vec<&Segment> = path.iter().collect();
    for (i, segment) in segments.iter().enumerate() {
        let text = match segment {
            Segment::Seq { index } => format!("[{index}]"),
            Segment::Map { key } => key.clone(),
            Segment::Enum { variant } => variant.clone(),
            Segment::Unknown => "?".to_owned(),
        };
        let last = i + 1 == segments.len();
        if text == "value" && (skip_value || last) {
            skip_value = false;
            continue;
        }
        out.push(text);
        let names_object = match out.as_slice() {
            [top, _] => ["networks", "sandboxes", "services"].contains(&top.as_str()),
            [top, _, nets, _] => top == "sandboxes" && nets == "networks",
            _ => false,
        };
        skip_value = names_object;
    }
    let mut text = String::new();
    for segment in out {
        if !text.is_empty() && !segment.starts_with('[') {
            text.push('.');
        }
        text.push_str(&segment);
    }
    text
}

/// Turns the document into a [`Stack`], recording where each key is and
/// collecting every problem.
struct Converter<'t, 's> {
    lines: Vec<&'t str>,
    source: &'s mut SourceMap,
    issues: Vec<StackIssue>,
}

/// The line of a spanned value.
fn line<T>(s: &Spanned<T>) -> u32 {
    u32::try_from(s.referenced.line()).unwrap_or(u32::MAX)
}

impl Converter<'_, '_> {
    /// Records `key` (logical) at `path` on `line`.
    fn note(&mut self, key: &str, path: &str, line: u32) {
        self.source.insert(key, path, line);
    }

    /// Records `key` at the spanned value's line and returns the value.
    fn at<'v, T>(&mut self, key: &str, path: &str, value: &'v Spanned<T>) -> &'v T {
        self.note(key, path, line(value));
        &value.value
    }

    fn issue(&mut self, key: &str, message: impl Into<String>) {
        self.issues.push(StackIssue::new(key, message));
    }

    /// The line of a named object's key: the nearest line at or above where
    /// its value starts that begins with `name:` (the value of a block
    /// mapping starts on the line after its key).
    fn key_line(&self, value_line: u32, name: &str) -> u32 {
        let top = (value_line as usize).min(self.lines.len());
        let forms = [format!("{name}:"), format!("\"{name}\":"), format!("'{name}':"), format!("- {name}")];
        (1..=top)
            .rev()
            .find(|&n| {
                let text = self.lines[n - 1].trim_start();
                forms.iter().any(|f| text.starts_with(f.as_str()))
            })
            .map_or(value_line, |n| n as u32)
    }

    fn stack(&mut self, doc: Doc) -> Stack {
        let mut stack = Stack::default();
        for (name, spanned) in doc.networks.unwrap_or_default() {
            let key = format!("networks.{name}");
            let line = self.key_line(line(&spanned), &name);
            self.note(&key, &key, line);
            let network = self.network(&key, name, spanned.value.unwrap_or_default());
            stack.networks.push(network);
        }
        for (name, spanned) in doc.sandboxes.unwrap_or_default() {
            let key = format!("sandboxes.{name}");
            let line = self.key_line(line(&spanned), &name);
            self.note(&key, &key, line);
            let sandbox = self.sandbox(&key, name, spanned.value.unwrap_or_default());
            stack.sandboxes.push(sandbox);
        }
        for (name, spanned) in doc.services.unwrap_or_default() {
            let key = format!("services.{name}");
            let line = self.key_line(line(&spanned), &name);
            self.note(&key, &key, line);
            let service = self.service(&key, name, spanned.value.unwrap_or_default());
            stack.services.push(service);
        }
        stack
    }

    fn network(&mut self, key: &str, name: String, doc: NetworkDoc) -> StackNetwork {
        let mut net = StackNetwork { name, ..StackNetwork::default() };
        if let Some(driver) = &doc.driver {
            let k = format!("{key}.driver");
            match Driver::from_str(self.at(&k, &k, driver).as_str()) {
                Ok(d) => net.driver = d,
                Err(e) => self.issue(&k, e.to_string()),
            }
        }
        for (field, value, target) in [
            ("attachable", &doc.attachable, &mut net.attachable),
            ("internal", &doc.internal, &mut net.internal),
            ("external", &doc.external, &mut net.external),
            ("enable_ipv4", &doc.enable_ipv4, &mut net.enable_ipv4),
            ("enable_ipv6", &doc.enable_ipv6, &mut net.enable_ipv6),
        ] {
            if let Some(v) = value {
                let k = format!("{key}.{field}");
                *target = *self.at(&k, &k, v);
            }
        }
        for (option, value) in doc.driver_opts.unwrap_or_default() {
            let path = format!("{key}.driver_opts.{option}");
            let text = value.value.clone().map(|s| s.0).unwrap_or_default();
            let number = |conv: &mut Converter<'_, '_>, k: &str| {
                conv.note(k, &path, line(&value));
                text.parse::<u32>().map_err(|_| conv.issue(k, format!("{text:?} is not a whole number"))).ok()
            };
            match option.as_str() {
                MTU_OPTION => net.mtu = number(self, &format!("{key}.mtu")),
                VNI_OPTION => net.vni = number(self, &format!("{key}.vni")),
                _ => {
                    self.note(&format!("{key}.options.{option}"), &path, line(&value));
                    net.options.insert(option, text);
                }
            }
        }
        if let Some(labels) = doc.labels {
            let k = format!("{key}.labels");
            self.note(&k, &k, line(&labels));
            net.labels.extend(labels.value.0);
        }
        if let Some(ipam) = doc.ipam {
            if let Some(driver) = &ipam.driver {
                let k = format!("{key}.ipam.driver");
                if self.at(&k, &k, driver) != "default" {
                    self.issue(&k, "only the default IPAM driver exists");
                }
            }
            let mut seen = [0usize; 2];
            for (i, config) in ipam.config.iter().enumerate() {
                let path = format!("{key}.ipam.config[{i}]");
                let v6 = is_ipv6_config(config);
                let (count, family) = if v6 { (&mut seen[1], "IPv6") } else { (&mut seen[0], "IPv4") };
                *count += 1;
                if *count > 1 {
                    let at = config.subnet.as_ref().or(config.gateway.as_ref()).or(config.ip_range.as_ref());
                    self.note(&path, &path, at.map_or(0, line));
                    self.issue(&path, format!("a network has one {family} subnet: remove this config"));
                    continue;
                }
                if v6 {
                    self.ipam_config6(key, &path, config, &mut net);
                } else {
                    self.ipam_config(key, &path, config, &mut net);
                }
                self.aux_addresses(key, &path, config, v6, &mut net);
            }
        }
        net
    }

    fn ipam_config(&mut self, key: &str, path: &str, config: &IpamConfigDoc, net: &mut StackNetwork) {
        if let Some(s) = &config.subnet {
            let k = format!("{key}.subnet");
            match parse_ipv4_net(self.at(&k, &format!("{path}.subnet"), s).as_str()) {
                Ok(v) => net.subnet = Some(v),
                Err(e) => self.issue(&k, e.to_string()),
            }
        }
        if let Some(s) = &config.ip_range {
            let k = format!("{key}.ip_range");
            match parse_ipv4_net(self.at(&k, &format!("{path}.ip_range"), s).as_str()) {
                Ok(v) => net.ip_range = Some(v),
                Err(e) => self.issue(&k, e.to_string()),
            }
        }
        if let Some(s) = &config.gateway {
            let k = format!("{key}.gateway");
            let text = self.at(&k, &format!("{path}.gateway"), s);
            match text.parse::<Ipv4Addr>() {
                Ok(v) => net.gateway = Some(v),
                Err(_) => self.issue(&k, format!("{text:?} is not an IPv4 address")),
            }
        }
    }

    /// An `ipam.config` entry's `aux_addresses`, each of the entry's family.
    fn aux_addresses(&mut self, key: &str, path: &str, config: &IpamConfigDoc, v6: bool, net: &mut StackNetwork) {
        for (name, ip) in config.aux_addresses.iter().flatten() {
            let k = format!("{key}.aux_addresses.{name}");
            let text = self.at(&k, &format!("{path}.aux_addresses.{name}"), ip);
            match text.parse::<IpAddr>() {
                // One map of names for both families: the network keeps one.
                Ok(_) if net.aux_addresses.contains_key(name) => {
                    self.issue(&k, format!("{name} names an address of the other ipam config too: rename one"));
                }
                Ok(v) if v.is_ipv6() == v6 => {
                    net.aux_addresses.insert(name.clone(), v);
                }
                _ => {
                    let family = if v6 { "IPv6" } else { "IPv4" };
                    self.issue(&k, format!("{text:?} is not an {family} address (the family of this ipam config)"));
                }
            }
        }
    }

    /// An IPv6 `ipam.config` entry: its keys are the network's `subnet6`,
    /// `ip_range6` and `gateway6`.
    fn ipam_config6(&mut self, key: &str, path: &str, config: &IpamConfigDoc, net: &mut StackNetwork) {
        for (field, value, target) in
            [("subnet", &config.subnet, &mut net.subnet6), ("ip_range", &config.ip_range, &mut net.ip_range6)]
        {
            if let Some(s) = value {
                let k = format!("{key}.{field}6");
                let text = self.at(&k, &format!("{path}.{field}"), s);
                match text.parse::<Ipv6Net>() {
                    Ok(v) => *target = Some(v),
                    Err(_) => {
                        self.issue(&k, format!("invalid CIDR {text:?}: expected an IPv6 prefix like fd00:1::/64"))
                    }
                }
            }
        }
        if let Some(s) = &config.gateway {
            let k = format!("{key}.gateway6");
            let text = self.at(&k, &format!("{path}.gateway"), s);
            match text.parse::<Ipv6Addr>() {
                Ok(v) => net.gateway6 = Some(v),
                Err(_) => self.issue(&k, format!("{text:?} is not an IPv6 address")),
            }
        }
    }

    fn sandbox(&mut self, key: &str, name: String, doc: SandboxDoc) -> StackSandbox {
        let mut sandbox = StackSandbox { name, ..StackSandbox::default() };
        if let Some(netns) = &doc.netns {
            let k = format!("{key}.netns");
            sandbox.netns = Some(self.at(&k, &k, netns).into());
        }
        for (i, server) in doc.dns.iter().enumerate() {
            let k = format!("{key}.dns");
            if i == 0 {
                self.note(&k, &k, line(server));
            }
            let ik = format!("{key}.dns[{i}]");
            match self.at(&ik, &ik, server).parse::<IpAddr>() {
                Ok(ip) => sandbox.dns.push(ip),
                Err(_) => self.issue(&ik, format!("{:?} is not an IP address", server.value)),
            }
        }
        for (i, domain) in doc.dns_search.iter().enumerate() {
            let k = format!("{key}.dns_search");
            if i == 0 {
                self.note(&k, &k, line(domain));
            }
            sandbox.dns_search.push(domain.value.clone());
        }
        for (i, option) in doc.dns_opt.iter().enumerate() {
            let k = format!("{key}.dns_opt");
            if i == 0 {
                self.note(&k, &k, line(option));
            }
            sandbox.dns_options.push(option.value.clone());
        }
        if let Some(hosts) = doc.extra_hosts {
            let k = format!("{key}.extra_hosts");
            self.note(&k, &k, line(&hosts));
            sandbox.extra_hosts = hosts.value.0;
        }
        sandbox.ports = self.ports(&format!("{key}.ports"), &doc.ports);
        match doc.networks {
            None => {}
            Some(Attachments::Names(names)) => {
                for name in names {
                    let k = format!("{key}.networks.{}", name.value);
                    self.note(&k, &k, line(&name));
                    sandbox.networks.push(StackAttachment { network: name.value, ..StackAttachment::default() });
                }
            }
            Some(Attachments::Map(entries)) => {
                for (network, settings) in entries {
                    let k = format!("{key}.networks.{network}");
                    let at = self.key_line(line(&settings), &network);
                    self.note(&k, &k, at);
                    let attachment = self.attachment(&k, network, settings.value.unwrap_or_default());
                    sandbox.networks.push(attachment);
                }
            }
        }
        sandbox
    }

    fn attachment(&mut self, key: &str, network: String, doc: AttachmentDoc) -> StackAttachment {
        let mut a = StackAttachment { network, ..StackAttachment::default() };
        if let Some(ip) = &doc.ipv4_address {
            let k = format!("{key}.ipv4_address");
            let text = self.at(&k, &k, ip);
            match text.parse::<Ipv4Addr>() {
                Ok(v) => a.ipv4_address = Some(v),
                Err(_) if text.parse::<Ipv6Addr>().is_ok() => {
                    self.issue(&k, format!("{text} is an IPv6 address: give it as ipv6_address"));
                }
                Err(_) => self.issue(&k, format!("{text:?} is not an IPv4 address")),
            }
        }
        if let Some(ip) = &doc.ipv6_address {
            let k = format!("{key}.ipv6_address");
            let text = self.at(&k, &k, ip);
            match text.parse::<Ipv6Addr>() {
                Ok(v) => a.ipv6_address = Some(v),
                Err(_) if text.parse::<Ipv4Addr>().is_ok() => {
                    self.issue(&k, format!("{text} is an IPv4 address: give it as ipv4_address"));
                }
                Err(_) => self.issue(&k, format!("{text:?} is not an IPv6 address")),
            }
        }
        if let Some(mac) = &doc.mac_address {
            let k = format!("{key}.mac_address");
            match MacAddr::from_str(self.at(&k, &k, mac).as_str()) {
                Ok(v) => a.mac_address = Some(v),
                Err(e) => self.issue(&k, e.to_string()),
            }
        }
        for (i, alias) in doc.aliases.iter().enumerate() {
            if i == 0 {
                let k = format!("{key}.aliases");
                self.note(&k, &k, line(alias));
            }
            a.aliases.push(alias.value.clone());
        }
        if let Some(service) = &doc.service {
            let k = format!("{key}.service");
            a.service = Some(self.at(&k, &k, service).clone());
        }
        if let Some(priority) = &doc.gw_priority {
            let k = format!("{key}.gw_priority");
            a.gw_priority = *self.at(&k, &k, priority);
        }
        let k = format!("{key}.interface_name");
        for (option, value) in &doc.driver_opts {
            let path = format!("{key}.driver_opts.{option}");
            self.note(&k, &path, line(value));
            let text = value.value.clone().map(|s| s.0).unwrap_or_default();
            match option.as_str() {
                IFNAME_OPTION if a.interface_name.as_ref().is_some_and(|n| *n != text) => {
                    self.issue(&k, format!("{IFNAME_OPTION} {text:?} and interface_name differ"));
                }
                IFNAME_OPTION => a.interface_name = Some(text),
                _ => self.issue(&k, format!("endpoint option {option:?} is not supported (only {IFNAME_OPTION})")),
            }
        }
        if let Some(name) = &doc.interface_name {
            let name = self.at(&k, &k, name).clone();
            match &a.interface_name {
                Some(other) if *other != name => {
                    self.issue(&k, format!("{IFNAME_OPTION} {other:?} and interface_name {name:?} differ"));
                }
                _ => a.interface_name = Some(name),
            }
        }
        a.ports = self.ports(&format!("{key}.ports"), &doc.ports);
        a
    }

    fn service(&mut self, key: &str, name: String, doc: ServiceDoc) -> StackService {
        let mut service = StackService { name, ..StackService::default() };
        match &doc.network {
            Some(network) => {
                let k = format!("{key}.network");
                service.network = self.at(&k, &k, network).clone();
            }
            None => self.issue(key, "a service needs network: (the network its replicas are reached on)"),
        }
        service.ports = self.ports(&format!("{key}.ports"), &doc.ports);
        service
    }

    /// Compose's short port syntax, one spec per entry (ranges expand).
    fn ports(&mut self, key: &str, specs: &[Spanned<Scalar>]) -> Vec<PortMapping> {
        let mut out = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            if i == 0 {
                self.note(key, key, line(spec));
            }
            let k = format!("{key}[{i}]");
            match parse_publish(&self.at(&k, &k, spec).0) {
                // The state a stack file describes is its whole truth: a port the
                // daemon chose would differ from the file at every apply.
                Ok(mappings) if mappings.iter().any(PortMapping::is_chosen_by_daemon) => self.issue(
                    &k,
                    "a stack file gives every host port (HOST_PORT:CONTAINER_PORT); a random host port (`-p 80`, or one of \
                     a range for one container port, `-p 8000-8010:80`) \
                     is for network connect, sandbox publish and service publish"
                        .to_owned(),
                ),
                Ok(mappings) => out.extend(mappings),
                Err(e) => self.issue(&k, e.to_string()),
            }
        }
        out
    }
}

/// Whether an `ipam.config` entry is for IPv6: its subnet is (has a `:`),
/// or without a subnet, its gateway or ip_range is. Its other keys must be
/// of the same family.
fn is_ipv6_config(config: &IpamConfigDoc) -> bool {
    let first = config.subnet.as_ref().or(config.gateway.as_ref()).or(config.ip_range.as_ref());
    first.is_some_and(|s| s.value.contains(':'))
}
