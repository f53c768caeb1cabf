//! HTTP Basic authentication with `apikey:apisecret`, as Smile does.

use crate::AppState;
use crate::envelope::Error;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use smile_core::{ApiError, ErrorCode};
use smile_store::{KeyRecord, Principal, Scope};
use std::collections::HashMap;
use std::sync::RwLock;

/// Keys already looked up; only keys that exist are kept, so misses cannot grow it.
#[derive(Default)]
pub struct KeyCache(RwLock<HashMap<String, KeyRecord>>);

/// A request authenticated as a tenant in one mode; every query it makes is scoped to that.
pub struct TenantKey(pub Scope);

/// A request authenticated with an operator key.
pub struct OperatorKey;

/// A consumer portal link, checked by `routes::portal::grant`: it acts as its tenant and mode,
/// on its subscriptions only (all of them when `only` is None).
#[derive(Debug, Clone)]
pub struct PortalGrant {
    pub scope: Scope,
    pub only: Option<Vec<String>>,
    pub expires_ms: i64,
}

fn bad_credentials() -> Error {
    Error(ApiError::new(ErrorCode::InvalidCredentials, "invalid API key or secret"))
}

fn basic_credentials(parts: &Parts) -> Option<(String, String)> {
    let header = parts.headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (key, secret) = text.split_once(':')?;
    Some((key.to_owned(), secret.to_owned()))
}

async fn principal(parts: &Parts, state: &AppState) -> Result<Principal, Error> {
    let (key, secret) = basic_credentials(parts).ok_or_else(bad_credentials)?;
    // Keys are hex: anything else cannot exist, and is not worth a database round trip.
    if key.len() > 128 || secret.len() > 256 || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(bad_credentials());
    }
    let cached = state.keys.0.read().ok().and_then(|c| c.get(&key).cloned());
    let record = match cached {
        Some(record) => record,
        None => {
            let record = state.store.find_key(&key).await?.ok_or_else(bad_credentials)?;
            if let Ok(mut cache) = state.keys.0.write() {
                cache.insert(key, record.clone());
            }
            record
        }
    };
    // Comparing digests: how long it takes says nothing about the secret.
    let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
    if digest != record.secret_sha256 {
        return Err(bad_credentials());
    }
    Ok(record.principal)
}

impl FromRequestParts<AppState> for TenantKey {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        // Only the portal's own routes put a grant here, after checking its link.
        if let Some(grant) = parts.extensions.get::<PortalGrant>() {
            return Ok(TenantKey(grant.scope.clone()));
        }
        match principal(parts, state).await? {
            Principal::Tenant(scope) => Ok(TenantKey(scope)),
            Principal::Operator => Err(Error(ApiError::new(
                ErrorCode::UnauthorizedAccess,
                "an operator key cannot act as a tenant; use a tenant key",
            ))),
        }
    }
}

impl FromRequestParts<AppState> for OperatorKey {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        match principal(parts, state).await? {
            Principal::Operator => Ok(OperatorKey),
            Principal::Tenant(_) => {
                Err(Error(ApiError::new(ErrorCode::UnauthorizedAccess, "this endpoint needs an operator key")))
            }
        }
    }
}

/// A request of the Wink Widget, authenticated by a link token (`Authorization: Bearer …`).
pub struct LinkToken(pub smile_sandbox::LinkSession);

impl FromRequestParts<AppState> for LinkToken {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let LinkSessionOf(session) = LinkSessionOf::from_request_parts(parts, state).await?;
        let frame = parts.headers.get(crate::routes::widget::FRAME_HEADER).and_then(|v| v.to_str().ok());
        crate::routes::widget::check_frame(&session.scope, frame)?;
        Ok(LinkToken(session))
    }
}

/// A link token's session wherever the call comes from: only for `GET /link/v1/session`,
/// which the widget calls to learn the frame key [`LinkToken`] then requires.
pub struct LinkSessionOf(pub smile_sandbox::LinkSession);

impl FromRequestParts<AppState> for LinkSessionOf {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .unwrap_or_default()
            .trim();
        Ok(LinkSessionOf(state.platform.authenticate(token).await?))
    }
}
