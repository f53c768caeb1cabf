//! The SSRF guard: production deliveries never reach internal addresses.
//!
//! It is applied to the address a connection is actually made to (the resolver hands the
//! connector only allowed addresses), so a DNS answer that changes between a check and the
//! connect cannot slip through.

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

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

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if ip.is_broadcast() || a >= 240 {
        Some("reserved")
    } else {
        None
    }
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_reason(v4);
    }
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if first & 0xfe00 == 0xfc00 {
        Some("unique-local")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else {
        None
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

/// A resolver that hands the connector only addresses the guard allows.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    pub allow: Arc<Vec<IpNet>>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.allow.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
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
                let (ip, reason) = refused.unwrap_or((IpAddr::V4(Ipv4Addr::UNSPECIFIED), "unresolvable"));
                return Err(Box::new(Blocked::new(&host, ip, reason)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(s: &str) -> Option<&'static str> {
        forbidden_reason(s.parse().expect("ip"), &[])
    }

    #[test]
    fn internal_addresses_are_refused() {
        for (ip, why) in [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "private"),
            ("169.254.169.254", "link-local"),
            ("224.0.0.1", "multicast"),
            ("0.0.0.0", "unspecified"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fd00::1", "unique-local"),
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
            ("::ffff:10.0.0.1", "private"),
            ("::ffff:127.0.0.1", "loopback"),
        ] {
            assert_eq!(reason(ip), Some(why), "{ip}");
        }
    }

    #[test]
    fn public_addresses_pass_and_allow_list_wins() {
        assert_eq!(reason("93.184.216.34"), None);
        assert_eq!(reason("2606:2800:220:1::1"), None);
        let allow: Vec<IpNet> = vec!["127.0.0.0/8".parse().expect("net")];
        assert_eq!(forbidden_reason("127.0.0.1".parse().expect("ip"), &allow), None);
    }
}
