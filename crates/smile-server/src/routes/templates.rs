//! Consent and invite templates (`/v1/consentTemplates`, `/v1/inviteTemplates`).

use crate::AppState;
use crate::auth::TenantKey;
use crate::envelope::{Created, Data, Done, Result};
use crate::extract::{Id, JsonBody, QueryParams};
use crate::views::ListView;
use axum::extract::State;
use smile_sandbox::{ConsentTemplate, ConsentTemplateRequest, InviteTemplate, InviteTemplateRequest, kinds};
use smile_store::Page;

/// A consent template may hold 65,535 characters of text, which JSON can spell in up to
/// twelve bytes each (a surrogate pair as `\uXXXX\uXXXX`).
pub const MAX_CONSENT_BODY: usize = 65_535 * 12 + 64 * 1024;

fn view<T: serde::Serialize>(page: Page<T>) -> ListView<T> {
    ListView::of(page, |t| t)
}

/// `POST /v1/consentTemplates`
#[utoipa::path(post, path = "/v1/consentTemplates", tag = "sandbox", request_body = ConsentTemplateRequest,
    responses((status = 201, description = "the template, in the Smile envelope")), security(("basic" = [])))]
pub async fn create_consent(
    TenantKey(scope): TenantKey,
    State(state): State<AppState>,
    body: JsonBody,
) -> Result<Created<ConsentTemplate>> {
    Ok(Created(state.platform.create_consent_template(&scope, body.parse()?).await?))
}

/// `GET /v1/consentTemplates`
#[utoipa::path(get, path = "/v1/consentTemplates", tag = "sandbox",
    params(("size" = Option<u32>, Query, description = "1 to 150, default 10"), ("cursor" = Option<String>, Query, description = "a previous nextCursor")),
    responses((status = 200, description = "a page of templates, in the Smile envelope")), security(("basic" = [])))]
pub async fn list_consent(
    TenantKey(scope): TenantKey,
    State(state): State<AppState>,
    q: QueryParams,
) -> Result<Data<ListView<ConsentTemplate>>> {
    Ok(Data(view(state.platform.consent_templates(&scope, &q.page()?).await?)))
}

/// `DELETE /v1/consentTemplates/{id}`
#[utoipa::path(delete, path = "/v1/consentTemplates/{id}", tag = "sandbox", params(("id" = String, Path)),
    responses((status = 200, description = "deleted")), security(("basic" = [])))]
pub async fn delete_consent(TenantKey(scope): TenantKey, State(state): State<AppState>, Id(id): Id) -> Result<Done> {
    state.platform.delete_template(&scope, kinds::CONSENT_TEMPLATE, &id).await?;
    Ok(Done)
}

/// `POST /v1/inviteTemplates`
#[utoipa::path(post, path = "/v1/inviteTemplates", tag = "sandbox", request_body = InviteTemplateRequest,
    responses((status = 201, description = "the template, in the Smile envelope")), security(("basic" = [])))]
pub async fn create_invite(
    TenantKey(scope): TenantKey,
    State(state): State<AppState>,
    body: JsonBody,
) -> Result<Created<InviteTemplate>> {
    Ok(Created(state.platform.create_invite_template(&scope, body.parse()?).await?))
}

/// `GET /v1/inviteTemplates`
#[utoipa::path(get, path = "/v1/inviteTemplates", tag = "sandbox",
    params(("size" = Option<u32>, Query, description = "1 to 150, default 10"), ("cursor" = Option<String>, Query, description = "a previous nextCursor")),
    responses((status = 200, description = "a page of templates, in the Smile envelope")), security(("basic" = [])))]
pub async fn list_invite(
    TenantKey(scope): TenantKey,
    State(state): State<AppState>,
    q: QueryParams,
) -> Result<Data<ListView<InviteTemplate>>> {
    Ok(Data(view(state.platform.invite_templates(&scope, &q.page()?).await?)))
}

/// `GET /v1/inviteTemplates/{id}`
#[utoipa::path(get, path = "/v1/inviteTemplates/{id}", tag = "sandbox", params(("id" = String, Path)),
    responses((status = 200, description = "the template, in the Smile envelope")), security(("basic" = [])))]
pub async fn get_invite(
    TenantKey(scope): TenantKey,
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Data<InviteTemplate>> {
    let template = state.platform.invite_template(&scope, &id).await?;
    Ok(Data(template.ok_or_else(|| crate::envelope::Error(smile_core::ApiError::missing("invite template")))?))
}

/// `PUT /v1/inviteTemplates/{id}`: replaces the template's wording.
#[utoipa::path(put, path = "/v1/inviteTemplates/{id}", tag = "sandbox", params(("id" = String, Path)),
    request_body = InviteTemplateRequest,
    responses((status = 200, description = "the template, in the Smile envelope")), security(("basic" = [])))]
pub async fn update_invite(
    TenantKey(scope): TenantKey,
    State(state): State<AppState>,
    Id(id): Id,
    body: JsonBody,
) -> Result<Data<InviteTemplate>> {
    Ok(Data(state.platform.update_invite_template(&scope, &id, body.parse()?).await?))
}

/// `DELETE /v1/inviteTemplates/{id}`
#[utoipa::path(delete, path = "/v1/inviteTemplates/{id}", tag = "sandbox", params(("id" = String, Path)),
    responses((status = 200, description = "deleted")), security(("basic" = [])))]
pub async fn delete_invite(TenantKey(scope): TenantKey, State(state): State<AppState>, Id(id): Id) -> Result<Done> {
    state.platform.delete_template(&scope, kinds::INVITE_TEMPLATE, &id).await?;
    Ok(Done)
}
