//! The Smile rate limit: at most N requests per second per client address, counted by the
//! store so that every node sharing it enforces one limit together.

use crate::AppState;
use crate::envelope::Error;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use smile_core::{ApiError, ErrorCode};
use std::net::SocketAddr;

/// How requests are limited.
#[derive(Debug, Clone)]
pub struct RateLimit {
    /// Requests per second per client; 0 turns the limit off.
    pub per_second: u32,
    /// A header naming the client's address (e.g. `x-forwarded-for` behind a load balancer);
    /// its first address counts instead of the connection's.
    pub client_header: Option<String>,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit { per_second: 20, client_header: None }
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

/// Answers 429 `REQUEST_LIMIT_EXCEEDED` once a client has used its requests of this second.
pub async fn enforce(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limit = &state.rate_limit;
    if limit.per_second == 0 || request.uri().path() == "/health" {
        return next.run(request).await;
    }
    let Some(client) = client_of(&request, limit.client_header.as_deref()) else {
        return next.run(request).await;
    };
    let window = smile_core::timefmt::now_ms() / 1000;
    match state.store.count_request(&client, window).await {
        Ok(count) if count > limit.per_second => {
            let message = format!("more than {} requests per second; slow down", limit.per_second);
            let mut response = Error(ApiError::new(ErrorCode::RequestLimitExceeded, message)).into_response();
            response.headers_mut().insert("retry-after", axum::http::HeaderValue::from_static("1"));
            response
        }
        Ok(_) => next.run(request).await,
        Err(error) => {
            // Failing open: a broken counter must not take the API down with it.
            tracing::warn!(%error, "could not count a request for the rate limit");
            next.run(request).await
        }
    }
}
