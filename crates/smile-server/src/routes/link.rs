//! `/link/v1`: what the Wink Widget calls from the browser, authenticated by the user's link
//! token. Every call acts for that token's user and mode only.

use crate::AppState;
use crate::auth::LinkToken;
use crate::envelope::{Data, Result};
use crate::extract::{Id, JsonBody, QueryParams};
use crate::routes::platform::{filtered_providers, page_of};
use crate::views::ListView;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use smile_sandbox::{Account, ConnectRequest, kinds, providers};
use smile_store::DocumentFilter;

/// `GET /link/v1/session`: whom the token speaks for, and the frame key the SDK opens the
/// widget with (see `widget`).
#[utoipa::path(
    get,
    path = "/link/v1/session",
    tag = "link",
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("bearer" = []))
)]
pub async fn session(crate::auth::LinkSessionOf(session): crate::auth::LinkSessionOf) -> Data<Value> {
    let frame = super::widget::frame_key(&session.scope);
    Data(json!({ "userId": session.user_id, "mode": session.scope.mode.as_str(), "frame": frame }))
}

/// `GET /link/v1/providers`: the catalog, with the filters of `GET /v1/providers`.
#[utoipa::path(
    get,
    path = "/link/v1/providers",
    tag = "link",
    params(("size" = Option<u32>, Query, description = "1 to 150, default 10"), ("cursor" = Option<String>, Query, description = "a previous nextCursor")),
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("bearer" = []))
)]
pub async fn list_providers(_: LinkToken, q: QueryParams) -> Result<Data<ListView<providers::Provider>>> {
    Ok(Data(page_of(filtered_providers(&q)?, &q)?))
}

/// `POST /link/v1/accounts`: submits credentials for a provider.
#[utoipa::path(
    post,
    path = "/link/v1/accounts",
    tag = "link",
    request_body = smile_sandbox::ConnectRequest,
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("bearer" = []))
)]
pub async fn connect(
    LinkToken(session): LinkToken,
    State(state): State<AppState>,
    body: JsonBody,
) -> Result<Data<Account>> {
    let request: ConnectRequest = body.parse()?;
    Ok(Data(state.platform.connect(&session, request).await?))
}

/// `GET /link/v1/accounts`: the token's user's accounts.
#[utoipa::path(
    get,
    path = "/link/v1/accounts",
    tag = "link",
    params(("size" = Option<u32>, Query, description = "1 to 150, default 10"), ("cursor" = Option<String>, Query, description = "a previous nextCursor")),
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("bearer" = []))
)]
pub async fn list_accounts(
    LinkToken(session): LinkToken,
    State(state): State<AppState>,
    q: QueryParams,
) -> Result<Data<ListView<Value>>> {
    let filter = DocumentFilter { user_id: Some(session.user_id.clone()), ..Default::default() };
    let page = state.platform.list(&session.scope, kinds::ACCOUNT, &filter, &q.page()?).await?;
    Ok(Data(ListView::of(page, |d| d.body)))
}

/// `GET /link/v1/accounts/{id}`
#[utoipa::path(
    get,
    path = "/link/v1/accounts/{id}",
    tag = "link",
    params(("id" = String, Path)),
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("bearer" = []))
)]
pub async fn get_account(
    LinkToken(session): LinkToken,
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Data<Account>> {
    Ok(Data(state.platform.account(&session.scope, &id, Some(&session.user_id)).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct MfaRequest {
    code: String,
}

/// `POST /link/v1/accounts/{id}/mfa`: the verification code.
#[utoipa::path(
    post,
    path = "/link/v1/accounts/{id}/mfa",
    tag = "link",
    request_body = MfaRequest,
    params(("id" = String, Path)),
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("bearer" = []))
)]
pub async fn mfa(
    LinkToken(session): LinkToken,
    State(state): State<AppState>,
    Id(id): Id,
    body: JsonBody,
) -> Result<Data<Account>> {
    let request: MfaRequest = body.parse()?;
    Ok(Data(state.platform.submit_mfa(&session, &id, &request.code).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SurveyRequest {
    employer_name: String,
}

/// `POST /link/v1/employerSurveys`: an employer the user could not find; the integrator reads
/// these at `GET /v1/employerSurveys`.
#[utoipa::path(
    post,
    path = "/link/v1/employerSurveys",
    tag = "link",
    request_body = SurveyRequest,
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("bearer" = []))
)]
pub async fn survey(
    LinkToken(session): LinkToken,
    State(state): State<AppState>,
    body: JsonBody,
) -> Result<Data<smile_sandbox::EmployerSurvey>> {
    let request: SurveyRequest = body.parse()?;
    Ok(Data(state.platform.submit_survey(&session, &request.employer_name).await?))
}

/// `POST /link/v1/accounts/{id}/mfa/resend`: a new verification code; the tries start over.
#[utoipa::path(
    post,
    path = "/link/v1/accounts/{id}/mfa/resend",
    tag = "link",
    params(("id" = String, Path)),
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("bearer" = []))
)]
pub async fn resend_mfa(
    LinkToken(session): LinkToken,
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Data<Account>> {
    Ok(Data(state.platform.resend_mfa(&session, &id).await?))
}

/// `DELETE /link/v1/accounts/{id}`: the user revokes an account.
#[utoipa::path(
    delete,
    path = "/link/v1/accounts/{id}",
    tag = "link",
    params(("id" = String, Path)),
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("bearer" = []))
)]
pub async fn revoke(LinkToken(session): LinkToken, State(state): State<AppState>, Id(id): Id) -> Result<Data<Account>> {
    Ok(Data(state.platform.revoke(&session.scope, &id, Some(&session.user_id)).await?))
}
