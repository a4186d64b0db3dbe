//! Creating and removing networks: name rules, subnet and gateway choice
//! (Docker's default address pools), MTU and VNI.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ctl::proto::Driver;
use ctl::{IpNet, Ipv4Net, Ipv6Net};

use super::addr::{Subnet6Ext, SubnetExt, ula_for_id};
use super::endpoints::{lowest_free_host_in, lowest_free_host6_in};
use super::error::ModelError;
use super::ids;
use super::state::Model;
use super::types::{
    CIPHER_OPTION, CreateNetwork, DOCKER_MTU_OPTION, DOCKER_VNI_OPTION, EGRESS_OPTION, ENCRYPTED_OPTION,
    FLOOD_LIMIT_OPTION, GATEWAY_MODE_OPTIONS, HOST_BINDING_OPTION, ICC_OPTION, IFACE_PREFIX_OPTION,
    KEY_ROTATION_OPTION, MASQUERADE_OPTION, MAX_IFACE_PREFIX_LEN, MIN_KEY_ROTATION_SECS, MSS_CLAMP_OPTION, Network,
    SPREAD_OPTION, UNSUPPORTED_DOCKER_OPTIONS, docker_bool,
};
use super::validate;

/// First VNI handed out when an overlay network is created without `--vni`.
pub const FIRST_AUTO_VNI: u32 = 4096;
/// Largest VNI (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;
/// Default MTU.
pub const DEFAULT_MTU: u32 = 1500;

/// Checks an interface name prefix (Docker's `container_iface_prefix`):
/// with a number after it, a name Linux takes for an interface.
pub(crate) fn check_iface_prefix(value: &str) -> Result<(), &'static str> {
    if value.is_empty() || value.len() > MAX_IFACE_PREFIX_LEN {
        return Err("must be 1 to 12 characters (a number follows it, in Linux's 15)");
    }
    if !value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        return Err("may hold only letters, digits, '-', '_' and '.' (it names an interface)");
    }
    Ok(())
}

/// Ranges no network may use, with what they are for.
const RESERVED: [(Ipv4Net, &str); 4] = [
    (Ipv4Net::new_assert(Ipv4Addr::new(0, 0, 0, 0), 8), "\"this network\""),
    (Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8), "loopback"),
    (Ipv4Net::new_assert(Ipv4Addr::new(224, 0, 0, 0), 4), "multicast"),
    (Ipv4Net::new_assert(Ipv4Addr::new(240, 0, 0, 0), 4), "reserved"),
];

/// IPv6 ranges no network may use, with what they are for.
const RESERVED6: [(Ipv6Net, &str); 3] = [
    (Ipv6Net::new_assert(Ipv6Addr::UNSPECIFIED, 8), "reserved: the unspecified, loopback and IPv4-mapped addresses"),
    (Ipv6Net::new_assert(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10), "link-local"),
    (Ipv6Net::new_assert(Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8), "multicast"),
];

/// Longest IPv6 subnet prefix: room for the subnet-router anycast address,
/// the gateway and hosts.
const MAX_PREFIX6: u8 = 126;

/// How many network ids are tried for a default ULA /64 that overlaps no
/// other network before giving up (a clash is a 2^-40 chance unless a
/// network holds a wide part of fd00::/8).
const ULA_TRIES: usize = 16;

/// Docker's default address pools, in allocation order: 172.17.0.0/16 …
/// 172.31.0.0/16, then 192.168.0.0/16 carved into /20s.
pub fn default_pool_subnets() -> impl Iterator<Item = Ipv4Net> {
    let big = (17u8..=31).filter_map(|b| Ipv4Net::new(Ipv4Addr::new(172, b, 0, 0), 16).ok());
    let small = (0u8..16).filter_map(|i| Ipv4Net::new(Ipv4Addr::new(192, 168, i * 16, 0), 20).ok());
    big.chain(small)
}

/// Moves Docker's `-o` names for settings that have their own fields into
/// them, as `docker network create` takes both: `-o
/// com.docker.network.driver.mtu=N` is `--mtu N`, and an overlay's `-o
/// com.docker.network.driver.overlay.vxlanid_list=N` its VNI. Refused when
/// the value is not one whole number, when both spellings are given with
/// different values, or for a VNI of another driver. Called before
/// defaults are filled in.
pub fn fold_docker_options(req: &mut CreateNetwork) -> Result<(), ModelError> {
    fold_options(req.driver, &mut req.mtu, &mut req.vni, &mut req.options)
}

/// [`fold_docker_options`] on the fields themselves (a stack file's
/// network has them too).
pub(super) fn fold_options(
    driver: Driver,
    mtu: &mut Option<u32>,
    vni: &mut Option<u32>,
    options: &mut BTreeMap<String, String>,
) -> Result<(), ModelError> {
    fold_number(
        options,
        DOCKER_MTU_OPTION,
        mtu,
        "must be a whole number of bytes (the MTU)",
        "differs from --mtu: give one",
    )?;
    if driver != Driver::Overlay && options.contains_key(DOCKER_VNI_OPTION) {
        return Err(ModelError::OptionNotSupported { option: DOCKER_VNI_OPTION, driver });
    }
    let one_vni = "must be one whole number (a network here has one VNI, whatever its subnets)";
    fold_number(options, DOCKER_VNI_OPTION, vni, one_vni, "differs from --vni: give one")
}

/// Moves numeric option `option` out of `options` into `field`: refused
/// (`not_a_number`) when it is not one whole number, or (`differs`) when
/// `field` already holds another value.
fn fold_number(
    options: &mut BTreeMap<String, String>,
    option: &'static str,
    field: &mut Option<u32>,
    not_a_number: &'static str,
    differs: &'static str,
) -> Result<(), ModelError> {
    let Some(value) = options.remove(option) else { return Ok(()) };
    let Ok(given) = value.trim().parse::<u32>() else {
        return Err(ModelError::InvalidOption { option, value, reason: not_a_number });
    };
    if field.is_some_and(|f| f != given) {
        return Err(ModelError::InvalidOption { option, value, reason: differs });
    }
    *field = Some(given);
    Ok(())
}

impl Model {
    /// Whether nothing uses network `n`, so `network prune` removes it
    /// (and `network ls -f dangling=true` lists it): a local custom network
    /// with no endpoint, no service, and no uplink but a macvlan network's
    /// own parent. Cluster networks are never unused here: other nodes may
    /// use them.
    pub fn is_unused(&self, n: &Network) -> bool {
        let parent = n.options.get(super::types::PARENT_OPTION);
        !n.is_predefined()
            && !n.cluster
            && self.endpoints_on_network(&n.id).is_empty()
            && self.services().all(|s| s.network_id != n.id)
            && self.uplinks_of(&n.id).iter().all(|u| Some(&u.interface) == parent)
    }

    /// Creates a network (`docker network create`) and returns it.
    ///
    /// Bridge and overlay networks get the given subnet or the first default
    /// pool subnet that overlaps no existing network; the gateway defaults to
    /// the subnet's first host address. Overlay networks get a unique VNI.
    /// `host` and `none` exist once each (predefined), so creating another is refused.
    pub fn create_network(&mut self, req: CreateNetwork) -> Result<Network, ModelError> {
        validate::object_name("network", &req.name)?;
        if self.network_name_taken(&req.name) {
            return Err(ModelError::NetworkExists(req.name));
        }
        if req.config_only {
            return Err(ModelError::ConfigOnlyField("bridge domain"));
        }
        // Its settings were taken by `apply_config_from`, which names the
        // configuration network by name.
        if let Some(from) = &req.config_from
            && !self.config_networks.values().any(|c| &c.name == from)
        {
            return Err(ModelError::NoSuchConfigNetwork(from.clone()));
        }
        if !req.driver.is_switched() {
            return Err(ModelError::SingletonDriver(req.driver));
        }
        for option in [ENCRYPTED_OPTION, MSS_CLAMP_OPTION] {
            if req.options.contains_key(option) && req.driver != Driver::Overlay {
                return Err(ModelError::OptionNotSupported { option, driver: req.driver });
            }
        }
        super::uplinks::check_macvlan_options(&req)?;
        if let Some(value) = req.options.get(KEY_ROTATION_OPTION) {
            if !req.options.contains_key(ENCRYPTED_OPTION) || req.driver != Driver::Overlay {
                return Err(ModelError::OptionNotSupported { option: KEY_ROTATION_OPTION, driver: req.driver });
            }
            if value.parse::<u64>().map_or(true, |secs| secs < MIN_KEY_ROTATION_SECS) {
                return Err(ModelError::InvalidOption {
                    option: KEY_ROTATION_OPTION,
                    value: value.clone(),
                    reason: "must be a whole number of seconds, at least 60 (Docker rotates every 43200)",
                });
            }
        }
        if let Some(value) = req.options.get(CIPHER_OPTION) {
            if !req.options.contains_key(ENCRYPTED_OPTION) || req.driver != Driver::Overlay {
                return Err(ModelError::OptionNotSupported { option: CIPHER_OPTION, driver: req.driver });
            }
            if value.parse::<crypto::Cipher>().is_err() {
                return Err(ModelError::InvalidOption {
                    option: CIPHER_OPTION,
                    value: value.clone(),
                    reason: "must be chacha20-poly1305 (the default) or aes-256-gcm",
                });
            }
        }
        if let Some(value) = req.options.get(SPREAD_OPTION) {
            if !matches!(req.driver, Driver::Bridge | Driver::Overlay) {
                return Err(ModelError::OptionNotSupported { option: SPREAD_OPTION, driver: req.driver });
            }
            if !matches!(value.as_str(), "" | "true" | "false") {
                let reason = "must be true or false (or no value: true)";
                return Err(ModelError::InvalidOption { option: SPREAD_OPTION, value: value.clone(), reason });
            }
        }
        if let Some(value) = req.options.get(FLOOD_LIMIT_OPTION)
            && value.parse::<u32>().map_or(true, |n| n == 0)
        {
            return Err(ModelError::InvalidOption {
                option: FLOOD_LIMIT_OPTION,
                value: value.clone(),
                reason: "must be a whole number of frames a second, 1 to 4294967295",
            });
        }
        if let Some(value) = req.options.get(IFACE_PREFIX_OPTION)
            && let Err(reason) = check_iface_prefix(value)
        {
            return Err(ModelError::InvalidOption { option: IFACE_PREFIX_OPTION, value: value.clone(), reason });
        }
        for (option, instead) in UNSUPPORTED_DOCKER_OPTIONS {
            if let Some(value) = req.options.get(option) {
                return Err(ModelError::UnsupportedOption { option, value: value.clone(), instead });
            }
        }
        for option in GATEWAY_MODE_OPTIONS {
            if let Some(value) = req.options.get(option)
                && !matches!(value.as_str(), "nat" | "nat-unprotected")
            {
                let instead = "only nat: the switch reaches the outside through its translator, with no route in";
                return Err(ModelError::UnsupportedOption { option, value: value.clone(), instead });
            }
        }
        if let Some(value) = req.options.get(HOST_BINDING_OPTION) {
            if req.driver != Driver::Bridge {
                return Err(ModelError::OptionNotSupported { option: HOST_BINDING_OPTION, driver: req.driver });
            }
            if value.parse::<Ipv4Addr>().is_err() {
                let reason = "must be an IPv4 address (127.0.0.1 keeps published ports on the loopback)";
                return Err(ModelError::InvalidOption { option: HOST_BINDING_OPTION, value: value.clone(), reason });
            }
        }
        if let Some(value) = req.options.get(ICC_OPTION) {
            if req.driver != Driver::Bridge {
                return Err(ModelError::OptionNotSupported { option: ICC_OPTION, driver: req.driver });
            }
            if docker_bool(value).is_none() {
                let reason = "must be true or false (or 1, 0, t, f, as Docker reads them)";
                return Err(ModelError::InvalidOption { option: ICC_OPTION, value: value.clone(), reason });
            }
        }
        if let Some(value) = req.options.get(MASQUERADE_OPTION) {
            match docker_bool(value) {
                Some(true) => {}
                Some(false) => {
                    let instead = "the switch reaches the outside only through its own translator, so it cannot route \
                                   unmasqueraded; -o egress=false turns egress off";
                    let option = MASQUERADE_OPTION;
                    return Err(ModelError::UnsupportedOption { option, value: value.clone(), instead });
                }
                None => {
                    let reason = "must be true or false (or 1, 0, t, f, as Docker reads them)";
                    return Err(ModelError::InvalidOption { option: MASQUERADE_OPTION, value: value.clone(), reason });
                }
            }
        }
        if let Some(value) = req.options.get(EGRESS_OPTION) {
            let reason = match value.as_str() {
                "false" => None,
                "true" if req.internal => Some("an --internal network has no egress"),
                "true" => None,
                _ => Some("must be true or false"),
            };
            if let Some(reason) = reason {
                return Err(ModelError::InvalidOption { option: EGRESS_OPTION, value: value.clone(), reason });
            }
        }
        let mtu = req.mtu.unwrap_or(DEFAULT_MTU);
        if !(68..=65535).contains(&mtu) {
            return Err(ModelError::MtuOutOfRange(mtu));
        }
        let vni = self.choose_vni(req.driver, req.vni)?;
        if !req.enable_ipv4 && !req.enable_ipv6 {
            return Err(ModelError::NoAddressFamily);
        }
        let given4 = [
            ("subnet", req.subnet.is_some()),
            ("gateway", req.gateway.is_some()),
            ("ip-range", req.ip_range.is_some()),
        ];
        if let (false, Some((option, _))) = (req.enable_ipv4, given4.iter().find(|(_, given)| *given)) {
            return Err(ModelError::Ipv4Disabled(option));
        }
        let given6 = [
            ("subnet", req.subnet6.is_some()),
            ("gateway", req.gateway6.is_some()),
            ("ip-range", req.ip_range6.is_some()),
        ];
        if let (false, Some((option, _))) = (req.enable_ipv6, given6.iter().find(|(_, given)| *given)) {
            return Err(ModelError::Ipv6NotEnabled(option));
        }
        let (subnet, gateway, ip_range) = if req.enable_ipv4 {
            let subnet = match req.subnet {
                Some(s) => self.check_user_subnet(s)?,
                None if req.gateway.is_some() => return Err(ModelError::GatewayWithoutSubnet),
                None if req.ip_range.is_some() => return Err(ModelError::IpRangeWithoutSubnet),
                None => self.allocate_subnet()?,
            };
            let gateway = match req.gateway {
                Some(g) => check_gateway(g, subnet)?,
                // A checked subnet has prefix <= 30, so it has a first host.
                None => subnet.first_host().ok_or(ModelError::SubnetTooSmall { subnet: subnet.into(), max: 30 })?,
            };
            let ip_range = req.ip_range.map(|range| check_ip_range(range, subnet, gateway)).transpose()?;
            (Some(subnet), Some(gateway), ip_range)
        } else {
            (None, None, None)
        };
        let mut id = self.fresh_network_id();
        let (subnet6, gateway6, ip_range6) = if req.enable_ipv6 {
            let subnet6 = match req.subnet6 {
                Some(s) => self.check_user_subnet6(s)?,
                None if req.gateway6.is_some() => return Err(ModelError::Gateway6WithoutSubnet6),
                None if req.ip_range6.is_some() => return Err(ModelError::IpRange6WithoutSubnet6),
                None => {
                    let (ula_id, ula) = self.allocate_ula()?;
                    id = ula_id;
                    ula
                }
            };
            let gateway6 = match req.gateway6 {
                Some(g) => check_gateway6(g, subnet6)?,
                // A checked subnet has prefix <= 126, so it has a first host.
                None => subnet6
                    .first_host()
                    .ok_or(ModelError::SubnetTooSmall { subnet: subnet6.into(), max: MAX_PREFIX6 })?,
            };
            let ip_range6 = req.ip_range6.map(|range| check_ip_range6(range, subnet6, gateway6)).transpose()?;
            (Some(subnet6), Some(gateway6), ip_range6)
        } else {
            (None, None, None)
        };
        check_aux_request(&req)?;
        let iface_prefix = req.options.get(IFACE_PREFIX_OPTION).cloned();
        let net = Network {
            id,
            name: req.name,
            driver: req.driver,
            subnet,
            gateway,
            ip_range,
            enable_ipv4: req.enable_ipv4,
            enable_ipv6: req.enable_ipv6,
            subnet6,
            gateway6,
            ip_range6,
            aux_addresses: req.aux_addresses,
            internal: req.internal,
            attachable: req.attachable,
            mtu,
            vni,
            options: req.options,
            labels: req.labels,
            created: ids::now_rfc3339(),
            network_index: self.free_network_index(),
            key_epoch: 0,
            cluster: false,
            iface_prefix,
            config_from: req.config_from,
        };
        check_aux_addresses(&net)?;
        self.networks.insert(net.id.clone(), net.clone());
        Ok(net)
    }

    /// Adds a network another node created (from the cluster store's
    /// record): it keeps its id, name, VNI and subnets, and gets a local
    /// network index. Refused when its name, VNI or a subnet clashes with a
    /// network of this node.
    pub fn adopt_network(&mut self, mut net: Network) -> Result<Network, ModelError> {
        validate::object_name("network", &net.name)?;
        if self.networks.contains_key(&net.id)
            || self.config_networks.contains_key(&net.id)
            || self.network_name_taken(&net.name)
        {
            return Err(ModelError::NetworkExists(net.name));
        }
        if let Some(vni) = net.vni
            && let Some(other) = self.networks.values().find(|n| n.vni == Some(vni))
        {
            return Err(ModelError::VniInUse { vni, network: other.name.clone() });
        }
        if let Some(s) = net.subnet
            && let Some((other, other_subnet)) = self.overlapping(s)
        {
            return Err(ModelError::SubnetOverlap { subnet: s.into(), other, other_subnet: other_subnet.into() });
        }
        if let Some(s) = net.subnet6
            && let Some((other, other_subnet)) = self.overlapping6(s)
        {
            return Err(ModelError::SubnetOverlap { subnet: s.into(), other, other_subnet: other_subnet.into() });
        }
        net.network_index = self.free_network_index();
        // A cipher this build does not know would be sealed with the
        // default one: refused by name instead.
        if let Some(value) = net.options.get(CIPHER_OPTION)
            && value.parse::<crypto::Cipher>().is_err()
        {
            let reason = "must be chacha20-poly1305 (the default) or aes-256-gcm";
            return Err(ModelError::InvalidOption { option: CIPHER_OPTION, value: value.clone(), reason });
        }
        check_aux_addresses(&net)?;
        // The node that created it checked the prefix; a record from
        // elsewhere is checked again before it names an interface.
        net.iface_prefix = match net.options.get(IFACE_PREFIX_OPTION) {
            Some(value) => match check_iface_prefix(value) {
                Ok(()) => Some(value.clone()),
                Err(reason) => {
                    return Err(ModelError::InvalidOption {
                        option: IFACE_PREFIX_OPTION,
                        value: value.clone(),
                        reason,
                    });
                }
            },
            None => None,
        };
        net.cluster = true;
        // Made here from a configuration network (the store's records name
        // none): one this model holds.
        if let Some(from) = &net.config_from
            && !self.config_networks.values().any(|c| &c.name == from)
        {
            return Err(ModelError::NoSuchConfigNetwork(from.clone()));
        }
        self.networks.insert(net.id.clone(), net.clone());
        Ok(net)
    }

    /// Moves an encrypted overlay to its next key epoch and returns it.
    pub fn rotate_key(&mut self, name_or_id: &str) -> Result<u32, ModelError> {
        let id = self.network(name_or_id)?.id.clone();
        let net = self.networks.get_mut(&id).ok_or(ModelError::NoSuchNetwork(id))?;
        if !net.is_encrypted() {
            return Err(ModelError::NotEncrypted(net.name.clone()));
        }
        net.key_epoch = net.key_epoch.wrapping_add(1);
        Ok(net.key_epoch)
    }

    /// Removes a network (by name, id or unique id prefix) and returns it.
    /// Refused for the predefined networks and while endpoints are attached.
    pub fn remove_network(&mut self, name_or_id: &str) -> Result<Network, ModelError> {
        let net = self.network(name_or_id)?;
        if net.is_predefined() {
            return Err(ModelError::PredefinedNetwork(net.name.clone()));
        }
        let attached = self.endpoints_on_network(&net.id);
        if !attached.is_empty() {
            let endpoints = attached
                .iter()
                .map(|e| format!("{}/{} {}", e.sandbox, e.ifname_in_sandbox, e.addresses()))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(ModelError::NetworkInUse { network: net.name.clone(), endpoints });
        }
        let services: Vec<&str> =
            self.services.values().filter(|s| s.network_id == net.id).map(|s| s.name.as_str()).collect();
        if !services.is_empty() {
            return Err(ModelError::NetworkHasServices { network: net.name.clone(), services: services.join(", ") });
        }
        let id = net.id.clone();
        self.static_fdb.retain(|(n, _), _| *n != id);
        // Its uplinks go with it (the daemon detaches them).
        self.uplinks.retain(|_, u| u.network_id != id);
        // Peers that served only this network go with it; others forget it.
        self.peers.retain(|_, p| {
            let named = !p.network_ids.is_empty();
            p.network_ids.retain(|n| *n != id);
            !named || !p.network_ids.is_empty()
        });
        self.networks.remove(&id).ok_or(ModelError::NoSuchNetwork(id))
    }

    /// The VNI for a new network of `driver`, given the requested one.
    fn choose_vni(&self, driver: Driver, requested: Option<u32>) -> Result<Option<u32>, ModelError> {
        if driver != Driver::Overlay {
            return match requested {
                Some(_) => Err(ModelError::OptionNotSupported { option: "vni", driver }),
                None => Ok(None),
            };
        }
        let used_by = |v: u32| self.networks.values().find(|n| n.vni == Some(v));
        match requested {
            Some(v) if !(1..=MAX_VNI).contains(&v) => Err(ModelError::VniOutOfRange(v)),
            Some(v) => match used_by(v) {
                Some(n) => Err(ModelError::VniInUse { vni: v, network: n.name.clone() }),
                None => Ok(Some(v)),
            },
            None => {
                (FIRST_AUTO_VNI..=MAX_VNI).find(|v| used_by(*v).is_none()).map(Some).ok_or(ModelError::VnisExhausted)
            }
        }
    }

    /// Validates a `--subnet`.
    fn check_user_subnet(&self, s: Ipv4Net) -> Result<Ipv4Net, ModelError> {
        if !s.is_network_address() {
            return Err(ModelError::SubnetHostBitsSet { subnet: s.into(), suggestion: s.trunc().into() });
        }
        if s.prefix_len() > 30 {
            return Err(ModelError::SubnetTooSmall { subnet: s.into(), max: 30 });
        }
        for (reserved, what) in RESERVED {
            if reserved.overlaps(&s) {
                return Err(ModelError::SubnetReserved { subnet: s.into(), reserved: reserved.into(), what });
            }
        }
        if let Some((other, other_subnet)) = self.overlapping(s) {
            return Err(ModelError::SubnetOverlap { subnet: s.into(), other, other_subnet: other_subnet.into() });
        }
        Ok(s)
    }

    /// Validates an IPv6 `--subnet`.
    fn check_user_subnet6(&self, s: Ipv6Net) -> Result<Ipv6Net, ModelError> {
        if !s.is_network_address() {
            return Err(ModelError::SubnetHostBitsSet { subnet: s.into(), suggestion: s.trunc().into() });
        }
        if s.prefix_len() > MAX_PREFIX6 {
            return Err(ModelError::SubnetTooSmall { subnet: s.into(), max: MAX_PREFIX6 });
        }
        for (reserved, what) in RESERVED6 {
            if reserved.overlaps(&s) {
                return Err(ModelError::SubnetReserved { subnet: s.into(), reserved: reserved.into(), what });
            }
        }
        if let Some((other, other_subnet)) = self.overlapping6(s) {
            return Err(ModelError::SubnetOverlap { subnet: s.into(), other, other_subnet: other_subnet.into() });
        }
        Ok(s)
    }

    /// A fresh network id and its ULA /64 ([`ula_for_id`]) that overlaps no
    /// other network's IPv6 subnet.
    fn allocate_ula(&self) -> Result<(String, Ipv6Net), ModelError> {
        (0..ULA_TRIES)
            .find_map(|_| {
                let id = self.fresh_network_id();
                let ula = ula_for_id(&id)?;
                self.overlapping6(ula).is_none().then_some((id, ula))
            })
            .ok_or(ModelError::Ipv6PoolExhausted)
    }

    /// The first network (by name) whose IPv6 subnet overlaps `s`: (name, subnet).
    fn overlapping6(&self, s: Ipv6Net) -> Option<(String, Ipv6Net)> {
        self.networks().into_iter().find_map(|n| n.subnet6.filter(|ns| ns.overlaps(&s)).map(|ns| (n.name.clone(), ns)))
    }

    /// The first default-pool subnet that overlaps no existing network.
    fn allocate_subnet(&self) -> Result<Ipv4Net, ModelError> {
        default_pool_subnets().find(|s| self.overlapping(*s).is_none()).ok_or(ModelError::PoolsExhausted)
    }

    /// The first network (by name) whose subnet overlaps `s`: (name, subnet).
    fn overlapping(&self, s: Ipv4Net) -> Option<(String, Ipv4Net)> {
        self.networks().into_iter().find_map(|n| n.subnet.filter(|ns| ns.overlaps(&s)).map(|ns| (n.name.clone(), ns)))
    }
}

/// Checks what only a request can be asked: every `--aux-address` is of
/// a family the network has and lies in a subnet the request gave (an
/// automatic subnet is not known beforehand). The addresses themselves are
/// checked against the network made ([`check_aux_addresses`]).
fn check_aux_request(req: &CreateNetwork) -> Result<(), ModelError> {
    for (name, &ip) in &req.aux_addresses {
        let refuse = |reason: &str| ModelError::BadAuxAddress { name: name.clone(), ip, reason: reason.into() };
        let (enabled, given) = match ip {
            IpAddr::V4(_) => (req.enable_ipv4, req.subnet.is_some()),
            IpAddr::V6(_) => (req.enable_ipv6, req.subnet6.is_some()),
        };
        match (ip.is_ipv4(), enabled, given) {
            (true, false, _) => return Err(refuse("the network has no IPv4 (--ipv4=false)")),
            (false, false, _) => return Err(refuse("the network has no IPv6 (add --ipv6)")),
            (true, true, false) => return Err(refuse("give the network's IPv4 --subnet it lies in")),
            (false, true, false) => return Err(refuse("give the network's IPv6 --subnet it lies in")),
            _ => {}
        }
    }
    Ok(())
}

/// Checks a network's auxiliary addresses (`--aux-address`), as created,
/// adopted from the cluster store or loaded from the state file: each is
/// named, lies in the subnet of its family (which the network has), is a
/// host address of it other than the gateway, and is given once.
pub(super) fn check_aux_addresses(net: &Network) -> Result<(), ModelError> {
    let v4 = net.subnet.zip(net.gateway).filter(|_| net.enable_ipv4);
    let v6 = net.subnet6.zip(net.gateway6).filter(|_| net.enable_ipv6);
    let mut seen: BTreeMap<IpAddr, &str> = BTreeMap::new();
    for (name, &ip) in &net.aux_addresses {
        let refuse = |reason: String| ModelError::BadAuxAddress { name: name.clone(), ip, reason };
        if name.is_empty() {
            return Err(refuse("the name is empty".into()));
        }
        let (subnet, gateway): (Option<IpNet>, Option<IpAddr>) = match ip {
            IpAddr::V4(_) => (v4.map(|(s, _)| s.into()), v4.map(|(_, g)| g.into())),
            IpAddr::V6(_) => (v6.map(|(s, _)| s.into()), v6.map(|(_, g)| g.into())),
        };
        let (Some(subnet), Some(gateway)) = (subnet, gateway) else {
            let family = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
            return Err(refuse(format!("the network has no {family} subnet")));
        };
        if !subnet.contains(&ip) {
            return Err(refuse(format!("it is not inside subnet {subnet}")));
        }
        if let Some(what) = super::endpoints::reserved_role(subnet, gateway, ip) {
            return Err(refuse(format!("it is the {what} of subnet {subnet}")));
        }
        if let Some(other) = seen.insert(ip, name) {
            return Err(refuse(format!("the same address as --aux-address {other}")));
        }
    }
    Ok(())
}

/// Validates an `--ip-range` against the subnet: a prefix inside it with at
/// least one address to give out (a host address of the subnet other than
/// the gateway).
fn check_ip_range(range: Ipv4Net, subnet: Ipv4Net, gateway: Ipv4Addr) -> Result<Ipv4Net, ModelError> {
    if range.trunc() != range {
        return Err(ModelError::IpRangeHostBitsSet { range: range.into(), suggestion: range.trunc().into() });
    }
    if range.prefix_len() < subnet.prefix_len() || !subnet.contains(&range.network()) {
        return Err(ModelError::IpRangeOutsideSubnet { range: range.into(), subnet: subnet.into() });
    }
    if lowest_free_host_in(range, subnet, gateway, std::iter::empty()).is_none() {
        return Err(ModelError::IpRangeEmpty { range: range.into(), subnet: subnet.into(), gateway: gateway.into() });
    }
    Ok(range)
}

/// Validates an IPv6 `--ip-range` against the IPv6 subnet, as [`check_ip_range`].
fn check_ip_range6(range: Ipv6Net, subnet: Ipv6Net, gateway: Ipv6Addr) -> Result<Ipv6Net, ModelError> {
    if range.trunc() != range {
        return Err(ModelError::IpRangeHostBitsSet { range: range.into(), suggestion: range.trunc().into() });
    }
    if range.prefix_len() < subnet.prefix_len() || !subnet.contains(&range.network()) {
        return Err(ModelError::IpRangeOutsideSubnet { range: range.into(), subnet: subnet.into() });
    }
    if lowest_free_host6_in(range, subnet, gateway, std::iter::empty()).is_none() {
        return Err(ModelError::IpRangeEmpty { range: range.into(), subnet: subnet.into(), gateway: gateway.into() });
    }
    Ok(range)
}

/// Validates a `--gateway` against the subnet.
fn check_gateway(gateway: Ipv4Addr, subnet: Ipv4Net) -> Result<Ipv4Addr, ModelError> {
    if !subnet.contains(&gateway) {
        return Err(ModelError::GatewayOutsideSubnet { gateway: gateway.into(), subnet: subnet.into() });
    }
    let what = if gateway == subnet.network() {
        "network address"
    } else if gateway == subnet.broadcast() {
        "broadcast address"
    } else {
        return Ok(gateway);
    };
    Err(ModelError::GatewayReserved { gateway: gateway.into(), what, subnet: subnet.into() })
}

/// Validates an IPv6 `--gateway` against the IPv6 subnet: inside it, and
/// not its subnet-router anycast address (the network address).
fn check_gateway6(gateway: Ipv6Addr, subnet: Ipv6Net) -> Result<Ipv6Addr, ModelError> {
    if !subnet.contains(&gateway) {
        return Err(ModelError::GatewayOutsideSubnet { gateway: gateway.into(), subnet: subnet.into() });
    }
    if gateway == subnet.network() {
        let what = "subnet-router anycast address";
        return Err(ModelError::GatewayReserved { gateway: gateway.into(), what, subnet: subnet.into() });
    }
    Ok(gateway)
}
