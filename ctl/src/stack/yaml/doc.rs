//! The YAML document as written: compose's `networks:` keys, vswitch's
//! `sandboxes:` and `services:`, with the line of every value that an
//! error may have to point at ([`Spanned`]). Unknown keys are refused.
//!
//! Only named objects (the values of `networks:`, `sandboxes:`,
//! `services:` and a sandbox's `networks:` map) and scalars are
//! [`Spanned`]: that is what [`super::clean_path`] relies on to turn
//! serde's error paths back into the file's keys.

use std::fmt;

use indexmap::IndexMap;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A whole stack file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Doc {
    /// compose's obsolete `version:`, accepted and ignored.
    #[serde(default)]
    #[allow(dead_code)]
    pub(super) version: Option<Scalar>,
    #[serde(default)]
    pub(super) networks: Option<IndexMap<String, Spanned<Option<NetworkDoc>>>>,
    #[serde(default)]
    pub(super) sandboxes: Option<IndexMap<String, Spanned<Option<SandboxDoc>>>>,
    #[serde(default)]
    pub(super) services: Option<IndexMap<String, Spanned<Option<ServiceDoc>>>>,
}

/// One entry of `networks:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NetworkDoc {
    #[serde(default)]
    pub(super) driver: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) driver_opts: Option<IndexMap<String, Spanned<Option<Scalar>>>>,
    #[serde(default)]
    pub(super) labels: Option<Spanned<Labels>>,
    #[serde(default)]
    pub(super) attachable: Option<Spanned<bool>>,
    #[serde(default)]
    pub(super) internal: Option<Spanned<bool>>,
    #[serde(default)]
    pub(super) external: Option<Spanned<bool>>,
    #[serde(default)]
    pub(super) enable_ipv4: Option<Spanned<bool>>,
    #[serde(default)]
    pub(super) enable_ipv6: Option<Spanned<bool>>,
    #[serde(default)]
    pub(super) ipam: Option<IpamDoc>,
}

/// A network's `ipam:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IpamDoc {
    #[serde(default)]
    pub(super) driver: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) config: Vec<IpamConfigDoc>,
}

/// One entry of `ipam.config`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IpamConfigDoc {
    #[serde(default)]
    pub(super) subnet: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) ip_range: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) gateway: Option<Spanned<String>>,
    /// Compose's `aux_addresses`: name to address, never given out.
    #[serde(default)]
    pub(super) aux_addresses: Option<IndexMap<String, Spanned<String>>>,
}

/// One entry of `sandboxes:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SandboxDoc {
    #[serde(default)]
    pub(super) netns: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) dns: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) dns_search: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) dns_opt: Vec<Spanned<String>>,
    /// Compose's `extra_hosts`: a list (`["db:10.0.0.5"]`) or a map.
    #[serde(default)]
    pub(super) extra_hosts: Option<Spanned<ExtraHosts>>,
    #[serde(default)]
    pub(super) networks: Option<Attachments>,
    #[serde(default)]
    pub(super) ports: Vec<Spanned<Scalar>>,
}

/// One network of a sandbox, in the map form of its `networks:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AttachmentDoc {
    #[serde(default)]
    pub(super) aliases: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) ipv4_address: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) ipv6_address: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) mac_address: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) ports: Vec<Spanned<Scalar>>,
    #[serde(default)]
    pub(super) service: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) gw_priority: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) interface_name: Option<Spanned<String>>,
    /// Docker's endpoint options; `com.docker.network.endpoint.ifname` is
    /// `interface_name`.
    #[serde(default)]
    pub(super) driver_opts: IndexMap<String, Spanned<Option<Scalar>>>,
}

/// One entry of `services:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ServiceDoc {
    #[serde(default)]
    pub(super) network: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) ports: Vec<Spanned<Scalar>>,
}

/// A sandbox's `networks:`, as compose allows it: a list of names, or a
/// map of names to settings (empty settings allowed).
#[derive(Debug)]
pub(super) enum Attachments {
    /// `networks: [front, back]`.
    Names(Vec<Spanned<String>>),
    /// `networks: {front: {aliases: [api]}, back: }`.
    Map(IndexMap<String, Spanned<Option<AttachmentDoc>>>),
}

impl<'de> Deserialize<'de> for Attachments {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Attachments;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of network names or a map of network names to settings")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Attachments, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element()? {
                    names.push(name);
                }
                Ok(Attachments::Names(names))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Attachments, A::Error> {
                let mut entries = IndexMap::new();
                while let Some((name, settings)) = map.next_entry::<String, Spanned<Option<AttachmentDoc>>>()? {
                    if entries.contains_key(&name) {
                        return Err(de::Error::custom(format!("network {name} is listed twice")));
                    }
                    entries.insert(name, settings);
                }
                Ok(Attachments::Map(entries))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A network's `labels:`, as compose allows them: a map (`tier: data`, a
/// bare key an empty label) or a list of `KEY=VALUE` (or bare `KEY`)
/// strings; either way the labels in the file's order.
#[derive(Debug, Default)]
pub(super) struct Labels(pub(super) IndexMap<String, String>);

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Labels;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of labels or a list of KEY=VALUE strings")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Labels, A::Error> {
                let mut labels = IndexMap::new();
                while let Some(Scalar(entry)) = seq.next_element()? {
                    let (key, value) = entry.split_once('=').unwrap_or((&entry, ""));
                    labels.insert(key.to_owned(), value.to_owned());
                }
                Ok(Labels(labels))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Labels, A::Error> {
                let mut labels = IndexMap::new();
                while let Some((key, value)) = map.next_entry::<String, Option<Scalar>>()? {
                    labels.insert(key, value.map(|s| s.0).unwrap_or_default());
                }
                Ok(Labels(labels))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A sandbox's `extra_hosts:`, as compose allows them: a list of
/// `NAME:IP` (or `NAME=IP`) strings, or a map from each name to an address
/// or a list of addresses (`db: 10.0.0.5`, `db6: ["fd00::5", "fd00::6"]`);
/// either way one `NAME:IP`/`NAME=IP` entry per address, in the file's
/// order (a map's entries are written `NAME=IP`, which no IPv6 address
/// makes ambiguous).
#[derive(Debug, Default)]
pub(super) struct ExtraHosts(pub(super) Vec<String>);

/// A map value of [`ExtraHosts`]: one address or a list of them.
struct Addresses(Vec<String>);

impl<'de> Deserialize<'de> for Addresses {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Addresses;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an address or a list of addresses")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Addresses, E> {
                Ok(Addresses(vec![v.to_owned()]))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Addresses, A::Error> {
                let mut addresses = Vec::new();
                while let Some(address) = seq.next_element::<String>()? {
                    addresses.push(address);
                }
                Ok(Addresses(addresses))
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for ExtraHosts {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ExtraHosts;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of NAME:IP strings or a map of names to addresses")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ExtraHosts, A::Error> {
                let mut hosts = Vec::new();
                while let Some(Scalar(entry)) = seq.next_element()? {
                    hosts.push(entry);
                }
                Ok(ExtraHosts(hosts))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ExtraHosts, A::Error> {
                let mut hosts = Vec::new();
                while let Some((name, Addresses(addresses))) = map.next_entry::<String, Addresses>()? {
                    hosts.extend(addresses.into_iter().map(|ip| format!("{name}={ip}")));
                }
                Ok(ExtraHosts(hosts))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A scalar of any YAML type read as its text: `1400`, `"1400"`, `true`,
/// `""` (compose writes driver options and ports either way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Scalar(pub(super) String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar(v))
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        deserializer.deserialize_any(V)
    }
}
