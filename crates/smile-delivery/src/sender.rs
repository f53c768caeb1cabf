//! The HTTP side of an attempt: pooled clients, the signed request, the capped response read.

use crate::config::DeliveryConfig;
use crate::egress::{self, Client, Proxy};
use crate::error::EngineError;
use crate::relay::{RELAY_SCHEME, Relays};
use crate::ssrf::{Blocked, Resolver, forbidden_reason};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, Uri};
use smile_signature as sig;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one attempt saw.
#[derive(Debug)]
pub struct AttemptResult {
    pub status: Option<u16>,
    pub latency: Duration,
    pub response_body: Option<String>,
    pub error: Option<String>,
    pub retry_after: Option<Duration>,
}

impl AttemptResult {
    pub fn succeeded(&self) -> bool {
        matches!(self.status, Some(s) if (200..300).contains(&s))
    }
}

/// The secrets an attempt is signed with: the current one, and the previous during an overlap.
pub struct Signing<'a> {
    pub secret: &'a sig::Secret,
    pub previous: Option<&'a sig::Secret>,
}

/// A subscription's URL, read once for all of its attempts.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// A `smile listen` session.
    Relay(String),
    /// An HTTP(S) URL, normalized as at create (WHATWG, IDNA).
    Http {
        uri: Uri,
        /// `http://`: through a proxy, the request carries the proxy's credentials.
        plain: bool,
        /// The host, when it is an IP literal: what the SSRF guard checks before any connect.
        literal: Option<IpAddr>,
    },
    /// A URL no request can be made to, and why.
    Invalid(String),
}

impl Endpoint {
    pub fn parse(url: &str) -> Endpoint {
        if let Some(session) = url.strip_prefix(RELAY_SCHEME) {
            return Endpoint::Relay(session.to_owned());
        }
        let parsed = match url::Url::parse(url) {
            Ok(parsed) => parsed,
            Err(e) => return Endpoint::Invalid(format!("bad URL: {e}")),
        };
        let literal = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        match Uri::try_from(parsed.as_str()) {
            Ok(uri) => Endpoint::Http { uri, plain: parsed.scheme() == "http", literal },
            Err(e) => Endpoint::Invalid(format!("bad URL: {e}")),
        }
    }
}

/// Sends attempts; one pooled client per guard setting.
pub struct Sender {
    /// For sandbox subscriptions: any address.
    open: Client,
    /// For production subscriptions: the SSRF guard on every resolved address.
    guarded: Client,
    allow: Arc<Vec<ipnet::IpNet>>,
    /// Set when plain-HTTP attempts go through a proxy that wants credentials.
    proxy_authorization: Option<HeaderValue>,
    /// `smile listen` sessions: where `listen://` attempts go instead of HTTP.
    pub relays: Arc<Relays>,
    request_timeout: Duration,
    max_response_read: usize,
    response_snippet: usize,
}

/// The error and its causes, on one line: the client's own text is often just "client error".
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn failed(started: Instant, error: String) -> AttemptResult {
    AttemptResult {
        status: None,
        latency: started.elapsed(),
        response_body: None,
        error: Some(error),
        retry_after: None,
    }
}

const USER_AGENT: &str = concat!("Smile-Webhooks/", env!("CARGO_PKG_VERSION"));

impl Sender {
    pub fn new(config: &DeliveryConfig) -> Result<Self, EngineError> {
        let allow = Arc::new(config.egress.ssrf_allow.clone());
        let proxy = config.egress.proxy.as_deref().map(Proxy::parse).transpose()?;
        let tls = egress::tls_config(config)?;
        Ok(Sender {
            open: egress::client(config, tls.clone(), Resolver::open(), proxy.as_ref()),
            guarded: egress::client(config, tls, Resolver::guarded(allow.clone()), proxy.as_ref()),
            allow,
            proxy_authorization: proxy.and_then(|p| p.authorization),
            relays: Arc::default(),
            request_timeout: config.request_timeout,
            max_response_read: config.max_response_read,
            response_snippet: config.response_snippet,
        })
    }

    /// Sends `body` to `endpoint`, signed for `event_id`. `guarded` applies the SSRF guard.
    pub async fn send(
        &self,
        endpoint: &Endpoint,
        guarded: bool,
        event_id: &str,
        body: Bytes,
        signing: Signing<'_>,
    ) -> AttemptResult {
        let started = Instant::now();
        if guarded && let Some(error) = self.blocked(endpoint) {
            metrics::counter!(smile_core::metric::SSRF_REFUSALS, "at" => "attempt").increment(1);
            return failed(started, error);
        }
        let timestamp = smile_core::timefmt::now_ms() / 1000;
        let secrets = std::iter::once(signing.secret).chain(signing.previous);
        let smile: Vec<String> = secrets.clone().filter_map(|s| s.smile_signature(&body)).collect();
        let standard: Vec<String> = secrets.map(|s| s.standard_signature(event_id, timestamp, &body)).collect();
        let mut headers = vec![("content-type", "application/json".to_owned())];
        if !smile.is_empty() {
            headers.push((sig::SMILE_SIGNATURE_HEADER, smile.join(",")));
        }
        headers.push((sig::WEBHOOK_ID_HEADER, event_id.to_owned()));
        headers.push((sig::WEBHOOK_TIMESTAMP_HEADER, timestamp.to_string()));
        headers.push((sig::WEBHOOK_SIGNATURE_HEADER, standard.join(" ")));
        let request = match endpoint {
            Endpoint::Relay(session) => {
                return self.relays.send(session, event_id, headers, body, self.request_timeout).await;
            }
            Endpoint::Invalid(error) => return failed(started, error.clone()),
            Endpoint::Http { uri, plain, .. } => match self.request(uri, *plain, headers, body) {
                Ok(request) => request,
                Err(error) => return failed(started, error),
            },
        };
        let client = if guarded { &self.guarded } else { &self.open };
        // One deadline for the whole attempt: connect, request and the response body.
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let response = match tokio::time::timeout_at(deadline, client.request(request)).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => return failed(started, describe(&e)),
            Err(_) => return failed(started, "timed out".into()),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(hyper::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let mut kept = Vec::new();
        let read_error =
            match tokio::time::timeout_at(deadline, self.read_capped(response.into_body(), &mut kept)).await {
                Ok(result) => result.err(),
                Err(_) => Some("timed out".to_owned()),
            };
        let error = read_error
            .map(|e| format!("reading the response: {e}"))
            .or_else(|| (!(200..300).contains(&status)).then(|| format!("HTTP {status}")));
        AttemptResult {
            status: Some(status),
            latency: started.elapsed(),
            response_body: snippet(&kept),
            error,
            retry_after,
        }
    }

    fn request(
        &self,
        uri: &Uri,
        plain: bool,
        headers: Vec<(&str, String)>,
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>, String> {
        let mut request = Request::post(uri.clone()).header(hyper::header::USER_AGENT, USER_AGENT);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        if plain && let Some(authorization) = &self.proxy_authorization {
            request = request.header(hyper::header::PROXY_AUTHORIZATION, authorization.clone());
        }
        request.body(Full::new(body)).map_err(|e| format!("bad request: {e}"))
    }

    /// Reads at most `max_response_read` bytes and keeps the first `response_snippet`.
    async fn read_capped(&self, mut body: Incoming, kept: &mut Vec<u8>) -> Result<(), String> {
        let mut read = 0usize;
        while read < self.max_response_read {
            let Some(frame) = body.frame().await else { break };
            let frame = frame.map_err(|e| describe(&e))?;
            if let Ok(chunk) = frame.into_data() {
                read += chunk.len();
                let room = self.response_snippet.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..room.min(chunk.len())]);
            }
        }
        Ok(())
    }

    /// Why the guard refuses `url` outright (an internal IP literal), if it does.
    pub fn literal_blocked(&self, url: &str) -> Option<String> {
        self.blocked(&Endpoint::parse(url))
    }

    fn blocked(&self, endpoint: &Endpoint) -> Option<String> {
        let Endpoint::Http { literal: Some(ip), .. } = endpoint else { return None };
        forbidden_reason(*ip, &self.allow).map(|reason| Blocked::new(&ip.to_string(), *ip, reason).to_string())
    }
}

fn snippet(bytes: &[u8]) -> Option<String> {
    (!bytes.is_empty()).then(|| String::from_utf8_lossy(bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_read_once_as_at_create() {
        let Endpoint::Http { uri, plain, literal } = Endpoint::parse("http://0x7f.1:8080/hook") else {
            panic!("an HTTP endpoint")
        };
        assert_eq!(uri, "http://127.0.0.1:8080/hook", "WHATWG's IPv4 forms, normalized");
        assert!(plain);
        assert_eq!(literal, Some(IpAddr::from([127, 0, 0, 1])));
        let Endpoint::Http { uri, plain, literal } = Endpoint::parse("https://Bücher.example/x") else {
            panic!("an HTTPS endpoint")
        };
        assert_eq!(uri, "https://xn--bcher-kva.example/x");
        assert!(!plain);
        assert_eq!(literal, None);
        assert!(matches!(Endpoint::parse("listen://ses_1"), Endpoint::Relay(s) if s == "ses_1"));
        assert!(matches!(Endpoint::parse("not a url"), Endpoint::Invalid(e) if e.starts_with("bad URL")));
    }
}
