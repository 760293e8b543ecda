//! Egress policy: which IP addresses a delivery may connect to (SPEC §5).
//!
//! This file is the pure core: [`EgressPolicy::check`] decides for one
//! address and one [`Trust`] level, with no I/O, so it is tested with known
//! answers below. Where the check is *applied* (on the address actually
//! dialled) is the job of `net.rs`.
//!
//! Rules:
//! - `egress.deny` always wins, for every target.
//! - Targets from YAML ([`Trust::Config`]) are trusted: only `deny` applies.
//! - Targets created through the API ([`Trust::Api`]) may not reach
//!   loopback, private, link-local, shared (CGNAT), unspecified, broadcast,
//!   multicast, documentation, reserved or cloud-metadata addresses unless
//!   `egress.allow` covers the address. IPv4-mapped IPv6 (`::ffff:a.b.c.d`)
//!   is judged as the IPv4 address it maps to, and the IPv4 address embedded
//!   in NAT64 (`64:ff9b::/96`) and 6to4 (`2002::/16`) addresses is judged
//!   too, because a gateway on the path turns them into that IPv4 address.
//! - For IPv6 outside those forms, only global unicast (`2000::/3`) is
//!   accepted: an allow-list of the one public range is harder to get wrong
//!   than a deny-list of every special one.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// How far a target is trusted, from where it was defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Trust {
    /// Defined in the YAML config by the operator: only `egress.deny` applies.
    Config,
    /// Created through the API by a client: internal addresses are refused
    /// unless `egress.allow` covers them.
    Api,
}

/// The `egress:` section of the config: `{ allow: [CIDR], deny: [CIDR] }`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    /// Ranges API-created targets may reach even though they are internal
    /// (for example a test receiver on `127.0.0.0/8`).
    pub allow: Vec<IpNet>,
    /// Ranges no target may reach, not even one from the YAML config.
    pub deny: Vec<IpNet>,
}

/// Why an address was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EgressReason {
    /// Covered by `egress.deny`.
    Denied,
    /// A cloud metadata endpoint (169.254.169.254, fd00:ec2::254, ...).
    Metadata,
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// RFC 1918, fc00::/7 (and the deprecated fec0::/10).
    Private,
    /// 169.254.0.0/16, fe80::/10.
    LinkLocal,
    /// Shared address space 100.64.0.0/10 (carrier-grade NAT).
    SharedAddressSpace,
    /// 0.0.0.0, ::.
    Unspecified,
    /// 255.255.255.255.
    Broadcast,
    /// 224.0.0.0/4, ff00::/8.
    Multicast,
    /// 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32, 3fff::/20.
    Documentation,
    /// Other special-purpose ranges that are not public unicast.
    Reserved,
}

impl fmt::Display for EgressReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EgressReason::Denied => "it is covered by egress.deny",
            EgressReason::Metadata => "it is a cloud metadata address",
            EgressReason::Loopback => "it is a loopback address",
            EgressReason::Private => "it is a private address",
            EgressReason::LinkLocal => "it is a link-local address",
            EgressReason::SharedAddressSpace => "it is in the shared (CGNAT) address space",
            EgressReason::Unspecified => "it is the unspecified address",
            EgressReason::Broadcast => "it is the broadcast address",
            EgressReason::Multicast => "it is a multicast address",
            EgressReason::Documentation => "it is a documentation address",
            EgressReason::Reserved => "it is a reserved, non-public address",
        })
    }
}

/// An address the egress policy refused to connect to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused to connect to {ip}: {reason}{}", hint(*.reason))]
pub struct EgressError {
    /// The address that would have been dialled.
    pub ip: IpAddr,
    /// Which rule refused it.
    pub reason: EgressReason,
}

fn hint(reason: EgressReason) -> &'static str {
    match reason {
        EgressReason::Denied => " (remove the range from egress.deny to permit it)",
        _ => {
            " (targets created through the API may not reach internal addresses; \
             add a CIDR covering it to egress.allow to permit it)"
        }
    }
}

impl EgressPolicy {
    /// Decide whether `ip` may be dialled for a target of the given trust.
    pub fn check(&self, ip: IpAddr, trust: Trust) -> Result<(), EgressError> {
        let canonical = ip.to_canonical();
        let embedded = embedded_ipv4(ip).map(IpAddr::V4);
        let denied = self.deny.iter().any(|net| {
            net.contains(&ip)
                || net.contains(&canonical)
                || embedded.is_some_and(|v4| net.contains(&v4))
        });
        if denied {
            return Err(EgressError {
                ip,
                reason: EgressReason::Denied,
            });
        }
        if trust == Trust::Config {
            return Ok(());
        }
        let Some(reason) = classify(ip) else {
            return Ok(());
        };
        let allowed = self
            .allow
            .iter()
            .any(|net| net.contains(&ip) || net.contains(&canonical));
        if allowed {
            Ok(())
        } else {
            Err(EgressError { ip, reason })
        }
    }
}

/// The IPv4 address a gateway would turn this IPv6 address into: the
/// IPv4-mapped form, NAT64 well-known prefix, or 6to4.
fn embedded_ipv4(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else { return None };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = v6.segments();
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(low_ipv4(v6));
    }
    if s[0] == 0x2002 {
        let [a, b] = s[1].to_be_bytes();
        let [c, d] = s[2].to_be_bytes();
        return Some(Ipv4Addr::new(a, b, c, d));
    }
    None
}

fn low_ipv4(v6: Ipv6Addr) -> Ipv4Addr {
    let o = v6.octets();
    Ipv4Addr::new(o[12], o[13], o[14], o[15])
}

/// Why an API-created target may not reach `ip`, or `None` for a public address.
pub fn classify(ip: IpAddr) -> Option<EgressReason> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    };
    (u128::from(ip) & mask) == (u128::from(Ipv6Addr::from(net)) & mask)
}

/// Ranges (network, prefix length) and the reason they are refused.
type V4Rule = (&'static [([u8; 4], u32)], EgressReason);
type V6Rule = (&'static [([u16; 8], u32)], EgressReason);

fn classify_v4(ip: Ipv4Addr) -> Option<EgressReason> {
    use EgressReason::*;
    // Metadata first so the message names the real danger. 168.63.129.16 is
    // Azure's platform endpoint (public-looking, answers only inside Azure);
    // 100.100.100.200 is Alibaba Cloud's metadata service.
    const METADATA: [[u8; 4]; 3] = [
        [169, 254, 169, 254],
        [168, 63, 129, 16],
        [100, 100, 100, 200],
    ];
    let checks: &[V4Rule] = &[
        (&[([0, 0, 0, 0], 32)], Unspecified),
        (&[([255, 255, 255, 255], 32)], Broadcast),
        (&[([127, 0, 0, 0], 8)], Loopback),
        (
            &[
                ([10, 0, 0, 0], 8),
                ([172, 16, 0, 0], 12),
                ([192, 168, 0, 0], 16),
            ],
            Private,
        ),
        (&[([169, 254, 0, 0], 16)], LinkLocal),
        (&[([100, 64, 0, 0], 10)], SharedAddressSpace),
        (&[([224, 0, 0, 0], 4)], Multicast),
        (
            &[
                ([192, 0, 2, 0], 24),
                ([198, 51, 100, 0], 24),
                ([203, 0, 113, 0], 24),
            ],
            Documentation,
        ),
        (
            &[
                ([0, 0, 0, 0], 8),      // "this network"
                ([192, 0, 0, 0], 24),   // IETF protocol assignments
                ([192, 88, 99, 0], 24), // deprecated 6to4 relay anycast
                ([198, 18, 0, 0], 15),  // benchmarking
                ([240, 0, 0, 0], 4),    // reserved for future use
            ],
            Reserved,
        ),
    ];
    if METADATA.iter().any(|m| ip.octets() == *m) {
        return Some(Metadata);
    }
    checks
        .iter()
        .find(|(nets, _)| nets.iter().any(|(net, len)| in_v4(ip, *net, *len)))
        .map(|(_, reason)| *reason)
}

fn classify_v6(ip: Ipv6Addr) -> Option<EgressReason> {
    use EgressReason::*;
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        return Some(Metadata);
    }
    if ip.is_unspecified() {
        return Some(Unspecified);
    }
    if ip.is_loopback() {
        return Some(Loopback);
    }
    if in_v6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96) {
        // NAT64: reaches the embedded IPv4 address; public ones are fine.
        return classify_v4(low_ipv4(ip));
    }
    if in_v6(ip, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        // 6to4: reaches the embedded IPv4 address through a relay.
        return embedded_ipv4(IpAddr::V6(ip)).and_then(classify_v4);
    }
    let checks: &[V6Rule] = &[
        (&[([0xff00, 0, 0, 0, 0, 0, 0, 0], 8)], Multicast),
        (&[([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10)], LinkLocal),
        (
            &[
                ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
                ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10), // deprecated site-local
            ],
            Private,
        ),
        (
            &[
                ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
                ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),
            ],
            Documentation,
        ),
        // IETF protocol assignments: Teredo, benchmarking, ORCHID, ...
        (&[([0x2001, 0, 0, 0, 0, 0, 0, 0], 23)], Reserved),
    ];
    if let Some((_, reason)) = checks
        .iter()
        .find(|(nets, _)| nets.iter().any(|(net, len)| in_v6(ip, *net, *len)))
    {
        return Some(*reason);
    }
    // Everything else outside global unicast 2000::/3: IPv4-compatible
    // ::/96, discard 100::/64, local-use NAT64 64:ff9b:1::/48, unassigned.
    if !in_v6(ip, [0x2000, 0, 0, 0, 0, 0, 0, 0], 3) {
        return Some(Reserved);
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn api_targets_known_answers() {
        use EgressReason::*;
        let cases: &[(&str, Option<EgressReason>)] = &[
            // public
            ("93.184.215.14", None),
            ("8.8.8.8", None),
            ("1.1.1.1", None),
            ("172.32.0.1", None),
            ("172.15.255.255", None),
            ("100.63.255.255", None),
            ("100.128.0.0", None),
            ("192.169.0.1", None),
            ("2606:4700:4700::1111", None),
            ("2a00:1450:4001:82a::200e", None),
            ("::ffff:8.8.8.8", None),
            ("64:ff9b::808:808", None),
            ("2002:808:808::1", None),
            // loopback
            ("127.0.0.1", Some(Loopback)),
            ("127.255.255.254", Some(Loopback)),
            ("::1", Some(Loopback)),
            ("::ffff:127.0.0.1", Some(Loopback)),
            // private
            ("10.0.0.1", Some(Private)),
            ("172.16.0.1", Some(Private)),
            ("172.31.255.255", Some(Private)),
            ("192.168.1.1", Some(Private)),
            ("fc00::1", Some(Private)),
            ("fd12:3456::1", Some(Private)),
            ("fec0::1", Some(Private)),
            ("::ffff:10.1.2.3", Some(Private)),
            ("64:ff9b::a00:1", Some(Private)),
            ("2002:c0a8:101::1", Some(Private)),
            // link-local
            ("169.254.1.1", Some(LinkLocal)),
            ("fe80::1", Some(LinkLocal)),
            ("febf::1", Some(LinkLocal)),
            // CGNAT
            ("100.64.0.1", Some(SharedAddressSpace)),
            ("100.127.255.255", Some(SharedAddressSpace)),
            // metadata
            ("169.254.169.254", Some(Metadata)),
            ("::ffff:169.254.169.254", Some(Metadata)),
            ("::ffff:a9fe:a9fe", Some(Metadata)),
            ("64:ff9b::a9fe:a9fe", Some(Metadata)),
            ("fd00:ec2::254", Some(Metadata)),
            ("168.63.129.16", Some(Metadata)),
            ("100.100.100.200", Some(Metadata)),
            // unspecified, broadcast, multicast
            ("0.0.0.0", Some(Unspecified)),
            ("::", Some(Unspecified)),
            ("::ffff:0.0.0.0", Some(Unspecified)),
            ("255.255.255.255", Some(Broadcast)),
            ("224.0.0.1", Some(Multicast)),
            ("239.255.255.250", Some(Multicast)),
            ("ff02::1", Some(Multicast)),
            // documentation
            ("192.0.2.1", Some(Documentation)),
            ("198.51.100.7", Some(Documentation)),
            ("203.0.113.200", Some(Documentation)),
            ("2001:db8::1", Some(Documentation)),
            ("3fff::1", Some(Documentation)),
            // reserved
            ("0.1.2.3", Some(Reserved)),
            ("192.0.0.8", Some(Reserved)),
            ("198.18.0.1", Some(Reserved)),
            ("198.19.255.255", Some(Reserved)),
            ("240.0.0.1", Some(Reserved)),
            ("::7f00:1", Some(Reserved)),
            ("100::1", Some(Reserved)),
            ("2001::1", Some(Reserved)),
            ("64:ff9b:1::a00:1", Some(Reserved)),
            ("4000::1", Some(Reserved)),
        ];
        let policy = EgressPolicy::default();
        for (addr, want) in cases {
            let got = policy.check(ip(addr), Trust::Api).err().map(|e| e.reason);
            assert_eq!(got, *want, "{addr}");
        }
    }

    #[test]
    fn config_targets_are_trusted_except_deny() {
        let policy = EgressPolicy::default();
        for addr in [
            "127.0.0.1",
            "169.254.169.254",
            "10.0.0.1",
            "::1",
            "fd00:ec2::254",
        ] {
            assert_eq!(policy.check(ip(addr), Trust::Config), Ok(()), "{addr}");
        }
    }

    #[test]
    fn allow_opens_internal_ranges_for_api_targets() {
        let policy = EgressPolicy {
            allow: nets(&["127.0.0.0/8", "10.1.0.0/16", "fd00::/8"]),
            deny: vec![],
        };
        for addr in ["127.0.0.1", "::ffff:127.0.0.1", "10.1.2.3", "fd00::5"] {
            assert_eq!(policy.check(ip(addr), Trust::Api), Ok(()), "{addr}");
        }
        // Outside the allowed ranges: still refused.
        for addr in ["10.2.0.1", "::1", "169.254.169.254", "fc00::1"] {
            assert!(policy.check(ip(addr), Trust::Api).is_err(), "{addr}");
        }
    }

    #[test]
    fn deny_always_wins() {
        let policy = EgressPolicy {
            allow: nets(&["127.0.0.0/8"]),
            deny: nets(&["127.0.0.1/32", "8.8.8.0/24"]),
        };
        let denied = |addr: &str, trust| {
            policy.check(ip(addr), trust).err().map(|e| e.reason) == Some(EgressReason::Denied)
        };
        for trust in [Trust::Api, Trust::Config] {
            assert!(denied("127.0.0.1", trust));
            assert!(denied("::ffff:127.0.0.1", trust));
            assert!(denied("8.8.8.8", trust));
            assert!(
                denied("64:ff9b::808:808", trust),
                "NAT64 form of a denied address"
            );
            assert!(
                denied("2002:808:808::1", trust),
                "6to4 form of a denied address"
            );
        }
        assert_eq!(policy.check(ip("127.0.0.2"), Trust::Api), Ok(()));
        assert_eq!(policy.check(ip("8.8.4.4"), Trust::Config), Ok(()));
    }

    #[test]
    fn error_message_tells_what_to_do() {
        let err = EgressPolicy::default()
            .check(ip("169.254.169.254"), Trust::Api)
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("169.254.169.254"), "{msg}");
        assert!(msg.contains("metadata"), "{msg}");
        assert!(msg.contains("egress.allow"), "{msg}");
        let policy = EgressPolicy {
            allow: vec![],
            deny: nets(&["8.8.8.8/32"]),
        };
        let msg = policy
            .check(ip("8.8.8.8"), Trust::Config)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("egress.deny"), "{msg}");
    }
}
