//! A real server on an ephemeral port, real receivers on loopback, and an HTTP client.

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use smile_core::Mode;
use smile_server::{Running, ServeOptions};
use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

/// The store a test runs against.
#[derive(Clone, Debug)]
pub enum Backend {
    Sqlite,
    /// A URL to a schema of this test's own.
    Postgres(String),
}

tokio::task_local! {
    static BACKEND: Backend;
}

impl Backend {
    /// A fresh PostgreSQL schema, or None (with a notice) when no server is configured.
    pub async fn postgres() -> Option<Backend> {
        smile_store::testing::fresh_postgres_schema().await.map(Backend::Postgres)
    }

    /// Runs a PostgreSQL-only test body on a fresh schema, given the schema's URL; skipped
    /// (with a notice) when no server is configured.
    pub async fn on_postgres<F: Future<Output = ()>>(body: impl FnOnce(String) -> F) {
        if let Some(url) = smile_store::testing::fresh_postgres_schema().await {
            Backend::Postgres(url.clone()).run(body(url)).await
        }
    }

    /// Runs a test body with this backend as the one servers in it use.
    pub async fn run<T, F: Future<Output = T>>(self, body: F) -> T {
        BACKEND.scope(self, body).await
    }

    /// The backend of the running test.
    pub fn current() -> Backend {
        BACKEND.try_with(Backend::clone).unwrap_or(Backend::Sqlite)
    }

    /// The database URL to hand a server, if not SQLite.
    pub fn database_url(&self) -> Option<String> {
        match self {
            Backend::Sqlite => None,
            Backend::Postgres(url) => Some(url.clone()),
        }
    }
}

/// Defines each test twice, as `NAME::sqlite` and `NAME::postgres`; the PostgreSQL one is
/// skipped with a notice when `SMILE_TEST_POSTGRES_URL` is unset.
macro_rules! on_both_backends {
    ($($(#[$meta:meta])* async fn $name:ident() $body:block)*) => {$(
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body() $body

            #[tokio::test]
            async fn sqlite() {
                crate::support::Backend::Sqlite.run(body()).await
            }

            #[tokio::test]
            async fn postgres() {
                crate::support::Backend::on_postgres(|_| body()).await
            }
        }
    )*};
}
pub(crate) use on_both_backends;

pub fn install_crypto() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Polls `check` until it yields Some, or panics with `what` after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match poll_until(within, check).await {
        Some(value) => value,
        None => panic!("timed out waiting for: {what}"),
    }
}

/// Polls `check` until it yields Some; None after `within`, for a caller that explains the
/// failure itself.
pub async fn poll_until<T, F, Fut>(within: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A server started in this process on its own temporary data directory.
pub struct TestServer {
    pub running: Running,
    /// The PostgreSQL schema it uses, for a second node on the same database.
    pub database_url: Option<String>,
    _dir: tempfile::TempDir,
    pub sandbox: Api,
}

/// Retries fast so that retry tests take milliseconds.
pub fn fast_options(dir: &std::path::Path) -> ServeOptions {
    let mut options = ServeOptions::new(dir.to_owned());
    options.listen = "127.0.0.1:0".parse().expect("addr");
    options.delivery.retry_schedule = vec![Duration::from_millis(100); 3];
    options.delivery.jitter = 0.0;
    options.delivery.request_timeout = Duration::from_secs(2);
    // Tests poll the API far faster than Smile's 20 requests/s; the limit has its own test.
    options.rate_limit.per_second = 0;
    options
}

impl TestServer {
    pub async fn start() -> Self {
        Self::with(|_| {}).await
    }

    pub async fn with(configure: impl FnOnce(&mut ServeOptions)) -> Self {
        install_crypto();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut options = fast_options(dir.path());
        // Each server its own database: a test that starts two means two independent ones.
        options.database_url = match Backend::current() {
            Backend::Sqlite => None,
            Backend::Postgres(_) => smile_store::testing::fresh_postgres_schema().await,
        };
        configure(&mut options);
        let options_url = options.database_url.clone();
        let running = smile_server::start(options).await.expect("server starts");
        let key = running.first_start_key.clone().expect("first start creates keys");
        let sandbox = Api::new(running.addr, &key.api_key, &key.api_secret);
        TestServer { running, database_url: options_url, _dir: dir, sandbox }
    }

    /// The data directory the server keeps its files in.
    pub fn running_data_dir(&self) -> std::path::PathBuf {
        self._dir.path().to_owned()
    }

    /// A key pair for `tenant` in `mode`, as `smile keys create` makes.
    pub async fn key(&self, tenant: &str, mode: Mode) -> Api {
        let key = self.running.store.create_tenant_key(tenant, mode).await.expect("key");
        Api::new(self.running.addr, &key.api_key, &key.api_secret)
    }

    pub async fn operator(&self) -> Api {
        let key = self.running.store.create_operator_key().await.expect("key");
        Api::new(self.running.addr, &key.api_key, &key.api_secret)
    }
}

/// A client of the API holding one key pair.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    key: String,
    secret: String,
    client: reqwest::Client,
}

impl Api {
    pub fn new(addr: SocketAddr, key: &str, secret: &str) -> Self {
        install_crypto();
        Api {
            base: format!("http://{addr}"),
            key: key.to_owned(),
            secret: secret.to_owned(),
            client: reqwest::Client::builder().no_proxy().build().expect("client"),
        }
    }

    pub fn key_id(&self) -> &str {
        &self.key
    }

    pub fn key_secret(&self) -> &str {
        &self.secret
    }

    /// The same key pair against another node.
    pub fn on(&self, addr: SocketAddr) -> Api {
        Api { base: format!("http://{addr}"), ..self.clone() }
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request =
            self.client.request(method, format!("{}{path}", self.base)).basic_auth(&self.key, Some(&self.secret));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// Sends raw bytes with a content type, for bad-input tests.
    pub async fn raw(&self, method: reqwest::Method, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
        let response = self
            .client
            .request(method, format!("{}{path}", self.base))
            .basic_auth(&self.key, Some(&self.secret))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json::<Value>().await.unwrap_or(Value::Null))
    }

    /// A POST with an `Idempotency-Key`; also answers whether `Idempotent-Replayed` was set.
    pub async fn post_once(&self, path: &str, key: &str, body: Value) -> (u16, Value, bool) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .basic_auth(&self.key, Some(&self.secret))
            .header("idempotency-key", key)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        let replayed = response.headers().get("idempotent-replayed").is_some_and(|v| v == "true");
        (status, response.json::<Value>().await.unwrap_or(Value::Null), replayed)
    }

    /// Like `post`, but None when the server cannot be reached (a killed node).
    pub async fn try_post(&self, path: &str, body: Value) -> Option<(u16, Value)> {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .basic_auth(&self.key, Some(&self.secret))
            .json(&body)
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.json::<Value>().await.unwrap_or(Value::Null)))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn post_empty(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, None).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    /// Creates a subscription and returns its id.
    pub async fn subscribe(&self, url: &str, types: &[&str], secret: &str) -> String {
        let (status, body) = self
            .post(
                "/v1/webhooks",
                json!({"name": "test", "url": url, "eventTypes": types, "active": true, "secret": secret}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["data"]["id"].as_str().expect("id").to_owned()
    }

    /// The deliveries of a subscription, newest first.
    pub async fn deliveries(&self, subscription_id: &str) -> Vec<Value> {
        let (status, body) = self.get(&format!("/v1/webhooks/{subscription_id}/deliveries?size=150")).await;
        assert_eq!(status, 200, "{body}");
        body["data"]["items"].as_array().cloned().unwrap_or_default()
    }
}

/// What a receiver answers to one request.
#[derive(Clone, Debug)]
pub enum Reply {
    Status(u16),
    /// Waits this long before answering 200 (longer than the request timeout: a timeout).
    Slow(Duration),
    /// 307 to this location.
    Redirect(String),
    /// This status with a `Retry-After` of this many seconds.
    RetryAfter(u16, u64),
    /// Waits this long, then answers this status.
    Late(Duration, u16),
}

/// One request a receiver got.
#[derive(Clone, Debug)]
pub struct Hit {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub peer: SocketAddr,
    pub at: Instant,
}

impl Hit {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

#[derive(Default)]
struct ReceiverState {
    hits: Mutex<Vec<Hit>>,
    script: Mutex<VecDeque<Reply>>,
}

/// A webhook receiver on loopback: records every request, answers from its script, then 200.
pub struct Receiver {
    pub addr: SocketAddr,
    scheme: &'static str,
    host: String,
    state: Arc<ReceiverState>,
}

async fn hook(
    State(state): State<Arc<ReceiverState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    state.hits.lock().expect("lock").push(Hit { headers, body, peer, at });
    let reply = state.script.lock().expect("lock").pop_front();
    match reply {
        None => (StatusCode::OK, "thanks").into_response(),
        Some(Reply::Status(code)) => {
            (StatusCode::from_u16(code).expect("status"), format!("answered {code}")).into_response()
        }
        Some(Reply::Slow(wait)) => {
            tokio::time::sleep(wait).await;
            (StatusCode::OK, "late").into_response()
        }
        Some(Reply::Redirect(to)) => (StatusCode::TEMPORARY_REDIRECT, [("location", to)], "moved").into_response(),
        Some(Reply::Late(wait, code)) => {
            tokio::time::sleep(wait).await;
            (StatusCode::from_u16(code).expect("status"), "late").into_response()
        }
        Some(Reply::RetryAfter(code, secs)) => {
            let status = StatusCode::from_u16(code).expect("status");
            (status, [("retry-after", secs.to_string())], "later").into_response()
        }
    }
}

fn receiver_app(state: Arc<ReceiverState>) -> axum::Router {
    axum::Router::new().route("/hook", axum::routing::post(hook)).with_state(state)
}

impl Receiver {
    pub async fn start() -> Self {
        Self::scripted(vec![]).await
    }

    pub async fn scripted(script: Vec<Reply>) -> Self {
        let state = Arc::new(ReceiverState { script: Mutex::new(script.into()), ..Default::default() });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = receiver_app(state.clone());
        tokio::spawn(
            async move { axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await },
        );
        Receiver { addr, scheme: "http", host: "127.0.0.1".into(), state }
    }

    /// An HTTPS receiver for `localhost`, with a certificate from `ca`.
    pub async fn tls(ca: &TestCa) -> Self {
        install_crypto();
        let state = Arc::new(ReceiverState::default());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let config = axum_server::tls_rustls::RustlsConfig::from_pem(
            ca.leaf_pem.clone().into_bytes(),
            ca.leaf_key_pem.clone().into_bytes(),
        )
        .await
        .expect("tls config");
        let app = receiver_app(state.clone());
        let server = axum_server::from_tcp_rustls(listener, config);
        tokio::spawn(async move { server.serve(app.into_make_service_with_connect_info::<SocketAddr>()).await });
        Receiver { addr, scheme: "https", host: "localhost".into(), state }
    }

    pub fn url(&self) -> String {
        format!("{}://{}:{}/hook", self.scheme, self.host, self.addr.port())
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.state.hits.lock().expect("lock").clone()
    }

    /// Waits until at least `n` requests arrived.
    pub async fn wait_hits(&self, n: usize) -> Vec<Hit> {
        eventually(Duration::from_secs(15), &format!("{n} requests at {}", self.url()), || async {
            let hits = self.hits();
            (hits.len() >= n).then_some(hits)
        })
        .await
    }
}

/// A test CA and a `localhost` certificate it signed.
pub struct TestCa {
    pub ca_pem: String,
    pub leaf_pem: String,
    pub leaf_key_pem: String,
}

impl TestCa {
    pub fn new() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let ca_key = KeyPair::generate().expect("key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "Smile Test CA");
        let ca = ca_params.self_signed(&ca_key).expect("ca");
        let leaf_key = KeyPair::generate().expect("key");
        let leaf = CertificateParams::new(vec!["localhost".to_owned()])
            .expect("params")
            .signed_by(&leaf_key, &ca, &ca_key)
            .expect("leaf");
        TestCa { ca_pem: ca.pem(), leaf_pem: leaf.pem(), leaf_key_pem: leaf_key.serialize_pem() }
    }

    /// The CA certificate in a PEM file, as `--extra-ca` takes it.
    pub fn pem_file(&self) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().expect("file");
        std::fs::write(file.path(), &self.ca_pem).expect("write");
        file
    }
}

/// Publishes an event as the operator and returns its id.
pub async fn publish(operator: &Api, tenant: &str, mode: &str, event_type: &str, data: Value) -> String {
    let (status, body) = operator
        .post("/v1/operator/events", json!({"tenantId": tenant, "mode": mode, "type": event_type, "data": data}))
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"]["id"].as_str().expect("event id").to_owned()
}

/// Publishes a sample `USER_CREATED` to the default sandbox tenant and returns its id.
pub async fn user_created(operator: &Api) -> String {
    publish(operator, "default", "SANDBOX", "USER_CREATED", json!({"userId": "u"})).await
}

pub fn account_connected(user: &str) -> Value {
    json!({"userId": user, "accountId": "a-123", "loginName": "George", "providers": ["sss"]})
}

/// A forward proxy on loopback that records what each connection first asked it for.
pub struct ConnectProxy {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<ProxiedRequest>>>,
}

/// What a proxy saw of one connection: its first request line and its credentials.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxiedRequest {
    pub method: String,
    pub target: String,
    pub authorization: Option<String>,
}

impl ConnectProxy {
    /// Tunnels CONNECTs, and forwards plain requests sent in absolute form.
    pub async fn start() -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen: Arc<Mutex<Vec<ProxiedRequest>>> = Arc::default();
        let recorded = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                        if inbound.read_exact(&mut byte).await.is_err() {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let text = String::from_utf8_lossy(&head).into_owned();
                    let mut words = text.split_whitespace();
                    let (Some(method), Some(target)) = (words.next(), words.next()) else { return };
                    let authorization = text
                        .lines()
                        .filter_map(|l| l.split_once(": "))
                        .find(|(name, _)| name.eq_ignore_ascii_case("proxy-authorization"))
                        .map(|(_, value)| value.to_owned());
                    recorded.lock().expect("lock").push(ProxiedRequest {
                        method: method.to_owned(),
                        target: target.to_owned(),
                        authorization,
                    });
                    let upstream = match target.strip_prefix("http://") {
                        Some(rest) => rest.split('/').next().unwrap_or_default().to_owned(),
                        None if method == "CONNECT" => target.to_owned(),
                        None => return,
                    };
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let ready = if method == "CONNECT" {
                        inbound.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await
                    } else {
                        outbound.write_all(&head).await
                    };
                    if ready.is_ok() {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        ConnectProxy { addr, seen }
    }

    /// Its URL, with the credentials the node is to give it.
    pub fn url_with_credentials(&self, user: &str, password: &str) -> String {
        format!("http://{user}:{password}@{}", self.addr)
    }

    /// The CONNECT targets it was asked for.
    pub fn targets(&self) -> Vec<String> {
        self.seen().into_iter().filter(|r| r.method == "CONNECT").map(|r| r.target).collect()
    }

    pub fn seen(&self) -> Vec<ProxiedRequest> {
        self.seen.lock().expect("lock").clone()
    }
}

/// The Wink Widget's side: calls to `/link/v1` with a link token.
#[derive(Clone)]
pub struct Link {
    base: String,
    token: String,
    client: reqwest::Client,
}

impl Link {
    pub fn new(api: &Api, token: &str) -> Self {
        Link { base: api.base.clone(), token: token.to_owned(), client: reqwest::Client::new() }
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json::<Value>().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// Uploads one file the way the widget does (multipart).
    pub async fn upload(&self, file_type: &str, name: &str, content: &[u8]) -> (u16, Value) {
        let part = reqwest::multipart::Part::bytes(content.to_vec()).file_name(name.to_owned());
        let form = reqwest::multipart::Form::new().text("fileType", file_type.to_owned()).part("file", part);
        let response = self
            .client
            .post(format!("{}/link/v1/archives", self.base))
            .bearer_auth(&self.token)
            .multipart(form)
            .send()
            .await
            .expect("upload");
        let status = response.status().as_u16();
        (status, response.json::<Value>().await.unwrap_or(Value::Null))
    }

    /// Submits credentials for a provider and returns the account.
    pub async fn connect(&self, provider: &str, username: &str, password: &str) -> Value {
        let (status, body) = self
            .post("/link/v1/accounts", json!({"providerId": provider, "username": username, "password": password}))
            .await;
        assert_eq!(status, 200, "{body}");
        body["data"].clone()
    }
}

/// Creates a sandbox user; returns its id and a link session for it.
pub async fn new_user(api: &Api) -> (String, Link) {
    let (status, body) = api.post("/v1/users", json!({})).await;
    assert_eq!(status, 201, "{body}");
    let user = body["data"]["user"]["id"].as_str().expect("user id").to_owned();
    let token = body["data"]["token"]["accessToken"].as_str().expect("token").to_owned();
    (user, Link::new(api, &token))
}

/// The webhooks a receiver got, as (type, data), in arrival order.
pub fn events(receiver: &Receiver) -> Vec<(String, Value)> {
    receiver
        .hits()
        .iter()
        .map(|h| h.json())
        .map(|e| (e["type"].as_str().unwrap_or("").to_owned(), e["data"].clone()))
        .collect()
}

/// Waits until the receiver has an event of `event_type` and returns the events so far.
/// The data of the latest event of `event_type` among `events`: other events (of other order
/// keys) may have arrived after it.
pub fn last_event(events: &[(String, Value)], event_type: &str) -> Value {
    events.iter().rev().find(|(t, _)| t == event_type).map(|(_, data)| data.clone()).expect("an event of that type")
}

pub async fn wait_for_event(receiver: &Receiver, event_type: &str) -> Vec<(String, Value)> {
    eventually(Duration::from_secs(15), &format!("a {event_type} webhook"), || async {
        let got = events(receiver);
        got.iter().any(|(t, _)| t == event_type).then_some(got)
    })
    .await
}
