//! Operator-only endpoints.

use crate::AppState;
use crate::auth::OperatorKey;
use crate::envelope::{Published, Result};
use crate::extract::{IdempotencyKey, JsonBody};
use axum::extract::State;
use serde::Deserialize;
use smile_core::{ApiError, EventType, Mode};
use smile_store::{Scope, Store};
use std::collections::HashSet;
use std::sync::RwLock;

/// Tenants found to exist. Tenants are never deleted, so one found stays found; only those
/// that exist are kept, so unknown names cannot grow it. Without it every publish asked the
/// store first (on PostgreSQL a statement parsed and planned per request).
#[derive(Default)]
pub struct KnownTenants(RwLock<HashSet<String>>);

impl KnownTenants {
    /// Whether `tenant_id` exists, asking `store` until it does.
    async fn exist(&self, store: &dyn Store, tenant_id: &str) -> smile_store::Result<bool> {
        if self.0.read().is_ok_and(|known| known.contains(tenant_id)) {
            return Ok(true);
        }
        let exists = store.tenant_exists(tenant_id).await?;
        if exists && let Ok(mut known) = self.0.write() {
            known.insert(tenant_id.to_owned());
        }
        Ok(exists)
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PublishRequest {
    tenant_id: String,
    #[schema(value_type = String, example = "SANDBOX")]
    mode: Mode,
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "USER_CREATED")]
    event_type: EventType,
    #[schema(value_type = Object)]
    data: serde_json::Value,
}

/// `POST /v1/operator/events`: publishes an event for a tenant and mode, as the platform does.
/// Answers once the event and its deliveries are durable. With an `Idempotency-Key` header,
/// the same key within 24 hours answers the first event again and sends nothing.
#[utoipa::path(
    post,
    path = "/v1/operator/events",
    tag = "operator",
    request_body = PublishRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters: the same key within 24 hours answers the first event again, and sends nothing")),
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("basic" = []))
)]
pub async fn publish(
    _: OperatorKey,
    State(state): State<AppState>,
    IdempotencyKey(key): IdempotencyKey,
    body: JsonBody,
) -> Result<Published> {
    let request: PublishRequest = body.parse()?;
    if !state.tenants.exist(&*state.store, &request.tenant_id).await? {
        return Err(ApiError::missing("tenant").into());
    }
    let scope = Scope { tenant_id: request.tenant_id, mode: request.mode };
    let publication = state.engine.publish_once(&scope, request.event_type, request.data, key.as_deref()).await?;
    Ok(Published(publication))
}
