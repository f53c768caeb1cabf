//! The endpoints, one module per resource.

mod archives;
pub(crate) mod assets;
mod catalog;
mod deliveries;
mod events;
mod link;
pub(crate) mod listen;
mod openapi;
pub(crate) mod operator;
mod payload;
mod platform;
mod portal;
mod templates;
pub(crate) mod webhooks;
pub(crate) mod widget;

use crate::AppState;
use crate::envelope::{Error, with_status};
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use smile_core::{ApiError, ErrorCode};

/// The Wink Widget's endpoints, called from other origins (see `cors`).
fn link_router() -> Router<AppState> {
    Router::new()
        .route("/link/v1/session", get(link::session))
        .route("/link/v1/providers", get(link::list_providers))
        .route("/link/v1/accounts", get(link::list_accounts).post(link::connect))
        .route("/link/v1/accounts/{id}", get(link::get_account).delete(link::revoke))
        .route("/link/v1/accounts/{id}/mfa", post(link::mfa))
        .route("/link/v1/accounts/{id}/mfa/resend", post(link::resend_mfa))
        .route(
            "/link/v1/archives",
            get(archives::list_own)
                .post(archives::upload)
                .layer(DefaultBodyLimit::max(archives::MAX_MULTIPART_BODY))
                .layer(axum::middleware::from_fn(|r, n| {
                    archives::refuse_declared_over(archives::MAX_MULTIPART_BODY, r, n)
                })),
        )
        .route("/link/v1/archives/{id}", axum::routing::delete(archives::delete_own))
        .route("/link/v1/fileTypes", get(archives::link_file_types))
        .route("/link/v1/employerSurveys", post(link::survey))
}

/// What every request of the API passes, in one layer: the CORS preflight of `/link/*`, the
/// rate limit and the NUL check before the route; the CORS header and the request count after
/// it. One layer, not five: each `from_fn` layer boxes a future and clones the service it wraps
/// on every request, and five of them were 7 % of the server's CPU under `smile bench`'s `http`.
async fn edge(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let cross_origin = request.uri().path().starts_with("/link/");
    let route = request.extensions().get::<MatchedPath>().cloned();
    let refused = if cross_origin && method == Method::OPTIONS {
        Some(preflight())
    } else {
        let limited = match crate::limits::counting(&state, &request) {
            Some(counting) => counting.refusal(&state).await,
            None => None,
        };
        limited.or_else(|| crate::extract::nul_refusal(&request))
    };
    let (mut response, route) = match refused {
        Some(refused) => (refused, None),
        None => (next.run(request).await, route),
    };
    if cross_origin {
        response.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    }
    crate::exporter::count_request(route.as_ref().map(MatchedPath::as_str), &method, response.status());
    response
}

/// CORS for `/link/*` only: any origin may call it, without cookies (the link token travels
/// in the Authorization header). The `/v1` API, which takes API secrets, stays same-origin.
fn preflight() -> Response {
    let mut preflight = StatusCode::NO_CONTENT.into_response();
    let headers = preflight.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, DELETE"));
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type, x-smile-frame"),
    );
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    preflight
}

fn platform_router() -> Router<AppState> {
    let mut router = Router::new()
        .route("/v1/users", post(platform::create_user))
        .route("/v1/tokens", post(platform::create_token))
        .route("/v1/providers", get(platform::list_providers))
        .route("/v1/providers/{id}", get(platform::get_provider))
        .route("/v1/accounts/{id}/sync", post(platform::sync_account))
        .route("/assets/providers/{file}", get(platform::provider_logo))
        .route("/v1/archives", archives::json_upload(post(archives::create)))
        .route("/v1/archives/{id}/files/{file}", get(archives::file))
        .route("/v1/fileTypes", get(archives::file_types))
        .route("/v1/invites", post(platform::create_invite))
        .route("/v1/invites/{id}/logs", get(platform::invite_logs))
        .route("/v1/archives/classify", archives::json_upload(post(archives::classify)))
        .route("/v1/archives/-/payslips/uploadRawFile", archives::json_upload(post(archives::upload_payslip)))
        .route("/v1/archives/-/payslips/queryPrediction", get(archives::payslip_prediction))
        .route("/v1/archives/-/payslips/listPredictions", get(archives::payslip_predictions))
        .route("/v1/archives/-/payslips/sendManualResult", post(archives::manual_result))
        .route(
            "/v1/consentTemplates",
            get(templates::list_consent)
                .post(templates::create_consent)
                .layer(DefaultBodyLimit::max(templates::MAX_CONSENT_BODY)),
        )
        .route("/v1/consentTemplates/{id}", axum::routing::delete(templates::delete_consent))
        .route("/v1/inviteTemplates", get(templates::list_invite).post(templates::create_invite))
        .route(
            "/v1/inviteTemplates/{id}",
            get(templates::get_invite).put(templates::update_invite).delete(templates::delete_invite),
        )
        .route("/v1/users/{id}/payload", get(payload::of_user))
        .route("/v1/users/{id}/resetSession", post(payload::reset_session))
        .route("/v1/accounts/{id}/payload", get(payload::of_account))
        .route("/v1/accounts/{id}/exports/generate", post(payload::generate_export))
        .route("/v1/accounts/{id}/exports/{export}", get(payload::export_file))
        .route("/v1/accounts/{id}/disableMonitor", post(payload::disable_monitor))
        .route("/sandbox/samples/{name}", get(archives::sample));
    for (path, kind) in platform::DATA_KINDS {
        let mut item = get(platform::get_of(kind));
        if *kind == smile_sandbox::kinds::ACCOUNT {
            item = item.delete(platform::revoke_account);
        }
        if *path == "/v1/archives" {
            item = item.delete(archives::delete);
        }
        router = router.route(path, get(platform::list_of(kind))).route(&format!("{path}/{{id}}"), item);
    }
    router
}

fn asset_router() -> Router<AppState> {
    Router::new()
        .route("/v2/smile.v2.js", get(assets::sdk))
        .route("/v1/smile.v1.js", get(assets::sdk))
        .route("/widget/", get(assets::widget))
        .route("/widget/widget.js", get(assets::widget_js))
        .route("/widget/widget.css", get(assets::widget_css))
        .route("/widget/zh-CN.js", get(assets::widget_zh_cn))
        .route("/widget/invite.js", get(assets::invite_js))
        .route("/invite/{id}", get(assets::invite))
        .route("/demo", get(assets::demo))
        .route("/widget/demo.js", get(assets::demo_js))
        .route("/widget/demo.css", get(assets::demo_css))
        .route("/demo/inboxes", post(assets::demo_new_inbox))
        .route("/demo/hooks/{inbox}", get(assets::demo_inbox).post(assets::demo_receive))
        .route("/portal", get(assets::portal))
        .route("/portal/portal.js", get(assets::portal_js))
        .route("/portal/portal.css", get(assets::portal_css))
}

/// The consumer portal's calls: the `/v1` handlers themselves, for a portal link's tenant, mode
/// and subscriptions (see `portal::grant`).
fn portal_router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/portal/api/overview", get(portal::overview))
        .route("/portal/api/webhooks/{id}/active", post(portal::set_active))
        .route("/portal/api/webhooks/{id}/test", post(webhooks::test))
        .route("/portal/api/webhooks/{id}/rotateSecret", post(webhooks::rotate_secret))
        .route("/portal/api/webhooks/{id}/recover", post(webhooks::recover))
        .route("/portal/api/webhooks/{id}/deliveries", get(deliveries::of_subscription))
        .route("/portal/api/deliveries/{id}/retry", post(deliveries::retry))
        .route_layer(axum::middleware::from_fn_with_state(state, portal::grant))
}

pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .merge(asset_router())
        .merge(link_router())
        .merge(platform_router())
        .merge(portal_router(state.clone()))
        .route("/v1/portal/sessions", post(portal::create_session))
        .route("/v1/widget/allowedOrigins", get(widget::get_origins).put(widget::put_origins))
        .route("/health", get(|| async { "ok" }))
        .route("/v1/webhooks", get(webhooks::list).post(webhooks::create))
        .route("/v1/webhooks/{id}", get(webhooks::get).patch(webhooks::update).delete(webhooks::delete))
        .route("/v1/webhooks/{id}/test", post(webhooks::test))
        .route("/v1/webhooks/{id}/rotateSecret", post(webhooks::rotate_secret))
        .route("/v1/webhooks/{id}/recover", post(webhooks::recover))
        .route("/v1/webhooks/{id}/deliveries", get(deliveries::of_subscription))
        .route("/v1/events", get(events::list).post(events::trigger))
        .route("/v1/events/{id}", get(events::get))
        .route("/v1/events/{id}/deliveries", get(deliveries::of_event))
        .route("/v1/deliveries/{id}", get(deliveries::get))
        .route("/v1/deliveries/{id}/retry", post(deliveries::retry))
        .route("/v1/eventTypes", get(catalog::event_types))
        .route("/v1/egressIps", get(catalog::egress_ips))
        .route("/v1/operator/events", post(operator::publish))
        .route("/v1/openapi.json", get(openapi::document))
        .route("/metrics", get(crate::exporter::scrape))
        .route("/v1/listen", post(listen::open))
        .route("/v1/listen/{id}", axum::routing::delete(listen::close))
        .route("/v1/listen/{id}/next", get(listen::next))
        .route("/v1/listen/{id}/results", post(listen::report))
        .fallback(|| async { Error(ApiError::new(ErrorCode::MissingResource, "no such endpoint")) })
        .method_not_allowed_fallback(|| async {
            with_status(ErrorCode::UnsupportedMethod, 405, "this endpoint does not support that method")
        })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(state.clone(), edge))
        .with_state(state)
}
