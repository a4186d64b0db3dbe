//! The ctl socket: a Unix stream socket speaking the newline-delimited JSON
//! protocol of `ctl::proto`. Each client gets its own thread; requests are
//! applied one at a time. Oversized lines, malformed JSON and unknown verbs
//! get an error reply; idle or stalled clients are cut off; none of them can
//! hold up other clients for longer than one request, nor the datapath at all.

use std::io::{self, BufRead, BufReader, ErrorKind as IoKind, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ctl::proto::{self, ErrorKind, MAX_REQUEST_BYTES};

use super::control::{Control, RESYNC_INTERVAL, StreamNext, StreamSource};
use crate::sys::process::set_umask;
use ctl::proto::{CtlError, Request};

/// A client idle this long between requests is disconnected.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A request line must arrive completely within this time.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// Replies that cannot be written within this time drop the client.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this many clients are served at once (a thread each, with a
/// small stack; three descriptors each). A client arriving when all are
/// taken evicts the one that has waited longest for its own request (idle,
/// or sending a request slowly), so idle or slow clients cannot lock the
/// operator out: a newcomer is cut only after every client that was
/// waiting before it, a thousand or so connections later.
const MAX_CLIENTS: usize = 1024;
/// Stack of a client thread: it parses one JSON line at a time.
const CLIENT_STACK: usize = 256 * 1024;

/// The clients being served.
#[derive(Default)]
struct Clients {
    slots: Mutex<std::collections::HashMap<u64, ClientSlot>>,
    next_id: std::sync::atomic::AtomicU64,
}

/// One client: a handle to cut its connection, and since when it has been
/// waiting for its next request (`None` while a request is handled).
struct ClientSlot {
    stream: UnixStream,
    waiting_since: Option<Instant>,
}

impl Clients {
    /// Admits a client: evicts the longest-waiting one if every slot is
    /// taken. `None` if all clients are in the middle of a request.
    fn admit(&self, stream: &UnixStream) -> Option<u64> {
        let handle = stream.try_clone().ok()?;
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots.len() >= MAX_CLIENTS {
            let oldest = slots.iter().filter_map(|(id, s)| Some((*id, s.waiting_since?))).min_by_key(|&(_, t)| t);
            let (id, _) = oldest?;
            if let Some(evicted) = slots.remove(&id) {
                // Wakes its thread, which finds the connection closed.
                let _ = evicted.stream.shutdown(std::net::Shutdown::Both);
                tracing::info!("ctl: every client slot taken; cut the client waiting longest for its request");
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        slots.insert(id, ClientSlot { stream: handle, waiting_since: Some(Instant::now()) });
        Some(id)
    }

    /// Client `id` is handling a request (`false`) or waiting for the next
    /// one (`true`).
    fn set_waiting(&self, id: u64, waiting: bool) {
        if let Some(slot) = self.slots.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&id) {
            slot.waiting_since = waiting.then(Instant::now);
        }
    }

    /// Client `id` is gone.
    fn remove(&self, id: u64) {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }
}

/// Why the ctl socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Another daemon answers on the socket.
    #[error("another vswitchd is already running on {}", .0.display())]
    AlreadyRunning(PathBuf),
    /// The path exists and is not a socket.
    #[error("{} exists and is not a socket; refusing to replace it", .0.display())]
    NotASocket(PathBuf),
    /// The group given with --ctl-group does not exist.
    #[error("group {0:?} not found in /etc/group")]
    NoSuchGroup(String),
    /// A filesystem or socket operation failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was attempted.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ServerError + 'a {
    move |source| ServerError::Io { op, path: path.to_owned(), source }
}

/// Fails if a live daemon answers on `path`; removes a stale socket file.
pub fn check_not_running(path: &Path) -> Result<(), ServerError> {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return Ok(()) };
    if !meta.file_type().is_socket() {
        return Err(ServerError::NotASocket(path.to_owned()));
    }
    if UnixStream::connect(path).is_ok() {
        return Err(ServerError::AlreadyRunning(path.to_owned()));
    }
    std::fs::remove_file(path).map_err(io_err("remove stale socket", path))
}

/// Resolves a group name (or numeric gid) from /etc/group.
pub fn lookup_group(group: &str) -> Result<u32, ServerError> {
    if let Ok(gid) = group.parse() {
        return Ok(gid);
    }
    let text = std::fs::read_to_string("/etc/group").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let gid = fields.nth(1)?.parse().ok()?;
            (name == group).then_some(gid)
        })
        .next()
        .ok_or_else(|| ServerError::NoSuchGroup(group.to_owned()))
}

/// Answers `GET /metrics` with every counter (one datapath snapshot per
/// scrape, taken under the control lock like any ctl request); anything
/// else gets 404.
fn serve_metrics(http: &tiny_http::Server, control: &Mutex<Control>) {
    for request in http.incoming_requests() {
        let wanted = *request.method() == tiny_http::Method::Get && request.url().split('?').next() == Some("/metrics");
        let response = if !wanted {
            tiny_http::Response::from_string("not found: the metrics are at /metrics\n").with_status_code(404)
        } else {
            match control.lock().unwrap_or_else(|p| p.into_inner()).metrics() {
                Ok(text) => {
                    let header = tiny_http::Header::from_bytes("Content-Type", super::control::METRICS_CONTENT_TYPE);
                    let response = tiny_http::Response::from_string(text);
                    match header {
                        Ok(h) => response.with_header(h),
                        Err(()) => response,
                    }
                }
                Err(e) => tiny_http::Response::from_string(format!("{}\n", e.message)).with_status_code(500),
            }
        };
        if let Err(e) = request.respond(response) {
            tracing::debug!(error = %e, "metrics client dropped");
        }
    }
}

/// Binds the ctl socket with mode 0660 (owner root, group `group` if given).
pub fn bind(path: &Path, group: Option<u32>) -> Result<UnixListener, ServerError> {
    check_not_running(path)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
    }
    let previous = set_umask(0o117);
    let bound = UnixListener::bind(path);
    set_umask(previous);
    let listener = bound.map_err(io_err("bind", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(io_err("chmod", path))?;
    if let Some(gid) = group {
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(io_err("chown", path))?;
    }
    Ok(listener)
}

/// Serves clients forever; and Prometheus scrapes on `metrics`, if given.
pub fn serve(listener: UnixListener, control: Control, metrics: Option<tiny_http::Server>) {
    let gone = control.gone_ports();
    let control = Arc::new(Mutex::new(control));
    if let Some(http) = metrics {
        let control = Arc::clone(&control);
        let spawned = std::thread::Builder::new().name("metrics".into()).spawn(move || serve_metrics(&http, &control));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the metrics thread");
        }
    }
    if let Err(e) = crate::sys::mem::spawn_trimmer() {
        tracing::error!(error = %e, "cannot start the thread that returns free memory");
    }
    let reaper = Arc::clone(&control);
    // Endpoints whose TAP vanished are released between requests, under
    // the same lock.
    let spawned = std::thread::Builder::new().name("reaper".into()).spawn(move || {
        for port in gone {
            let mut control = reaper.lock().unwrap_or_else(|p| p.into_inner());
            control.reap_port(port);
            // A cluster endpoint's record and claims go with it.
            control.reconcile_cluster();
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the thread that releases gone endpoints");
    }
    // Uplinks whose interface went come back when it returns.
    let watcher = Arc::clone(&control);
    let spawned = std::thread::Builder::new().name("uplink-watch".into()).spawn(move || watch_uplinks(&watcher));
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the thread that re-attaches uplinks; they stay down until a restart");
    }
    let changes = control.lock().unwrap_or_else(|p| p.into_inner()).cluster_changes();
    if let Some(changes) = changes {
        let sync = Arc::clone(&control);
        let spawned =
            std::thread::Builder::new().name("cluster-sync".into()).spawn(move || sync_cluster(&changes, &sync));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the cluster sync thread; this node will not follow the cluster");
        }
    }
    let clients = Arc::new(Clients::default());
    for stream in listener.incoming() {
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let Some(id) = clients.admit(&stream) else {
            let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
            let _ = stream.write_all(&proto::encode_err(None, ErrorKind::Internal, "too many clients; try again"));
            continue;
        };
        let (control, clients) = (Arc::clone(&control), Arc::clone(&clients));
        let spawned = std::thread::Builder::new().name("ctl-client".into()).stack_size(CLIENT_STACK).spawn(move || {
            if let Err(e) = serve_client(stream, &control, &|waiting| clients.set_waiting(id, waiting)) {
                tracing::debug!(error = %e, "ctl client dropped");
            }
            clients.remove(id);
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a client thread");
        }
    }
}

/// The uplink watcher thread: follows link notifications of the daemon's
/// namespace and hands every interface that appears or changes to
/// [`Control::uplink_returned`] (which ignores all but down uplinks');
/// after subscribing, and whenever notifications were lost, every down
/// uplink is looked at again. It never touches the packet path.
fn watch_uplinks(control: &Mutex<Control>) {
    use crate::sys::netlink::{LinkEvent, LinkWatcher};
    let mut links = match LinkWatcher::open() {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "cannot follow link notifications; down uplinks stay down until a restart");
            return;
        }
    };
    // Interfaces that appeared before the subscription.
    control.lock().unwrap_or_else(|p| p.into_inner()).retry_down_uplinks();
    let mut events = Vec::new();
    loop {
        events.clear();
        if let Err(e) = links.wait(&mut events) {
            tracing::error!(error = %e, "link notifications failed; down uplinks stay down until a restart");
            return;
        }
        if !events.iter().any(|e| matches!(e, LinkEvent::New { .. } | LinkEvent::Lost)) {
            continue;
        }
        let mut control = control.lock().unwrap_or_else(|p| p.into_inner());
        for event in &events {
            match event {
                LinkEvent::New { name, .. } => {
                    control.uplink_returned(name);
                }
                LinkEvent::Lost => control.retry_down_uplinks(),
                LinkEvent::Gone { .. } => {}
            }
        }
    }
}

/// The cluster sync thread: after each change the cluster store reports
/// (several at once count as one), and every [`RESYNC_INTERVAL`] when it
/// reports none, locks the control plane only to reconcile with it.
fn sync_cluster(changes: &crossbeam_channel::Receiver<()>, control: &Mutex<Control>) {
    use crossbeam_channel::RecvTimeoutError;
    loop {
        match changes.recv_timeout(RESYNC_INTERVAL) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                tracing::error!("the cluster store's client stopped; this node no longer follows the cluster");
                return;
            }
        }
        while changes.try_recv().is_ok() {}
        control.lock().unwrap_or_else(|p| p.into_inner()).reconcile_cluster();
    }
}

/// One line read from a client.
enum Line {
    Request(Vec<u8>),
    TooLarge,
    Closed,
}

/// Reads one line of at most [`MAX_REQUEST_BYTES`], within the idle timeout
/// for its first byte and `deadline` for the rest.
fn read_line(reader: &mut BufReader<UnixStream>, line: &mut Vec<u8>, deadline: Duration) -> io::Result<Line> {
    line.clear();
    let mut started: Option<Instant> = None;
    loop {
        if let Some(t) = started {
            let left = deadline.checked_sub(t.elapsed()).ok_or(IoKind::TimedOut)?;
            reader.get_ref().set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        }
        let chunk = match reader.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == IoKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(Line::Closed);
        }
        started.get_or_insert_with(Instant::now);
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        if line.len() + take > MAX_REQUEST_BYTES + 1 {
            return Ok(Line::TooLarge);
        }
        line.extend_from_slice(&chunk[..take]);
        reader.consume(take);
        if done {
            reader.get_ref().set_read_timeout(Some(IDLE_TIMEOUT))?;
            while matches!(line.last(), Some(b'\n' | b'\r')) {
                line.pop();
            }
            return Ok(Line::Request(std::mem::take(line)));
        }
    }
}

/// Runs one request under the control lock; but `node rm`, whose store
/// work pages through a dead node's keys (each request bounded, the whole
/// not: thousands of keys on a slow store take a while), takes the lock
/// only to find the store, so every other request goes on meanwhile.
fn handle(control: &Mutex<Control>, request: Request) -> Result<serde_json::Value, CtlError> {
    let lock = || control.lock().unwrap_or_else(|p| p.into_inner());
    match request {
        Request::NodeRm { name } => {
            let store = lock().node_rm_store(&name)?;
            super::control::remove_node(&store, &name)
        }
        request => lock().handle(request),
    }
}

/// Serves one client until it leaves; `waiting(true)` is called whenever it
/// starts waiting for the client's next request, `waiting(false)` when a
/// request has arrived.
fn serve_client(stream: UnixStream, control: &Mutex<Control>, waiting: &dyn Fn(bool)) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let mut line = Vec::new();
    loop {
        waiting(true);
        let request = match read_line(&mut reader, &mut line, REQUEST_DEADLINE)? {
            Line::Closed => return Ok(()),
            Line::TooLarge => {
                let message = format!("request larger than {MAX_REQUEST_BYTES} bytes; closing the connection");
                writer.write_all(&proto::encode_err(None, ErrorKind::TooLarge, message))?;
                return Ok(());
            }
            Line::Request(r) => r,
        };
        if request.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        waiting(false);
        let reply = match proto::decode_request(&request) {
            Ok(envelope) if envelope.req.is_stream() => {
                let verb = envelope.req.verb();
                let subscribed = control.lock().unwrap_or_else(|p| p.into_inner()).subscribe(envelope.req);
                match subscribed {
                    Ok(subscription) => {
                        writer.write_all(&proto::encode_ok(envelope.id, &subscription.reply))?;
                        // A stream waits on the daemon, not on the client: it
                        // may be evicted like an idle client.
                        waiting(true);
                        return stream_to_client(&mut writer, reader.get_ref(), envelope.id, subscription.source);
                    }
                    Err(e) => {
                        tracing::info!(verb, error = %clipped(&e.message), "request refused");
                        proto::encode_err(Some(envelope.id), e.kind, e.message)
                    }
                }
            }
            Ok(envelope) => {
                let verb = envelope.req.verb();
                // Changes are logged once applied (requests hold no secrets).
                let change = envelope.req.changes_state().then(|| format!("{:?}", envelope.req));
                let result = handle(control, envelope.req);
                match result {
                    Ok(payload) => {
                        if let Some(request) = change {
                            tracing::info!(verb, request = %clipped(&request), "request applied");
                        }
                        proto::encode_ok(envelope.id, &payload)
                    }
                    Err(e) => {
                        tracing::info!(verb, error = %clipped(&e.message), "request refused");
                        proto::encode_err(Some(envelope.id), e.kind, e.message)
                    }
                }
            }
            Err((id, e)) => proto::encode_err(id, e.kind, e.message),
        };
        writer.write_all(&reply)?;
        let large = reply.len() > LARGE_REPLY_BYTES;
        drop(reply);
        // A large answer (`nat ls` over thousands of flows, `fdb show` of a full
        // table) grew this thread's heap arena: give the pages back, or the
        // daemon's RSS keeps a one-off peak forever (the trimmer thread
        // does it, once this thread freed the answer).
        if large {
            crate::sys::mem::owe_trim();
        }
    }
}

/// How long a stream's source is waited on before the server checks that
/// the client is still there.
const STREAM_POLL: Duration = Duration::from_millis(200);

/// Writes a stream's items to the client until the source is done or the
/// client stops it (closes or half-closes its side, or sends anything), then
/// the `end` line with the source's summary. The connection ends with it.
fn stream_to_client(
    writer: &mut UnixStream,
    client: &UnixStream,
    id: u64,
    mut source: Box<dyn StreamSource>,
) -> io::Result<()> {
    let mut item = Vec::with_capacity(4096);
    let mut line = Vec::with_capacity(4096);
    let mut checked = Instant::now();
    loop {
        item.clear();
        let next = source.next(STREAM_POLL, &mut item);
        if next == StreamNext::Item {
            line.clear();
            proto::encode_item_raw(id, &item, &mut line);
            writer.write_all(&line)?;
        }
        let stopped = (next != StreamNext::Item || checked.elapsed() >= STREAM_POLL) && {
            checked = Instant::now();
            client_stopped(client)
        };
        if next == StreamNext::Done || stopped {
            // A client that closed entirely gets nothing; one that only
            // half-closed reads the summary.
            let _ = writer.write_all(&proto::encode_end(id, &source.summary()));
            return Ok(());
        }
    }
}

/// Whether the client closed its side of the connection or sent anything
/// (both end a stream).
fn client_stopped(client: &UnixStream) -> bool {
    use std::os::fd::AsFd;
    let mut byte = [0u8; 1];
    match crate::sys::stream::peek(client.as_fd(), &mut byte) {
        Ok(_) => true,
        Err(e) => e.kind() != IoKind::WouldBlock && e.kind() != IoKind::Interrupted,
    }
}

/// Replies above this size are followed by returning free heap memory.
const LARGE_REPLY_BYTES: usize = 64 << 10;

/// Longest request or error text the log keeps of one request: a request
/// line may be 1 MiB, and an error may quote what it refused.
const LOG_TEXT_LIMIT: usize = 1024;

/// `text` cut to [`LOG_TEXT_LIMIT`] bytes (at a character boundary), saying
/// how long it was.
fn clipped(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= LOG_TEXT_LIMIT {
        return text.into();
    }
    let end = (0..=LOG_TEXT_LIMIT).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
    format!("{}… ({} bytes in all)", &text[..end], text.len()).into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_texts_are_clipped_for_the_log_at_a_character_boundary() {
        assert_eq!(super::clipped("short"), "short");
        let long = "é".repeat(1000);
        let clipped = super::clipped(&long);
        assert!(clipped.starts_with(&"é".repeat(512)) && clipped.ends_with("… (2000 bytes in all)"), "{clipped}");
    }

    use super::*;

    fn reader_for(bytes: &[u8]) -> BufReader<UnixStream> {
        let (mut client, server) = UnixStream::pair().unwrap();
        client.write_all(bytes).unwrap();
        drop(client);
        server.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        BufReader::with_capacity(4096, server)
    }

    #[test]
    fn reads_lines_and_trims_line_endings() {
        let mut reader = reader_for(b"{\"a\":1}\r\n\n{\"b\":2}\n");
        let mut line = Vec::new();
        assert!(
            matches!(read_line(&mut reader, &mut line, REQUEST_DEADLINE).unwrap(), Line::Request(l) if l == b"{\"a\":1}")
        );
        assert!(
            matches!(read_line(&mut reader, &mut line, REQUEST_DEADLINE).unwrap(), Line::Request(l) if l.is_empty())
        );
        assert!(
            matches!(read_line(&mut reader, &mut line, REQUEST_DEADLINE).unwrap(), Line::Request(l) if l == b"{\"b\":2}")
        );
        assert!(matches!(read_line(&mut reader, &mut line, REQUEST_DEADLINE).unwrap(), Line::Closed));
    }

    #[test]
    fn refuses_lines_over_the_limit_but_accepts_the_limit() {
        let mut exact = vec![b'x'; MAX_REQUEST_BYTES];
        exact.push(b'\n');
        let (mut client, server) = UnixStream::pair().unwrap();
        let writer = std::thread::spawn(move || {
            let _ = client.write_all(&exact);
            let _ = client.write_all(&vec![b'y'; MAX_REQUEST_BYTES + 10]);
        });
        let mut reader = BufReader::with_capacity(64 * 1024, server);
        let mut line = Vec::new();
        assert!(
            matches!(read_line(&mut reader, &mut line, REQUEST_DEADLINE).unwrap(), Line::Request(l) if l.len() == MAX_REQUEST_BYTES)
        );
        assert!(matches!(read_line(&mut reader, &mut line, REQUEST_DEADLINE).unwrap(), Line::TooLarge));
        drop(reader);
        writer.join().unwrap();
    }

    #[test]
    fn a_stalled_request_times_out() {
        let (mut client, server) = UnixStream::pair().unwrap();
        client.write_all(b"{\"v\":1").unwrap();
        server.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let mut reader = BufReader::new(server);
        let mut line = Vec::new();
        let deadline = Duration::from_millis(300);
        let err = match read_line(&mut reader, &mut line, deadline) {
            Err(e) => e,
            Ok(_) => panic!("a half-sent request must not complete"),
        };
        assert!(matches!(err.kind(), IoKind::WouldBlock | IoKind::TimedOut), "{err:?}");
        drop(client);
    }

    /// Items `1..=limit` (or forever), then done; idles instead when `idle`.
    struct Numbers {
        limit: Option<u64>,
        sent: u64,
        idle: bool,
    }

    impl StreamSource for Numbers {
        fn next(&mut self, _wait: Duration, item: &mut Vec<u8>) -> StreamNext {
            if self.idle {
                return StreamNext::Idle;
            }
            if self.limit == Some(self.sent) {
                return StreamNext::Done;
            }
            self.sent += 1;
            item.extend_from_slice(self.sent.to_string().as_bytes());
            StreamNext::Item
        }

        fn summary(&mut self) -> serde_json::Value {
            serde_json::json!({ "sent": self.sent })
        }
    }

    /// Runs `source` as stream `id` on one end of a socket pair; returns the
    /// client's end and the server thread.
    fn serve_stream(source: Numbers) -> (BufReader<UnixStream>, std::thread::JoinHandle<io::Result<()>>) {
        let (client, server) = UnixStream::pair().unwrap();
        let thread = std::thread::spawn(move || {
            let mut writer = server.try_clone()?;
            stream_to_client(&mut writer, &server, 9, Box::new(source))
        });
        (BufReader::new(client), thread)
    }

    fn next_line(reader: &mut BufReader<UnixStream>) -> Option<proto::StreamLine> {
        let mut line = Vec::new();
        reader.read_until(b'\n', &mut line).unwrap();
        if line.is_empty() {
            return None;
        }
        let (id, line) = proto::decode_stream_line(&line).unwrap();
        assert_eq!(id, Some(9));
        Some(line)
    }

    #[test]
    fn a_stream_sends_its_items_then_its_summary_and_closes() {
        let (mut client, server) = serve_stream(Numbers { limit: Some(3), sent: 0, idle: false });
        for n in 1..=3 {
            assert_eq!(next_line(&mut client), Some(proto::StreamLine::Item(n.into())));
        }
        assert_eq!(next_line(&mut client), Some(proto::StreamLine::End(serde_json::json!({"sent": 3}))));
        assert_eq!(next_line(&mut client), None, "the connection ends with the stream");
        server.join().unwrap().unwrap();
    }

    #[test]
    fn a_client_that_half_closes_stops_a_quiet_stream_and_still_gets_the_summary() {
        let (mut client, server) = serve_stream(Numbers { limit: None, sent: 0, idle: true });
        client.get_ref().shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(next_line(&mut client), Some(proto::StreamLine::End(serde_json::json!({"sent": 0}))));
        server.join().unwrap().unwrap();
    }

    #[test]
    fn a_client_that_half_closes_stops_an_endless_stream() {
        let (mut client, server) = serve_stream(Numbers { limit: None, sent: 0, idle: false });
        assert_eq!(next_line(&mut client), Some(proto::StreamLine::Item(1.into())));
        client.get_ref().shutdown(std::net::Shutdown::Write).unwrap();
        let end = loop {
            match next_line(&mut client) {
                Some(proto::StreamLine::Item(_)) => continue,
                other => break other,
            }
        };
        let Some(proto::StreamLine::End(summary)) = end else { panic!("no end line: {end:?}") };
        assert!(summary["sent"].as_u64().unwrap() >= 1);
        server.join().unwrap().unwrap();
    }

    #[test]
    fn detects_a_live_daemon_and_replaces_a_stale_socket() {
        let dir = std::env::temp_dir().join(format!("vswitch-server-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let live = bind(&path, None).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660, "the ctl socket is not world-accessible");
        assert!(matches!(check_not_running(&path), Err(ServerError::AlreadyRunning(_))));
        drop(live);
        assert!(check_not_running(&path).is_ok(), "a stale socket is replaced");
        assert!(!path.exists());
        std::fs::write(&path, b"not a socket").unwrap();
        assert!(matches!(bind(&path, None), Err(ServerError::NotASocket(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn resolves_groups_by_name_or_number() {
        assert_eq!(lookup_group("0").unwrap(), 0);
        assert_eq!(lookup_group("root").unwrap(), 0);
        assert!(matches!(lookup_group("no-such-group-vswitch"), Err(ServerError::NoSuchGroup(_))));
    }
}
