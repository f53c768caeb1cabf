//! The event catalog and the egress IPs: what an integrator reads before subscribing.

use crate::AppState;
use crate::auth::TenantKey;
use crate::envelope::Data;
use crate::views::ListView;
use axum::extract::State;
use smile_core::EventType;

/// `GET /v1/eventTypes`: every event type with its description and `data` JSON Schema.
#[utoipa::path(
    get,
    path = "/v1/eventTypes",
    tag = "catalog",
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("basic" = []))
)]
pub async fn event_types(_: TenantKey) -> Data<ListView<smile_core::catalog::EventTypeInfo>> {
    Data(ListView::new(EventType::ALL.iter().map(|t| t.info()).collect(), None))
}

/// `GET /v1/egressIps`: the addresses deliveries come from, for receivers' allow-lists.
#[utoipa::path(
    get,
    path = "/v1/egressIps",
    tag = "catalog",
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("basic" = []))
)]
pub async fn egress_ips(_: TenantKey, State(state): State<AppState>) -> Data<serde_json::Value> {
    Data(serde_json::json!({ "ips": state.engine.public_egress_ips() }))
}
