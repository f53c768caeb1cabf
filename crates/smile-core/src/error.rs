//! The Smile error codes, and the error every API handler returns.

use serde::Serialize;

/// A response `code` of the Smile envelope, with the HTTP status it travels with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    InvalidCredentials,
    InvalidParameters,
    InvalidToken,
    UnauthorizedAccess,
    MissingResource,
    UnsupportedType,
    RequestLimitExceeded,
    ServerError,
    UnsupportedMethod,
    ServerUnavailable,
    TimeLimitExceeded,
}

impl ErrorCode {
    /// Every code.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::InvalidCredentials,
        ErrorCode::InvalidParameters,
        ErrorCode::InvalidToken,
        ErrorCode::UnauthorizedAccess,
        ErrorCode::MissingResource,
        ErrorCode::UnsupportedType,
        ErrorCode::RequestLimitExceeded,
        ErrorCode::ServerError,
        ErrorCode::UnsupportedMethod,
        ErrorCode::ServerUnavailable,
        ErrorCode::TimeLimitExceeded,
    ];

    /// The HTTP status Smile pairs with this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidCredentials | ErrorCode::InvalidParameters => 400,
            ErrorCode::InvalidToken => 401,
            ErrorCode::UnauthorizedAccess => 403,
            ErrorCode::MissingResource => 404,
            ErrorCode::UnsupportedType => 415,
            ErrorCode::RequestLimitExceeded => 429,
            ErrorCode::ServerError => 500,
            ErrorCode::UnsupportedMethod => 501,
            ErrorCode::ServerUnavailable => 503,
            ErrorCode::TimeLimitExceeded => 504,
        }
    }

    /// The wire spelling, e.g. `INVALID_PARAMETERS`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidCredentials => "INVALID_CREDENTIALS",
            ErrorCode::InvalidParameters => "INVALID_PARAMETERS",
            ErrorCode::InvalidToken => "INVALID_TOKEN",
            ErrorCode::UnauthorizedAccess => "UNAUTHORIZED_ACCESS",
            ErrorCode::MissingResource => "MISSING_RESOURCE",
            ErrorCode::UnsupportedType => "UNSUPPORTED_TYPE",
            ErrorCode::RequestLimitExceeded => "REQUEST_LIMIT_EXCEEDED",
            ErrorCode::ServerError => "SERVER_ERROR",
            ErrorCode::UnsupportedMethod => "UNSUPPORTED_METHOD",
            ErrorCode::ServerUnavailable => "SERVER_UNAVAILABLE",
            ErrorCode::TimeLimitExceeded => "TIME_LIMIT_EXCEEDED",
        }
    }
}

/// An error to show the caller: a Smile code and a human message (never a secret).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Overrides the code's usual HTTP status (e.g. 413 for an over-size body).
    pub status: Option<u16>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into(), status: None }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidParameters, message)
    }

    pub fn missing(what: &str) -> Self {
        Self::new(ErrorCode::MissingResource, format!("{what} not found"))
    }

    pub fn server(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ServerError, message)
    }

    /// The HTTP status this error is sent with.
    pub fn http_status(&self) -> u16 {
        self.status.unwrap_or_else(|| self.code.http_status())
    }
}
