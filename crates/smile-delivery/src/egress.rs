//! How an attempt's connections leave the node: straight to the endpoint or through the
//! operator's proxy, over TLS where the URL says HTTPS, from the configured local address.
//!
//! The client is hyper's own pooled client, not a higher-level one: on this path every
//! delivery is one request, and reqwest, which builds a connector, a retry policy and a timer
//! per request, cost about 12 µs of a delivery's 80 µs of CPU here (docs/benchmarks.md).

use crate::config::DeliveryConfig;
use crate::error::{BoxError, EngineError};
use crate::ssrf::Resolver;
use bytes::Bytes;
use http_body_util::Full;
use hyper::Uri;
use hyper::header::HeaderValue;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::pem::PemObject;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;

/// A pooled HTTP/1.1 client for attempts.
pub(crate) type Client = hyper_util::client::legacy::Client<HttpsConnector<Egress>, Full<Bytes>>;

/// The operator's HTTP proxy, from `--egress-proxy`.
#[derive(Clone)]
pub(crate) struct Proxy {
    uri: Uri,
    /// `Proxy-Authorization`, from the proxy URL's user and password.
    pub authorization: Option<HeaderValue>,
}

impl Proxy {
    /// Reads `http://[user:password@]host:port`; a URL without a scheme is taken as HTTP.
    pub fn parse(text: &str) -> Result<Proxy, EngineError> {
        let with_scheme = if text.contains("://") { text.to_owned() } else { format!("http://{text}") };
        let bad = |why: &str| EngineError::Config(format!("bad --egress-proxy: {why}"));
        let url = url::Url::parse(&with_scheme).map_err(|e| bad(&e.to_string()))?;
        if url.scheme() != "http" {
            return Err(bad("only http:// proxies are supported (HTTPS endpoints go through a CONNECT tunnel)"));
        }
        let host = url.host_str().ok_or_else(|| bad("no host"))?;
        let port = url.port_or_known_default().unwrap_or(80);
        let uri = format!("http://{host}:{port}").parse::<Uri>().map_err(|e| bad(&e.to_string()))?;
        let authorization = match url.username() {
            "" => None,
            user => {
                use base64::Engine as _;
                let pair = format!("{user}:{}", url.password().unwrap_or(""));
                let value = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair));
                let mut value = HeaderValue::from_str(&value).map_err(|e| bad(&e.to_string()))?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        Ok(Proxy { uri, authorization })
    }
}

/// Connects to an endpoint, or to the proxy on its behalf.
#[derive(Clone)]
pub(crate) enum Egress {
    Direct(HttpConnector<Resolver>),
    Proxied(Box<Proxied>),
}

/// The two ways through the proxy. The operator chose it, so the SSRF guard does not apply to
/// it; it resolves the endpoints' names.
#[derive(Clone)]
pub(crate) struct Proxied {
    /// To the proxy itself, for plain-HTTP endpoints: the request then names its endpoint.
    plain: HttpConnector<Resolver>,
    /// A CONNECT tunnel through the proxy, for HTTPS endpoints: TLS stays end to end.
    tunnel: Tunnel<HttpConnector<Resolver>>,
    proxy: Uri,
}

impl tower_service::Service<Uri> for Egress {
    type Response = EgressStream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<EgressStream, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Each connector below is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, endpoint: Uri) -> Self::Future {
        match self {
            Egress::Direct(http) => {
                let connecting = http.call(endpoint);
                Box::pin(async move { Ok(EgressStream { io: connecting.await?, proxied: false }) })
            }
            Egress::Proxied(via) if endpoint.scheme() == Some(&hyper::http::uri::Scheme::HTTPS) => {
                let connecting = via.tunnel.call(endpoint);
                Box::pin(async move { Ok(EgressStream { io: connecting.await?, proxied: false }) })
            }
            Egress::Proxied(via) => {
                let connecting = via.plain.call(via.proxy.clone());
                Box::pin(async move { Ok(EgressStream { io: connecting.await?, proxied: true }) })
            }
        }
    }
}

/// A TCP connection to an endpoint or to the proxy; through a proxy, plain-HTTP requests are
/// sent with their absolute URL.
pub(crate) struct EgressStream {
    io: TokioIo<TcpStream>,
    proxied: bool,
}

impl Connection for EgressStream {
    fn connected(&self) -> Connected {
        self.io.connected().proxy(self.proxied)
    }
}

impl Read for EgressStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl Write for EgressStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}

fn tcp(config: &DeliveryConfig, resolver: Resolver) -> HttpConnector<Resolver> {
    let mut http = HttpConnector::new_with_resolver(resolver);
    // The TLS layer above hands HTTPS URLs down too.
    http.enforce_http(false);
    http.set_connect_timeout(Some(config.connect_timeout));
    http.set_nodelay(true);
    http.set_local_address(config.egress.bind);
    http
}

/// A client for attempts; `resolver` decides which addresses an endpoint may be reached at.
pub(crate) fn client(
    config: &DeliveryConfig,
    tls: rustls::ClientConfig,
    resolver: Resolver,
    proxy: Option<&Proxy>,
) -> Client {
    let egress = match proxy {
        None => Egress::Direct(tcp(config, resolver)),
        Some(proxy) => {
            let mut tunnel = Tunnel::new(proxy.uri.clone(), tcp(config, Resolver::open()));
            if let Some(authorization) = &proxy.authorization {
                tunnel = tunnel.with_auth(authorization.clone());
            }
            Egress::Proxied(Box::new(Proxied {
                plain: tcp(config, Resolver::open()),
                tunnel,
                proxy: proxy.uri.clone(),
            }))
        }
    };
    let https = HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1();
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        // Per host, not per subscription: many subscriptions often share one host, and a pool
        // smaller than the attempts in flight to it closes and reopens connections all along.
        .pool_max_idle_per_host(config.max_in_flight.max(config.max_in_flight_per_endpoint))
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_timer(TokioTimer::new())
        .build(https.wrap_connector(egress))
}

/// The system's roots plus `--extra-ca`.
pub(crate) fn tls_config(config: &DeliveryConfig) -> Result<rustls::ClientConfig, EngineError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_url_is_read_with_its_credentials() {
        let proxy = Proxy::parse("http://smile:s3cret@proxy.internal:3128").expect("proxy");
        assert_eq!(proxy.uri, "http://proxy.internal:3128");
        let authorization = proxy.authorization.expect("credentials");
        assert_eq!(authorization.to_str().expect("ascii"), "Basic c21pbGU6czNjcmV0");
        assert!(authorization.is_sensitive(), "never logged by hyper");
        assert_eq!(Proxy::parse("proxy.internal:3128").expect("no scheme").uri, "http://proxy.internal:3128");
        assert!(Proxy::parse("socks5://proxy.internal:1080").is_err());
        assert!(Proxy::parse("http://").is_err());
    }
}
