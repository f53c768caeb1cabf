//! Request parts that fail as Smile errors: bodies, queries, ids, pages.

use crate::envelope::{Error, with_status};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use smile_core::{ApiError, ErrorCode};
use smile_store::PageRequest;
use std::collections::HashMap;

/// A request body that must be JSON when present.
pub struct JsonBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        let is_json = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json"));
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                with_status(ErrorCode::InvalidParameters, 413, "the request body is too large")
            } else {
                Error(ApiError::invalid(format!("cannot read the request body: {rejection}")))
            }
        })?;
        if !bytes.is_empty() && is_json == Some(false) {
            return Err(Error(ApiError::new(ErrorCode::UnsupportedType, "the request body must be application/json")));
        }
        Ok(JsonBody(bytes))
    }
}

impl JsonBody {
    /// The body as `T`; a missing or malformed body is INVALID_PARAMETERS, and so is a NUL
    /// (`\u0000`) in any string, which PostgreSQL cannot store.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, Error> {
        if self.0.is_empty() {
            return Err(Error(ApiError::invalid("a JSON request body is required")));
        }
        let invalid = |e: serde_json::Error| Error(ApiError::invalid(format!("invalid JSON body: {e}")));
        // Only a body spelling the escape can hold a NUL; the rest skip the second parse.
        if spells_nul_escape(&self.0) {
            let value: serde_json::Value = serde_json::from_slice(&self.0).map_err(invalid)?;
            if holds_nul(&value) {
                return Err(Error(ApiError::invalid("strings in the body must not contain NUL (\\u0000)")));
            }
        }
        serde_json::from_slice(&self.0).map_err(invalid)
    }

    /// The body as `T`, or `T::default()` when there is none.
    pub fn parse_or_default<T: DeserializeOwned + Default>(&self) -> Result<T, Error> {
        if self.0.is_empty() { Ok(T::default()) } else { self.parse() }
    }
}

/// The query string as name/value pairs.
pub struct QueryParams(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        axum::extract::Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|q| QueryParams(q.0))
            .map_err(|e| Error(ApiError::invalid(format!("invalid query string: {e}"))))
    }
}

impl QueryParams {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// `size` (1 to 150, default 10) and `cursor` (a previous `nextCursor`).
    pub fn page(&self) -> Result<PageRequest, Error> {
        let size = match self.get("size") {
            None => 10,
            Some(s) => s
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=150).contains(n))
                .ok_or_else(|| Error(ApiError::invalid("size must be a whole number from 1 to 150")))?,
        };
        let before_seq = match self.get("cursor") {
            None => None,
            Some(c) => Some(
                c.parse::<i64>().map_err(|_| Error(ApiError::invalid("cursor is not a cursor this API returned")))?,
            ),
        };
        Ok(PageRequest { size, before_seq })
    }
}

/// The `{id}` of a path, 1 to 200 characters as the contract allows.
pub struct Id(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let axum::extract::Path(id) = axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| Error(ApiError::invalid(format!("invalid path: {e}"))))?;
        if id.is_empty() || id.chars().count() > 200 {
            return Err(Error(ApiError::invalid("id must be 1 to 200 characters")));
        }
        Ok(Id(id))
    }
}

/// The optional `Idempotency-Key` header: 1 to 255 visible ASCII characters.
pub struct IdempotencyKey(pub Option<String>);

/// The answer to a publish carries this header, `true`, when it is the first event again.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(IdempotencyKey(None));
        };
        match value.to_str() {
            Ok(key) if (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) => {
                Ok(IdempotencyKey(Some(key.to_owned())))
            }
            _ => {
                Err(Error(ApiError::invalid("Idempotency-Key must be 1 to 255 visible ASCII characters (a UUID, say)")))
            }
        }
    }
}

fn spells_nul_escape(bytes: &[u8]) -> bool {
    bytes.windows(6).any(|w| w.eq_ignore_ascii_case(b"\\u0000"))
}

fn holds_nul(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

/// The 400 for a request whose path or query carries a NUL (`%00`), given before any handler,
/// and so any store, sees it: otherwise the database would refuse it with an error of its own.
pub fn nul_refusal(request: &Request) -> Option<axum::response::Response> {
    use axum::response::IntoResponse;
    let uri = request.uri();
    uri.path_and_query()
        .is_some_and(|pq| pq.as_str().contains("%00"))
        .then(|| Error(ApiError::invalid("the request path and query must not contain NUL (%00)")).into_response())
}
