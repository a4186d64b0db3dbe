//! Static FDB entries and bridge config.

use ctl::MacAddr;

use super::error::ModelError;
use super::peers::{tunnel_port_name, tunnel_port_peer};
use super::state::Model;
use super::types::{Endpoint, StaticFdbEntry};

/// Smallest accepted ageing time in seconds (IEEE 802.1D).
pub const MIN_AGING_SECS: u64 = 10;
/// Largest accepted ageing time in seconds (IEEE 802.1D).
pub const MAX_AGING_SECS: u64 = 1_000_000;

impl Model {
    /// Adds a static FDB entry: frames for `mac` on `network` go to
    /// `port_name`, the TAP of an endpoint on that network or the tunnel
    /// port of a static peer serving it (`vx:ADDR:PORT`, `vx:[V6]:PORT`, as
    /// `show` names it; the port may be left out for 4789), like the
    /// kernel's `bridge fdb add MAC dev vxlan0 dst ADDR`. One entry per
    /// (network, MAC).
    pub fn add_static_fdb(
        &mut self,
        network: &str,
        mac: MacAddr,
        port_name: &str,
    ) -> Result<StaticFdbEntry, ModelError> {
        let net = self.network(network)?;
        if mac.is_zero() || mac.is_group() {
            let reason =
                if mac.is_zero() { "the all-zero address is not valid" } else { "static entries must be unicast" };
            return Err(ModelError::InvalidMac { mac, reason });
        }
        let port_name = match tunnel_port_peer(port_name) {
            Some(remote) if self.peer_serves(remote, &net.id) => tunnel_port_name(remote),
            Some(_) => return Err(ModelError::NoSuchTunnel { port: port_name.to_owned(), network: net.name.clone() }),
            None if self.endpoints.values().any(|e| e.network_id == net.id && e.host_tap_name == port_name) => {
                port_name.to_owned()
            }
            None => return Err(ModelError::NoSuchPort { port: port_name.to_owned(), network: net.name.clone() }),
        };
        let key = (net.id.clone(), mac);
        if let Some(old) = self.static_fdb.get(&key) {
            return Err(ModelError::FdbEntryExists { mac, network: net.name.clone(), port: old.port_name.clone() });
        }
        let entry = StaticFdbEntry { network_id: net.id.clone(), mac, port_name };
        self.static_fdb.insert(key, entry.clone());
        Ok(entry)
    }

    /// Removes the static FDB entry for `mac` on `network` and returns it.
    pub fn remove_static_fdb(&mut self, network: &str, mac: MacAddr) -> Result<StaticFdbEntry, ModelError> {
        let net = self.network(network)?;
        let key = (net.id.clone(), mac);
        let name = net.name.clone();
        self.static_fdb.remove(&key).ok_or(ModelError::NoSuchFdbEntry { mac, network: name })
    }

    /// The static FDB entries of one network (by id), ordered by MAC.
    pub fn static_fdb_on(&self, network_id: &str) -> impl Iterator<Item = &StaticFdbEntry> {
        self.static_fdb.values().filter(move |e| e.network_id == network_id)
    }

    /// Sets a config key from its text value. The only key is `aging-time`
    /// (seconds, 10..=1000000 per 802.1D).
    pub fn set_config(&mut self, key: &str, value: &str) -> Result<(), ModelError> {
        match key {
            "aging-time" => {
                let invalid =
                    |reason| ModelError::InvalidConfigValue { key: "aging-time", value: value.to_owned(), reason };
                let secs: u64 = value.trim().parse().map_err(|_| invalid("not a whole number of seconds"))?;
                if !(MIN_AGING_SECS..=MAX_AGING_SECS).contains(&secs) {
                    return Err(invalid("must be 10..=1000000 seconds (IEEE 802.1D)"));
                }
                self.config.aging_time_secs = secs;
                Ok(())
            }
            _ => Err(ModelError::UnknownConfigKey(key.to_owned())),
        }
    }

    /// Whether `entry` points at a port that exists: an endpoint's TAP on
    /// its network, or the tunnel port of a static peer serving it.
    pub(crate) fn static_fdb_port_exists(&self, entry: &StaticFdbEntry) -> bool {
        match tunnel_port_peer(&entry.port_name) {
            Some(remote) => tunnel_port_name(remote) == entry.port_name && self.peer_serves(remote, &entry.network_id),
            None => {
                self.endpoints.values().any(|e| e.network_id == entry.network_id && e.host_tap_name == entry.port_name)
            }
        }
    }

    /// Removes and returns the static FDB entries pointing at `e`'s TAP.
    pub(crate) fn drop_fdb_for(&mut self, e: &Endpoint) -> Vec<StaticFdbEntry> {
        let keys: Vec<_> = self
            .static_fdb
            .iter()
            .filter(|(_, f)| f.network_id == e.network_id && f.port_name == e.host_tap_name)
            .map(|(k, _)| k.clone())
            .collect();
        keys.iter().filter_map(|k| self.static_fdb.remove(k)).collect()
    }
}
