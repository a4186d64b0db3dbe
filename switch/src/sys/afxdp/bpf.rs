//! The XDP program that steers an interface's frames into an AF_XDP socket,
//! loaded with the `bpf()` system call: no libbpf, no clang, no object file.
//!
//! The program is five instructions, the equivalent of
//!
//! ```c
//! SEC("xdp") int redirect(struct xdp_md *ctx) {
//!     return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
//! }
//! ```
//!
//! where `xsks` is an `XSKMAP` holding the socket bound to each receive
//! queue. A frame on a queue without a socket (or arriving while the daemon
//! is down and the socket closed) takes the `XDP_PASS` fallback to the host
//! stack: the interface keeps working when the switch is not there.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
/// `expected_attach_type` of an XDP program.
const BPF_XDP: u32 = 37;
/// `bpf_redirect_map`'s helper number.
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
/// `src_reg` of a 64-bit immediate load that names a map by descriptor.
const BPF_PSEUDO_MAP_FD: u8 = 1;
const XDP_PASS: i32 = 2;
/// `BPF_F_XDP_HAS_FRAGS` (Linux 5.18+): the program handles multi-buffer
/// frames (`SEC("xdp.frags")`), so a veth with it takes MTUs above a page
/// and the frames reach the socket as descriptor chains.
const BPF_F_XDP_HAS_FRAGS: u32 = 1 << 5;
/// `offsetof(struct xdp_md, rx_queue_index)`.
const XDP_MD_RX_QUEUE_INDEX: i16 = 16;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Insn {
    code: u8,
    /// `dst_reg` in the low nibble, `src_reg` in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn { code, regs: (src << 4) | dst, off, imm }
    }
}

/// The program's instructions with `map_fd` as the `XSKMAP`.
fn redirect_program(map_fd: RawFd) -> [Insn; 6] {
    [
        // r2 = *(u32 *)(r1 + rx_queue_index)       BPF_LDX | BPF_MEM | BPF_W
        Insn::new(0x61, 2, 1, XDP_MD_RX_QUEUE_INDEX, 0),
        // r1 = map (two slots: a 64-bit immediate) BPF_LD | BPF_DW | BPF_IMM
        Insn::new(0x18, 1, BPF_PSEUDO_MAP_FD, 0, map_fd),
        Insn::new(0, 0, 0, 0, 0),
        // r3 = XDP_PASS                            BPF_ALU64 | BPF_MOV | BPF_K
        Insn::new(0xb7, 3, 0, 0, XDP_PASS),
        // r0 = bpf_redirect_map(r1, r2, r3)        BPF_JMP | BPF_CALL
        Insn::new(0x85, 0, 0, 0, BPF_FUNC_REDIRECT_MAP),
        // return r0                                BPF_JMP | BPF_EXIT
        Insn::new(0x95, 0, 0, 0, 0),
    ]
}

/// `union bpf_attr` as `BPF_MAP_CREATE` reads it (the rest stays zero).
#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
    /// Named so no padding byte (which `Default` leaves undefined) sits
    /// before `_rest`: the kernel reads every byte.
    map_ifindex: u32,
    _rest: [u64; 12],
}

/// `union bpf_attr` as `BPF_MAP_UPDATE_ELEM` reads it.
#[repr(C)]
#[derive(Default)]
struct MapUpdateAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
    _rest: [u64; 12],
}

/// `union bpf_attr` as `BPF_PROG_LOAD` reads it.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    _rest: [u64; 12],
}

/// `bpf(cmd, attr, sizeof attr)`, returning a new descriptor (or 0).
///
/// # Safety
/// `attr` must be the `bpf_attr` layout `cmd` expects, with every pointer
/// in it valid for the call.
unsafe fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: per the caller; the kernel reads (and may write) `size_of::<T>()` bytes.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, size_of::<T>()) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

/// An `XSKMAP` and the redirect program that uses it. Dropping it closes
/// both descriptors; a program attached to an interface stays loaded until
/// it is detached (or the interface goes).
#[derive(Debug)]
pub struct XdpRedirect {
    map: OwnedFd,
    prog: OwnedFd,
    frags: bool,
}

impl XdpRedirect {
    /// Creates the map (`queues` entries) and loads the program. The
    /// verifier's log is part of the error when it refuses the program.
    pub fn load(queues: u32) -> io::Result<XdpRedirect> {
        let mut name = [0u8; 16];
        name[..8].copy_from_slice(b"vsw_xsks");
        let mut attr = MapCreateAttr {
            map_type: BPF_MAP_TYPE_XSKMAP,
            key_size: 4,
            value_size: 4,
            max_entries: queues.max(1),
            map_name: name,
            ..MapCreateAttr::default()
        };
        // SAFETY: a `BPF_MAP_CREATE` attribute with no pointers.
        let fd = unsafe { bpf(BPF_MAP_CREATE, &mut attr) }?;
        // SAFETY: the kernel just returned this new descriptor; we own it.
        let map = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };

        let insns = redirect_program(map.as_raw_fd());
        let license = c"Dual MIT/GPL";
        let mut log = vec![0u8; 4096];
        let mut prog_name = [0u8; 16];
        prog_name[..12].copy_from_slice(b"vsw_redirect");
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_XDP,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: 1,
            log_size: log.len() as u32,
            log_buf: log.as_mut_ptr() as u64,
            prog_name,
            expected_attach_type: BPF_XDP,
            ..ProgLoadAttr::default()
        };
        // The program never reads the frame, so it is frags-capable as it
        // is; a kernel without the flag gets it without.
        attr.prog_flags = BPF_F_XDP_HAS_FRAGS;
        // SAFETY: `insns`, `license` and `log` outlive the call, and the
        // sizes given are theirs.
        let mut loaded = unsafe { bpf(BPF_PROG_LOAD, &mut attr) };
        let mut frags = true;
        if matches!(&loaded, Err(e) if e.raw_os_error() == Some(libc::EINVAL)) {
            attr.prog_flags = 0;
            frags = false;
            // SAFETY: as above.
            loaded = unsafe { bpf(BPF_PROG_LOAD, &mut attr) };
        }
        let fd = match loaded {
            Ok(fd) => fd,
            Err(e) => {
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                let text = String::from_utf8_lossy(&log[..end]);
                return Err(io::Error::new(e.kind(), format!("loading the XDP program: {e}; verifier: {text}")));
            }
        };
        // SAFETY: as above.
        let prog = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        Ok(XdpRedirect { map, prog, frags })
    }

    /// Whether the program was loaded frags-capable (`xdp.frags`).
    pub fn has_frags(&self) -> bool {
        self.frags
    }

    /// The program's descriptor, to attach it to an interface.
    pub fn prog_fd(&self) -> RawFd {
        self.prog.as_raw_fd()
    }

    /// Steers receive queue `queue` to the AF_XDP socket `xsk`.
    pub fn insert(&self, queue: u32, xsk: RawFd) -> io::Result<()> {
        let key = queue;
        let value = xsk as u32;
        let mut attr = MapUpdateAttr {
            map_fd: self.map.as_raw_fd() as u32,
            key: &key as *const u32 as u64,
            value: &value as *const u32 as u64,
            ..MapUpdateAttr::default()
        };
        // SAFETY: `key` and `value` outlive the call and are the map's sizes.
        unsafe { bpf(BPF_MAP_UPDATE_ELEM, &mut attr) }.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_reads_the_queue_and_redirects_with_a_pass_fallback() {
        let p = redirect_program(7);
        assert_eq!(size_of::<Insn>(), 8, "struct bpf_insn");
        // r2 = ctx->rx_queue_index
        assert_eq!((p[0].code, p[0].regs, p[0].off), (0x61, 0x12, 16));
        // r1 = map fd 7, as a pseudo map load spanning two slots
        assert_eq!((p[1].code, p[1].regs, p[1].imm), (0x18, 0x11, 7));
        assert_eq!(p[2], Insn::new(0, 0, 0, 0, 0));
        assert_eq!((p[3].code, p[3].regs, p[3].imm), (0xb7, 0x03, XDP_PASS));
        assert_eq!((p[4].code, p[4].imm), (0x85, 51));
        assert_eq!(p[5].code, 0x95);
        // The attribute layouts the kernel reads.
        assert_eq!(std::mem::offset_of!(MapCreateAttr, map_name), 28);
        // No padding anywhere: the kernel reads every byte.
        assert_eq!(size_of::<MapCreateAttr>(), 48 + 96);
        assert_eq!(size_of::<ProgLoadAttr>(), 72 + 96);
        assert_eq!(size_of::<MapUpdateAttr>(), 32 + 96);
        assert_eq!(std::mem::offset_of!(MapUpdateAttr, key), 8);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, log_buf), 32);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type), 68);
    }
}
