//! Capture filters: tcpdump expressions (pcap-filter(7)), compiled to
//! classic BPF by libpcap and run by libpcap's BPF interpreter on each
//! frame of a captured port, in the datapath thread (a few dozen
//! instructions per frame, no system call, no allocation).

/// libpcap's `DLT_RAW` on Linux: `pcap_open_dead` takes DLT numbers below
/// 104, where pcap files' `LINKTYPE_RAW` (101) means raw IP too.
const DLT_RAW: i32 = 12;

/// A compiled filter.
pub struct Filter {
    program: pcap::BpfProgram,
    expression: String,
    linktype: u16,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter").field("expression", &self.expression).finish()
    }
}

/// An expression libpcap refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid filter {}: {message}", quoted(expression))]
pub struct FilterError {
    /// The expression.
    pub expression: String,
    /// libpcap's message.
    pub message: String,
}

/// Longest part of a refused expression an error quotes.
const QUOTED_LIMIT: usize = 200;

/// `expression` quoted, its first [`QUOTED_LIMIT`] bytes only when it is
/// longer (an expression may be most of a 1 MiB request).
fn quoted(expression: &str) -> String {
    if expression.len() <= QUOTED_LIMIT {
        return format!("{expression:?}");
    }
    let end = (0..=QUOTED_LIMIT).rev().find(|&i| expression.is_char_boundary(i)).unwrap_or(0);
    format!("{:?}… ({} bytes)", &expression[..end], expression.len())
}

impl Filter {
    /// Compiles `expression` for frames of pcap link type `linktype`
    /// (Ethernet, or raw IP for underlay datagrams).
    pub fn compile(expression: &str, linktype: u16) -> Result<Filter, FilterError> {
        let error = |message: String| FilterError { expression: expression.to_owned(), message };
        let dlt = if linktype == ctl::proto::LINKTYPE_RAW { DLT_RAW } else { i32::from(linktype) };
        let dead = pcap::Capture::dead(pcap::Linktype(dlt)).map_err(|e| error(e.to_string()))?;
        let program = dead.compile(expression, true).map_err(|e| error(e.to_string()))?;
        Ok(Filter { program, expression: expression.to_owned(), linktype })
    }

    /// The same filter for another worker (libpcap's programs are not
    /// shared between threads: it is compiled again).
    pub fn try_clone(&self) -> Result<Filter, FilterError> {
        Filter::compile(&self.expression, self.linktype)
    }

    /// Whether `frame` (whole, as it crossed the port) matches.
    pub fn matches(&self, frame: &[u8]) -> bool {
        self.program.filter(frame)
    }

    /// The expression it was compiled from.
    pub fn expression(&self) -> &str {
        &self.expression
    }
}

#[cfg(test)]
mod tests {
    use ctl::proto::{LINKTYPE_ETHERNET, LINKTYPE_RAW};

    use super::*;

    /// Ethernet + IPv4 + ICMP echo request 10.0.0.1 → 10.0.0.2.
    fn icmp_frame() -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        f.extend_from_slice(&[0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend_from_slice(&[8, 0, 0, 0, 0, 1, 0, 1]);
        f
    }

    /// Ethernet ARP request who-has 10.0.0.2 tell 10.0.0.1.
    fn arp_frame() -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 10, 0, 0, 2]);
        f
    }

    #[test]
    fn tcpdump_expressions_select_frames() {
        let icmp = Filter::compile("icmp", LINKTYPE_ETHERNET).unwrap();
        assert!(icmp.matches(&icmp_frame()));
        assert!(!icmp.matches(&arp_frame()));
        let arp = Filter::compile("arp and host 10.0.0.2", LINKTYPE_ETHERNET).unwrap();
        assert!(arp.matches(&arp_frame()) && !arp.matches(&icmp_frame()));
        let src = Filter::compile("src host 10.0.0.1 and dst host 10.0.0.2", LINKTYPE_ETHERNET).unwrap();
        assert!(src.matches(&icmp_frame()));
        let wrong = Filter::compile("src host 10.0.0.2", LINKTYPE_ETHERNET).unwrap();
        assert!(!wrong.matches(&icmp_frame()));
        assert!(!icmp.matches(&[]), "a frame too short for the program never matches");
        assert_eq!(icmp.expression(), "icmp");
    }

    #[test]
    fn raw_ip_filters_see_the_ip_header_first() {
        let raw = Filter::compile("udp port 4789", LINKTYPE_RAW).unwrap();
        let mut packet = vec![0x45, 0, 0, 36, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        packet.extend_from_slice(&[0xc0, 0x00, 0x12, 0xb5, 0, 16, 0, 0, 8, 0, 0, 0, 0, 0, 1, 0]);
        assert!(raw.matches(&packet));
        packet[22] = 0;
        assert!(!raw.matches(&packet), "another port");
    }

    #[test]
    fn invalid_expressions_are_refused_with_libpcaps_message() {
        let e = Filter::compile("icmp and and", LINKTYPE_ETHERNET).unwrap_err();
        assert!(e.message.contains("syntax error"), "{e}");
        let e = Filter::compile("port 99999999", LINKTYPE_ETHERNET).unwrap_err();
        assert!(e.to_string().contains("port 99999999"), "{e}");
        // A huge expression is quoted in part, with its length.
        let huge = format!("{}tcp{}", "(".repeat(300_000), ")".repeat(300_000));
        let e = Filter::compile(&huge, LINKTYPE_ETHERNET).unwrap_err().to_string();
        assert!(e.len() < 400 && e.contains("600003 bytes"), "{} bytes: {}", e.len(), &e[..e.len().min(400)]);
    }
}
