//! The API of a running server, as `smile listen` and `smile trigger` call it with a tenant key.

use anyhow::{Context, bail};
use serde_json::Value;
use std::time::Duration;

/// Where the server is and which key to use.
#[derive(clap::Args, Debug, Clone)]
pub struct RemoteArgs {
    /// The Smile server's address.
    #[arg(long, env = "SMILE_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// A tenant API key.
    #[arg(long, env = "SMILE_API_KEY")]
    pub key: String,
    /// Its secret.
    #[arg(long, env = "SMILE_API_SECRET", hide_env_values = true)]
    pub secret: String,
}

/// A client of one server with one key.
pub struct Remote {
    base: String,
    key: String,
    secret: String,
    client: reqwest::Client,
}

/// The longest a call may take: long polls wait up to 30 s on the server.
const CALL_TIMEOUT: Duration = Duration::from_secs(45);

impl Remote {
    pub fn new(args: &RemoteArgs) -> anyhow::Result<Remote> {
        let base = args.server.trim_end_matches('/').to_owned();
        let parsed = url::Url::parse(&base).with_context(|| format!("--server: `{base}` is not a URL"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            bail!("--server: `{base}` must be an http:// or https:// URL");
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(CALL_TIMEOUT)
            .build()
            .context("building the HTTP client")?;
        Ok(Remote { base, key: args.key.clone(), secret: args.secret.clone(), client })
    }

    pub fn server(&self) -> &str {
        &self.base
    }

    /// Calls the API; answers the envelope's `data`, or fails with its code and message.
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let mut request =
            self.client.request(method, format!("{}{path}", self.base)).basic_auth(&self.key, Some(&self.secret));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.with_context(|| format!("calling {}{path}", self.base))?;
        let status = response.status();
        let envelope: Value =
            response.json().await.with_context(|| format!("{}{path} answered {status}, not JSON", self.base))?;
        if !status.is_success() {
            bail!(
                "{}{path}: {} {}: {}",
                self.base,
                status.as_u16(),
                envelope["code"].as_str().unwrap_or("?"),
                envelope["message"].as_str().unwrap_or("")
            );
        }
        Ok(envelope["data"].clone())
    }
}
