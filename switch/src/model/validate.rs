//! Syntax rules for names shared by several operations.

use std::net::IpAddr;

use super::error::ModelError;

/// Longest accepted network or sandbox name.
pub(crate) const MAX_NAME_LEN: usize = 64;

/// Docker's object-name rule `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 64 characters.
pub(crate) fn object_name(kind: &'static str, name: &str) -> Result<(), ModelError> {
    let reason = if name.is_empty() {
        Some("must not be empty")
    } else if name.len() > MAX_NAME_LEN {
        Some("must be at most 64 characters")
    } else if !name.as_bytes()[0].is_ascii_alphanumeric() {
        Some("must start with a letter or digit ([a-zA-Z0-9][a-zA-Z0-9_.-]*)")
    } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) {
        Some("may only contain letters, digits, '_', '.' and '-' ([a-zA-Z0-9][a-zA-Z0-9_.-]*)")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(ModelError::InvalidName { kind, name: name.to_owned(), reason }),
        None => Ok(()),
    }
}

/// Checks an interface name asked for in a sandbox (Docker's
/// `com.docker.network.endpoint.ifname`): one Linux takes (1 to 15
/// characters, no `/`, `:` or space; here letters, digits, `-`, `_`, `.`),
/// and not the sandbox's loopback.
pub(crate) fn interface_name(name: &str) -> Result<(), ModelError> {
    let reason = if name.is_empty() || name.len() > 15 {
        "must be 1 to 15 characters (Linux's limit)"
    } else if matches!(name, "." | "..") {
        "is not an interface name"
    } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        "may hold only letters, digits, '-', '_' and '.'"
    } else if name == "lo" {
        "is the sandbox's loopback"
    } else {
        return Ok(());
    };
    Err(ModelError::InvalidName { kind: "interface", name: name.to_owned(), reason })
}

/// A DNS name: dot-separated labels of 1..=63 letters, digits and inner
/// hyphens, at most 253 characters; one trailing dot allowed.
pub(crate) fn dns_name(what: &'static str, value: &str) -> Result<(), ModelError> {
    let name = value.strip_suffix('.').unwrap_or(value);
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !name.is_empty() && name.len() <= 253 && name.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(ModelError::InvalidDnsName { what, value: value.to_owned() })
    }
}

/// A resolv.conf option (`--dns-option`, compose's `dns_opt`): a word such
/// as `rotate` or `edns0`, or `name:value` such as `ndots:2`; nothing that
/// could end the `options` line or add another.
pub(crate) fn dns_option(value: &str) -> Result<(), ModelError> {
    let word = |w: &str| !w.is_empty() && w.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    let ok = value.len() <= 64
        && match value.split_once(':') {
            // glibc's numeric options take a whole number (Docker refuses
            // `ndots:abc` too; glibc would quietly use its default).
            Some(("ndots" | "timeout" | "attempts", arg)) => arg.parse::<u16>().is_ok(),
            Some((name, arg)) => word(name) && word(arg),
            None => word(value),
        };
    if ok { Ok(()) } else { Err(ModelError::InvalidDnsOption(value.to_owned())) }
}

/// Longest `options` line the sandbox's own options may make: musl ignores
/// a resolv.conf line beyond 255 bytes, and the embedded DNS adds
/// ` ndots:0` and the keyword.
pub(crate) const MAX_DNS_OPTIONS_LEN: usize = 200;

/// A sandbox's whole list of resolv.conf options: each one valid, all of
/// them within [`MAX_DNS_OPTIONS_LEN`] on their line.
pub(crate) fn dns_options(options: &[String]) -> Result<(), ModelError> {
    for o in options {
        dns_option(o)?;
    }
    let len = options.iter().map(|o| o.len() + 1).sum::<usize>();
    if len > MAX_DNS_OPTIONS_LEN {
        return Err(ModelError::DnsOptionsTooLong { len, max: MAX_DNS_OPTIONS_LEN });
    }
    Ok(())
}

/// A hosts file entry (`--add-host`, compose's `extra_hosts`): `NAME:IP`
/// or `NAME=IP` as Docker takes it, the name a host name, the address IPv4
/// or IPv6 (in brackets or not: `db:2001:db8::1`, `db=[2001:db8::1]`).
/// Returns it as `NAME:IP`, the form the state keeps and `inspect` shows.
pub(crate) fn extra_host(value: &str) -> Result<String, ModelError> {
    let bad = |reason: &'static str| ModelError::InvalidExtraHost { value: value.to_owned(), reason };
    let (name, ip) = value.split_once('=').or_else(|| value.split_once(':')).ok_or(bad("expected NAME:IP"))?;
    let label = |l: &str| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
    // A fully qualified name may end in a dot, as Docker takes it.
    let labels = name.strip_suffix('.').unwrap_or(name);
    if labels.len() > 253 || !labels.split('.').all(label) {
        return Err(bad("the name must be a host name (letters, digits, '-', '_' and '.')"));
    }
    if ip == "host-gateway" {
        return Err(bad("host-gateway is not supported: give the host's address"));
    }
    let ip = ip.strip_prefix('[').and_then(|i| i.strip_suffix(']')).unwrap_or(ip);
    let ip: IpAddr = ip.parse().map_err(|_| bad("the address must be an IPv4 or IPv6 address"))?;
    Ok(format!("{name}:{ip}"))
}

/// Every entry of `--add-host` (see [`extra_host`]), in the form kept.
pub(crate) fn extra_hosts(entries: &[String]) -> Result<Vec<String>, ModelError> {
    entries.iter().map(|e| extra_host(e)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_hosts_as_docker_takes_them() {
        for (given, kept) in [
            ("db:10.0.0.5", "db:10.0.0.5"),
            ("db=10.0.0.5", "db:10.0.0.5"),
            ("db.example.com:2001:db8::1", "db.example.com:2001:db8::1"),
            ("db=[2001:db8::1]", "db:2001:db8::1"),
            ("db:[::1]", "db:::1"),
            ("my_host-1:192.168.1.1", "my_host-1:192.168.1.1"),
            ("db.example.com.:10.0.0.5", "db.example.com.:10.0.0.5"),
        ] {
            assert_eq!(extra_host(given).unwrap(), kept, "{given}");
        }
        for (bad, says) in [
            ("db", "NAME:IP"),
            (":10.0.0.5", "host name"),
            ("d b:10.0.0.5", "host name"),
            ("db..:10.0.0.5", "host name"),
            (&format!("{}:10.0.0.5", "a".repeat(254)), "host name"),
            (".:10.0.0.5", "host name"),
            ("db\n10.0.0.6 evil:10.0.0.5", "host name"),
            ("db:10.0.0.5\n10.0.0.6 evil", "address"),
            ("db:host-gateway", "host-gateway"),
            ("db:10.0.0", "address"),
            ("db:", "address"),
        ] {
            let e = extra_host(bad).unwrap_err().to_string();
            assert!(e.contains(says) && e.contains(&format!("{bad:?}")), "{bad:?}: {e}");
        }
    }

    #[test]
    fn object_names() {
        for ok in ["a", "my-net", "A.b_c-9", "0net"] {
            object_name("network", ok).unwrap();
        }
        let long = "a".repeat(65);
        for (bad, why) in [
            ("", "empty"),
            ("-x", "start with"),
            (".x", "start with"),
            ("a b", "may only contain"),
            ("a/b", "may only contain"),
            (long.as_str(), "at most 64"),
        ] {
            let e = object_name("sandbox", bad).unwrap_err().to_string();
            assert!(e.contains("invalid sandbox name") && e.contains(why), "{e}");
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn dns_option_rules() {
        for ok in ["ndots:2", "timeout:3", "attempts:5", "rotate", "edns0", "use-vc", "no-tld-query", "trust-ad"] {
            dns_option(ok).unwrap();
        }
        let long = "a".repeat(65);
        for bad in [
            "",
            ":",
            "ndots:",
            ":2",
            "a:b:c",
            "ndots 2",
            "rotate\nnameserver 6.6.6.6",
            "x;y",
            "ndots:abc",
            "ndots:-1",
            "timeout:1.5",
            &long,
        ] {
            let e = dns_option(bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid dns option") && e.contains(&format!("{bad:?}")), "{e}");
        }
        let many: Vec<String> = (0..30).map(|i| format!("opt-{i:03}")).collect();
        let e = dns_options(&many).unwrap_err().to_string();
        assert!(e.contains("at most 200"), "{e}");
        dns_options(&many[..20]).unwrap();
    }

    #[test]
    fn dns_names() {
        for ok in ["example.com", "a", "corp.example.com.", "x-1.y"] {
            dns_name("alias", ok).unwrap();
        }
        for bad in ["", ".", "a..b", "-a", "a-", "a_b", "a b", &"a".repeat(64)] {
            let e = dns_name("alias", bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid alias") && e.contains(&format!("{bad:?}")), "{e}");
        }
    }
}
