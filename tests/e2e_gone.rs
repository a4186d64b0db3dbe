//! Sandboxes whose container is gone: a process in its own network
//! namespace is adopted (`sandbox create --netns /proc/PID/ns/net`) and
//! connected, then exits, which ends the namespace and unregisters its TAP.
//! The switch releases the endpoint and its address and removes the
//! sandbox, live and after a restart. Needs root.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use ctl::proto::SandboxInfo;
use serde_json::Value;
use vswitch::overlay::ip_of;
use vswitch::{Container, Daemon, ping, require_root};

fn sandbox_names(d: &Daemon) -> Vec<String> {
    d.ctl_json::<Vec<SandboxInfo>>(&["sandbox", "ls"]).into_iter().map(|s| s.name).collect()
}

fn containers_on(d: &Daemon, net: &str) -> usize {
    let info: Value = d.ctl_json(&["network", "inspect", net]);
    info[0]["Containers"].as_object().map_or(0, |c| c.len())
}

/// Waits until sandbox `name` is no longer listed.
fn wait_gone(d: &Daemon, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while sandbox_names(d).iter().any(|n| n == name) {
        assert!(Instant::now() < deadline, "sandbox {name} still listed; log:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_container_that_exits_releases_its_endpoint_and_sandbox() {
    if !require_root("a_container_that_exits_releases_its_endpoint_and_sandbox") {
        return;
    }
    let d = Daemon::start();
    let net = d.name("n");
    let (c1, b, c2) = (d.name("c1"), d.name("b"), d.name("c2"));
    d.network_create(&net, "10.219.0.0/24");
    let mut container = Container::start();
    d.ctl_ok(&["sandbox", "create", &c1, "--netns", &container.netns()]);
    let e1 = d.connect(&net, &c1, None);
    assert_eq!(ip_of(&e1), Ipv4Addr::new(10, 219, 0, 2));
    d.sandbox_create(&b);
    let eb = d.connect(&net, &b, None);
    assert_eq!(containers_on(&d, &net), 2);

    container.exit();
    wait_gone(&d, &c1);
    assert_eq!(containers_on(&d, &net), 1, "the gone endpoint is still on the network");
    // Its address is free again, and the rest of the network works.
    d.sandbox_create(&c2);
    let e2 = d.connect(&net, &c2, None);
    assert_eq!(ip_of(&e2), Ipv4Addr::new(10, 219, 0, 2), "the gone endpoint's address was not released");
    assert!(ping(&c2, ip_of(&eb), 3), "{c2} cannot reach {b}");
    assert!(d.log().contains("sandbox's namespace is gone"), "not reported in the log:\n{}", d.log());
}

#[test]
fn a_container_that_exits_while_the_daemon_is_down_is_released_at_restart() {
    if !require_root("a_container_that_exits_while_the_daemon_is_down_is_released_at_restart") {
        return;
    }
    let mut d = Daemon::start();
    let net = d.name("n");
    let c1 = d.name("c1");
    d.network_create(&net, "10.219.1.0/24");
    let mut container = Container::start();
    d.ctl_ok(&["sandbox", "create", &c1, "--netns", &container.netns()]);
    d.connect(&net, &c1, None);
    d.kill9();
    container.exit();
    d.restart();
    assert!(!sandbox_names(&d).contains(&c1), "{c1} survived its namespace across a restart");
    assert_eq!(containers_on(&d, &net), 0);
    let c2 = d.name("c2");
    d.sandbox_create(&c2);
    assert_eq!(ip_of(&d.connect(&net, &c2, None)), Ipv4Addr::new(10, 219, 1, 2));
}
