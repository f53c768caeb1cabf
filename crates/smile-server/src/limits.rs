//! The Smile rate limit: at most N requests per second per client address, counted by the
//! store so that every node sharing it enforces one limit together.

use crate::AppState;
use crate::envelope::Error;
use axum::extract::{ConnectInfo, Request};
use axum::response::{IntoResponse, Response};
use smile_core::{ApiError, ErrorCode};
use std::net::SocketAddr;

/// How requests are limited.
#[derive(Debug, Clone)]
pub struct RateLimit {
    /// API requests per second per client; 0 turns the limit off.
    pub per_second: u32,
    /// Operator requests (`/v1/operator/…`) per second per client, counted apart; 0 (the
    /// default) turns it off.
    pub operator_per_second: u32,
    /// A header naming the client's address (e.g. `x-forwarded-for` behind a load balancer);
    /// its first address counts instead of the connection's.
    pub client_header: Option<String>,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit { per_second: 20, operator_per_second: 0, client_header: None }
    }
}

fn client_of(request: &Request, header: Option<&str>) -> Option<String> {
    if let Some(name) = header
        && let Some(value) = request.headers().get(name).and_then(|v| v.to_str().ok())
        && let Some(first) = value.split(',').next().map(str::trim).filter(|s| !s.is_empty())
    {
        return Some(first.to_owned());
    }
    request.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(peer)| peer.ip().to_string())
}

/// What a path counts against.
#[derive(Debug, PartialEq, Eq)]
enum Counted {
    Api,
    Operator,
    /// Static files (the widget, its SDK and logos, the demo page, sample files) and /health:
    /// a page that loads a dozen logos must not spend a client's API requests.
    Not,
}

fn counted(path: &str) -> Counted {
    if path.starts_with("/v1/operator/") {
        Counted::Operator
    } else if (path.starts_with("/v1/") && !path.ends_with(".js"))
        || path.starts_with("/link/")
        || path == "/demo/inboxes"
    {
        Counted::Api
    } else {
        Counted::Not
    }
}

/// A request the rate limit counts: its client's key and the requests allowed per second.
pub struct Counting {
    key: String,
    per_second: u32,
}

/// Whether `request` counts against a limit, and whose: read before any await, since a
/// request cannot be held across one by a future that must be `Send`.
pub fn counting(state: &AppState, request: &Request) -> Option<Counting> {
    let limit = &state.rate_limit;
    let (per_second, prefix) = match counted(request.uri().path()) {
        Counted::Api => (limit.per_second, ""),
        Counted::Operator => (limit.operator_per_second, "operator:"),
        Counted::Not => (0, ""),
    };
    if per_second == 0 {
        return None;
    }
    let client = client_of(request, limit.client_header.as_deref())?;
    Some(Counting { key: format!("{prefix}{client}"), per_second })
}

impl Counting {
    /// Counts the request; the 429 `REQUEST_LIMIT_EXCEEDED` answer once its client has used
    /// its requests of this second.
    pub async fn refusal(self, state: &AppState) -> Option<Response> {
        let window = smile_core::timefmt::now_ms() / 1000;
        match state.store.count_request(&self.key, window).await {
            Ok(count) if count > self.per_second => {
                let message = format!("more than {} requests per second; slow down", self.per_second);
                let mut response = Error(ApiError::new(ErrorCode::RequestLimitExceeded, message)).into_response();
                response.headers_mut().insert("retry-after", axum::http::HeaderValue::from_static("1"));
                Some(response)
            }
            Ok(_) => None,
            Err(error) => {
                // Failing open: a broken counter must not take the API down with it.
                tracing::warn!(%error, "could not count a request for the rate limit");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_files_and_health_are_not_counted() {
        for path in [
            "/assets/providers/sss.png",
            "/widget/",
            "/widget/widget.js",
            "/v2/smile.v2.js",
            "/v1/smile.v1.js",
            "/demo",
            "/sandbox/samples/payslip.png",
            "/invite/iv-1",
            "/health",
            "/demo/hooks/inbox_x",
        ] {
            assert_eq!(counted(path), Counted::Not, "{path}");
        }
        assert_eq!(counted("/v1/webhooks"), Counted::Api);
        assert_eq!(counted("/link/v1/providers"), Counted::Api);
        assert_eq!(counted("/v1/operator/events"), Counted::Operator);
    }
}
