//! Decoding captured frames with Wireshark's dissectors: [`write_pcap`]
//! saves frames of a [`Capture`](crate::Capture) as a classic pcap file, and
//! [`tshark_fields`] runs `tshark -r FILE -Y FILTER -T fields -e …` on it.
//! [`require_tshark`] checks that tshark is installed (a failure in CI, a
//! loud skip elsewhere).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::capture::Frame;
use crate::process::{output_with_timeout, text};

/// Longest one tshark run may take.
const TSHARK_TIMEOUT: Duration = Duration::from_secs(120);

/// True if `tshark` can run. Without it: panics when `CI` is set (it is in
/// `scripts/test`'s package list), otherwise prints a loud SKIP line and
/// returns false.
pub fn require_tshark(test: &str) -> bool {
    let mut c = Command::new("tshark");
    c.arg("--version");
    if output_with_timeout(&mut c, Duration::from_secs(30)).is_ok_and(|o| o.status.success()) {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "{test}: tshark is not installed, and CI is set");
    eprintln!("SKIP {test}: tshark is not installed (apt-get install tshark) ==================");
    false
}

/// Writes `frames` (Ethernet) to `path` as a pcap file (microsecond
/// timestamps, all zero, frames in capture order).
pub fn write_pcap(path: &Path, frames: &[Frame]) -> io::Result<()> {
    const MAGIC: u32 = 0xa1b2_c3d4;
    const LINKTYPE_ETHERNET: u32 = 1;
    const SNAPLEN: u32 = 262_144;
    let mut w = BufWriter::new(File::create(path)?);
    w.write_all(&MAGIC.to_le_bytes())?;
    w.write_all(&2u16.to_le_bytes())?;
    w.write_all(&4u16.to_le_bytes())?;
    w.write_all(&0i32.to_le_bytes())?;
    w.write_all(&0u32.to_le_bytes())?;
    w.write_all(&SNAPLEN.to_le_bytes())?;
    w.write_all(&LINKTYPE_ETHERNET.to_le_bytes())?;
    for (i, f) in frames.iter().enumerate() {
        let len = u32::try_from(f.bytes.len()).map_err(|_| io::Error::other("frame over 4 GiB"))?;
        // Frame i at i µs, so tshark keeps the order and shows distinct times.
        let i = u32::try_from(i).unwrap_or(u32::MAX);
        w.write_all(&(i / 1_000_000).to_le_bytes())?;
        w.write_all(&(i % 1_000_000).to_le_bytes())?;
        w.write_all(&len.to_le_bytes())?;
        w.write_all(&len.to_le_bytes())?;
        w.write_all(&f.bytes)?;
    }
    w.flush()
}

/// `tshark -n -o PREF… -r PCAP -Y FILTER -T fields -E separator=/t -e F…`:
/// one row per matching packet, one cell per field (a field that occurs
/// several times, e.g. the outer and inner `ip.src` of a tunnelled packet,
/// gives its values joined by `,`). `prefs` are dissector preferences such
/// as `tcp.check_checksum:TRUE`. Panics with tshark's stderr if it fails.
pub fn tshark_fields(pcap: &Path, prefs: &[&str], display_filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let mut c = Command::new("tshark");
    c.arg("-n");
    for p in prefs {
        c.args(["-o", p]);
    }
    c.arg("-r").arg(pcap).args(["-Y", display_filter, "-T", "fields", "-E", "separator=/t"]);
    for f in fields {
        c.args(["-e", f]);
    }
    let out = output_with_timeout(&mut c, TSHARK_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "{c:?} failed: {}", text(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}
