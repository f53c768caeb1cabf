//! The HTTP side of an attempt: pooled clients, the signed request, the capped response read.

use crate::config::DeliveryConfig;
use crate::error::EngineError;
use crate::relay::{RELAY_SCHEME, Relays};
use crate::ssrf::{Blocked, GuardedResolver, forbidden_reason};
use bytes::Bytes;
use rustls::pki_types::pem::PemObject;
use smile_signature as sig;
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

/// Sends attempts; one pooled client per guard setting.
pub struct Sender {
    /// For sandbox subscriptions: any address.
    open: reqwest::Client,
    /// For production subscriptions: the SSRF guard on every resolved address.
    guarded: reqwest::Client,
    allow: Arc<Vec<ipnet::IpNet>>,
    /// `smile listen` sessions: where `listen://` attempts go instead of HTTP.
    pub relays: Arc<Relays>,
    relay_timeout: Duration,
    max_response_read: usize,
    response_snippet: usize,
}

fn tls_config(config: &DeliveryConfig) -> Result<rustls::ClientConfig, EngineError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::warn!(%error, "could not load a system CA certificate");
    }
    roots.add_parsable_certificates(native.certs);
    for path in &config.egress.extra_ca {
        let pem = std::fs::read(path)
            .map_err(|e| EngineError::Config(format!("cannot read CA file {}: {e}", path.display())))?;
        let mut added = 0;
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| EngineError::Config(format!("bad PEM in {}: {e}", path.display())))?;
            roots.add(cert).map_err(|e| EngineError::Config(format!("bad CA in {}: {e}", path.display())))?;
            added += 1;
        }
        if added == 0 {
            return Err(EngineError::Config(format!("no certificate in {}", path.display())));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| EngineError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn client(config: &DeliveryConfig, guard: Option<GuardedResolver>) -> Result<reqwest::Client, EngineError> {
    let mut builder = reqwest::Client::builder()
        .tls_backend_preconfigured(tls_config(config)?)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(config.connect_timeout)
        .timeout(config.request_timeout)
        // Per host, not per subscription: many subscriptions often share one host, and a pool
        // smaller than the attempts in flight to it closes and reopens connections all along.
        .pool_max_idle_per_host(config.max_in_flight.max(config.max_in_flight_per_endpoint))
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .user_agent(concat!("Smile-Webhooks/", env!("CARGO_PKG_VERSION")));
    if let Some(ip) = config.egress.bind {
        builder = builder.local_address(ip);
    }
    match &config.egress.proxy {
        Some(proxy) => {
            let proxy = reqwest::Proxy::all(proxy).map_err(|e| EngineError::Config(format!("bad proxy URL: {e}")))?;
            builder = builder.proxy(proxy);
        }
        None => builder = builder.no_proxy(),
    }
    if let Some(resolver) = guard {
        builder = builder.dns_resolver(Arc::new(resolver));
    }
    builder.build().map_err(|e| EngineError::Config(format!("cannot build the HTTP client: {e}")))
}

/// The error and its causes, on one line: reqwest's own text is often just "error sending request".
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "timed out".into();
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl Sender {
    pub fn new(config: &DeliveryConfig) -> Result<Self, EngineError> {
        let allow = Arc::new(config.egress.ssrf_allow.clone());
        Ok(Sender {
            open: client(config, None)?,
            guarded: client(config, Some(GuardedResolver { allow: allow.clone() }))?,
            allow,
            relays: Arc::default(),
            relay_timeout: config.request_timeout,
            max_response_read: config.max_response_read,
            response_snippet: config.response_snippet,
        })
    }

    /// Sends `body` to `url`, signed for `event_id`. `guarded` applies the SSRF guard.
    pub async fn send(
        &self,
        url: &str,
        guarded: bool,
        event_id: &str,
        body: Bytes,
        signing: Signing<'_>,
    ) -> AttemptResult {
        let started = Instant::now();
        if guarded && let Some(error) = self.literal_blocked(url) {
            metrics::counter!(smile_core::metric::SSRF_REFUSALS, "at" => "attempt").increment(1);
            return AttemptResult {
                status: None,
                latency: started.elapsed(),
                response_body: None,
                error: Some(error),
                retry_after: None,
            };
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
        if let Some(session) = url.strip_prefix(RELAY_SCHEME) {
            return self.relays.send(session, event_id, headers, body, self.relay_timeout).await;
        }
        let client = if guarded { &self.guarded } else { &self.open };
        let mut request = client.post(url);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request.body(body);
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                return AttemptResult {
                    status: None,
                    latency: started.elapsed(),
                    response_body: None,
                    error: Some(describe(&e)),
                    retry_after: None,
                };
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let (snippet, read_error) = self.read_capped(&mut response).await;
        let error = read_error.or_else(|| (!(200..300).contains(&status)).then(|| format!("HTTP {status}")));
        AttemptResult { status: Some(status), latency: started.elapsed(), response_body: snippet, error, retry_after }
    }

    /// Reads at most `max_response_read` bytes and keeps the first `response_snippet`.
    async fn read_capped(&self, response: &mut reqwest::Response) -> (Option<String>, Option<String>) {
        let mut kept = Vec::new();
        let mut read = 0usize;
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    read += chunk.len();
                    let room = self.response_snippet.saturating_sub(kept.len());
                    kept.extend_from_slice(&chunk[..room.min(chunk.len())]);
                    if read >= self.max_response_read {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    return (snippet(&kept), Some(format!("reading the response: {}", describe(&e))));
                }
            }
        }
        (snippet(&kept), None)
    }

    pub fn literal_blocked(&self, url: &str) -> Option<String> {
        let parsed = url::Url::parse(url).ok()?;
        let ip = match parsed.host()? {
            url::Host::Ipv4(ip) => std::net::IpAddr::V4(ip),
            url::Host::Ipv6(ip) => std::net::IpAddr::V6(ip),
            url::Host::Domain(_) => return None,
        };
        forbidden_reason(ip, &self.allow).map(|reason| Blocked::new(&ip.to_string(), ip, reason).to_string())
    }
}

fn snippet(bytes: &[u8]) -> Option<String> {
    (!bytes.is_empty()).then(|| String::from_utf8_lossy(bytes).into_owned())
}
