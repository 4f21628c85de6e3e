//! The address classifier held against the IANA IPv4 and IPv6
//! Special-Purpose Address Registries.
//!
//! The tables below are transcribed from the registries (every entry, with
//! its "Globally Reachable" column as IANA writes it: `True`, `False`,
//! `N/A`, or empty for a terminated allocation), independently of the
//! classifier. The oracle built on them: an address inside any entry that is
//! not `True` is refused, even where a more specific entry inside it is
//! `True`; the two blocks that carry an IPv4 address (IPv4-mapped and 6to4),
//! and the deprecated IPv4-compatible `::/96`, are judged by the address they
//! carry, because a socket sends to that address; multicast, deprecated
//! site-local, IPv4-translated addresses and the whole of `64::/16` and
//! `100::/16` are refused as well.
//! Everything else must pass. Classification only: nothing connects.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use herald_common::url_policy::{UrlPolicy, UrlRejection, classify};
use ipnet::{Ipv4Net, Ipv6Net};
use proptest::prelude::*;
use proptest::test_runner::Config;

const CASES: u32 = 4_000;

/// IANA IPv4 Special-Purpose Address Registry: block, name, globally reachable.
const IPV4_REGISTRY: &[(&str, &str, &str)] = &[
    ("0.0.0.0/8", "\"This network\"", "False"),
    ("0.0.0.0/32", "\"This host on this network\"", "False"),
    ("10.0.0.0/8", "Private-Use", "False"),
    ("100.64.0.0/10", "Shared Address Space", "False"),
    ("127.0.0.0/8", "Loopback", "False"),
    ("169.254.0.0/16", "Link Local", "False"),
    ("172.16.0.0/12", "Private-Use", "False"),
    ("192.0.0.0/24", "IETF Protocol Assignments", "False"),
    ("192.0.0.0/29", "IPv4 Service Continuity Prefix", "False"),
    ("192.0.0.8/32", "IPv4 dummy address", "False"),
    ("192.0.0.9/32", "Port Control Protocol Anycast", "True"),
    ("192.0.0.10/32", "Traversal Using Relays around NAT Anycast", "True"),
    ("192.0.0.170/32", "NAT64/DNS64 Discovery", "False"),
    ("192.0.0.171/32", "NAT64/DNS64 Discovery", "False"),
    ("192.0.2.0/24", "Documentation (TEST-NET-1)", "False"),
    ("192.31.196.0/24", "AS112-v4", "True"),
    ("192.52.193.0/24", "AMT", "True"),
    ("192.88.99.0/24", "Deprecated (6to4 Relay Anycast)", ""),
    ("192.88.99.2/32", "6a44-relay anycast address", "False"),
    ("192.168.0.0/16", "Private-Use", "False"),
    ("192.175.48.0/24", "Direct Delegation AS112 Service", "True"),
    ("198.18.0.0/15", "Benchmarking", "False"),
    ("198.51.100.0/24", "Documentation (TEST-NET-2)", "False"),
    ("203.0.113.0/24", "Documentation (TEST-NET-3)", "False"),
    ("240.0.0.0/4", "Reserved", "False"),
    ("255.255.255.255/32", "Limited Broadcast", "False"),
];

/// IANA IPv6 Special-Purpose Address Registry: block, name, globally reachable.
const IPV6_REGISTRY: &[(&str, &str, &str)] = &[
    ("::1/128", "Loopback Address", "False"),
    ("::/128", "Unspecified Address", "False"),
    ("::ffff:0:0/96", "IPv4-mapped Address", "False"),
    ("64:ff9b::/96", "IPv4-IPv6 Translat.", "True"),
    ("64:ff9b:1::/48", "IPv4-IPv6 Translat.", "False"),
    ("100::/64", "Discard-Only Address Block", "False"),
    ("100:0:0:1::/64", "Dummy IPv6 Prefix", "False"),
    ("2001::/23", "IETF Protocol Assignments", "False"),
    ("2001::/32", "TEREDO", "N/A"),
    ("2001:1::1/128", "Port Control Protocol Anycast", "True"),
    ("2001:1::2/128", "Traversal Using Relays around NAT Anycast", "True"),
    ("2001:1::3/128", "DNS-SD Service Registration Protocol Anycast", "True"),
    ("2001:2::/48", "Benchmarking", "False"),
    ("2001:3::/32", "AMT", "True"),
    ("2001:4:112::/48", "AS112-v6", "True"),
    ("2001:10::/28", "Deprecated (previously ORCHID)", ""),
    ("2001:20::/28", "ORCHIDv2", "True"),
    ("2001:30::/28", "Drone Remote ID Protocol Entity Tags (DETs) Prefix", "True"),
    ("2001:db8::/32", "Documentation", "False"),
    ("2002::/16", "6to4", "N/A"),
    ("2620:4f:8000::/48", "Direct Delegation AS112 Service", "True"),
    ("3fff::/20", "Documentation", "False"),
    ("5f00::/16", "Segment Routing (SRv6) SIDs", "False"),
    ("fc00::/7", "Unique-Local", "False"),
    ("fe80::/10", "Link-Local Unicast", "False"),
];

/// The registry blocks (and `::/96`) judged by the IPv4 address they carry.
const CARRIES_IPV4: &[&str] = &["::ffff:0:0/96", "2002::/16", "::/96"];

/// Refused outside the special-purpose registries: multicast, deprecated
/// site-local, IPv4-translated `::ffff:0:a.b.c.d` (RFC 6145, reached through
/// a translator), and all of `64::/16` and `100::/16` around the registry's
/// translation, discard and dummy blocks.
const OTHER_REFUSED_V4: &[&str] = &["224.0.0.0/4"];
const OTHER_REFUSED_V6: &[&str] = &["ff00::/8", "fec0::/10", "::ffff:0:0:0/96", "64::/16", "100::/16"];

fn v4net(block: &str) -> Ipv4Net {
    block.parse().unwrap()
}

fn v6net(block: &str) -> Ipv6Net {
    block.parse().unwrap()
}

fn oracle_refuses_v4(ip: Ipv4Addr) -> bool {
    IPV4_REGISTRY.iter().any(|(block, _, reach)| *reach != "True" && v4net(block).contains(&ip))
        || OTHER_REFUSED_V4.iter().any(|block| v4net(block).contains(&ip))
}

/// The IPv4 address a carrying block holds: the low 32 bits, or bits 16..48 for 6to4.
fn carried(ip: Ipv6Addr) -> Ipv4Addr {
    let bits = u128::from(ip);
    if v6net("2002::/16").contains(&ip) { Ipv4Addr::from((bits >> 80) as u32) } else { Ipv4Addr::from(bits as u32) }
}

fn oracle_refuses_v6(ip: Ipv6Addr) -> bool {
    let carrying = CARRIES_IPV4.iter().any(|block| v6net(block).contains(&ip));
    let registry = IPV6_REGISTRY
        .iter()
        .filter(|(block, _, _)| !CARRIES_IPV4.contains(block))
        .any(|(block, _, reach)| *reach != "True" && v6net(block).contains(&ip));
    if registry {
        return true;
    }
    if carrying {
        return oracle_refuses_v4(carried(ip));
    }
    OTHER_REFUSED_V6.iter().any(|block| v6net(block).contains(&ip))
}

fn oracle_refuses(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => oracle_refuses_v4(v4),
        IpAddr::V6(v6) => oracle_refuses_v6(v6),
    }
}

/// Every block the tests aim at: the registries, the carrying blocks, the others.
fn all_blocks() -> Vec<String> {
    IPV4_REGISTRY
        .iter()
        .chain(IPV6_REGISTRY)
        .map(|(block, _, _)| *block)
        .chain(CARRIES_IPV4.iter().copied())
        .chain(OTHER_REFUSED_V4.iter().copied())
        .chain(OTHER_REFUSED_V6.iter().copied())
        .map(str::to_owned)
        .collect()
}

/// An address in `block` chosen by `bits`, or just outside it when `edge`
/// steps over one of its ends.
fn in_or_beside(block: &str, bits: u128, edge: i8) -> IpAddr {
    match block.parse::<ipnet::IpNet>().unwrap() {
        ipnet::IpNet::V4(net) => {
            let (first, last) = (u32::from(net.network()), u32::from(net.broadcast()));
            let ip = match edge {
                -1 => first.wrapping_sub(1),
                1 => last.wrapping_add(1),
                _ => first | (bits as u32 & !u32::from(net.netmask())),
            };
            IpAddr::V4(Ipv4Addr::from(ip))
        }
        ipnet::IpNet::V6(net) => {
            let (first, last) = (u128::from(net.network()), u128::from(net.broadcast()));
            let ip = match edge {
                -1 => first.wrapping_sub(1),
                1 => last.wrapping_add(1),
                _ => first | (bits & !u128::from(net.netmask())),
            };
            IpAddr::V6(Ipv6Addr::from(ip))
        }
    }
}

/// Addresses inside each block, at and beyond its edges, IPv4 carried in
/// IPv6, and addresses drawn from the whole space.
fn any_address() -> impl Strategy<Value = IpAddr> {
    let blocks = all_blocks();
    let count = blocks.len();
    prop_oneof![
        4 => (0..count, any::<u128>(), prop_oneof![6 => Just(0i8), 1 => Just(-1i8), 1 => Just(1i8)])
            .prop_map(move |(i, bits, edge)| in_or_beside(&blocks[i], bits, edge)),
        1 => any::<u32>().prop_map(|n| IpAddr::V4(Ipv4Addr::from(n))),
        1 => any::<u128>().prop_map(|n| IpAddr::V6(Ipv6Addr::from(n))),
        1 => any::<u32>().prop_map(|n| IpAddr::V6(Ipv4Addr::from(n).to_ipv6_mapped())),
        1 => any::<u32>().prop_map(|n| IpAddr::V6(Ipv6Addr::from((0x2002u128 << 112) | (u128::from(n) << 80)))),
    ]
}

/// An address inside a block the registry marks not globally reachable
/// (and which does not carry an IPv4 address), with the block's name.
fn non_global() -> impl Strategy<Value = (&'static str, IpAddr)> {
    let blocks: Vec<(&'static str, &'static str)> = IPV4_REGISTRY
        .iter()
        .chain(IPV6_REGISTRY)
        .filter(|(block, _, reach)| *reach != "True" && !CARRIES_IPV4.contains(block))
        .map(|(block, name, _)| (*block, *name))
        .collect();
    (0..blocks.len(), any::<u128>()).prop_map(move |(i, bits)| (blocks[i].1, in_or_beside(blocks[i].0, bits, 0)))
}

fn url_for(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("https://{v4}/hook"),
        IpAddr::V6(v6) => format!("https://[{v6}]/hook"),
    }
}

proptest! {
    #![proptest_config(Config::with_cases(CASES))]

    /// Inside a block that is not globally reachable: refused by the
    /// classifier, by the address check the resolver uses, and as a URL.
    #[test]
    fn non_global_blocks_are_refused((name, ip) in non_global()) {
        prop_assert!(!classify(ip).is_public(), "{ip} ({name}) classified public");
        prop_assert!(UrlPolicy::default().permits_address(ip).is_err(), "{ip} ({name}) permitted");
        let raw = url_for(ip);
        let refused = matches!(UrlPolicy::default().check(&raw), Err(UrlRejection::Address(_)));
        prop_assert!(refused, "{raw} ({name}) was not refused");
    }

    /// The classifier and the oracle agree everywhere: what the registries
    /// (and the other refused blocks) leave out is accepted.
    #[test]
    fn classifier_matches_the_registries(ip in any_address()) {
        let refused = !classify(ip).is_public();
        prop_assert_eq!(refused, oracle_refuses(ip), "{} classified {:?}", ip, classify(ip));
        if !refused {
            prop_assert!(UrlPolicy::default().check(&url_for(ip)).is_ok(), "{} refused as a URL", url_for(ip));
        }
    }
}

/// Each globally reachable entry outside every refused block is accepted
/// at both its ends, and each refused entry is refused at both its ends.
#[test]
fn every_entry_is_judged_at_its_ends() {
    for (block, name, _) in IPV4_REGISTRY.iter().chain(IPV6_REGISTRY) {
        let net: ipnet::IpNet = block.parse().unwrap();
        for ip in [net.network(), net.broadcast()] {
            assert_eq!(!classify(ip).is_public(), oracle_refuses(ip), "{ip} ({name}): {:?}", classify(ip));
        }
    }
    for accepted in ["192.31.196.1", "192.52.193.1", "192.175.48.1", "2620:4f:8000::1"] {
        assert!(classify(accepted.parse().unwrap()).is_public(), "{accepted}");
    }
}
