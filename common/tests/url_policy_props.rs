//! Property tests of the endpoint URL guard ([`UrlPolicy::check`]).
//!
//! The oracle here is written independently of the classifier: a list of the
//! IANA special-purpose IPv4 and IPv6 blocks that are not globally reachable.
//! Every address generated inside one of them must be refused in every
//! spelling the WHATWG URL parser accepts for it (dotted, short dotted,
//! decimal, hex, octal, per-octet hex and octal, IPv4-mapped, -compatible
//! and 6to4 IPv6); every address outside all of them must pass; and no input
//! string may make the check panic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use herald_common::url_policy::{UrlPolicy, UrlRejection, classify};
use proptest::prelude::*;
use proptest::test_runner::Config;
use url::Host;

/// Cases per property: enough to visit every block many times over, small
/// enough that the whole file runs in a few seconds.
const CASES: u32 = 2_000;

/// IPv4 blocks that are not globally reachable (RFC 6890 and successors).
const NON_PUBLIC_V4: &[(&str, [u8; 4], u8)] = &[
    ("this network", [0, 0, 0, 0], 8),
    ("rfc1918 10/8", [10, 0, 0, 0], 8),
    ("cgnat", [100, 64, 0, 0], 10),
    ("loopback", [127, 0, 0, 0], 8),
    ("link-local and metadata", [169, 254, 0, 0], 16),
    ("rfc1918 172.16/12", [172, 16, 0, 0], 12),
    ("ietf protocol assignments", [192, 0, 0, 0], 24),
    ("test-net-1", [192, 0, 2, 0], 24),
    ("rfc1918 192.168/16", [192, 168, 0, 0], 16),
    ("benchmarking", [198, 18, 0, 0], 15),
    ("test-net-2", [198, 51, 100, 0], 24),
    ("test-net-3", [203, 0, 113, 0], 24),
    ("multicast", [224, 0, 0, 0], 4),
    ("reserved and broadcast", [240, 0, 0, 0], 4),
];

/// IPv6 blocks that are not globally reachable and carry no IPv4 address.
const NON_PUBLIC_V6: &[(&str, u128, u8)] = &[
    ("loopback", 1, 128),
    ("unspecified", 0, 128),
    ("unique local", 0xfc00 << 112, 7),
    ("link-local", 0xfe80 << 112, 10),
    ("site-local", 0xfec0 << 112, 10),
    ("multicast", 0xff00 << 112, 8),
    ("documentation", 0x2001_0db8 << 96, 32),
    ("nat64", 0x0064_ff9b << 96, 96),
    ("discard", 0x0100 << 112, 64),
];

fn in_v4_block(ip: u32, (_, base, len): &(&str, [u8; 4], u8)) -> bool {
    let mask = if *len == 0 { 0 } else { u32::MAX << (32 - len) };
    ip & mask == u32::from_be_bytes(*base) & mask
}

fn is_non_public_v4(ip: u32) -> bool {
    NON_PUBLIC_V4.iter().any(|block| in_v4_block(ip, block))
}

/// An address inside one of the non-public IPv4 blocks, with its block's name.
fn non_public_v4() -> impl Strategy<Value = (&'static str, Ipv4Addr)> {
    (0..NON_PUBLIC_V4.len(), any::<u32>()).prop_map(|(i, bits)| {
        let (name, base, len) = NON_PUBLIC_V4[i];
        let host_mask = u32::MAX >> len;
        (name, Ipv4Addr::from((u32::from_be_bytes(base) & !host_mask) | (bits & host_mask)))
    })
}

fn non_public_v6() -> impl Strategy<Value = (&'static str, Ipv6Addr)> {
    (0..NON_PUBLIC_V6.len(), any::<u128>()).prop_map(|(i, bits)| {
        let (name, base, len) = NON_PUBLIC_V6[i];
        let host_mask = if len == 128 { 0 } else { u128::MAX >> len };
        (name, Ipv6Addr::from((base & !host_mask) | (bits & host_mask)))
    })
}

fn public_v4() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_filter("a globally reachable address", |ip| !is_non_public_v4(*ip)).prop_map(Ipv4Addr::from)
}

/// Every way a URL host can spell this IPv4 address.
fn spellings(ip: Ipv4Addr) -> Vec<String> {
    let n = u32::from(ip);
    let [a, b, c, d] = ip.octets();
    let low16 = n & 0xffff;
    let low24 = n & 0xff_ffff;
    let [s6, s7] = [(n >> 16) as u16, n as u16];
    vec![
        format!("{ip}"),
        format!("{ip}."),
        format!("{n}"),
        format!("0x{n:x}"),
        format!("0X{n:08X}"),
        format!("0{n:o}"),
        format!("{a}.{b}.{low16}"),
        format!("{a}.{low24}"),
        format!("0x{a:x}.0x{b:x}.0x{c:x}.0x{d:x}"),
        format!("0{a:o}.0{b:o}.0{c:o}.0{d:o}"),
        format!("0x{a:02x}.{b}.0{c:o}.{d}"),
        format!("[::ffff:{ip}]"),
        format!("[::ffff:{s6:x}:{s7:x}]"),
        format!("[0:0:0:0:0:FFFF:{s6:X}:{s7:X}]"),
        format!("[2002:{s6:x}:{s7:x}::]"),
        format!("[2002:{s6:x}:{s7:x}:1:2:3:4:5]"),
    ]
}

fn strict() -> UrlPolicy {
    UrlPolicy::default()
}

/// The policies an operator can configure, from locked down to wide open.
fn policies() -> Vec<UrlPolicy> {
    vec![
        strict(),
        UrlPolicy { allow_http: true, ..UrlPolicy::default() },
        UrlPolicy {
            allowed_ports: vec![443],
            allowed_tlds: ["com", "net", "org", "io"].map(String::from).to_vec(),
            ..UrlPolicy::default()
        },
        UrlPolicy { allowed_cidrs: vec!["10.20.0.0/16".parse().unwrap()], ..UrlPolicy::default() },
        UrlPolicy { allow_private_networks: true, allow_http: true, ..UrlPolicy::default() },
    ]
}

fn is_address_rejection(result: &Result<url::Url, UrlRejection>) -> bool {
    matches!(result, Err(UrlRejection::Address(class)) if !class.is_public())
}

proptest! {
    #![proptest_config(Config::with_cases(CASES))]

    /// Every spelling of every non-public IPv4 address is refused as an
    /// address, over https and (with HERALD_ALLOW_HTTP) over http, with or
    /// without a port, path and query.
    #[test]
    fn non_public_ipv4_is_refused_in_every_spelling(
        (block, ip) in non_public_v4(),
        port in prop::option::of(1u16..),
        path in "(/[a-z0-9._~-]{0,12}){0,3}(\\?[a-z]=[0-9]{1,4})?",
    ) {
        prop_assert!(!classify(IpAddr::V4(ip)).is_public(), "{ip} in {block} classified public");
        let http = UrlPolicy { allow_http: true, ..UrlPolicy::default() };
        let port = port.map(|p| format!(":{p}")).unwrap_or_default();
        for host in spellings(ip) {
            for (scheme, policy) in [("https", &strict()), ("http", &http)] {
                let raw = format!("{scheme}://{host}{port}{path}");
                let result = policy.check(&raw);
                prop_assert!(is_address_rejection(&result), "{raw} ({block}, {ip}) was not refused: {result:?}");
            }
        }
    }

    /// Non-public IPv6 addresses (loopback, unique-local, link-local,
    /// site-local, multicast, documentation, NAT64, discard) are refused.
    #[test]
    fn non_public_ipv6_is_refused((block, ip) in non_public_v6()) {
        let raw = format!("https://[{ip}]/hook");
        let result = strict().check(&raw);
        prop_assert!(is_address_rejection(&result), "{raw} ({block}) was not refused: {result:?}");
        let expanded = ip.segments().map(|s| format!("{s:X}")).join(":");
        let raw = format!("https://[{expanded}]:8443/");
        let result = strict().check(&raw);
        prop_assert!(is_address_rejection(&result), "{raw} ({block}) was not refused: {result:?}");
    }

    /// Globally reachable IPv4 addresses pass in every spelling, and the URL
    /// Herald keeps names the same address.
    #[test]
    fn public_ipv4_passes_in_every_spelling(ip in public_v4()) {
        prop_assert!(classify(IpAddr::V4(ip)).is_public(), "{ip} classified {:?}", classify(IpAddr::V4(ip)));
        for host in spellings(ip) {
            let raw = format!("https://{host}/hook");
            let url = strict().check(&raw);
            prop_assert!(url.is_ok(), "{raw} ({ip}) was refused: {url:?}");
            let url = url.unwrap();
            let carried = match url.host() {
                Some(Host::Ipv4(v4)) => Some(v4),
                Some(Host::Ipv6(v6)) if v6.segments()[0] == 0x2002 => {
                    let s = v6.segments();
                    Some(Ipv4Addr::from((u32::from(s[1]) << 16) | u32::from(s[2])))
                }
                Some(Host::Ipv6(v6)) => v6.to_ipv4_mapped(),
                _ => None,
            };
            prop_assert_eq!(carried, Some(ip), "{} normalised to {}", raw, url);
        }
    }

    /// The operator allow-list opens exactly its own range.
    #[test]
    fn allowed_cidrs_open_only_their_range((block, ip) in non_public_v4()) {
        let net: ipnet::Ipv4Net = format!("{ip}/24").parse::<ipnet::Ipv4Net>().unwrap().trunc();
        let policy = UrlPolicy { allowed_cidrs: vec![net.into()], ..UrlPolicy::default() };
        // The allow-list holds IPv4 nets, so it opens the IPv4 spellings;
        // the same address carried in IPv6 stays refused, the safe side.
        for host in spellings(ip).into_iter().filter(|h| !h.starts_with('[')) {
            let raw = format!("https://{host}/");
            let result = policy.check(&raw);
            prop_assert!(result.is_ok(), "{raw} ({block}) inside allowed {net} was refused: {result:?}");
        }
        let outside = Ipv4Addr::from(u32::from(ip) ^ 0x0000_0100);
        if !net.contains(&outside) && is_non_public_v4(u32::from(outside)) {
            let raw = format!("https://{outside}/");
            prop_assert!(is_address_rejection(&policy.check(&raw)), "{raw} outside allowed {net} passed");
        }
    }

    /// No string makes the check panic, under any policy.
    #[test]
    fn arbitrary_strings_never_panic(raw in any::<String>()) {
        for policy in policies() {
            let _ = policy.check(&raw);
            let _ = policy.check(&format!("https://{raw}"));
        }
    }

    /// URL-shaped noise aimed at the host parser: whatever the strict
    /// policy accepts is https, carries no userinfo, and has a host that is
    /// neither a non-public IP literal nor a localhost name.
    #[test]
    fn whatever_strict_accepts_is_safe(
        scheme in prop_oneof![6 => Just(String::from("https")), 1 => "(http|HTTPS|ftp|file|javascript|)"],
        sep in prop_oneof![6 => Just(String::from("://")), 1 => "(:/|:|:///|:\\\\\\\\)"],
        userinfo in prop_oneof![8 => Just(String::new()), 1 => "[a-z]{1,4}(:[a-z0-9%]{0,4})?@"],
        host in prop_oneof![
            "[0-9xX.]{1,20}",
            "(0x[0-9a-f]{1,8}|0[0-7]{1,11}|[0-9]{1,10})(\\.(0x[0-9a-f]{1,2}|0[0-7]{1,3}|[0-9]{1,5})){0,3}\\.?",
            "\\[[0-9a-fA-F:.]{2,39}\\]",
            "\\[(::ffff:|::|2002:)[0-9a-f:.]{1,20}\\]",
            "(%3[0-9]|%2[eE]|[0-9.]){1,15}",
            "[a-z0-9.]{0,8}(localhost|LOCALHOST|lOcAlHoSt)\\.?",
            "[0-9a-fA-FxX.:\\[\\]%lochstLOCH]{0,40}",
        ],
        rest in "(:[0-9]{0,6})?(/[ -~]{0,16})?",
    ) {
        let raw = format!("{scheme}{sep}{userinfo}{host}{rest}");
        for policy in policies() {
            let _ = policy.check(&raw);
        }
        if let Ok(url) = strict().check(&raw) {
            prop_assert_eq!(url.scheme(), "https", "{} accepted", raw);
            prop_assert!(url.username().is_empty() && url.password().is_none(), "{raw} accepted with userinfo");
            match url.host() {
                Some(Host::Ipv4(ip)) => prop_assert!(!is_non_public_v4(u32::from(ip)), "{raw} accepted as {ip}"),
                Some(Host::Ipv6(ip)) => prop_assert!(classify(IpAddr::V6(ip)).is_public(), "{raw} accepted as {ip}"),
                Some(Host::Domain(name)) => {
                    let name = name.trim_end_matches('.').to_ascii_lowercase();
                    prop_assert!(name != "localhost" && !name.ends_with(".localhost"), "{raw} accepted as {name}");
                }
                None => prop_assert!(false, "{raw} accepted without a host"),
            }
        }
    }
}
