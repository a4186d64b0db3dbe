//! Which interface holds an address, and its MTU: the underlay MTU the
//! overlay networks' MTU is derived from.

use std::ffi::CStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::netlink::Netlink;

/// The name of the interface (in the caller's network namespace) that holds
/// `ip`, if any.
pub fn interface_with_address(ip: IpAddr) -> Option<String> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a pointer to a list it allocated into `head`;
    // we free it below with freeifaddrs and never use it afterwards.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return None;
    }
    let mut found = None;
    let mut cursor = head;
    while !cursor.is_null() && found.is_none() {
        // SAFETY: `cursor` is a non-null node of the list getifaddrs returned,
        // which stays valid until freeifaddrs.
        let entry = unsafe { &*cursor };
        // SAFETY: a non-null ifa_addr points to a sockaddr whose family says
        // which concrete sockaddr type it is; we read only that type.
        let addr = unsafe { sockaddr_ip(entry.ifa_addr) };
        if addr == Some(ip) && !entry.ifa_name.is_null() {
            // SAFETY: ifa_name is a NUL-terminated string owned by the list.
            found = Some(unsafe { CStr::from_ptr(entry.ifa_name) }.to_string_lossy().into_owned());
        }
        cursor = entry.ifa_next;
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    found
}

/// Reads the IP address out of a `sockaddr`.
///
/// # Safety
/// `sa` must be null or point to a valid `sockaddr` of the size its family implies.
unsafe fn sockaddr_ip(sa: *const libc::sockaddr) -> Option<IpAddr> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: the caller guarantees `sa` points to a valid sockaddr.
    match i32::from(unsafe { (*sa).sa_family }) {
        libc::AF_INET => {
            // SAFETY: the family is AF_INET, so it is a sockaddr_in.
            let v4 = unsafe { &*(sa as *const libc::sockaddr_in) };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family is AF_INET6, so it is a sockaddr_in6.
            let v6 = unsafe { &*(sa as *const libc::sockaddr_in6) };
            Some(IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

/// The MTU of the interface holding `ip`, read over netlink in the caller's
/// network namespace.
pub fn mtu_for_address(ip: IpAddr) -> Option<u32> {
    let name = interface_with_address(ip)?;
    Netlink::open().ok()?.link(&name).ok()??.mtu
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_loopback() {
        assert_eq!(interface_with_address(IpAddr::V4(Ipv4Addr::LOCALHOST)).as_deref(), Some("lo"));
        assert_eq!(interface_with_address("192.0.2.123".parse().unwrap()), None);
        assert!(mtu_for_address(IpAddr::V4(Ipv4Addr::LOCALHOST)).is_some_and(|m| m >= 1500));
    }
}

/// The interfaces (in the caller's network namespace) that carry a default
/// route, IPv4 or IPv6, as the kernel lists them in `/proc/net/route` and
/// `/proc/net/ipv6_route`.
pub fn default_route_interfaces() -> Vec<String> {
    let v4 = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let v6 = std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
    let mut found = default_routes(&v4, &v6);
    found.sort();
    found.dedup();
    found
}

/// The interfaces of the default routes in the text of `/proc/net/route`
/// (`Iface Destination Gateway Flags ... Mask ...`, hexadecimal) and of
/// `/proc/net/ipv6_route` (destination, prefix length, ..., interface last).
fn default_routes(v4: &str, v6: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in v4.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let [iface, dest, _gw, _flags, _refcnt, _use, _metric, mask, ..] = fields[..]
            && dest == "00000000"
            && mask == "00000000"
        {
            found.push(iface.to_owned());
        }
    }
    for line in v6.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let [dest, prefix, .., iface] = fields[..]
            && dest.len() == 32
            && dest.bytes().all(|b| b == b'0')
            && prefix == "00"
            && iface != "lo"
        {
            found.push(iface.to_owned());
        }
    }
    found
}

#[cfg(test)]
mod default_route_tests {
    #[test]
    fn default_routes_are_read_from_both_tables() {
        let v4 = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                  eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
                  eth0\t0001A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n\
                  wg0\t0000000A\t00000000\t0001\t0\t0\t0\t000000FF\t0\t0\t0\n";
        let v6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003     eth1\n\
                  fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n\
                  00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n";
        assert_eq!(super::default_routes(v4, v6), ["eth0", "eth1"]);
        assert!(super::default_routes("Iface\n", "").is_empty());
    }
}
