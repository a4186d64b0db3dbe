//! Test support: a unique temporary directory and a fake `vswitchd` that records requests.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, ErrorKind as IoErrorKind, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ctl::proto::{self, ErrorKind, Request};
use serde_json::Value;

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("vswitchctl-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the fake daemon answers to the next request.
pub enum Reply {
    /// `{"ok": value}`.
    Ok(Value),
    /// `{"err": {kind, message}}`.
    Err(ErrorKind, &'static str),
    /// A raw line, sent as is (for protocol-violation tests).
    Raw(&'static str),
    /// Do not answer; keep the connection open until the client hangs up.
    Silent,
    /// `{"ok": value}` after a delay (a request that waited in line).
    Late(Duration, Value),
}

/// A fake daemon listening on `<tempdir>/ctl.sock`. It serves connections one after another,
/// answers requests with the canned replies in order, and records every decoded request.
pub struct FakeDaemon {
    pub socket: PathBuf,
    handle: Option<JoinHandle<Vec<Request>>>,
    _dir: TempDir,
}

impl FakeDaemon {
    pub fn start(replies: Vec<Reply>) -> Self {
        let dir = TempDir::new();
        let socket = dir.path().join("ctl.sock");
        let listener = UnixListener::bind(&socket).expect("bind fake daemon");
        listener.set_nonblocking(true).unwrap();
        let handle = std::thread::spawn(move || serve(listener, replies));
        Self { socket, handle: Some(handle), _dir: dir }
    }

    /// Waits for the daemon thread (it stops once every reply is used, or after 10 s idle) and
    /// returns the requests it received.
    pub fn finish(mut self) -> Vec<Request> {
        self.handle.take().unwrap().join().expect("fake daemon panicked")
    }
}

fn serve(listener: UnixListener, replies: Vec<Reply>) -> Vec<Request> {
    let mut replies = replies.into_iter();
    let mut received = Vec::new();
    let mut remaining = replies.len();
    let deadline = Instant::now() + Duration::from_secs(10);
    while remaining > 0 && Instant::now() < deadline {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == IoErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            Err(e) => panic!("accept: {e}"),
        };
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let env = match proto::decode_request(&line) {
                Ok(env) => env,
                Err((id, e)) => {
                    let _ = writer.write_all(&proto::encode_err(id, e.kind, e.message));
                    continue;
                }
            };
            received.push(env.req);
            remaining = remaining.saturating_sub(1);
            let out = match replies.next() {
                Some(Reply::Ok(v)) => proto::encode_ok(env.id, &v),
                Some(Reply::Err(kind, msg)) => proto::encode_err(Some(env.id), kind, msg),
                Some(Reply::Raw(s)) => format!("{s}\n").into_bytes(),
                Some(Reply::Silent) => continue,
                Some(Reply::Late(delay, v)) => {
                    std::thread::sleep(delay);
                    proto::encode_ok(env.id, &v)
                }
                None => proto::encode_err(Some(env.id), ErrorKind::Internal, "fake daemon: no reply left"),
            };
            let _ = writer.write_all(&out);
        }
    }
    received
}
