//! `vswitchctl capture`: reads a capture stream and writes it as pcap or
//! pcapng (to a file, or to stdout for `| tshark -r -`), or one line per
//! frame on a terminal; Ctrl-C stops the stream and the daemon's summary
//! is printed on stderr.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use ctl::client::{Client, ClientError};
use ctl::proto::{CaptureInfo, CaptureSummary, CapturedFrame, LINKTYPE_RAW, Request, StreamLine};
use etherparse::{LaxNetSlice, LaxSlicedPacket, LinkSlice, TransportSlice};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption};
use pcap_file::{DataLink, TsResolution};

/// What `vswitchctl capture` was asked for.
pub(crate) struct CaptureArgs {
    pub(crate) target: String,
    pub(crate) write: Option<PathBuf>,
    pub(crate) count: Option<u64>,
    pub(crate) snaplen: Option<u32>,
    pub(crate) filter: Option<String>,
    pub(crate) outer: bool,
    pub(crate) pcapng: bool,
}

/// pcapng's `epb_flags` direction bits: inbound, outbound.
const EPB_INBOUND: u32 = 0b01;
/// See [`EPB_INBOUND`].
const EPB_OUTBOUND: u32 = 0b10;
/// pcapng `if_tsresol`: timestamps in nanoseconds (10^-9).
const NANOSECONDS: u8 = 9;

/// Where frames go.
enum Sink {
    /// Classic pcap, nanosecond timestamps; `out` is the writer's output
    /// (flushed after each frame).
    Pcap { writer: PcapWriter<SharedOut>, out: SharedOut },
    /// pcapng: one interface per port (named after it), directions.
    PcapNg { writer: PcapNgWriter<Box<dyn Write>>, interfaces: HashMap<String, u32>, linktype: DataLink, snaplen: u32 },
    /// One line per frame.
    Lines { out: Box<dyn Write>, raw_ip: bool },
    /// The daemon's items, one JSON object per line.
    Json(Box<dyn Write>),
}

impl Sink {
    fn open(args: &CaptureArgs, json: bool, info: &CaptureInfo) -> Result<Sink> {
        let stdout = io::stdout();
        let to_file = args.write.as_deref().filter(|p| *p != Path::new("-"));
        let out: Box<dyn Write> = match to_file {
            Some(path) => Box::new(BufWriter::new(
                File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
            )),
            // Every frame is flushed: a reader at the other end of a pipe
            // sees it at once.
            None => Box::new(stdout),
        };
        if json {
            return Ok(Sink::Json(out));
        }
        if args.write.is_none() && io::stdout().is_terminal() {
            return Ok(Sink::Lines { out, raw_ip: info.linktype == LINKTYPE_RAW });
        }
        let linktype = DataLink::from(u32::from(info.linktype));
        if args.pcapng {
            let writer = PcapNgWriter::new(out).context("cannot write the pcapng header")?;
            return Ok(Sink::PcapNg { writer, interfaces: HashMap::new(), linktype, snaplen: info.snaplen });
        }
        let header = PcapHeader {
            snaplen: info.snaplen,
            datalink: linktype,
            ts_resolution: TsResolution::NanoSecond,
            ..PcapHeader::default()
        };
        let out = SharedOut(Rc::new(RefCell::new(out)));
        let writer = PcapWriter::with_header(out.clone(), header).context("cannot write the pcap header")?;
        Ok(Sink::Pcap { writer, out })
    }

    fn write(&mut self, frame: &CapturedFrame) -> Result<()> {
        let data = frame.bytes().map_err(|e| anyhow!("a frame's data from vswitchd is not base64: {e}"))?;
        let time = Duration::new(frame.sec, frame.nsec);
        match self {
            Sink::Pcap { writer, out } => {
                let packet = PcapPacket::new(time, frame.len.max(data.len() as u32), &data);
                writer.write_packet(&packet).map_err(pcap_err)?;
                out.flush()?;
            }
            Sink::PcapNg { writer, interfaces, linktype, snaplen } => {
                let next = interfaces.len() as u32;
                let interface_id = match interfaces.get(&frame.port) {
                    Some(&id) => id,
                    None => {
                        writer
                            .write_pcapng_block(InterfaceDescriptionBlock {
                                linktype: *linktype,
                                snaplen: *snaplen,
                                options: vec![
                                    InterfaceDescriptionOption::IfName(Cow::Borrowed(&frame.port)),
                                    InterfaceDescriptionOption::IfTsResol(NANOSECONDS),
                                ],
                            })
                            .map_err(pcap_err)?;
                        interfaces.insert(frame.port.clone(), next);
                        next
                    }
                };
                let direction = match frame.dir {
                    ctl::proto::Direction::Rx => EPB_INBOUND,
                    ctl::proto::Direction::Tx => EPB_OUTBOUND,
                };
                writer
                    .write_pcapng_block(EnhancedPacketBlock {
                        interface_id,
                        timestamp: time,
                        original_len: frame.len.max(data.len() as u32),
                        data: Cow::Borrowed(&data),
                        options: vec![EnhancedPacketOption::Flags(direction)],
                    })
                    .map_err(pcap_err)?;
                writer.get_mut().flush()?;
            }
            Sink::Lines { out, raw_ip } => {
                writeln!(out, "{}", describe(frame, &data, *raw_ip))?;
                out.flush()?;
            }
            Sink::Json(out) => {
                serde_json::to_writer(&mut *out, frame)?;
                writeln!(out)?;
                out.flush()?;
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<()> {
        match self {
            Sink::Pcap { mut out, .. } => out.flush()?,
            Sink::PcapNg { writer, .. } => writer.into_inner().flush()?,
            Sink::Lines { mut out, .. } | Sink::Json(mut out) => out.flush()?,
        }
        Ok(())
    }
}

/// The output of a pcap writer, shared with the sink so it can flush it
/// (`PcapWriter` does not lend its writer).
#[derive(Clone)]
struct SharedOut(Rc<RefCell<Box<dyn Write>>>);

impl Write for SharedOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.borrow_mut().flush()
    }
}

/// A pcap-file error as an I/O error where it is one (a closed pipe).
fn pcap_err(e: pcap_file::PcapError) -> anyhow::Error {
    match e {
        pcap_file::PcapError::IoError(io) => io.into(),
        other => anyhow!("cannot write the capture: {other}"),
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe))
}

/// Runs a capture until it completes (`-c`), the daemon ends it, Ctrl-C,
/// or the reader of stdout goes away.
pub(crate) fn run(mut client: Client, json: bool, args: CaptureArgs) -> Result<()> {
    let request = Request::Capture {
        target: args.target.clone(),
        outer: args.outer,
        count: args.count,
        snaplen: args.snaplen,
        filter: args.filter.clone(),
    };
    let (first, mut stream) = client.stream(&request)?;
    let info: CaptureInfo =
        serde_json::from_value(first).map_err(|e| anyhow!("unexpected reply from vswitchd: {e}"))?;
    let mut sink = Sink::open(&args, json, &info)?;
    let stopper = stream.stopper()?;
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
        .context("cannot install the Ctrl-C handler")?;
    let signal_handle = signals.handle();
    let on_signal = std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            let _ = stopper.stop();
        }
    });
    let stopper = stream.stopper()?;
    eprintln!(
        "capturing on {} ({}){}, snaplen {}{}; Ctrl-C stops",
        info.target,
        info.ports.join(", "),
        if info.linktype == LINKTYPE_RAW { ", underlay datagrams as raw IP" } else { "" },
        info.snaplen,
        info.filter.as_deref().map(|f| format!(", filter {f:?}")).unwrap_or_default(),
    );
    let mut reader_gone = false;
    let summary = loop {
        match stream.next_line() {
            Ok(Some(StreamLine::Item(item))) => {
                if reader_gone {
                    continue;
                }
                let frame: CapturedFrame =
                    serde_json::from_value(item).map_err(|e| anyhow!("unexpected frame from vswitchd: {e}"))?;
                if let Err(e) = sink.write(&frame) {
                    if !is_broken_pipe(&e) {
                        return Err(e);
                    }
                    // The reader (`| head`, tshark) is gone: stop, and
                    // still print the summary.
                    reader_gone = true;
                    stopper.stop()?;
                }
            }
            Ok(Some(StreamLine::End(end))) => {
                break serde_json::from_value::<CaptureSummary>(end)
                    .map_err(|e| anyhow!("unexpected summary from vswitchd: {e}"))?;
            }
            Ok(Some(StreamLine::Err(e))) => return Err(ClientError::Daemon(e).into()),
            Ok(None) => return Err(ClientError::Closed.into()),
            Err(e) => return Err(e.into()),
        }
    };
    signal_handle.close();
    let _ = on_signal.join();
    if !reader_gone {
        sink.finish()?;
    }
    if json {
        eprintln!("{}", serde_json::to_string(&summary)?);
    } else {
        eprintln!(
            "{} frames captured, {} dropped (buffer full, or still queued when stopped), {} filtered out",
            summary.captured, summary.dropped, summary.filtered
        );
    }
    Ok(())
}

/// One line for a frame: time (UTC), port, direction, addresses, type and
/// length, e.g. `10:21:03.123456 vsw0a0b0c0d rx 10.1.0.2 > 10.1.0.3 ICMP
/// echo request, length 98`.
pub(crate) fn describe(frame: &CapturedFrame, data: &[u8], raw_ip: bool) -> String {
    let secs = frame.sec % 86_400;
    let time = format!("{:02}:{:02}:{:02}.{:06}", secs / 3600, secs / 60 % 60, secs % 60, frame.nsec / 1000);
    let what = summarize(data, raw_ip);
    format!("{time} {} {} {what}, length {}", frame.port, frame.dir.as_str(), frame.len)
}

/// Addresses and type of a frame (or raw IP packet).
fn summarize(data: &[u8], raw_ip: bool) -> String {
    let parsed = if raw_ip {
        LaxSlicedPacket::from_ip(data).map_err(|e| e.to_string())
    } else {
        LaxSlicedPacket::from_ethernet(data).map_err(|e| e.to_string())
    };
    let packet = match parsed {
        Ok(p) => p,
        Err(_) => return format!("truncated frame ({} bytes captured)", data.len()),
    };
    let macs = match &packet.link {
        Some(LinkSlice::Ethernet2(eth)) => Some((mac(eth.source()), mac(eth.destination()), eth.ether_type())),
        _ => None,
    };
    match &packet.net {
        Some(LaxNetSlice::Ipv4(ip)) => {
            let h = ip.header();
            ip_line(
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
                &packet.transport,
                ip.payload().ip_number.0,
            )
        }
        Some(LaxNetSlice::Ipv6(ip)) => {
            let h = ip.header();
            ip_line(
                IpAddr::V6(h.source_addr()),
                IpAddr::V6(h.destination_addr()),
                &packet.transport,
                ip.payload().ip_number.0,
            )
        }
        Some(LaxNetSlice::Arp(arp)) => {
            let arp = arp.to_packet();
            let ip = |b: &[u8]| <[u8; 4]>::try_from(b).map(|a| Ipv4Addr::from(a).to_string()).unwrap_or_default();
            match arp.operation.0 {
                1 => format!("ARP who-has {} tell {}", ip(arp.target_protocol_addr()), ip(arp.sender_protocol_addr())),
                2 => format!(
                    "ARP reply {} is-at {}",
                    ip(arp.sender_protocol_addr()),
                    <[u8; 6]>::try_from(arp.sender_hw_addr()).map(mac).unwrap_or_default()
                ),
                op => format!("ARP operation {op}"),
            }
        }
        None => match macs {
            Some((src, dst, ether_type)) => format!("{src} > {dst} ethertype 0x{:04x}", ether_type.0),
            None => format!("unknown frame ({} bytes captured)", data.len()),
        },
    }
}

fn ip_line(src: IpAddr, dst: IpAddr, transport: &Option<TransportSlice<'_>>, protocol: u8) -> String {
    match transport {
        Some(TransportSlice::Tcp(tcp)) => {
            let flags: String =
                [(tcp.syn(), 'S'), (tcp.fin(), 'F'), (tcp.rst(), 'R'), (tcp.psh(), 'P'), (tcp.ack(), '.')]
                    .into_iter()
                    .filter_map(|(set, c)| set.then_some(c))
                    .collect();
            format!("{src}.{} > {dst}.{} TCP [{flags}]", tcp.source_port(), tcp.destination_port())
        }
        Some(TransportSlice::Udp(udp)) => {
            format!("{src}.{} > {dst}.{} UDP", udp.source_port(), udp.destination_port())
        }
        Some(TransportSlice::Icmpv4(icmp)) => {
            use etherparse::Icmpv4Type as T;
            let kind = match icmp.icmp_type() {
                T::EchoRequest(_) => "echo request".to_owned(),
                T::EchoReply(_) => "echo reply".to_owned(),
                T::DestinationUnreachable(_) => "destination unreachable".to_owned(),
                T::TimeExceeded(_) => "time exceeded".to_owned(),
                _ => format!("type {}", icmp.type_u8()),
            };
            format!("{src} > {dst} ICMP {kind}")
        }
        Some(TransportSlice::Icmpv6(icmp)) => {
            use etherparse::Icmpv6Type as T;
            let kind = match icmp.icmp_type() {
                T::EchoRequest(_) => "echo request".to_owned(),
                T::EchoReply(_) => "echo reply".to_owned(),
                _ => format!("type {}", icmp.type_u8()),
            };
            format!("{src} > {dst} ICMPv6 {kind}")
        }
        _ => format!("{src} > {dst} IP protocol {protocol}"),
    }
}

fn mac(m: [u8; 6]) -> String {
    format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
}

#[cfg(test)]
mod tests {
    use ctl::proto::{Direction, encode_frame_data};

    use super::*;

    fn captured(data: &[u8], len: u32) -> CapturedFrame {
        let mut b64 = String::new();
        encode_frame_data(data, &mut b64);
        CapturedFrame {
            sec: 1_700_000_000 + 3723,
            nsec: 5_000,
            port: "vswab".into(),
            dir: Direction::Rx,
            len,
            data: b64,
        }
    }

    #[test]
    fn lines_name_time_port_direction_addresses_type_and_length() {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        f.extend_from_slice(&[0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend_from_slice(&[8, 0, 0, 0, 0, 1, 0, 1]);
        let line = describe(&captured(&f, 42), &f, false);
        assert_eq!(line, "23:15:23.000005 vswab rx 10.0.0.1 > 10.0.0.2 ICMP echo request, length 42");
        let mut arp = vec![0xff; 6];
        arp.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
        arp.extend_from_slice(&[2, 0, 0, 0, 0, 1, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 10, 0, 0, 2]);
        assert!(describe(&captured(&arp, 42), &arp, false).ends_with("ARP who-has 10.0.0.2 tell 10.0.0.1, length 42"));
        assert!(summarize(&f[..10], false).starts_with("truncated frame"));
    }
}
