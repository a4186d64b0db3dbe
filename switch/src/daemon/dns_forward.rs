//! The DNS forwarding thread: owns the sockets toward upstream servers and
//! drives [`dns::Forwarder`] with what they deliver and the clock. The
//! datapath hands it queries over a channel (never waiting) and gets the
//! answers back over another, with a wake-up of its event loop.
//!
//! Each query to an upstream gets its own connected UDP socket (a fresh
//! random source port, as RFC 5452 asks, on top of the random query ID), so
//! an upstream that is not listening shows at once as ICMP "port
//! unreachable" (`ECONNREFUSED`) on exactly that query, which fails over
//! without waiting for the timeout. TCP (for clients that asked over TCP,
//! typically after a truncated UDP answer) opens one connection per query.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use dns::{Action, Forwarder, Token as QueryToken, UPSTREAM_TIMEOUT_MS};
use mio::net::{TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token, Waker};

/// Forwarded queries in flight at most (Docker's embedded DNS allows 1,024).
pub const MAX_IN_FLIGHT: usize = 1024;

const WAKER: Token = Token(0);
/// Tokens of UDP sockets: this plus the query's upstream ID.
const UDP_BASE: usize = 1 << 16;
/// Tokens of TCP connections: this plus the query's upstream ID.
const TCP_BASE: usize = 1 << 20;
/// Largest DNS message.
const MAX_MESSAGE: usize = u16::MAX as usize;

/// A query for the thread to forward.
#[derive(Debug)]
pub struct Job {
    /// The datapath's handle for the way back.
    pub token: QueryToken,
    /// The client's query, as it sent it.
    pub query: Vec<u8>,
    /// Whom to ask, in order.
    pub upstreams: Arc<[SocketAddr]>,
    /// The client asked over TCP.
    pub tcp: bool,
}

/// A client's answer.
#[derive(Debug)]
pub struct Done {
    /// The job's token.
    pub token: QueryToken,
    /// The upstream's answer (with the client's ID), or SERVFAIL.
    pub answer: Vec<u8>,
    /// No upstream answered.
    pub failed: bool,
}

/// The datapath's end of the forwarding thread.
#[derive(Debug)]
pub struct ForwardThread {
    jobs: Option<Sender<Job>>,
    /// Wakes the thread; none for a detached end (tests).
    waker: Option<Arc<Waker>>,
    thread: Option<JoinHandle<()>>,
}

impl ForwardThread {
    /// Starts the thread; answers go to `done`, followed by a wake-up of
    /// `datapath`.
    pub fn spawn(done: Sender<Done>, datapath: Arc<Waker>) -> io::Result<ForwardThread> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (jobs, inbox) = crossbeam_channel::unbounded();
        let seed = seed();
        let state = State {
            poll,
            inbox,
            done,
            datapath,
            forwarder: Forwarder::new(MAX_IN_FLIGHT, UPSTREAM_TIMEOUT_MS, seed),
            udp: HashMap::new(),
            tcp: HashMap::new(),
            start: Instant::now(),
            buf: vec![0u8; MAX_MESSAGE],
        };
        let thread = std::thread::Builder::new().name("dns-forward".into()).spawn(move || state.run())?;
        Ok(ForwardThread { jobs: Some(jobs), waker: Some(waker), thread: Some(thread) })
    }

    /// An end with no thread behind it: queries go to `jobs`, for whoever
    /// holds the receiver to answer (the deterministic datapath tests).
    #[cfg(test)]
    pub(crate) fn detached(jobs: Sender<Job>) -> ForwardThread {
        ForwardThread { jobs: Some(jobs), waker: None, thread: None }
    }

    /// Hands a query to the thread. False if the thread is gone.
    pub fn submit(&self, job: Job) -> bool {
        let sent = self.jobs.as_ref().is_some_and(|j| j.send(job).is_ok());
        sent && self.waker.as_ref().is_none_or(|w| w.wake().is_ok())
    }
}

impl Drop for ForwardThread {
    fn drop(&mut self) {
        // A closed channel tells the thread to stop.
        self.jobs = None;
        if let Some(waker) = &self.waker {
            let _ = waker.wake();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The name servers of a resolv.conf file (`/etc/resolv.conf` for the
/// daemon's own), port 53: the embedded DNS's default upstreams. Loopback
/// resolvers such as systemd-resolved's 127.0.0.53 work too, since the
/// daemon forwards from its own namespace. Empty if the file is missing or
/// names none.
pub fn system_upstreams(path: &std::path::Path) -> Vec<SocketAddr> {
    let Ok(text) = std::fs::read(path) else { return Vec::new() };
    let Ok(config) = resolv_conf::Config::parse(text) else { return Vec::new() };
    config.nameservers.into_iter().map(|ip| SocketAddr::new(ip.into(), DNS_PORT)).collect()
}

/// The DNS port.
const DNS_PORT: u16 = 53;

/// A random seed for upstream query IDs, from the standard library's
/// randomly keyed hasher (no extra dependency).
pub(crate) fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish()
}

/// A query's TCP connection to an upstream.
struct TcpQuery {
    stream: TcpStream,
    upstream: SocketAddr,
    /// Length-prefixed query, and how much of it is written.
    out: Vec<u8>,
    written: usize,
    /// What has arrived of the answer (length-prefixed).
    inbuf: Vec<u8>,
}

struct State {
    poll: Poll,
    inbox: Receiver<Job>,
    done: Sender<Done>,
    datapath: Arc<Waker>,
    forwarder: Forwarder,
    /// The UDP socket of each query in flight over UDP, by upstream ID.
    udp: HashMap<u16, (SocketAddr, UdpSocket)>,
    /// TCP connections by upstream query ID.
    tcp: HashMap<u16, TcpQuery>,
    start: Instant,
    buf: Vec<u8>,
}

impl State {
    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(256);
        let mut actions = Vec::new();
        loop {
            let timeout = self.forwarder.next_deadline().map(|d| Duration::from_millis(d.saturating_sub(self.now())));
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != io::ErrorKind::Interrupted
            {
                tracing::error!(error = %e, "DNS forwarder: epoll wait failed");
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    Token(t) if t >= TCP_BASE => self.progress_tcp((t - TCP_BASE) as u16, &mut actions),
                    Token(t) if t >= UDP_BASE => self.read_udp((t - UDP_BASE) as u16, &mut actions),
                    Token(_) => {}
                }
            }
            loop {
                match self.inbox.try_recv() {
                    Ok(job) => self.start_job(job, &mut actions),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return,
                }
            }
            self.forwarder.expire(self.now(), &mut actions);
            self.perform(&mut actions);
        }
    }

    fn start_job(&mut self, job: Job, actions: &mut Vec<Action>) {
        match self.forwarder.start(job.token, &job.query, &job.upstreams, job.tcp, self.now()) {
            Ok(action) => actions.push(action),
            Err(e) => {
                tracing::debug!(error = %e, "DNS query not forwarded");
                let answer = dns::error_response(&job.query, dns::ResponseCode::ServFail).unwrap_or_default();
                actions.push(Action::Done { token: job.token, answer, failed: true });
            }
        }
    }

    /// Carries out `actions` and whatever they lead to (a failed send moves
    /// the query on at once).
    fn perform(&mut self, actions: &mut Vec<Action>) {
        let mut answered = false;
        while let Some(action) = actions.pop() {
            match action {
                Action::Send { id, upstream, tcp: false, query } => {
                    if let Err(e) = self.send_udp(id, upstream, &query) {
                        tracing::debug!(%upstream, error = %e, "DNS: cannot send to upstream");
                        self.udp.remove(&id);
                        actions.extend(self.forwarder.on_failure(id, self.now()));
                    }
                }
                Action::Send { id, upstream, tcp: true, query } => {
                    if let Err(e) = self.connect_tcp(id, upstream, &query) {
                        tracing::debug!(%upstream, error = %e, "DNS: cannot connect to upstream");
                        self.tcp.remove(&id);
                        actions.extend(self.forwarder.on_failure(id, self.now()));
                    }
                }
                Action::Done { token, answer, failed } => {
                    answered |= self.done.send(Done { token, answer, failed }).is_ok();
                }
            }
        }
        // Sockets of queries that finished (answered elsewhere or timed out)
        // are closed by dropping them.
        let forwarder = &self.forwarder;
        self.tcp.retain(|id, _| forwarder.is_in_flight(*id));
        self.udp.retain(|id, _| forwarder.is_in_flight(*id));
        if answered {
            let _ = self.datapath.wake();
        }
    }

    /// Sends query `id` to `upstream` from a fresh socket (replacing, and so
    /// closing, the socket of its previous attempt).
    fn send_udp(&mut self, id: u16, upstream: SocketAddr, query: &[u8]) -> io::Result<()> {
        let local: SocketAddr = match upstream {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let mut socket = UdpSocket::bind(local)?;
        socket.connect(upstream)?;
        self.poll.registry().register(&mut socket, Token(UDP_BASE + usize::from(id)), Interest::READABLE)?;
        socket.send(query)?;
        self.udp.insert(id, (upstream, socket));
        Ok(())
    }

    /// Reads the answer waiting on query `id`'s socket; an ICMP error moves
    /// the query on.
    fn read_udp(&mut self, id: u16, actions: &mut Vec<Action>) {
        let Some((upstream, socket)) = self.udp.get(&id) else { return };
        let upstream = *upstream;
        loop {
            match socket.recv(&mut self.buf) {
                Ok(n) => actions.extend(self.forwarder.on_answer(upstream, &self.buf[..n], self.now())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!(%upstream, error = %e, "DNS upstream unreachable");
                    actions.extend(self.forwarder.on_failure(id, self.now()));
                    break;
                }
            }
        }
    }

    fn connect_tcp(&mut self, id: u16, upstream: SocketAddr, query: &[u8]) -> io::Result<()> {
        let mut stream = TcpStream::connect(upstream)?;
        self.poll.registry().register(
            &mut stream,
            Token(TCP_BASE + usize::from(id)),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let len = u16::try_from(query.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mut out = Vec::with_capacity(2 + query.len());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(query);
        // Replaces (and so closes) the connection of an earlier attempt.
        self.tcp.insert(id, TcpQuery { stream, upstream, out, written: 0, inbuf: Vec::new() });
        Ok(())
    }

    /// Writes what remains of query `id` and reads what has arrived of its
    /// answer; a broken connection moves the query to the next upstream.
    fn progress_tcp(&mut self, id: u16, actions: &mut Vec<Action>) {
        let Some(conn) = self.tcp.get_mut(&id) else { return };
        match exchange(conn, &mut self.buf) {
            Ok(Some(answer)) => {
                let upstream = conn.upstream;
                self.tcp.remove(&id);
                actions.extend(self.forwarder.on_answer(upstream, &answer, self.now()));
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(upstream = %conn.upstream, error = %e, "DNS: TCP to upstream failed");
                self.tcp.remove(&id);
                actions.extend(self.forwarder.on_failure(id, self.now()));
            }
        }
    }
}

/// One step of a TCP exchange: the whole answer once it is in, `None`
/// while it is not, an error if the connection broke first.
fn exchange(conn: &mut TcpQuery, buf: &mut [u8]) -> io::Result<Option<Vec<u8>>> {
    while conn.written < conn.out.len() {
        match conn.stream.write(&conn.out[conn.written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => conn.written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            // Not yet connected.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    loop {
        match conn.stream.read(buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                conn.inbuf.extend_from_slice(&buf[..n]);
                if conn.inbuf.len() >= 2 {
                    let len = usize::from(u16::from_be_bytes([conn.inbuf[0], conn.inbuf[1]]));
                    if conn.inbuf.len() >= 2 + len {
                        return Ok(Some(conn.inbuf[2..2 + len].to_vec()));
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
