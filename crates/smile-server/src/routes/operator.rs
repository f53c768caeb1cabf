//! Operator-only endpoints.

use crate::AppState;
use crate::auth::OperatorKey;
use crate::envelope::{Data, Result};
use crate::extract::JsonBody;
use axum::extract::State;
use serde::Deserialize;
use smile_core::{ApiError, Event, EventType, Mode};
use smile_store::Scope;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PublishRequest {
    tenant_id: String,
    mode: Mode,
    #[serde(rename = "type")]
    event_type: EventType,
    data: serde_json::Value,
}

/// `POST /v1/operator/events`: publishes an event for a tenant and mode, as the platform does.
/// Answers once the event and its deliveries are durable.
pub async fn publish(_: OperatorKey, State(state): State<AppState>, body: JsonBody) -> Result<Data<Event>> {
    let request: PublishRequest = body.parse()?;
    if !state.store.tenant_exists(&request.tenant_id).await? {
        return Err(ApiError::missing("tenant").into());
    }
    let scope = Scope { tenant_id: request.tenant_id, mode: request.mode };
    Ok(Data(state.engine.publish(&scope, request.event_type, request.data).await?))
}
