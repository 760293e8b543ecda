//! The client address behind a request, and the `ip_allow` check.
//!
//! `X-Forwarded-For` is written by whoever sent the request, so it is only
//! believed when the TCP peer is one of `server.trusted_proxies`, and then
//! only as far back as the chain of trusted proxies goes: we walk the list
//! from the right (the hop nearest to us), skip addresses that are our own
//! proxies, and take the first one that is not. Anything to its left was
//! written by the client and could be forged.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// Whether `addr` falls in any of `nets`.
fn in_any(addr: IpAddr, nets: &[IpNet]) -> bool {
    nets.iter().any(|net| net.contains(&addr))
}

/// One `X-Forwarded-For` entry as an address. Accepts what proxies write in
/// practice: a bare address, `addr:port`, `[v6]:port`; `None` otherwise
/// (`unknown`, obfuscated identifiers, garbage).
fn parse_hop(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    let addr = entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|inner| inner.parse::<IpAddr>().ok())
        })?;
    Some(addr.to_canonical())
}

/// The address to treat as the client.
///
/// - peer not in `trusted_proxies`: the peer, whatever the header says;
/// - otherwise the right-most `X-Forwarded-For` entry that is not itself a
///   trusted proxy;
/// - if every entry is a trusted proxy, the left-most one;
/// - an entry that cannot be parsed stops the walk: the last address known
///   to be good (the trusted hop that passed it on) is returned, because
///   nothing further left can be trusted.
///
/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, seen on dual-stack
/// listeners) are treated as the IPv4 address they carry.
pub fn client_ip(peer: IpAddr, x_forwarded_for: Option<&str>, trusted_proxies: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    if !in_any(peer, trusted_proxies) {
        return peer;
    }
    let Some(header) = x_forwarded_for else {
        return peer;
    };
    let mut current = peer;
    for entry in header.rsplit(',') {
        match parse_hop(entry) {
            Some(hop) if in_any(hop, trusted_proxies) => current = hop,
            Some(hop) => return hop,
            None => return current,
        }
    }
    current
}

/// Whether `client` is allowed by the `ip_allow` list `allow`. An empty
/// list allows nobody.
pub fn ip_allowed(client: IpAddr, allow: &[IpNet]) -> bool {
    in_any(client.to_canonical(), allow)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn untrusted_peer_ignores_the_header() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(ip("198.51.100.7"), Some("203.0.113.1"), &trusted),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_ip(ip("198.51.100.7"), Some("203.0.113.1"), &[]),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn trusted_peer_without_header_is_the_client() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(client_ip(ip("10.1.1.1"), None, &trusted), ip("10.1.1.1"));
    }

    #[test]
    fn walks_from_the_right_skipping_trusted_proxies() {
        let trusted = nets(&["10.0.0.0/8", "fd00::/8"]);
        // Client forged "1.1.1.1", real client 203.0.113.5, then two proxies.
        let header = "1.1.1.1, 203.0.113.5, 10.0.0.3,fd00::2";
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some(header), &trusted),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn all_trusted_gives_the_left_most() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some("10.9.9.9, 10.0.0.2"), &trusted),
            ip("10.9.9.9")
        );
    }

    #[test]
    fn malformed_entry_stops_at_the_last_trusted_hop() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(
                ip("10.0.0.1"),
                Some("203.0.113.5, garbage, 10.0.0.2"),
                &trusted
            ),
            ip("10.0.0.2")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some(""), &trusted),
            ip("10.0.0.1")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some("unknown"), &trusted),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn entries_with_ports_and_brackets_parse() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some("203.0.113.5:4711"), &trusted),
            ip("203.0.113.5")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some("[2001:db8::1]:443"), &trusted),
            ip("2001:db8::1")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some("[2001:db8::2]"), &trusted),
            ip("2001:db8::2")
        );
    }

    #[test]
    fn ipv4_mapped_peer_matches_ipv4_rules() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.1"), Some("203.0.113.5"), &trusted),
            ip("203.0.113.5")
        );
        assert!(ip_allowed(
            ip("::ffff:203.0.113.5"),
            &nets(&["203.0.113.0/24"])
        ));
    }

    #[test]
    fn allow_list() {
        let allow = nets(&["203.0.113.0/24", "2001:db8::/32"]);
        assert!(ip_allowed(ip("203.0.113.255"), &allow));
        assert!(ip_allowed(ip("2001:db8::7"), &allow));
        assert!(!ip_allowed(ip("203.0.114.1"), &allow));
        assert!(!ip_allowed(ip("203.0.113.1"), &[]));
    }

    proptest! {
        #[test]
        fn never_panics_and_returns_peer_or_a_listed_hop(header in ".{0,200}", last in any::<[u8; 4]>()) {
            let trusted = nets(&["10.0.0.0/8"]);
            let peer = ip("10.0.0.1");
            let header = format!("{header},{}", std::net::Ipv4Addr::from(last));
            let got = client_ip(peer, Some(&header), &trusted);
            let listed = header.split(',').filter_map(parse_hop).any(|h| h == got);
            prop_assert!(got == peer || listed);
        }
    }
}
