//! Blocking client for the `vswitchd` ctl socket.
//!
//! ```no_run
//! use ctl::client::{resolve_socket, Client};
//! use ctl::proto::{NetworkSummary, Request};
//! # fn main() -> Result<(), ctl::client::ClientError> {
//! let mut client = Client::connect(resolve_socket(None))?;
//! let networks: Vec<NetworkSummary> = client.call(&Request::NetworkLs)?;
//! # Ok(()) }
//! ```

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::proto::{self, CtlError, MAX_RESPONSE_BYTES, ProtocolError, Request, StreamLine};

/// Socket path used when neither `--socket` nor [`CTL_SOCKET_ENV`] is given.
pub const DEFAULT_CTL_SOCKET: &str = "/run/vswitch/vswitchd.sock";

/// Environment variable naming the ctl socket.
pub const CTL_SOCKET_ENV: &str = "VSWITCH_CTL_SOCKET";

/// How long [`Client::connect`] gives each request to be written and then
/// answered. (`vswitchctl`
/// waits as long as the daemon takes unless given `--timeout`: requests
/// queue behind one another, and one that timed out may still be applied.)
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The socket to use: `explicit` if given, else `$VSWITCH_CTL_SOCKET` if set and non-empty,
/// else [`DEFAULT_CTL_SOCKET`].
pub fn resolve_socket(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    match std::env::var_os(CTL_SOCKET_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(DEFAULT_CTL_SOCKET),
    }
}

/// Why a call to the daemon failed. Wrapped causes are exposed through `source()`; print the
/// chain (e.g. anyhow's `{:#}`) to see them.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing accepted the connection on the socket path.
    #[error("cannot connect to vswitchd at {}: is it running? ({error})", path.display())]
    Connect {
        /// The socket path tried.
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },
    /// The socket exists but we may not connect to it.
    #[error("permission denied connecting to vswitchd at {} (are you root?)", path.display())]
    PermissionDenied {
        /// The socket path tried.
        path: PathBuf,
    },
    /// Reading from or writing to the socket failed.
    #[error("I/O error talking to vswitchd")]
    Io(#[source] io::Error),
    /// The daemon did not answer within the timeout; it may still carry the
    /// request out (requests wait in line behind others).
    #[error("vswitchd did not answer within {} s; the request may still be applied (check before retrying)", .0.as_secs())]
    Timeout(Duration),
    /// The daemon closed the connection before answering.
    #[error("vswitchd closed the connection without answering")]
    Closed,
    /// The reply line could not be decoded.
    #[error("bad reply from vswitchd")]
    Protocol(#[from] ProtocolError),
    /// The reply answers a different request.
    #[error("reply ID {got:?} does not match request ID {expected}")]
    IdMismatch {
        /// The ID we sent.
        expected: u64,
        /// The ID we got back.
        got: Option<u64>,
    },
    /// The daemon answered with an error; its message is shown as is.
    #[error(transparent)]
    Daemon(#[from] CtlError),
    /// The `ok` payload did not have the expected shape.
    #[error("unexpected reply payload from vswitchd")]
    Payload(#[source] serde_json::Error),
}

impl ClientError {
    fn from_io(e: io::Error, timeout: Option<Duration>) -> Self {
        match (e.kind(), timeout) {
            (io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut, Some(timeout)) => Self::Timeout(timeout),
            _ => Self::Io(e),
        }
    }
}

/// One connection to the daemon. Requests are sent one at a time; IDs count up from 1.
#[derive(Debug)]
pub struct Client {
    stream: BufReader<TimedSocket>,
    path: PathBuf,
    next_id: u64,
    /// How long a request's write, and then its answer, may take; `None`
    /// waits as long as it takes.
    timeout: Option<Duration>,
}

/// The socket, each read and write of which waits at most until a deadline.
///
/// The socket's timeout (`SO_RCVTIMEO`) is set to what is left before
/// every call, so a call resumed after `EINTR` (the standard library
/// resumes them inside `read_until` and `write_all`; a stop and continue
/// of the process interrupts them) waits only the rest: the deadline holds
/// however often the process is interrupted.
#[derive(Debug)]
struct TimedSocket {
    socket: UnixStream,
    deadline: Option<Instant>,
}

impl TimedSocket {
    /// What is left before the deadline (`None`: no deadline); an error
    /// once it has passed.
    fn left(&self) -> io::Result<Option<Duration>> {
        match self.deadline.map(|d| d.saturating_duration_since(Instant::now())) {
            Some(left) if left.is_zero() => Err(io::ErrorKind::TimedOut.into()),
            left => Ok(left),
        }
    }
}

impl Read for TimedSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.socket.set_read_timeout(self.left()?)?;
        self.socket.read(buf)
    }
}

impl Write for TimedSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.socket.set_write_timeout(self.left()?)?;
        self.socket.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.socket.flush()
    }
}

impl Client {
    /// Connects with [`DEFAULT_TIMEOUT`].
    pub fn connect(path: impl AsRef<Path>) -> Result<Self, ClientError> {
        Self::connect_with_timeout(path, DEFAULT_TIMEOUT)
    }

    /// Connects and gives each request `timeout` to be written and then
    /// answered (zero is treated as 1 ms).
    pub fn connect_with_timeout(path: impl AsRef<Path>, timeout: Duration) -> Result<Self, ClientError> {
        Self::connect_with(path, Some(timeout))
    }

    /// Connects and waits for every answer as long as the daemon takes,
    /// as `ovs-vsctl` and `docker` do: a request queued behind others is
    /// not abandoned while the daemon is still going to carry it out.
    pub fn connect_waiting(path: impl AsRef<Path>) -> Result<Self, ClientError> {
        Self::connect_with(path, None)
    }

    /// Connects with `timeout` for each request, or none.
    fn connect_with(path: impl AsRef<Path>, timeout: Option<Duration>) -> Result<Self, ClientError> {
        let path = path.as_ref().to_path_buf();
        let stream = match UnixStream::connect(&path) {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                return Err(ClientError::PermissionDenied { path });
            }
            Err(error) => return Err(ClientError::Connect { path, error }),
        };
        let timeout = timeout.map(|t| t.max(Duration::from_millis(1)));
        let socket = TimedSocket { socket: stream, deadline: None };
        Ok(Self { stream: BufReader::new(socket), path, next_id: 1, timeout })
    }

    /// The socket path this client is connected to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How long a request's write, and then its answer, may take; `None`:
    /// as long as it takes.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Sends `req` and returns the raw `ok` payload; a daemon error becomes [`ClientError::Daemon`].
    pub fn call_value(&mut self, req: &Request) -> Result<Value, ClientError> {
        let id = self.send(req)?;
        let buf = self.read_line(self.timeout)?.ok_or(ClientError::Closed)?;
        let resp = proto::decode_response(&buf)?;
        match (resp.id, resp.result) {
            (Some(got), result) if got == id => result.map_err(ClientError::Daemon),
            // The daemon could not even read our ID; its error is still about our request.
            (None, Err(e)) => Err(ClientError::Daemon(e)),
            (got, _) => Err(ClientError::IdMismatch { expected: id, got }),
        }
    }

    /// Sends a streaming request (see [`Request::is_stream`]) and returns
    /// its `ok` payload and the stream that follows it. Reads of the stream
    /// wait without a timeout: a followed stream may stay quiet for long.
    pub fn stream(&mut self, req: &Request) -> Result<(Value, Stream<'_>), ClientError> {
        let first = self.call_value(req)?;
        let id = self.next_id.wrapping_sub(1);
        Ok((first, Stream { client: self, id, done: false }))
    }

    /// Writes one request line; returns its id.
    fn send(&mut self, req: &Request) -> Result<u64, ClientError> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let line = proto::encode_request(id, req)?;
        let timeout = self.timeout;
        let socket = self.stream.get_mut();
        socket.deadline = timeout.map(|t| Instant::now() + t);
        socket.write_all(&line).map_err(|e| ClientError::from_io(e, timeout))?;
        Ok(id)
    }

    /// Reads one whole line of at most [`MAX_RESPONSE_BYTES`] within
    /// `timeout` (`None`: as long as it takes); `None` if the daemon closed
    /// the connection before a line began.
    fn read_line(&mut self, timeout: Option<Duration>) -> Result<Option<Vec<u8>>, ClientError> {
        self.stream.get_mut().deadline = timeout.map(|t| Instant::now() + t);
        let mut buf = Vec::new();
        let limit = u64::try_from(MAX_RESPONSE_BYTES).unwrap_or(u64::MAX).saturating_add(1);
        let n =
            (&mut self.stream).take(limit).read_until(b'\n', &mut buf).map_err(|e| ClientError::from_io(e, timeout))?;
        if n == 0 {
            return Ok(None);
        }
        if buf.last() != Some(&b'\n') {
            if buf.len() > MAX_RESPONSE_BYTES {
                return Err(ProtocolError::TooLarge { len: buf.len(), max: MAX_RESPONSE_BYTES }.into());
            }
            return Err(ClientError::Closed);
        }
        Ok(Some(buf))
    }

    /// Sends `req` and deserializes the `ok` payload into `T`.
    pub fn call<T: DeserializeOwned>(&mut self, req: &Request) -> Result<T, ClientError> {
        serde_json::from_value(self.call_value(req)?).map_err(ClientError::Payload)
    }
}

/// The lines that follow a streaming request's `ok` reply.
#[derive(Debug)]
pub struct Stream<'a> {
    client: &'a mut Client,
    id: u64,
    done: bool,
}

impl Stream<'_> {
    /// The next line of the stream: an item, or its end (after which this
    /// returns `None`). A daemon error line becomes [`ClientError::Daemon`];
    /// a connection closed without an `end` line is [`ClientError::Closed`].
    pub fn next_line(&mut self) -> Result<Option<StreamLine>, ClientError> {
        if self.done {
            return Ok(None);
        }
        let Some(buf) = self.client.read_line(None)? else {
            self.done = true;
            return Err(ClientError::Closed);
        };
        let (id, line) = proto::decode_stream_line(&buf)?;
        if id != Some(self.id) && !(id.is_none() && matches!(line, StreamLine::Err(_))) {
            return Err(ClientError::IdMismatch { expected: self.id, got: id });
        }
        match line {
            StreamLine::Item(_) => Ok(Some(line)),
            StreamLine::End(_) => {
                self.done = true;
                Ok(Some(line))
            }
            StreamLine::Err(e) => {
                self.done = true;
                Err(ClientError::Daemon(e))
            }
        }
    }

    /// A handle that ends the stream from elsewhere (a signal handler's
    /// thread): see [`Stopper::stop`].
    pub fn stopper(&self) -> Result<Stopper, ClientError> {
        self.client.stream.get_ref().socket.try_clone().map(Stopper).map_err(ClientError::Io)
    }
}

/// Ends a stream early: the daemon sees the client's side close, writes the
/// stream's `end` line (its summary: e.g. how many frames a capture lost)
/// and closes the connection, so [`Stream::next_line`] still gets the end.
#[derive(Debug)]
pub struct Stopper(UnixStream);

impl Stopper {
    /// Half-closes the connection's sending side.
    pub fn stop(&self) -> Result<(), ClientError> {
        match self.0.shutdown(std::net::Shutdown::Write) {
            Ok(()) => Ok(()),
            // Already closed: the stream is over anyway.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            Err(e) => Err(ClientError::Io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::thread::JoinHandleExt;
    use std::sync::mpsc;
    use std::thread;

    use super::*;

    /// A client on one end of a socket pair, the daemon's end returned.
    fn pair(timeout: Duration) -> (Client, UnixStream) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let socket = TimedSocket { socket: ours, deadline: None };
        (Client { stream: BufReader::new(socket), path: PathBuf::new(), next_id: 1, timeout: Some(timeout) }, theirs)
    }

    /// A daemon that answers a byte at a time and never ends the line
    /// makes every read succeed; the timeout still ends the wait.
    #[test]
    fn a_timeout_bounds_the_whole_answer_not_each_read() {
        let (mut client, mut daemon) = pair(Duration::from_millis(300));
        let trickle = thread::spawn(move || {
            let mut request = [0u8; 256];
            let _ = daemon.read(&mut request);
            // Until the client hangs up.
            while daemon.write_all(b" ").is_ok() {
                thread::sleep(Duration::from_millis(20));
            }
        });
        let got = client.call_value(&Request::NetworkLs);
        assert!(matches!(got, Err(ClientError::Timeout(t)) if t == Duration::from_millis(300)), "{got:?}");
        drop(client);
        trickle.join().unwrap();
    }

    extern "C" fn ignore(_: libc::c_int) {}

    /// A read interrupted by a signal (as a stop and continue of the
    /// process interrupts it) waits only what is left of the timeout: a
    /// signal every 50 ms does not keep a silent daemon's request waiting.
    #[test]
    fn interruptions_do_not_extend_the_timeout() {
        // SAFETY: installs a handler that does nothing for SIGUSR2, which
        // nothing else in this test binary uses; without SA_RESTART, so a
        // blocked read returns EINTR.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = ignore as *const () as usize;
            assert_eq!(libc::sigaction(libc::SIGUSR2, &action, std::ptr::null_mut()), 0);
        }
        let (mut client, _silent) = pair(Duration::from_millis(500));
        let (done, finished) = mpsc::channel();
        let caller = thread::spawn(move || done.send(client.call_value(&Request::NetworkLs)).unwrap());
        let thread = caller.as_pthread_t();
        let give_up = Instant::now() + Duration::from_secs(30);
        let got = loop {
            match finished.recv_timeout(Duration::from_millis(50)) {
                Ok(got) => break got,
                Err(_) if Instant::now() < give_up => {
                    // SAFETY: the thread has not been joined, so its id is valid.
                    unsafe { libc::pthread_kill(thread, libc::SIGUSR2) };
                }
                Err(_) => panic!("interrupted every 50 ms, a 500 ms timeout did not end the request in 30 s"),
            }
        };
        caller.join().unwrap();
        assert!(matches!(got, Err(ClientError::Timeout(_))), "{got:?}");
    }
}
