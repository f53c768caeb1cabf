//! The Smile response envelope, for successes and errors alike.

use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use smile_core::{ApiError, ErrorCode, ids};

/// A successful response: `{code: "OK", message: "Success", requestId, data}`.
pub struct Data<T>(pub T);

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a, T: Serialize> {
    code: &'a str,
    message: &'a str,
    request_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<T>,
}

fn respond<T: Serialize>(status: StatusCode, code: &str, message: &str, data: Option<T>) -> Response {
    let request_id = ids::new_request_id();
    let mut response =
        (status, axum::Json(Envelope { code, message, request_id: request_id.clone(), data })).into_response();
    if let Ok(value) = request_id.parse() {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

impl<T: Serialize> IntoResponse for Data<T> {
    fn into_response(self) -> Response {
        respond(StatusCode::OK, "OK", "Success", Some(self.0))
    }
}

/// A successful creation: 201, and the envelope of [`Data`].
pub struct Created<T>(pub T);

impl<T: Serialize> IntoResponse for Created<T> {
    fn into_response(self) -> Response {
        respond(StatusCode::CREATED, "OK", "Success", Some(self.0))
    }
}

/// A success with no data (e.g. a delete).
pub struct Done;

impl IntoResponse for Done {
    fn into_response(self) -> Response {
        respond::<()>(StatusCode::OK, "OK", "Success", None)
    }
}

/// How long a client should wait after a 503: about what a database restart or a failover takes.
const RETRY_AFTER_SECS: &str = "2";

/// Every handler's error: a Smile code and message in the envelope.
#[derive(Debug)]
pub struct Error(pub ApiError);

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = respond(status, self.0.code.as_str(), &self.0.message, Some(serde_json::json!({})));
        if self.0.code == ErrorCode::ServerUnavailable {
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
        }
        response
    }
}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Self {
        Error(e)
    }
}

impl From<smile_store::StoreError> for Error {
    fn from(e: smile_store::StoreError) -> Self {
        if let smile_store::StoreError::DiskFull(_) = e {
            tracing::error!(error = %e, "the database's disk is full; writes are refused until space returns");
            return Error(ApiError::new(
                ErrorCode::ServerUnavailable,
                "the server's storage is full; nothing was saved; retry after the Retry-After seconds",
            ));
        }
        if e.is_transient() {
            tracing::warn!(error = %e, "store unavailable");
            return Error(ApiError::new(
                ErrorCode::ServerUnavailable,
                "the database is unavailable for a moment; retry after the Retry-After seconds",
            ));
        }
        tracing::error!(error = %e, "store failure");
        Error(ApiError::server("the request could not be completed; try again"))
    }
}

impl From<smile_delivery::EngineError> for Error {
    fn from(e: smile_delivery::EngineError) -> Self {
        use smile_delivery::EngineError as E;
        match e {
            E::Store(e) => e.into(),
            E::InvalidData(m) => Error(ApiError::invalid(format!("data does not match the event type: {m}"))),
            E::SubscriptionNotFound => Error(ApiError::missing("webhook")),
            E::SubscriptionInactive => Error(ApiError::invalid("the webhook is inactive; activate it first")),
            E::Config(m) => Error(ApiError::server(m)),
            E::IdempotencyKeyReused => Error(ApiError::invalid(
                "this Idempotency-Key was used in the last 24 hours for a different request; use a new key",
            )),
        }
    }
}

/// An event as a publish answered it; a replay (an idempotency key seen before) says so in
/// the `Idempotent-Replayed` header.
pub struct Published(pub smile_delivery::Publication);

impl IntoResponse for Published {
    fn into_response(self) -> Response {
        let mut response = Data(self.0.event).into_response();
        if self.0.replayed {
            response
                .headers_mut()
                .insert(crate::extract::IDEMPOTENT_REPLAYED, axum::http::HeaderValue::from_static("true"));
        }
        response
    }
}

/// Shorthand for handler results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error with an HTTP status other than its code's usual one.
pub fn with_status(code: ErrorCode, status: u16, message: &str) -> Error {
    Error(ApiError { code, message: message.to_owned(), status: Some(status) })
}
