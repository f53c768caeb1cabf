//! A user's session and an account's records in one answer, session resets, exports and
//! continuous sync (`/v1/users/{id}/payload`, `/v1/accounts/{id}/payload`, …).

use crate::AppState;
use crate::auth::TenantKey;
use crate::envelope::{Data, Done, Result};
use crate::extract::{Id, JsonBody};
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use serde::Deserialize;
use smile_sandbox::{AccountExport, AccountPayload, ExportFormat, UserPayload};

/// `GET /v1/users/{id}/payload`: what the user's session connected, with every record.
#[utoipa::path(get, path = "/v1/users/{id}/payload", tag = "sandbox", params(("id" = String, Path)),
    responses((status = 200, description = "the session's payload, in the Smile envelope")), security(("basic" = [])))]
pub async fn of_user(
    TenantKey(scope): TenantKey,
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Data<UserPayload>> {
    Ok(Data(state.platform.user_payload(&scope, &id).await?))
}

/// `POST /v1/users/{id}/resetSession`: the session starts over; `USER_SESSION_RESET` follows.
#[utoipa::path(post, path = "/v1/users/{id}/resetSession", tag = "sandbox", params(("id" = String, Path)),
    responses((status = 200, description = "reset")), security(("basic" = [])))]
pub async fn reset_session(TenantKey(scope): TenantKey, State(state): State<AppState>, Id(id): Id) -> Result<Done> {
    state.platform.reset_session(&scope, &id).await?;
    Ok(Done)
}

/// `GET /v1/accounts/{id}/payload`: every record of an account (or archive).
#[utoipa::path(get, path = "/v1/accounts/{id}/payload", tag = "sandbox", params(("id" = String, Path)),
    responses((status = 200, description = "the account's records, in the Smile envelope")), security(("basic" = [])))]
pub async fn of_account(
    TenantKey(scope): TenantKey,
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Data<AccountPayload>> {
    Ok(Data(state.platform.account_payload(&scope, &id).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ExportRequest {
    export_extension_type: ExportFormat,
}

/// `POST /v1/accounts/{id}/exports/generate`: a CSV or PDF of the account's records, with
/// its download link and MD5.
#[utoipa::path(post, path = "/v1/accounts/{id}/exports/generate", tag = "sandbox", params(("id" = String, Path)),
    request_body = ExportRequest,
    responses((status = 200, description = "the export, in the Smile envelope")), security(("basic" = [])))]
pub async fn generate_export(
    TenantKey(scope): TenantKey,
    State(state): State<AppState>,
    Id(id): Id,
    body: JsonBody,
) -> Result<Data<AccountExport>> {
    let request: ExportRequest = body.parse()?;
    Ok(Data(state.platform.export_account(&scope, &id, request.export_extension_type).await?))
}

/// `GET /v1/accounts/{id}/exports/{export}`: an export's file (its `downloadUrl`).
#[utoipa::path(get, path = "/v1/accounts/{id}/exports/{export}", tag = "sandbox",
    params(("id" = String, Path), ("export" = String, Path)),
    responses((status = 200, description = "the file (CSV or PDF)")), security(("basic" = [])))]
pub async fn export_file(
    TenantKey(scope): TenantKey,
    State(state): State<AppState>,
    Path((id, export)): Path<(String, String)>,
) -> Result<axum::response::Response> {
    let (format, content) = state.platform.export_file(&scope, &id, &export).await?;
    Ok(([(header::CONTENT_TYPE, format.content_type())], content).into_response())
}

/// `POST /v1/accounts/{id}/disableMonitor`: continuous sync off (`CUSTOMER_DISABLED`).
#[utoipa::path(post, path = "/v1/accounts/{id}/disableMonitor", tag = "sandbox", params(("id" = String, Path)),
    responses((status = 200, description = "disabled")), security(("basic" = [])))]
pub async fn disable_monitor(TenantKey(scope): TenantKey, State(state): State<AppState>, Id(id): Id) -> Result<Done> {
    state.platform.disable_monitor(&scope, &id).await?;
    Ok(Done)
}
