//! `network ls --filter KEY=VALUE`: Docker's network filters over the
//! [`NetworkSummary`] rows the daemon lists.
//!
//! As in Docker, filters with different keys must all match and filters
//! with the same key are alternatives: `-f driver=bridge -f driver=overlay
//! -f name=app` lists bridge and overlay networks whose name contains
//! `app`. Labels are the exception, as in Docker: every `label=` must hold.
//! `name=` and `id=` are Docker's too: the whole name, or a regular
//! expression found anywhere in it (`name=^app$`, `name=app|db`).

use std::collections::BTreeMap;

use regex::Regex;

use crate::proto::NetworkSummary;

/// A filter key `network ls` understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    /// The driver, exactly (`bridge`, `overlay`, ...; Docker's `null` for
    /// `none`, whose networks are `none` and the configuration-only ones).
    Driver,
    /// The network's ID, or a regular expression found in it.
    Id,
    /// The network's name, or a regular expression found in it.
    Name,
    /// The scope, exactly (`local`, `swarm`).
    Scope,
    /// `custom` or `builtin` (`bridge`, `host`, `none`).
    Type,
    /// `true`: the networks `network prune` would remove; `false`: the others.
    Dangling,
    /// A label: `KEY` (any value) or `KEY=VALUE`.
    Label,
}

/// Why a `--filter` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// No `=` between key and value.
    #[error("invalid filter {0:?}: expected KEY=VALUE")]
    NoValue(String),
    /// A key `network ls` does not filter by.
    #[error("invalid filter key {0:?}: expected driver, id, name, scope, type, dangling or label")]
    UnknownKey(String),
    /// `type=` other than `custom` or `builtin`.
    #[error("invalid filter type={0:?}: expected custom or builtin")]
    BadType(String),
    /// `dangling=` other than a boolean.
    #[error("invalid filter dangling={0:?}: expected true or false")]
    BadDangling(String),
    /// `dangling=true` and `dangling=false` together (they would match everything).
    #[error("invalid filter: dangling=true and dangling=false together")]
    DanglingTwice,
    /// `name=` or `id=` that is not a regular expression.
    #[error("invalid filter {key}={value:?}: not a regular expression: {reason}")]
    BadPattern {
        /// `name` or `id`.
        key: &'static str,
        /// The value given.
        value: String,
        /// What the regular expression parser said.
        reason: String,
    },
}

/// Parsed `--filter` arguments (no filter at all matches every network).
#[derive(Debug, Clone, Default)]
pub struct NetworkFilter {
    alternatives: BTreeMap<Key, Vec<String>>,
    /// The `name=` and `id=` values, compiled (Docker matches them as
    /// regular expressions when they are not the whole text).
    patterns: BTreeMap<String, Regex>,
}

/// Two filters are equal when they were given the same keys and values.
impl PartialEq for NetworkFilter {
    fn eq(&self, other: &Self) -> bool {
        self.alternatives == other.alternatives
    }
}

impl Eq for NetworkFilter {}

impl NetworkFilter {
    /// Parses `KEY=VALUE` arguments; keys are case-insensitive, as Docker's.
    pub fn parse(specs: &[String]) -> Result<NetworkFilter, FilterError> {
        let mut filter = NetworkFilter::default();
        for spec in specs {
            let (key, value) = spec.split_once('=').ok_or_else(|| FilterError::NoValue(spec.clone()))?;
            let key = match key.trim().to_ascii_lowercase().as_str() {
                "driver" => Key::Driver,
                "id" => Key::Id,
                "name" => Key::Name,
                "scope" => Key::Scope,
                "type" => Key::Type,
                "dangling" => Key::Dangling,
                "label" => Key::Label,
                _ => return Err(FilterError::UnknownKey(key.to_owned())),
            };
            let value = match key {
                Key::Type if !matches!(value, "custom" | "builtin") => {
                    return Err(FilterError::BadType(value.to_owned()));
                }
                Key::Dangling => match value.to_ascii_lowercase().as_str() {
                    "true" | "1" => "true".to_owned(),
                    "false" | "0" => "false".to_owned(),
                    _ => return Err(FilterError::BadDangling(value.to_owned())),
                },
                _ => value.to_owned(),
            };
            if matches!(key, Key::Name | Key::Id) && !filter.patterns.contains_key(&value) {
                let regex = Regex::new(&value).map_err(|e| FilterError::BadPattern {
                    key: if key == Key::Name { "name" } else { "id" },
                    value: value.clone(),
                    reason: e.to_string().lines().last().unwrap_or_default().trim().to_owned(),
                })?;
                filter.patterns.insert(value.clone(), regex);
            }
            let values = filter.alternatives.entry(key).or_default();
            if key == Key::Dangling && values.iter().any(|v| *v != value) {
                return Err(FilterError::DanglingTwice);
            }
            values.push(value);
        }
        Ok(filter)
    }

    /// Whether `network` passes: for every key given, one of its values.
    pub fn matches(&self, network: &NetworkSummary) -> bool {
        self.alternatives.iter().all(|(key, values)| match key {
            Key::Label => values.iter().all(|v| self.one_matches(*key, v, network)),
            _ => values.iter().any(|v| self.one_matches(*key, v, network)),
        })
    }

    /// Whether one `KEY=VALUE` holds for `n`.
    fn one_matches(&self, key: Key, value: &str, n: &NetworkSummary) -> bool {
        match key {
            Key::Driver => n.driver.to_string() == value || value.parse() == Ok(n.driver),
            Key::Id => self.found(value, &n.id),
            Key::Name => self.found(value, &n.name),
            Key::Scope => n.scope == value,
            Key::Type => (value == "builtin") == n.predefined,
            Key::Dangling => (value == "true") == n.dangling,
            Key::Label => match value.split_once('=') {
                Some((key, wanted)) => n.labels.get(key).is_some_and(|v| v == wanted),
                None => n.labels.contains_key(value),
            },
        }
    }

    /// Docker's match of a `name=` or `id=` value: the whole text, or the
    /// value as a regular expression found anywhere in it.
    fn found(&self, value: &str, text: &str) -> bool {
        text == value || self.patterns.get(value).is_some_and(|r| r.is_match(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Driver;

    fn net(name: &str, id: &str, driver: Driver, endpoints: usize) -> NetworkSummary {
        NetworkSummary {
            name: name.into(),
            id: id.into(),
            driver,
            scope: if driver == Driver::Overlay { "swarm" } else { "local" }.into(),
            subnet: None,
            enable_ipv4: true,
            enable_ipv6: false,
            subnet6: None,
            endpoints,
            predefined: matches!(name, "bridge" | "host" | "none"),
            // As the daemon says it; here: custom and without endpoints.
            dangling: endpoints == 0 && !matches!(name, "bridge" | "host" | "none"),
            labels: Default::default(),
            internal: false,
            created: String::new(),
            config_only: false,
            config_from: None,
        }
    }

    fn names(specs: &[&str], nets: &[NetworkSummary]) -> Vec<String> {
        let specs: Vec<String> = specs.iter().map(|s| s.to_string()).collect();
        let f = NetworkFilter::parse(&specs).unwrap();
        nets.iter().filter(|n| f.matches(n)).map(|n| n.name.clone()).collect()
    }

    #[test]
    fn keys_are_anded_and_values_of_one_key_ored() {
        let nets = [
            net("bridge", "aa11", Driver::Bridge, 0),
            net("host", "bb22", Driver::Host, 0),
            net("app", "cc33", Driver::Bridge, 2),
            net("app-idle", "cc44", Driver::Bridge, 0),
            net("mesh", "dd55", Driver::Overlay, 0),
            // No endpoint, but in use (a service publishes on it): the daemon says not dangling.
            NetworkSummary { dangling: false, ..net("served", "ee66", Driver::Bridge, 0) },
        ];
        assert_eq!(names(&[], &nets).len(), 6, "no filter: everything");
        assert_eq!(names(&["name=app"], &nets), ["app", "app-idle"], "part of the name");
        assert_eq!(names(&["id=cc"], &nets), ["app", "app-idle"], "part of the ID");
        assert_eq!(names(&["id=c3"], &nets), ["app"], "its middle too");
        assert_eq!(names(&["driver=overlay", "driver=host"], &nets), ["host", "mesh"]);
        // Docker's name for the none driver.
        let nulls = [net("none", "ff77", Driver::None, 0), net("bridge", "aa11", Driver::Bridge, 0)];
        assert_eq!(names(&["driver=null"], &nulls), ["none"]);
        assert_eq!(names(&["driver=none"], &nulls), ["none"]);
        assert_eq!(names(&["driver=bridge", "name=idle"], &nets), ["app-idle"]);
        assert_eq!(names(&["type=builtin"], &nets), ["bridge", "host"]);
        assert_eq!(names(&["type=custom", "scope=local"], &nets), ["app", "app-idle", "served"]);
        assert_eq!(names(&["dangling=true"], &nets), ["app-idle", "mesh"], "as the daemon marks them");
        assert_eq!(names(&["DANGLING=0"], &nets), ["bridge", "host", "app", "served"]);
        // Regular expressions, as Docker's name and id filters take them.
        assert_eq!(names(&["name=^app$"], &nets), ["app"]);
        assert_eq!(names(&["name=^(host|mesh)"], &nets), ["host", "mesh"]);
        assert_eq!(names(&["name=p-i"], &nets), ["app-idle"]);
        assert_eq!(names(&["id=^c+4"], &nets), ["app-idle"]);
        assert_eq!(names(&["name=a.p"], &nets), ["app", "app-idle"], "a regular expression, not a substring");
        assert_eq!(names(&["name=^idle"], &nets), Vec::<String>::new());
    }

    #[test]
    fn every_label_filter_must_hold() {
        let labelled = |name: &str, labels: &[(&str, &str)]| NetworkSummary {
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..net(name, "ff", Driver::Bridge, 1)
        };
        let nets = [
            labelled("web", &[("tier", "front"), ("team", "a")]),
            labelled("db", &[("tier", "back"), ("team", "a")]),
            labelled("plain", &[]),
        ];
        assert_eq!(names(&["label=tier"], &nets), ["web", "db"], "the key, any value");
        assert_eq!(names(&["label=tier=back"], &nets), ["db"]);
        assert_eq!(names(&["label=team=a", "label=tier=front"], &nets), ["web"], "both must hold");
        assert_eq!(names(&["label=tier=front", "label=tier=back"], &nets), Vec::<String>::new());
        assert_eq!(names(&["label=team=a", "name=d"], &nets), ["db"]);
    }

    #[test]
    fn bad_filters_name_what_is_wrong() {
        let err = |spec: &str| NetworkFilter::parse(&[spec.to_owned()]).unwrap_err().to_string();
        assert!(err("driver").contains("expected KEY=VALUE"));
        assert!(err("colour=blue").contains("expected driver, id, name, scope, type, dangling or label"));
        assert!(err("type=mine").contains("custom or builtin"));
        assert!(err("dangling=maybe").contains("true or false"));
        let bad = err("name=app(");
        assert!(bad.contains("name=\"app(\"") && bad.contains("not a regular expression"), "{bad}");
        let twice = NetworkFilter::parse(&["dangling=true".to_owned(), "dangling=false".to_owned()]);
        assert_eq!(twice, Err(FilterError::DanglingTwice));
        assert!(NetworkFilter::parse(&["dangling=true".to_owned(), "dangling=1".to_owned()]).is_ok(), "the same value");
    }
}
