//! `ctl::client` against a fake daemon: ID matching, errors, timeouts.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{FakeDaemon, Reply, TempDir};
use ctl::client::{self, Client, ClientError};
use ctl::proto::{ErrorKind, FlushResult, Request, VersionInfo};
use serde_json::json;

#[test]
fn several_calls_on_one_connection_with_typed_payloads() {
    let d = FakeDaemon::start(vec![
        Reply::Ok(json!({"version": "9.9.9", "protocol": 1})),
        Reply::Ok(json!({"flushed": 12})),
        Reply::Err(ErrorKind::NotFound, "network \"red\" not found"),
        Reply::Ok(json!({"unexpected": true})),
    ]);
    let mut c = Client::connect(&d.socket).unwrap();
    assert_eq!(c.path(), d.socket.as_path());
    let v: VersionInfo = c.call(&Request::Version).unwrap();
    assert_eq!(v, VersionInfo { version: "9.9.9".into(), protocol: 1 });
    let f: FlushResult = c.call(&Request::FdbFlush { network: Some("blue".into()) }).unwrap();
    assert_eq!(f.flushed, 12);
    match c.call_value(&Request::NetworkRm { name: "red".into() }) {
        Err(ClientError::Daemon(e)) => {
            assert_eq!(e.kind, ErrorKind::NotFound);
            assert_eq!(e.to_string(), "network \"red\" not found");
        }
        other => panic!("expected daemon error, got {other:?}"),
    }
    assert!(matches!(c.call::<FlushResult>(&Request::Ping), Err(ClientError::Payload(_))));
    drop(c);
    assert_eq!(
        d.finish(),
        vec![
            Request::Version,
            Request::FdbFlush { network: Some("blue".into()) },
            Request::NetworkRm { name: "red".into() },
            Request::Ping,
        ]
    );
}

#[test]
fn mismatched_id_is_rejected() {
    let d = FakeDaemon::start(vec![Reply::Raw(r#"{"v":1,"id":999,"ok":{}}"#)]);
    let mut c = Client::connect(&d.socket).unwrap();
    match c.call_value(&Request::Ping) {
        Err(ClientError::IdMismatch { expected: 1, got: Some(999) }) => {}
        other => panic!("expected id mismatch, got {other:?}"),
    }
    drop(c);
    d.finish();
}

#[test]
fn garbage_reply_is_a_protocol_error() {
    let d = FakeDaemon::start(vec![Reply::Raw("hello there")]);
    let mut c = Client::connect(&d.socket).unwrap();
    assert!(matches!(c.call_value(&Request::Ping), Err(ClientError::Protocol(_))));
    drop(c);
    d.finish();
}

#[test]
fn silent_daemon_times_out() {
    let d = FakeDaemon::start(vec![Reply::Silent]);
    let mut c = Client::connect_with_timeout(&d.socket, Duration::from_millis(200)).unwrap();
    let err = c.call_value(&Request::Ping).unwrap_err();
    assert!(matches!(err, ClientError::Timeout(_)), "{err:?}");
    drop(c);
    d.finish();
}

/// A client that waits (vswitchctl's default) takes an answer that comes
/// after any timeout would have fired; one with a timeout gives up and says
/// the request may still be applied.
#[test]
fn a_waiting_client_takes_a_late_answer_and_a_timeout_says_the_request_may_still_apply() {
    let late = Reply::Late(Duration::from_millis(1200), json!({"flushed": 3}));
    let d = FakeDaemon::start(vec![late]);
    let mut c = Client::connect_waiting(&d.socket).unwrap();
    assert_eq!(c.timeout(), None, "no timeout at all");
    let f: FlushResult = c.call(&Request::FdbFlush { network: None }).unwrap();
    assert_eq!(f.flushed, 3);
    drop(c);
    d.finish();

    let d = FakeDaemon::start(vec![Reply::Silent]);
    let mut c = Client::connect_with_timeout(&d.socket, Duration::from_millis(200)).unwrap();
    let err = c.call_value(&Request::Ping).unwrap_err().to_string();
    assert!(err.contains("may still be applied"), "{err}");
    drop(c);
    d.finish();
}

#[test]
fn connect_failure_names_the_socket() {
    let dir = TempDir::new();
    let path = dir.path().join("absent.sock");
    let err = Client::connect(&path).unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }));
    let msg = err.to_string();
    assert!(msg.starts_with(&format!("cannot connect to vswitchd at {}: is it running? (", path.display())), "{msg}");
}

#[test]
fn socket_resolution_prefers_explicit_path() {
    // The environment is process-wide, so only the explicit case is checked here; the
    // env-var case is covered through the binary in tests/cli.rs.
    assert_eq!(client::resolve_socket(Some(Path::new("/x.sock"))), Path::new("/x.sock"));
    assert_eq!(client::DEFAULT_CTL_SOCKET, "/run/vswitch/vswitchd.sock");
    assert_eq!(client::CTL_SOCKET_ENV, "VSWITCH_CTL_SOCKET");
}
