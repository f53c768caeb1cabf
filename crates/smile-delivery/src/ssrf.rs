//! The SSRF guard: production deliveries never reach internal addresses.
//!
//! It is applied to the address a connection is actually made to (the resolver hands the
//! connector only allowed addresses), so a DNS answer that changes between a check and the
//! connect cannot slip through.

use crate::error::BoxError;
use hyper_util::client::legacy::connect::dns::Name;
use ipnet::IpNet;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Why `ip` may not be reached, or None if it may.
pub fn forbidden_reason(ip: IpAddr, allow: &[IpNet]) -> Option<&'static str> {
    if allow.iter().any(|net| net.contains(&ip)) {
        return None;
    }
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

/// The IANA IPv4 special-purpose blocks a delivery may not reach, with what each is.
const V4_BLOCKS: [([u8; 4], u8, &str); 16] = [
    ([0, 0, 0, 0], 8, "unspecified (this network)"),
    ([10, 0, 0, 0], 8, "private"),
    ([100, 64, 0, 0], 10, "shared address space (CGNAT)"),
    ([127, 0, 0, 0], 8, "loopback"),
    ([169, 254, 0, 0], 16, "link-local"),
    ([172, 16, 0, 0], 12, "private"),
    ([192, 0, 0, 0], 24, "IETF protocol assignments"),
    ([192, 0, 2, 0], 24, "documentation"),
    ([192, 88, 99, 0], 24, "6to4 relay anycast"),
    ([192, 168, 0, 0], 16, "private"),
    ([198, 18, 0, 0], 15, "benchmarking"),
    ([198, 51, 100, 0], 24, "documentation"),
    ([203, 0, 113, 0], 24, "documentation"),
    ([224, 0, 0, 0], 4, "multicast"),
    ([240, 0, 0, 0], 4, "reserved"),
    ([255, 255, 255, 255], 32, "broadcast"),
];

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let bits = u32::from(ip);
    V4_BLOCKS
        .iter()
        .rev() // the broadcast address is inside 240/4; name it for what it is
        .find(|(net, len, _)| {
            let mask = if *len == 0 { 0 } else { u32::MAX << (32 - u32::from(*len)) };
            bits & mask == u32::from(Ipv4Addr::from(*net)) & mask
        })
        .map(|(_, _, why)| *why)
}

fn v4_from(hi: u16, lo: u16) -> Ipv4Addr {
    Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo))
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    // Forms that carry an IPv4 address: the embedded address decides.
    let embedded = match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] => Some(v4_from(hi, lo)), // v4-mapped
        [0, 0, 0, 0, 0xffff, 0, hi, lo] => Some(v4_from(hi, lo)), // v4-translated (SIIT)
        [0, 0, 0, 0, 0, 0, hi, lo] => Some(v4_from(hi, lo)),      // v4-compatible
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(v4_from(hi, lo)), // NAT64, well-known
        [0x64, 0xff9b, 1, a, b, c, ..] => Some(v4_from(a, ((b & 0xff) << 8) | (c >> 8))), // NAT64, local /48
        [0x2002, hi, lo, ..] => Some(v4_from(hi, lo)),            // 6to4
        _ => None,
    };
    if let Some(v4) = embedded {
        return v4_reason(v4);
    }
    match s[0] {
        0x2001 if s[1] == 0 => Some("Teredo"),
        0x2001 if s[1] == 0x0db8 => Some("documentation"),
        first if first & 0xfe00 == 0xfc00 => Some("unique-local"),
        first if first & 0xffc0 == 0xfe80 => Some("link-local"),
        first if first & 0xffc0 == 0xfec0 => Some("site-local"),
        first if first & 0xff00 == 0xff00 => Some("multicast"),
        0x64 if s[1] == 0xff9b => Some("NAT64"),
        _ => None,
    }
}

/// The error a refused address turns into; its text ends up in the attempt log.
#[derive(Debug, thiserror::Error)]
#[error("blocked by the SSRF guard: {host} resolves only to internal addresses ({detail})")]
pub struct Blocked {
    host: String,
    detail: String,
}

impl Blocked {
    pub fn new(host: &str, ip: IpAddr, reason: &str) -> Self {
        Blocked { host: host.to_owned(), detail: format!("{ip} is {reason}") }
    }
}

/// Resolves an endpoint's host name; with a guard, hands the connector only the addresses it
/// allows.
#[derive(Debug, Clone)]
pub struct Resolver {
    guard: Option<Arc<Vec<IpNet>>>,
}

impl Resolver {
    /// Any address: sandbox subscriptions, and the operator's own proxy.
    pub fn open() -> Resolver {
        Resolver { guard: None }
    }

    /// Only addresses the guard allows, or those in `allow`.
    pub fn guarded(allow: Arc<Vec<IpNet>>) -> Resolver {
        Resolver { guard: Some(allow) }
    }
}

impl tower_service::Service<Name> for Resolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let guard = self.guard.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let Some(allow) = guard else { return Ok(resolved.into_iter()) };
            let mut refused = None;
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| match forbidden_reason(addr.ip(), &allow) {
                    Some(reason) => {
                        refused.get_or_insert((addr.ip(), reason));
                        false
                    }
                    None => true,
                })
                .collect();
            if allowed.is_empty() {
                metrics::counter!(smile_core::metric::SSRF_REFUSALS, "at" => "attempt").increment(1);
                let (ip, reason) = refused.unwrap_or((IpAddr::V4(Ipv4Addr::UNSPECIFIED), "unresolvable"));
                return Err(Box::new(Blocked::new(&host, ip, reason)) as BoxError);
            }
            Ok(allowed.into_iter())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(s: &str) -> Option<&'static str> {
        forbidden_reason(s.parse().expect("ip"), &[])
    }

    /// How a subscription URL's host is read: the WHATWG URL parser, as at create and at
    /// connect (decimal, hex, octal and short IPv4 forms, brackets, userinfo, a trailing dot).
    fn url_reason(url: &str) -> Option<&'static str> {
        let parsed = url::Url::parse(url).expect("url");
        let ip = match parsed.host().expect("host") {
            url::Host::Ipv4(ip) => IpAddr::V4(ip),
            url::Host::Ipv6(ip) => IpAddr::V6(ip),
            url::Host::Domain(d) => panic!("{url}: {d} is a name, checked when it resolves"),
        };
        forbidden_reason(ip, &[])
    }

    #[test]
    fn internal_targets_are_refused_in_every_notation() {
        let refused = [
            "http://127.0.0.1/",
            "http://127.1/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0x7f.0.0.1/",
            "http://0177.0.0.1/",
            "http://017700000001/",
            "http://127.0.0.1./",
            "http://user:pass@127.0.0.1:8080/x",
            "http://0/",
            "http://0.0.0.0/",
            "http://10.0.0.1/",
            "http://100.64.0.1/",
            "http://100.127.255.255/",
            "http://169.254.169.254/latest/meta-data/",
            "http://0xa9fea9fe/",
            "http://172.16.0.1/",
            "http://172.31.255.255/",
            "http://192.0.0.1/",
            "http://192.0.2.1/",
            "http://192.88.99.1/",
            "http://192.168.0.1/",
            "http://198.18.0.1/",
            "http://198.19.255.255/",
            "http://198.51.100.7/",
            "http://203.0.113.9/",
            "http://224.0.0.1/",
            "http://239.255.255.250/",
            "http://240.0.0.1/",
            "http://255.255.255.255/",
            "http://[::]/",
            "http://[::1]/",
            "http://[0:0:0:0:0:0:0:1]/",
            "http://[::127.0.0.1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[::ffff:0:127.0.0.1]/",
            "http://[::ffff:169.254.169.254]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[64:ff9b::10.0.0.1]/",
            "http://[64:ff9b:1::]/",
            "http://[2002:a9fe:a9fe::1]/",
            "http://[2002:7f00:1::]/",
            "http://[2001::1]/",
            "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
            "http://[2001:db8::1]/",
            "http://[fc00::1]/",
            "http://[fd12:3456::1]/",
            "http://[fe80::1]/",
            "http://[febf::1]/",
            "http://[fec0::1]/",
            "http://[ff02::1]/",
            "https://user@[::1]:443/hook",
        ];
        for url in refused {
            assert!(url_reason(url).is_some(), "{url} must be refused");
        }
    }

    #[test]
    fn public_targets_pass() {
        for url in [
            "https://93.184.216.34/",
            "https://8.8.8.8/",
            "https://1.1.1.1./",
            "https://[2606:2800:220:1::1]/",
            "https://[64:ff9b::808:808]/", // NAT64 of a public address
            "https://[2002:808:808::1]/",  // 6to4 of a public address
            "https://100.128.0.1/",
            "https://172.32.0.1/",
            "https://198.20.0.1/",
        ] {
            assert_eq!(url_reason(url), None, "{url} is public");
        }
    }

    #[test]
    fn each_block_is_named() {
        assert_eq!(reason("255.255.255.255"), Some("broadcast"));
        assert_eq!(reason("169.254.169.254"), Some("link-local"));
        assert_eq!(reason("::ffff:10.0.0.1"), Some("private"));
        assert_eq!(reason("2001::1"), Some("Teredo"));
        assert_eq!(reason("fec0::1"), Some("site-local"));
    }

    #[test]
    fn the_allow_list_wins() {
        let allow: Vec<IpNet> = vec!["127.0.0.0/8".parse().expect("net")];
        assert_eq!(forbidden_reason("127.0.0.1".parse().expect("ip"), &allow), None);
    }
}
