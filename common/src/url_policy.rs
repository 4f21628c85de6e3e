//! Which endpoint URLs Herald will send to.
//!
//! Two layers guard against server-side request forgery. At registration,
//! [`UrlPolicy::check`] enforces scheme, port, TLD and userinfo rules and,
//! when the host is an IP literal, its address class; [`UrlPolicy::resolve`]
//! then resolves names and refuses any non-public answer. At delivery time
//! the dispatcher's HTTP client resolves through the same classifier, because
//! DNS may answer differently later. Numeric host tricks (`0x7f000001`,
//! `2130706433`, `[::ffff:127.0.0.1]`) are normalised by the WHATWG URL parser
//! before classification, and IPv4-mapped or -compatible IPv6 addresses are
//! classified by the IPv4 address they carry.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use url::{Host, Url};

/// Why an address is not public.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressClass {
    Public,
    Loopback,
    Private,
    LinkLocal,
    SharedCgnat,
    Unspecified,
    Multicast,
    Broadcast,
    Documentation,
    Reserved,
}

impl AddressClass {
    pub fn is_public(self) -> bool {
        self == AddressClass::Public
    }
}

pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, b, c, _] = ip.octets();
    match () {
        _ if ip.is_unspecified() || a == 0 => AddressClass::Unspecified,
        _ if ip.is_loopback() => AddressClass::Loopback,
        _ if ip.is_private() => AddressClass::Private,
        _ if ip.is_link_local() => AddressClass::LinkLocal,
        _ if a == 100 && (64..128).contains(&b) => AddressClass::SharedCgnat,
        _ if ip.is_broadcast() => AddressClass::Broadcast,
        _ if ip.is_multicast() => AddressClass::Multicast,
        _ if ip.is_documentation() => AddressClass::Documentation,
        // 192.0.0.0/24 protocol assignments (whole: its anycast /32s are no webhook receivers),
        // 192.88.99.0/24 the terminated 6to4 relay anycast, 198.18.0.0/15 benchmarking,
        // 240.0.0.0/4 reserved.
        _ if (a == 192 && b == 0 && c == 0)
            || (a == 192 && b == 88 && c == 99)
            || (a == 198 && (b & 0xfe) == 18)
            || a >= 240 =>
        {
            AddressClass::Reserved
        }
        _ => AddressClass::Public,
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    if ip.is_unspecified() {
        return AddressClass::Unspecified;
    }
    if ip.is_loopback() {
        return AddressClass::Loopback;
    }
    if let Some(v4) = embedded_v4(ip) {
        return classify_v4(v4);
    }
    let bits = u128::from(ip);
    V6_BLOCKS
        .iter()
        .find(|(base, len, _)| bits & v6_mask(*len) == *base)
        .map_or(AddressClass::Public, |(_, _, class)| *class)
}

fn v6_mask(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

/// IPv6 blocks refused whatever follows their prefix. Where the IANA
/// special-purpose registry marks a block not globally reachable, the whole
/// block is refused, including more specific entries it marks reachable
/// (anycast services, AMT, AS112, ORCHIDv2, drone tags): none of them is a
/// webhook receiver, and an identifier prefix is not a locator.
const V6_BLOCKS: &[(u128, u8, AddressClass)] = &[
    // ::ffff:0:a.b.c.d, IPv4-translated (RFC 6145): reached through a translator.
    (0xffff << 48, 96, AddressClass::Reserved),
    // 64:ff9b::/96 NAT64 and 64:ff9b:1::/48 local-use NAT64 reach IPv4 through a translator.
    (0x0064 << 112, 16, AddressClass::Reserved),
    // 100::/64 discard-only and 100:0:0:1::/64 dummy prefix.
    (0x0100 << 112, 16, AddressClass::Reserved),
    // 2001::/23 IETF protocol assignments: Teredo 2001::/32 (it tunnels to an
    // IPv4 address), benchmarking 2001:2::/48, ORCHID 2001:10::/28 and
    // ORCHIDv2 2001:20::/28 among them.
    (0x2001 << 112, 23, AddressClass::Reserved),
    (0x2001_0db8 << 96, 32, AddressClass::Documentation),
    (0x3fff << 112, 20, AddressClass::Documentation),
    // Segment Routing (SRv6) SIDs.
    (0x5f00 << 112, 16, AddressClass::Reserved),
    // Unique local.
    (0xfc00 << 112, 7, AddressClass::Private),
    (0xfe80 << 112, 10, AddressClass::LinkLocal),
    // Deprecated site-local.
    (0xfec0 << 112, 10, AddressClass::Private),
    (0xff00 << 112, 8, AddressClass::Multicast),
];

/// IPv4 carried inside IPv6: mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`,
/// and 6to4 `2002:aabb:ccdd::`.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if s[..5] == [0, 0, 0, 0, 0] && (s[5] == 0xffff || (s[5] == 0 && !ip.is_loopback() && !ip.is_unspecified())) {
        return Some(tail);
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8));
    }
    None
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlRejection {
    #[error("not a valid absolute URL")]
    Malformed,
    #[error("scheme must be https (or http when HERALD_ALLOW_HTTP is set)")]
    Scheme,
    #[error("credentials in the URL are not allowed; use the auth field")]
    Userinfo,
    #[error("port {0} is not allowed")]
    Port(u16),
    #[error("top-level domain is not allowed")]
    Tld,
    #[error("host resolves to a non-public address ({0:?})")]
    Address(AddressClass),
    #[error("host could not be resolved")]
    Unresolvable,
    #[error("URL is longer than 2048 characters")]
    TooLong,
}

#[derive(Clone, Debug, Default)]
pub struct UrlPolicy {
    pub allow_private_networks: bool,
    pub allow_http: bool,
    pub allowed_ports: Vec<u16>,
    pub allowed_tlds: Vec<String>,
    /// Operator allow-list: addresses inside these nets pass even when not public.
    pub allowed_cidrs: Vec<IpNet>,
}

impl UrlPolicy {
    /// May Herald connect to this address?
    pub fn permits_address(&self, ip: IpAddr) -> Result<(), UrlRejection> {
        let class = classify(ip);
        if class.is_public() || self.allow_private_networks || self.allowed_cidrs.iter().any(|net| net.contains(&ip)) {
            Ok(())
        } else {
            Err(UrlRejection::Address(class))
        }
    }

    /// Static checks, without DNS. IP-literal hosts are classified here.
    pub fn check(&self, raw: &str) -> Result<Url, UrlRejection> {
        if raw.len() > 2048 {
            return Err(UrlRejection::TooLong);
        }
        let url = Url::parse(raw).map_err(|_| UrlRejection::Malformed)?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            _ => return Err(UrlRejection::Scheme),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlRejection::Userinfo);
        }
        let port = url.port_or_known_default().ok_or(UrlRejection::Malformed)?;
        if !self.allowed_ports.is_empty() && !self.allowed_ports.contains(&port) {
            return Err(UrlRejection::Port(port));
        }
        match url.host().ok_or(UrlRejection::Malformed)? {
            Host::Ipv4(ip) => self.permits_address(IpAddr::V4(ip))?,
            Host::Ipv6(ip) => self.permits_address(IpAddr::V6(ip))?,
            Host::Domain(name) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                if !self.allowed_tlds.is_empty() {
                    let tld = name.rsplit('.').next().unwrap_or_default();
                    if !name.contains('.') || !self.allowed_tlds.iter().any(|t| t == tld) {
                        return Err(UrlRejection::Tld);
                    }
                }
                if !self.allow_private_networks && (name == "localhost" || name.ends_with(".localhost")) {
                    return Err(UrlRejection::Address(AddressClass::Loopback));
                }
            }
        }
        Ok(url)
    }

    /// [`check`](Self::check), then resolve a domain host and refuse it if
    /// any address it resolves to is not permitted.
    pub async fn check_and_resolve(&self, raw: &str) -> Result<Url, UrlRejection> {
        let url = self.check(raw)?;
        if let Some(Host::Domain(name)) = url.host() {
            if self.allow_private_networks {
                return Ok(url);
            }
            let port = url.port_or_known_default().unwrap_or(443);
            let addrs = tokio::net::lookup_host((name, port)).await.map_err(|_| UrlRejection::Unresolvable)?;
            let mut any = false;
            for addr in addrs {
                any = true;
                self.permits_address(addr.ip())?;
            }
            if !any {
                return Err(UrlRejection::Unresolvable);
            }
        }
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> UrlPolicy {
        UrlPolicy::default()
    }

    #[test]
    fn classifies_every_non_public_range() {
        let cases = [
            ("127.0.0.1", AddressClass::Loopback),
            ("10.1.2.3", AddressClass::Private),
            ("172.16.0.1", AddressClass::Private),
            ("192.168.1.1", AddressClass::Private),
            ("169.254.169.254", AddressClass::LinkLocal),
            ("100.64.0.1", AddressClass::SharedCgnat),
            ("100.127.255.255", AddressClass::SharedCgnat),
            ("0.0.0.0", AddressClass::Unspecified),
            ("224.0.0.1", AddressClass::Multicast),
            ("255.255.255.255", AddressClass::Broadcast),
            ("192.0.2.1", AddressClass::Documentation),
            ("198.18.0.1", AddressClass::Reserved),
            ("::1", AddressClass::Loopback),
            ("::", AddressClass::Unspecified),
            ("fe80::1", AddressClass::LinkLocal),
            ("fd00::1", AddressClass::Private),
            ("ff02::1", AddressClass::Multicast),
            ("::ffff:127.0.0.1", AddressClass::Loopback),
            ("::ffff:10.0.0.1", AddressClass::Private),
            ("::ffff:169.254.169.254", AddressClass::LinkLocal),
            ("2002:7f00:1::", AddressClass::Loopback),
        ];
        for (ip, class) in cases {
            assert_eq!(classify(ip.parse().unwrap()), class, "{ip}");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "100.128.0.1", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(classify(ip.parse().unwrap()).is_public(), "{ip}");
        }
    }

    /// The IANA special-purpose blocks added last, at both edges of each.
    #[test]
    fn classifies_the_remaining_special_purpose_blocks() {
        let refused = [
            ("192.88.99.0", AddressClass::Reserved),
            ("192.88.99.255", AddressClass::Reserved),
            ("198.18.0.0", AddressClass::Reserved),
            ("198.19.255.255", AddressClass::Reserved),
            ("192.0.0.9", AddressClass::Reserved),
            ("192.0.0.171", AddressClass::Reserved),
            ("240.0.0.1", AddressClass::Reserved),
            ("::ffff:0:8.8.8.8", AddressClass::Reserved),
            ("::ffff:0:0:0", AddressClass::Reserved),
            ("::ffff:0:ffff:ffff", AddressClass::Reserved),
            ("2001::1", AddressClass::Reserved),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", AddressClass::Reserved),
            ("2001:1ff:ffff::", AddressClass::Reserved),
            ("2001:2::1", AddressClass::Reserved),
            ("2001:10::1", AddressClass::Reserved),
            ("2001:20::1", AddressClass::Reserved),
            ("2001:2f:ffff::1", AddressClass::Reserved),
            ("64:ff9b:1::1", AddressClass::Reserved),
            ("64:ff9b::808:808", AddressClass::Reserved),
            ("100::1", AddressClass::Reserved),
            ("100:0:0:1::1", AddressClass::Reserved),
            ("2001:db8::1", AddressClass::Documentation),
            ("3fff::1", AddressClass::Documentation),
            ("3fff:fff:ffff::", AddressClass::Documentation),
            ("5f00::1", AddressClass::Reserved),
            ("fc00::1", AddressClass::Private),
            ("fdff:ffff::1", AddressClass::Private),
            ("fe80::1", AddressClass::LinkLocal),
            ("febf:ffff::1", AddressClass::LinkLocal),
            ("2002:c058:6301::", AddressClass::Reserved),
        ];
        for (ip, class) in refused {
            assert_eq!(classify(ip.parse().unwrap()), class, "{ip}");
        }
        let public = [
            "192.88.98.255",
            "192.88.100.0",
            "198.17.255.255",
            "198.20.0.0",
            "192.31.196.1",
            "192.52.193.1",
            "192.175.48.1",
            "2001:200::1",
            "2001:db7:ffff::1",
            "2001:db9::1",
            "3fff:1000::1",
            "3ffe:ffff::1",
            "5eff::1",
            "5f01::1",
            "2620:4f:8000::1",
            "2a00:1450:4001::1",
        ];
        for ip in public {
            assert!(classify(ip.parse().unwrap()).is_public(), "{ip}: {:?}", classify(ip.parse().unwrap()));
        }
    }

    #[test]
    fn numeric_host_tricks_are_caught() {
        for url in [
            "https://0x7f000001/",
            "https://2130706433/",
            "https://0177.0.0.1/",
            "https://127.1/",
            "https://[::ffff:127.0.0.1]/",
            "https://[::ffff:7f00:1]/",
            "https://169.254.169.254/latest/meta-data",
            "https://localhost/",
            "https://api.localhost/",
        ] {
            assert!(matches!(strict().check(url), Err(UrlRejection::Address(_))), "{url}");
        }
    }

    #[test]
    fn url_rules() {
        let p = strict();
        assert_eq!(p.check("http://example.com/").unwrap_err(), UrlRejection::Scheme);
        assert_eq!(p.check("ftp://example.com/").unwrap_err(), UrlRejection::Scheme);
        assert_eq!(p.check("https://u:p@example.com/").unwrap_err(), UrlRejection::Userinfo);
        assert_eq!(p.check("not a url").unwrap_err(), UrlRejection::Malformed);
        assert!(p.check("https://example.com/hook").is_ok());

        let seed000 = UrlPolicy {
            allowed_ports: vec![443],
            allowed_tlds: ["com", "net", "org", "edu", "ca", "io", "site", "se", "sa"].map(String::from).to_vec(),
            ..UrlPolicy::default()
        };
        assert!(seed000.check("https://hooks.example.io/x").is_ok());
        assert_eq!(seed000.check("https://example.com:8443/").unwrap_err(), UrlRejection::Port(8443));
        assert_eq!(seed000.check("https://example.xyz/").unwrap_err(), UrlRejection::Tld);
    }

    #[test]
    fn private_networks_and_allow_list() {
        let open = UrlPolicy { allow_private_networks: true, allow_http: true, ..UrlPolicy::default() };
        assert!(open.check("http://127.0.0.1:9000/").is_ok());
        let listed = UrlPolicy { allowed_cidrs: vec!["10.20.0.0/16".parse().unwrap()], ..UrlPolicy::default() };
        assert!(listed.check("https://10.20.1.1/").is_ok());
        assert!(listed.check("https://10.21.1.1/").is_err());
    }
}
