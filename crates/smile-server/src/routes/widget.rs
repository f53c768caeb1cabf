//! Where the Wink Widget may be framed. In sandbox mode, anywhere, opaque origins included (a
//! sandboxed `srcdoc` iframe, as in Smile's iframe quickstart). In production, only on the
//! tenant's allowed origins (`PUT /v1/widget/allowedOrigins`) and this server's own pages.
//!
//! The widget learns its token's frame key from `GET /link/v1/session`; with a production
//! token it loads itself again as `/widget/?frame=<key>`. That key picks the framing policy the
//! page is served with, and the widget sends it back with every link call (`X-Smile-Frame`). A
//! production token is only served to a widget whose page carried its own tenant's policy, so
//! framing the widget elsewhere, or under another tenant's key, gets nothing.

use crate::AppState;
use crate::auth::TenantKey;
use crate::envelope::{Data, Error, Result};
use crate::extract::JsonBody;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use smile_core::{ApiError, ErrorCode, Mode};
use smile_store::{Document, Scope};

/// The header the widget sends its frame key in.
pub const FRAME_HEADER: &str = "x-smile-frame";

/// The widget's policy but for framing: its own scripts, styles and images only.
const BASE_CSP: &str =
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'";

const KIND: &str = "widget_origins";
const MAX_ORIGINS: usize = 20;

/// The frame key of a tenant and mode: `sandbox.<tenant>` or `production.<tenant>`.
pub fn frame_key(scope: &Scope) -> String {
    format!("{}.{}", scope.mode.as_str().to_ascii_lowercase(), scope.tenant_id)
}

fn scope_of(key: &str) -> Option<Scope> {
    let (mode, tenant) = key.split_once('.')?;
    let mode: Mode = mode.parse().ok()?;
    (!tenant.is_empty()).then(|| Scope { tenant_id: tenant.to_owned(), mode })
}

/// The tenant's allowed origins, each a scheme, host and port.
#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AllowedOrigins {
    pub origins: Vec<String>,
}

impl AllowedOrigins {
    /// Each origin as the browser spells it (`https://app.example.com`, a port only when not
    /// the scheme's own); plain `http` only for this machine.
    fn normalised(self) -> std::result::Result<Self, ApiError> {
        if self.origins.len() > MAX_ORIGINS {
            return Err(ApiError::invalid(format!("origins takes at most {MAX_ORIGINS} origins")));
        }
        let mut origins = Vec::new();
        for text in &self.origins {
            let bad = || ApiError::invalid(format!("`{text}` is not an origin like https://app.example.com"));
            let url = url::Url::parse(text).map_err(|_| bad())?;
            let local = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
            let plain =
                url.path() == "/" && url.query().is_none() && url.fragment().is_none() && url.username().is_empty();
            if !plain || !(url.scheme() == "https" || (url.scheme() == "http" && local)) || url.host_str().is_none() {
                return Err(bad());
            }
            let origin = url.origin().ascii_serialization();
            if !origins.contains(&origin) {
                origins.push(origin);
            }
        }
        Ok(AllowedOrigins { origins })
    }
}

async fn allowed(state: &AppState, scope: &Scope) -> std::result::Result<AllowedOrigins, Error> {
    let stored = state.store.get_document(scope, KIND, KIND).await?;
    Ok(stored.and_then(|d| serde_json::from_value(d.body).ok()).unwrap_or_default())
}

/// The widget page's `Content-Security-Policy` for `/widget/?frame=<key>`. Without a key (the
/// first load, before the widget has read its session) the page may be framed anywhere, but a
/// production token gets nothing there (see [`check_frame`]).
pub async fn policy(state: &AppState, frame: Option<&str>) -> String {
    let Some(scope) = frame.and_then(scope_of).filter(|s| s.mode == Mode::Production) else {
        return BASE_CSP.to_owned();
    };
    let origins = allowed(state, &scope).await.map(|a| a.origins).unwrap_or_default();
    format!("{BASE_CSP}; frame-ancestors 'self' {}", origins.join(" ")).trim_end().to_owned()
}

/// Refuses a production link call that does not come from a widget opened under the token's
/// own frame key.
pub fn check_frame(scope: &Scope, sent: Option<&str>) -> std::result::Result<(), ApiError> {
    if scope.mode == Mode::Production && sent != Some(frame_key(scope).as_str()) {
        return Err(ApiError::new(
            ErrorCode::UnauthorizedAccess,
            "a production link token works only in the widget the SDK opens on an allowed origin",
        ));
    }
    Ok(())
}

/// `GET /v1/widget/allowedOrigins`
#[utoipa::path(get, path = "/v1/widget/allowedOrigins", tag = "widget",
    responses((status = 200, description = "the origins, in the Smile envelope")), security(("basic" = [])))]
pub async fn get_origins(TenantKey(scope): TenantKey, State(state): State<AppState>) -> Result<Data<AllowedOrigins>> {
    Ok(Data(allowed(&state, &scope).await?))
}

/// `PUT /v1/widget/allowedOrigins`: the origins whose pages may frame the widget with this
/// mode's tokens (production only; sandbox widgets may be framed anywhere).
#[utoipa::path(put, path = "/v1/widget/allowedOrigins", tag = "widget", request_body = AllowedOrigins,
    responses((status = 200, description = "the origins as stored, in the Smile envelope")), security(("basic" = [])))]
pub async fn put_origins(
    TenantKey(scope): TenantKey,
    State(state): State<AppState>,
    body: JsonBody,
) -> Result<Data<AllowedOrigins>> {
    let origins = body.parse::<AllowedOrigins>()?.normalised()?;
    let body = serde_json::to_value(&origins).map_err(|e| Error(ApiError::server(e.to_string())))?;
    let document = Document::new(KIND, KIND, &scope, body);
    state.store.put_documents(vec![document]).await?;
    Ok(Data(origins))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalised_and_checked() {
        let ok = AllowedOrigins { origins: vec!["https://App.Example.com/".into(), "http://localhost:3000".into()] };
        assert_eq!(ok.normalised().expect("ok").origins, vec!["https://app.example.com", "http://localhost:3000"]);
        for bad in ["http://app.example.com", "https://app.example.com/path", "javascript:alert(1)", "*", "https://"] {
            assert!(AllowedOrigins { origins: vec![bad.into()] }.normalised().is_err(), "{bad}");
        }
    }

    #[test]
    fn frame_keys_name_a_tenant_and_mode() {
        let scope = Scope { tenant_id: "acme.eu".into(), mode: Mode::Production };
        assert_eq!(frame_key(&scope), "production.acme.eu");
        assert_eq!(scope_of("production.acme.eu"), Some(scope.clone()));
        assert!(check_frame(&scope, Some("sandbox.acme.eu")).is_err());
        assert!(check_frame(&scope, None).is_err());
        assert!(check_frame(&scope, Some("production.acme.eu")).is_ok());
        let sandbox = Scope { tenant_id: "acme".into(), mode: Mode::Sandbox };
        assert!(check_frame(&sandbox, None).is_ok());
    }
}
