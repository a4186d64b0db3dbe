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
