//! The sandbox platform's API: users, link tokens, providers, accounts, tasks and the data
//! they add.

use crate::AppState;
use crate::auth::TenantKey;
use crate::envelope::{Created, Data, Error, Result};
use crate::extract::{Id, JsonBody, QueryParams};
use crate::views::ListView;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use smile_core::{ApiError, timefmt};
use smile_sandbox::{kinds, providers};
use smile_store::{DocumentFilter, Scope};

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateUser {
    #[serde(default)]
    #[schema(value_type = Object)]
    external_metadata: Map<String, Value>,
}

/// `POST /v1/users`: a user and its link token; `USER_CREATED` follows.
#[utoipa::path(
    post,
    path = "/v1/users",
    tag = "sandbox",
    request_body = Option<CreateUser>,
    responses((status = 201, description = "success, in the Smile envelope")),
    security(("basic" = []))
)]
pub async fn create_user(
    TenantKey(scope): TenantKey,
    State(state): State<AppState>,
    body: JsonBody,
) -> Result<Created<Value>> {
    let request: CreateUser = body.parse_or_default()?;
    let (user, token) = state.platform.create_user(&scope, request.external_metadata).await?;
    Ok(Created(json!({ "user": user, "token": token })))
}

/// `POST /v1/tokens?userId=`: a fresh link token (the Refresh Token API).
#[utoipa::path(
    post,
    path = "/v1/tokens",
    tag = "sandbox",
    params(("userId" = String, Query)),
    responses((status = 201, description = "a fresh link token, in the Smile envelope")),
    security(("basic" = []))
)]
pub async fn create_token(
    TenantKey(scope): TenantKey,
    State(state): State<AppState>,
    q: QueryParams,
) -> Result<Created<smile_sandbox::Token>> {
    let user_id = q.get("userId").ok_or_else(|| Error(ApiError::invalid("userId is required")))?;
    Ok(Created(state.platform.issue_token(&scope, user_id).await?))
}

fn bound(q: &QueryParams, name: &str, end: bool) -> Result<Option<i64>> {
    let Some(text) = q.get(name) else { return Ok(None) };
    let ms = timefmt::parse_time(text)
        .ok_or_else(|| Error(ApiError::invalid(format!("{name} must be yyyy-MM-dd or yyyy-MM-ddTHH:mm:ssZ"))))?;
    Ok(Some(if end && timefmt::is_date_only(text) { ms + 86_400_000 } else { ms }))
}

/// The filters every platform list takes: `userId`, `sourceId` (or the older `accountId`),
/// `startDate`, `endDate`.
pub(super) fn filter(q: &QueryParams) -> Result<DocumentFilter> {
    Ok(DocumentFilter {
        user_id: q.get("userId").map(str::to_owned),
        body_type: q.get("fileType").map(str::to_owned),
        source_id: q.get("sourceId").or_else(|| q.get("accountId")).map(str::to_owned),
        from_ms: bound(q, "startDate", false)?,
        to_ms: bound(q, "endDate", true)?,
    })
}

async fn list(state: &AppState, scope: &Scope, kind: &str, q: &QueryParams) -> Result<Data<ListView<Value>>> {
    let page = state.platform.list(scope, kind, &filter(q)?, &q.page()?).await?;
    Ok(Data(ListView::of(page, |d| d.body)))
}

/// `GET /v1/{kind}` for one document kind.
pub fn list_of(
    kind: &'static str,
) -> impl Fn(
    TenantKey,
    State<AppState>,
    QueryParams,
) -> std::pin::Pin<Box<dyn Future<Output = axum::response::Response> + Send>>
+ Clone
+ Send
+ 'static {
    move |TenantKey(scope), State(state), q| {
        Box::pin(async move {
            match list(&state, &scope, kind, &q).await {
                Ok(page) => page.into_response(),
                Err(e) => e.into_response(),
            }
        })
    }
}

/// `GET /v1/{kind}/{id}` for one document kind.
pub fn get_of(
    kind: &'static str,
) -> impl Fn(TenantKey, State<AppState>, Id) -> std::pin::Pin<Box<dyn Future<Output = axum::response::Response> + Send>>
+ Clone
+ Send
+ 'static {
    move |TenantKey(scope), State(state), Id(id)| {
        Box::pin(async move {
            match state.platform.find(&scope, kind, &id).await {
                Ok(body) => Data(body).into_response(),
                Err(e) => Error(e).into_response(),
            }
        })
    }
}

/// `DELETE /v1/accounts/{id}`: revokes the account and removes its data.
#[utoipa::path(
    delete,
    path = "/v1/accounts/{id}",
    tag = "sandbox",
    params(("id" = String, Path)),
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("basic" = []))
)]
pub async fn revoke_account(
    TenantKey(scope): TenantKey,
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Data<smile_sandbox::Account>> {
    Ok(Data(state.platform.revoke(&scope, &id, None).await?))
}

/// `POST /v1/accounts/{id}/sync`: a sandbox resync of a continuously synced account.
#[utoipa::path(
    post,
    path = "/v1/accounts/{id}/sync",
    tag = "sandbox",
    params(("id" = String, Path)),
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("basic" = []))
)]
pub async fn sync_account(
    TenantKey(scope): TenantKey,
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Data<smile_sandbox::Task>> {
    Ok(Data(state.platform.resync(&scope, &id).await?))
}

fn flag(q: &QueryParams, name: &str) -> Result<Option<bool>> {
    match q.get(name) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(_) => Err(Error(ApiError::invalid(format!("{name} must be true or false")))),
    }
}

/// The catalog after the filters of `GET /v1/providers`, `topIds` first.
pub fn filtered_providers(q: &QueryParams) -> Result<Vec<providers::Provider>> {
    let (active, enabled, connects) = (flag(q, "active")?, flag(q, "enabled")?, flag(q, "accountConnection")?);
    let list = |name: &str| q.get(name).map(|v| v.split(',').map(str::trim).map(str::to_owned).collect::<Vec<_>>());
    let (ids, top) = (list("ids"), list("topIds").unwrap_or_default());
    if top.len() > 10 {
        return Err(Error(ApiError::invalid("topIds takes at most 10 provider ids")));
    }
    let name = q.get("name").map(str::to_lowercase);
    let mut found: Vec<_> = providers::all()
        .into_iter()
        .filter(|p| q.get("type").is_none_or(|t| t == p.provider_type))
        .filter(|p| q.get("subType").is_none_or(|t| t == p.sub_type))
        .filter(|p| active.is_none_or(|a| a == p.active))
        .filter(|p| enabled.is_none_or(|e| e == p.enabled))
        .filter(|p| connects.is_none_or(|c| c == p.account_connection))
        .filter(|p| ids.as_ref().is_none_or(|ids| ids.iter().any(|i| i == p.id)))
        .filter(|p| {
            name.as_ref().is_none_or(|n| p.name.to_lowercase().contains(n) || p.long_name.to_lowercase().contains(n))
        })
        .collect();
    found.sort_by_key(|p| top.iter().position(|t| t == p.id).unwrap_or(usize::MAX));
    Ok(found)
}

/// `GET /v1/providers`: the sandbox catalog, with the contract's filters.
#[utoipa::path(
    get,
    path = "/v1/providers",
    tag = "sandbox",
    params(("type" = Option<String>, Query), ("q" = Option<String>, Query), ("size" = Option<u32>, Query, description = "1 to 150, default 10"), ("cursor" = Option<String>, Query, description = "a previous nextCursor")),
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("basic" = []))
)]
pub async fn list_providers(_: TenantKey, q: QueryParams) -> Result<Data<ListView<providers::Provider>>> {
    Ok(Data(page_of(filtered_providers(&q)?, &q)?))
}

/// A page of an in-memory list; the cursor is the offset.
pub fn page_of<T: serde::Serialize>(items: Vec<T>, q: &QueryParams) -> Result<ListView<T>> {
    let page = q.page()?;
    let start = page.before_seq.unwrap_or(0).max(0) as usize;
    let end = (start + page.size as usize).min(items.len());
    let next = (end < items.len()).then(|| end.to_string());
    Ok(ListView::new(items.into_iter().skip(start).take(end.saturating_sub(start)).collect(), next))
}

/// `GET /v1/providers/{id}`
#[utoipa::path(
    get,
    path = "/v1/providers/{id}",
    tag = "sandbox",
    params(("id" = String, Path)),
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("basic" = []))
)]
pub async fn get_provider(_: TenantKey, Id(id): Id) -> Result<Data<providers::Provider>> {
    providers::find(&id).map(Data).ok_or_else(|| Error(ApiError::missing("provider")))
}

/// `GET /assets/providers/{id}.svg`: provider logos, served here so the widget needs no CDN.
pub async fn provider_logo(Path(file): Path<String>, headers: axum::http::HeaderMap) -> axum::response::Response {
    match file.strip_suffix(".svg").and_then(providers::logo_svg) {
        Some(svg) => super::assets::serve_made(&headers, "image/svg+xml", svg.into_bytes()),
        None => Error(ApiError::missing("logo")).into_response(),
    }
}

/// The kinds the data endpoints serve, with their paths.
pub const DATA_KINDS: &[(&str, &str)] = &[
    ("/v1/users", kinds::USER),
    ("/v1/accounts", kinds::ACCOUNT),
    ("/v1/tasks", kinds::TASK),
    ("/v1/identities", kinds::IDENTITY),
    ("/v1/employments", kinds::EMPLOYMENT),
    ("/v1/incomes", kinds::INCOME),
    ("/v1/contributions", kinds::CONTRIBUTION),
    ("/v1/ratings", kinds::RATING),
    ("/v1/transactions", kinds::TRANSACTION),
    ("/v1/documents", kinds::DOCUMENT),
    ("/v1/eincomes", kinds::EINCOME),
    ("/v1/insights", kinds::INSIGHT),
    ("/v1/liabilities", kinds::LIABILITY),
    ("/v1/links", kinds::LINK),
    ("/v1/invites", kinds::INVITE),
    ("/v1/employerSurveys", kinds::EMPLOYER_SURVEY),
    ("/v1/archives", kinds::ARCHIVE),
    ("/v1/uploads", kinds::ARCHIVE),
];

/// `POST /v1/invites`: invites someone by e-mail or phone; `INVITE_INVITED` follows.
#[utoipa::path(
    post,
    path = "/v1/invites",
    tag = "sandbox",
    request_body = smile_sandbox::InviteRequest,
    responses((status = 201, description = "success, in the Smile envelope")),
    security(("basic" = []))
)]
pub async fn create_invite(
    TenantKey(scope): TenantKey,
    State(state): State<AppState>,
    body: JsonBody,
) -> Result<Created<smile_sandbox::Invite>> {
    let request: smile_sandbox::InviteRequest = body.parse()?;
    Ok(Created(state.platform.invite(&scope, request).await?))
}

/// `GET /v1/invites/{id}/logs`: what happened to an invite, and the messages in the outbox.
#[utoipa::path(
    get,
    path = "/v1/invites/{id}/logs",
    tag = "sandbox",
    params(("id" = String, Path), ("size" = Option<u32>, Query, description = "1 to 150, default 10"), ("cursor" = Option<String>, Query, description = "a previous nextCursor")),
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("basic" = []))
)]
pub async fn invite_logs(
    TenantKey(scope): TenantKey,
    State(state): State<AppState>,
    Id(id): Id,
    q: QueryParams,
) -> Result<Data<ListView<Value>>> {
    state.platform.find(&scope, kinds::INVITE, &id).await?;
    let filter = DocumentFilter { source_id: Some(id), ..Default::default() };
    let page = state.platform.list(&scope, kinds::INVITE_LOG, &filter, &q.page()?).await?;
    Ok(Data(ListView::of(page, |d| d.body)))
}
