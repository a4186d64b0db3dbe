//! Switch events of a real `vswitchd`, followed live with `vswitchctl
//! --json events --follow` and read back with `vswitchctl events`: ports up
//! when sandboxes connect, MACs learned when they ping, a MAC moved and then
//! flapping between two ports (one event per interval naming both, every
//! move accounted for), a drop burst, a port down and up again as its
//! sandbox sets its link down and up, a port down on disconnect, a
//! container that exits (its endpoint and sandbox released), and the
//! history; the follower stops on Ctrl-C with a summary that lost nothing.
//! On an encrypted overlay between two simulated hosts: the tunnel port of
//! a configured peer comes up, a peer that is not configured is learned
//! from its traffic (and MACs behind it are named by its tunnel port), and
//! `network key rotate` is reported. Needs root.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use ctl::MacAddr;
use ctl::proto::FdbEntry;
use serde_json::Value;
use vswitch::encrypted::{SecretFile, encrypted_vtep_daemon};
use vswitch::overlay::{ip_of, sandbox_on, tunnel_port};
use vswitch::{
    Binaries, Container, Daemon, Underlay, inject_frame, inject_frames, netns_exec_ok, ping, require_root, wait_for,
    wait_until,
};

/// How long any one expected event may take to show up.
const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

/// `vswitchctl --json events --follow` (or another way of printing each
/// event as a JSON line), its lines collected by threads.
struct Follower {
    child: Child,
    events: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Follower {
    /// Starts following `d`'s events and waits until the stream is open.
    fn start(d: &Daemon) -> Follower {
        Follower::start_with(d, &["--json", "events", "--follow"])
    }

    /// Starts `vswitchctl ARGS`, which must print each event as a line of
    /// JSON, and waits until the stream is open.
    fn start_with(d: &Daemon, args: &[&str]) -> Follower {
        let mut child = Command::new(&Binaries::get().vswitchctl)
            .arg("--socket")
            .arg(d.socket())
            .args(args)
            .env_remove("VSWITCH_CTL_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vswitchctl events --follow");
        let events = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        let readers = vec![
            {
                let events = Arc::clone(&events);
                std::thread::spawn(move || {
                    for line in BufReader::new(out).lines().map_while(Result::ok) {
                        let value: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
                            panic!("events --follow printed a line that is not JSON ({e}): {line}")
                        });
                        events.lock().unwrap().push(value);
                    }
                })
            },
            {
                let stderr = Arc::clone(&stderr);
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(err);
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = reader.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        stderr.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                })
            },
        ];
        let f = Follower { child, events, stderr, readers };
        wait_until(
            EVENT_TIMEOUT,
            || format!("events --follow to open its stream; stderr: {:?}", f.stderr.lock().unwrap()),
            || f.stderr.lock().unwrap().contains("following events from #").then_some(()),
        );
        f
    }

    fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }

    /// Waits until `found` finds something in the events received so far.
    fn wait_for<T>(&self, what: &str, found: impl Fn(&[Value]) -> Option<T>) -> T {
        wait_until(
            EVENT_TIMEOUT,
            || format!("{what}; events so far:\n{}", lines(&self.events())),
            || found(&self.events()),
        )
    }

    /// Waits for an event of `kind` whose fields include all of `fields`.
    fn wait_event(&self, kind: &str, fields: &[(&str, &str)]) -> Value {
        self.wait_for(&format!("a {kind} event with {fields:?}"), |events| {
            events.iter().find(|e| matches(e, kind, fields)).cloned()
        })
    }

    /// Stops it as Ctrl-C does; returns its exit status and stderr.
    fn stop(mut self) -> (ExitStatus, String) {
        // SAFETY: kill(2) on the pid of a child we own and have not reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let status = self.child.wait().expect("wait for vswitchctl");
        for r in self.readers.drain(..) {
            r.join().expect("reader thread");
        }
        let stderr = self.stderr.lock().unwrap().clone();
        (status, stderr)
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines(events: &[Value]) -> String {
    events.iter().map(|e| format!("  {e}\n")).collect()
}

/// Whether `e` is of `kind` and has every (field, string value) of `fields`.
fn matches(e: &Value, kind: &str, fields: &[(&str, &str)]) -> bool {
    e["kind"] == kind && fields.iter().all(|(k, v)| e[*k].as_str() == Some(*v))
}

fn of_kind<'a>(events: &'a [Value], kind: &str, fields: &[(&str, &str)]) -> Vec<&'a Value> {
    events.iter().filter(|e| matches(e, kind, fields)).collect()
}

/// A broadcast frame with the local-experimental EtherType.
fn broadcast_from(src: [u8; 6]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&src);
    f.extend_from_slice(&0x88b5u16.to_be_bytes());
    f.resize(60, 0);
    f
}

fn fdb_port(d: &Daemon, net: &str, mac: [u8; 6]) -> Option<String> {
    d.ctl_json::<Vec<FdbEntry>>(&["fdb", "show", net]).into_iter().find(|e| e.mac.octets() == mac).map(|e| e.port)
}

/// `vswitchctl --json events`: the history, one JSON object per line.
fn history(d: &Daemon) -> Vec<Value> {
    let out = d.ctl_ok(&["--json", "events"]);
    out.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
}

fn mac_str(mac: [u8; 6]) -> String {
    MacAddr(mac).to_string()
}

#[test]
fn events_follow_ports_macs_flapping_drops_and_gone_sandboxes() {
    if !require_root("events_follow_ports_macs_flapping_drops_and_gone_sandboxes") {
        return;
    }
    let d = Daemon::start();
    let net = d.name("n");
    let (a, b, c1) = (d.name("a"), d.name("b"), d.name("c1"));
    d.network_create(&net, "10.231.0.0/24");
    let f = Follower::start(&d);
    // The same stream through a template (`--format '{{json .}}'`).
    let templated = Follower::start_with(&d, &["events", "--follow", "--format", "{{json .}}"]);

    // Ports come up as sandboxes connect.
    let eps = d.sandboxes_on(&net, &[&a, &b]);
    let (ea, eb) = (&eps[0], &eps[1]);
    for (s, e) in [(&a, ea), (&b, eb)] {
        let up = f.wait_event("port_up", &[("port", &e.port), ("sandbox", s), ("reason", "connected")]);
        assert_eq!(up["network"], net.as_str());
    }

    // Both MACs are learned when they ping.
    assert!(ping(&a, ip_of(eb), 2), "{a} cannot ping {b}");
    for e in [ea, eb] {
        f.wait_event("mac_learned", &[("mac", &e.mac.to_string()), ("port", &e.port), ("network", &net)]);
    }

    // A MAC neither sandbox owns, sent from a, then from b: moved a -> b.
    // Then back and forth: flapping. Each move is awaited in the FDB so the
    // switch sees them in this order.
    let x = [0x02, 0xee, 0, 0, 0, 0x01];
    let xs = mac_str(x);
    let moves = 6;
    let senders = [(&a, ea), (&b, eb)];
    for step in 0..=moves {
        let (ns, e) = senders[step % 2];
        inject_frame(ns, &e.ifname, &broadcast_from(x)).expect("inject");
        wait_until(
            EVENT_TIMEOUT,
            || format!("{xs} to be on {} ({ns})", e.port),
            || (fdb_port(&d, &net, x).as_deref() == Some(e.port.as_str())).then_some(()),
        );
    }
    f.wait_event("mac_learned", &[("mac", &xs), ("port", &ea.port)]);
    let first = f.wait_event("mac_moved", &[("mac", &xs)]);
    assert_eq!((first["from"].as_str(), first["to"].as_str()), (Some(ea.port.as_str()), Some(eb.port.as_str())));
    // Every move is either reported on its own or folded into a flapping
    // event (which comes at the end of its interval).
    let (moved, flapping) = f.wait_for("every move of the flapping MAC to be accounted for", |events| {
        let moved = of_kind(events, "mac_moved", &[("mac", &xs)]).len();
        let flapping: Vec<Value> = of_kind(events, "mac_flapping", &[("mac", &xs)]).into_iter().cloned().collect();
        let folded: u64 = flapping.iter().map(|e| e["suppressed"].as_u64().unwrap_or(0)).sum();
        (moved as u64 + folded == moves as u64).then_some((moved, flapping))
    });
    assert!(!flapping.is_empty(), "no flapping event for {xs}");
    assert!(moved < moves, "each of the {moves} moves was reported on its own");
    let both: BTreeSet<&str> = [ea.port.as_str(), eb.port.as_str()].into();
    for e in &flapping {
        let ports: BTreeSet<&str> = e["ports"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert_eq!(ports, both, "a flapping event that does not name both ports: {e}");
        assert!(e["moves"].as_u64().unwrap() >= 1);
    }
    eprintln!("{moves} moves: {moved} mac_moved, flapping: {flapping:?}");

    // A burst of frames to a reserved group address, dropped on a's port.
    let mut lldp = vec![0x01, 0x80, 0xc2, 0, 0, 0x0e];
    lldp.extend_from_slice(&ea.mac.octets());
    lldp.extend_from_slice(&0x88ccu16.to_be_bytes());
    lldp.resize(60, 0);
    let burst = wait_until(
        EVENT_TIMEOUT,
        || format!("a drop burst on {}; events:\n{}", ea.port, lines(&f.events())),
        || {
            let sent = inject_frames(&a, &ea.ifname, &vec![lldp.clone(); 300]).expect("inject burst");
            assert!(sent > 0);
            wait_for(Duration::from_secs(3), || {
                f.events()
                    .into_iter()
                    .find(|e| matches(e, "drop_burst", &[("port", &ea.port), ("reason", "reserved_group")]))
            })
        },
    );
    assert_eq!(burst["network"], net.as_str());
    assert!(burst["drops"].as_u64().unwrap() >= 100, "{burst}");

    // b's side of its link goes down inside b: frames flooded to it fail
    // (its port is down), and once it is up again they cross it (up).
    netns_exec_ok(&b, "ip", &["link", "set", &eb.ifname, "down"]);
    inject_frame(&a, &ea.ifname, &broadcast_from(ea.mac.octets())).expect("inject");
    f.wait_event("port_down", &[("port", &eb.port), ("sandbox", &b), ("reason", "link_down")]);
    netns_exec_ok(&b, "ip", &["link", "set", &eb.ifname, "up"]);
    inject_frame(&a, &ea.ifname, &broadcast_from(ea.mac.octets())).expect("inject");
    f.wait_event("port_up", &[("port", &eb.port), ("sandbox", &b), ("reason", "link_up")]);

    // Disconnecting takes the port down.
    d.ctl_ok(&["network", "disconnect", &net, &b]);
    f.wait_event("port_down", &[("port", &eb.port), ("sandbox", &b), ("reason", "disconnected")]);

    // A container that exits: its endpoint and sandbox are released, and reported.
    let mut container = Container::start();
    d.ctl_ok(&["sandbox", "create", &c1, "--netns", &container.netns()]);
    let ec = d.connect(&net, &c1, None);
    f.wait_event("port_up", &[("port", &ec.port), ("sandbox", &c1)]);
    container.exit();
    let address = ip_of(&ec).to_string();
    f.wait_event("port_down", &[("port", &ec.port), ("sandbox", &c1), ("reason", "gone")]);
    f.wait_event("endpoint_gone", &[("port", &ec.port), ("sandbox", &c1), ("address", &address), ("network", &net)]);
    let gone = f.wait_event("sandbox_gone", &[("sandbox", &c1)]);
    assert_eq!(gone["netns"], container.netns().as_str());

    // The history holds what the stream showed, under the same numbers.
    let streamed = f.events();
    let past = history(&d);
    let seqs: Vec<u64> = past.iter().map(|e| e["seq"].as_u64().expect("seq")).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "history out of order: {seqs:?}");
    for e in &streamed {
        assert!(past.contains(e), "streamed event missing from the history: {e}");
    }
    assert!(!of_kind(&past, "port_up", &[("port", &ea.port)]).is_empty());
    let human = d.ctl_ok(&["events"]);
    eprintln!("vswitchctl events:\n{human}");
    assert!(human.lines().any(|l| l.contains("mac_flapping") && l.contains(&xs)), "{human}");
    // --format runs a template over each event's JSON object, as Docker's does.
    let formatted = d.ctl_ok(&["events", "--format", "{{.seq}} {{.kind}}"]);
    let first: Vec<String> = formatted.lines().take(past.len()).map(str::to_owned).collect();
    let expected: Vec<String> =
        past.iter().map(|e| format!("{} {}", e["seq"], e["kind"].as_str().unwrap_or("?"))).collect();
    assert_eq!(first, expected, "events --format:\n{formatted}");

    // The counters say the same.
    let metrics = d.ctl_ok(&["stats", "--prometheus"]);
    assert!(metrics.contains("vswitch_events_total{kind=\"mac_flapping\"}"), "{metrics}");
    assert!(metrics.contains("vswitch_event_subscribers 2"), "{metrics}");

    // Ctrl-C ends the follower with its summary: nothing lost.
    let (status, stderr) = f.stop();
    assert!(status.success(), "events --follow exited with {status}: {stderr}");
    let summary: Value = serde_json::from_str(stderr.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("no JSON summary on stderr ({e}): {stderr}"));
    assert_eq!(summary["lost"], 0, "{summary}");
    assert_eq!(summary["delivered"].as_u64(), Some(streamed.len() as u64), "{summary}");
    assert!(of_kind(&streamed, "events_lost", &[]).is_empty());
    // The templated follower printed the same events, and its summary as a line.
    templated.wait_for("the templated follower to print every event", |events| {
        (events.len() >= streamed.len()).then_some(())
    });
    assert_eq!(templated.events()[..streamed.len()], streamed[..], "events --follow --format '{{{{json .}}}}'");
    let (status, stderr) = templated.stop();
    assert!(status.success(), "events --follow --format exited with {status}: {stderr}");
    assert!(stderr.lines().last().is_some_and(|l| l.ends_with("events shown, none lost")), "{stderr}");
    // Its subscription ended with it.
    wait_until(
        EVENT_TIMEOUT,
        || "the subscriber gauge to drop to 0".to_owned(),
        || d.ctl_ok(&["stats", "--prometheus"]).contains("vswitch_event_subscribers 0").then_some(()),
    );
}

#[test]
fn events_on_an_encrypted_overlay_peers_learned_and_key_rotation() {
    if !require_root("events_on_an_encrypted_overlay_peers_learned_and_key_rotation") {
        return;
    }
    let u = Underlay::new([10, 232, 1], 2);
    let (ha, hb) = (u.host(0), u.host(1));
    let secret = SecretFile::generate(0o600);
    let da = encrypted_vtep_daemon(ha, &secret, &[]);
    let db = encrypted_vtep_daemon(hb, &secret, &["--learn-peers"]);
    let net = u.name("ev");
    for d in [&da, &db] {
        d.overlay_create(&net, "10.233.0.0/24", 5301, &["--attachable", "-o", "encrypted"]);
    }
    // Only A knows its peer; B learns A from its traffic.
    da.peer_add(hb.vtep(), &[]);
    let (sa, ea) = sandbox_on(&da, &net, "s", "10.233.0.11");
    let (_sb, eb) = sandbox_on(&db, &net, "s", "10.233.0.12");
    assert!(ping(&sa, ip_of(&eb), 3), "A cannot ping B over the encrypted overlay");

    let wait_history = |d: &Daemon, kind: &str, fields: &[(&str, &str)]| -> Value {
        wait_until(
            EVENT_TIMEOUT,
            || format!("a {kind} event with {fields:?} in the history:\n{}", lines(&history(d))),
            || history(d).into_iter().find(|e| matches(e, kind, fields)),
        )
    };
    let to_b = tunnel_port(hb.vtep());
    wait_history(&da, "port_up", &[("port", &to_b), ("network", &net), ("reason", "peer_added")]);
    let to_a = tunnel_port(ha.vtep());
    let learned = wait_history(&db, "peer_learned", &[("port", &to_a), ("network", &net)]);
    assert_eq!(learned["peer"], ha.vtep().to_string().as_str());
    // A's sandbox is learned behind the tunnel port, named as `fdb show` names it.
    wait_history(&db, "mac_learned", &[("mac", &ea.mac.to_string()), ("port", &to_a)]);

    let epoch = da.key_rotate(&net);
    let rotated = wait_history(&da, "key_rotated", &[("network", &net)]);
    assert_eq!((rotated["epoch"].as_u64(), rotated["automatic"].as_bool()), (Some(u64::from(epoch)), Some(false)));
}
