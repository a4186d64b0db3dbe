//! Persistence: round trips, atomic replace, locking and corrupt files.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;

/// A unique scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "vsw-model-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&p);
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn fresh_dir_is_created_locked_and_saved() {
    let t = TempDir::new();
    let dir = t.path().join("nested/state");
    let (store, model) = Store::open(&dir).unwrap();
    assert_eq!(fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(model.networks().len(), 3);
    let text = fs::read_to_string(store.state_path()).unwrap();
    assert!(text.contains("\"version\": 1"), "{text}");
    let err = Store::open(&dir).unwrap_err().to_string();
    assert!(err.contains("in use by another vswitchd") && err.contains("state.lock"), "{err}");
    drop(store);
    let (_store, again) = Store::open(&dir).unwrap();
    assert_eq!(again, model, "predefined network ids survive a restart");
}

#[test]
fn round_trip_of_a_populated_model() {
    let t = TempDir::new();
    let (store, mut m) = Store::open(t.path()).unwrap();
    store.apply(&mut m, |m| m.create_network(bridge("a", "10.1.0.0/24"))).unwrap();
    store
        .apply(&mut m, |m| {
            m.create_network(CreateNetwork {
                vni: Some(77),
                mtu: Some(1450),
                attachable: true,
                ..CreateNetwork::new("ov", Driver::Overlay)
            })
        })
        .unwrap();
    store
        .apply(&mut m, |m| {
            m.create_sandbox(CreateSandbox { dns: vec!["1.1.1.1".parse().unwrap()], ..CreateSandbox::new("s1") })
        })
        .unwrap();
    let e =
        store.apply(&mut m, |m| m.connect(Connect { aliases: vec!["x".into()], ..Connect::new("a", "s1") })).unwrap();
    store.apply(&mut m, |m| m.connect(Connect::new("ov", "s1"))).unwrap();
    store.apply(&mut m, |m| m.add_static_fdb("a", "02:00:00:00:00:05".parse().unwrap(), &e.host_tap_name)).unwrap();
    store.apply(&mut m, |m| m.set_config("aging-time", "42")).unwrap();
    let publish = ctl::parse_publish("127.0.0.1:8080-8081:80-81/udp").unwrap();
    store.apply(&mut m, |m| m.publish("s1", Some("a"), &publish)).unwrap();
    store.apply(&mut m, |m| m.publish_service("api", Some("a"), &ctl::parse_publish("9000:90").unwrap())).unwrap();
    drop(store);
    let (_store, loaded) = Store::open(t.path()).unwrap();
    assert_eq!(loaded, m);
    assert_eq!(snapshot(&loaded), snapshot(&m));
    assert_eq!(loaded.config().aging_time_secs, 42);
    assert_eq!(loaded.endpoint(&e.id).unwrap().publish.len(), 2);
    assert_eq!(loaded.service("api").unwrap().publish, ctl::parse_publish("9000:90").unwrap());
}

#[test]
fn apply_refused_leaves_model_and_file_unchanged() {
    let t = TempDir::new();
    let (store, mut m) = Store::open(t.path()).unwrap();
    let file_before = fs::read(store.state_path()).unwrap();
    let before = m.clone();
    let err = store.apply(&mut m, |m| m.remove_network("bridge")).unwrap_err();
    assert!(matches!(err, ApplyError::Model(ModelError::PredefinedNetwork(_))), "{err}");
    assert_eq!(m, before);
    assert_eq!(fs::read(store.state_path()).unwrap(), file_before);
}

#[test]
fn leftover_tmp_file_is_ignored_and_overwritten() {
    let t = TempDir::new();
    let (store, mut m) = Store::open(t.path()).unwrap();
    let tmp = t.path().join("state.json.tmp");
    fs::write(&tmp, b"garbage from a crash").unwrap();
    drop(store);
    let (store, loaded) = Store::open(t.path()).unwrap();
    assert_eq!(loaded, m, "the .tmp file is never read");
    store.apply(&mut m, |m| m.create_sandbox(CreateSandbox::new("s"))).unwrap();
    assert!(!tmp.exists(), "save renamed its own .tmp over state.json");
    drop(store);
    assert_eq!(Store::open(t.path()).unwrap().1, m);
}

#[test]
fn corrupt_or_foreign_files_are_refused_with_the_path() {
    let t = TempDir::new();
    let path = t.path().join("state.json");
    drop(Store::open(t.path()).unwrap());
    let good = fs::read_to_string(&path).unwrap();

    fs::write(&path, "{\"version\":1, truncated").unwrap();
    let e = Store::open(t.path()).unwrap_err().to_string();
    assert!(e.contains(&path.display().to_string()) && e.contains("corrupt"), "{e}");
    assert_eq!(fs::read_to_string(&path).unwrap(), "{\"version\":1, truncated", "never overwritten");

    fs::write(&path, good.replace("\"version\": 1", "\"version\": 2")).unwrap();
    let e = Store::open(t.path()).unwrap_err().to_string();
    assert!(e.contains(&path.display().to_string()) && e.contains("version 2"), "{e}");

    fs::write(&path, "[]").unwrap();
    let e = Store::open(t.path()).unwrap_err().to_string();
    assert!(e.contains("corrupt"), "{e}");

    // Well-formed JSON that breaks an invariant: two endpoints with one address.
    let mut m = Model::new();
    m.create_network(bridge("a", "10.1.0.0/24")).unwrap();
    m.create_sandbox(CreateSandbox::new("s1")).unwrap();
    m.create_sandbox(CreateSandbox::new("s2")).unwrap();
    m.connect(Connect::new("a", "s1")).unwrap();
    m.connect(Connect::new("a", "s2")).unwrap();
    let text = serde_json::to_string_pretty(&m).unwrap().replace("10.1.0.3", "10.1.0.2");
    fs::write(&path, text).unwrap();
    let e = Store::open(t.path()).unwrap_err().to_string();
    assert!(e.contains(&path.display().to_string()) && e.contains("duplicate"), "{e}");
}

/// A state file written by the model before its address and driver types
/// became `ipnet`/`ctl` ones: it must load and save back byte for byte.
#[test]
fn state_file_format_is_stable() {
    let text = include_str!("state_v1.json");
    let m: Model = serde_json::from_str(text).unwrap();
    m.check_invariants().unwrap();
    assert_eq!(String::from_utf8(serde_json::to_vec_pretty(&m).unwrap()).unwrap(), text);
    let ov = m.network("ov").unwrap();
    assert_eq!((ov.driver, ov.subnet, ov.vni), (Driver::Overlay, Some(net("10.9.0.0/16")), Some(77)));
    assert_eq!(m.network("none").unwrap().driver, Driver::None);
    let custom = m.endpoints_in_sandbox("s1").into_iter().find(|e| e.network_id == ov.id).unwrap();
    assert_eq!(custom.mac, "02:00:00:ab:cd:ef".parse().unwrap());
    assert_eq!(m.static_fdb().next().unwrap().mac.to_string(), "02:11:22:33:44:55");
    // It predates IPv6: every network is IPv4-only, every endpoint has an IPv4 address.
    assert!(m.networks().iter().all(|n| n.enable_ipv4 && !n.enable_ipv6 && n.subnet6.is_none()));
    assert!(m.endpoints().all(|e| e.ipv4.is_some() && e.ipv6.is_none()));
}

/// The pre-IPv6 state file, opened from disk: IPv6 networks and endpoints
/// join it, and everything survives a reload.
#[test]
fn a_pre_ipv6_state_file_takes_ipv6_networks() {
    let t = TempDir::new();
    fs::create_dir_all(t.path()).unwrap();
    fs::write(t.path().join("state.json"), include_str!("state_v1.json")).unwrap();
    let (store, mut m) = Store::open(t.path()).unwrap();
    let old_endpoints = m.endpoints().count();
    let six = CreateNetwork {
        enable_ipv4: false,
        enable_ipv6: true,
        subnet6: Some("fd00:6::/64".parse().unwrap()),
        ..CreateNetwork::new("six", Driver::Bridge)
    };
    store.apply(&mut m, |m| m.create_network(six)).unwrap();
    let dual = CreateNetwork { enable_ipv6: true, ..bridge("dual", "10.50.0.0/24") };
    store.apply(&mut m, |m| m.create_network(dual)).unwrap();
    let e6 = store.apply(&mut m, |m| m.connect(Connect::new("six", "s1"))).unwrap();
    // A refused request leaves model and file as they were.
    let file_before = fs::read(store.state_path()).unwrap();
    let outside = Connect { ipv6: Some("fd00::5".parse().unwrap()), ..Connect::new("dual", "s1") };
    let err = store.apply(&mut m, |m| m.connect(outside)).unwrap_err();
    assert!(matches!(err, ApplyError::Model(ModelError::AddressOutsideSubnet { .. })), "{err}");
    assert_eq!(fs::read(store.state_path()).unwrap(), file_before);
    let ed = store.apply(&mut m, |m| m.connect(Connect::new("dual", "s1"))).unwrap();
    drop(store);
    let (_store, loaded) = Store::open(t.path()).unwrap();
    assert_eq!(loaded, m);
    assert_eq!(loaded.endpoints().count(), old_endpoints + 2);
    let six = loaded.network("six").unwrap();
    assert_eq!((six.enable_ipv4, six.subnet, six.gateway6), (false, None, Some("fd00:6::1".parse().unwrap())));
    let e6 = loaded.endpoint(&e6.id).unwrap();
    assert_eq!((e6.ipv4, e6.ipv6), (None, Some("fd00:6::2".parse().unwrap())));
    let ed = loaded.endpoint(&ed.id).unwrap();
    assert_eq!(ed.ipv4, Some(ip("10.50.0.2")));
    assert_eq!(ed.ipv6.map(|a| a.octets()[0]), Some(0xfd), "a ULA: {:?}", ed.ipv6);
    let text = fs::read_to_string(t.path().join("state.json")).unwrap();
    assert!(text.contains("\"enable_ipv4\": false") && text.contains("\"ipv6\": \"fd00:6::2\""), "{text}");
}
