//! The endpoints, one module per resource.

mod catalog;
mod deliveries;
mod events;
mod operator;
mod webhooks;

use crate::AppState;
use crate::envelope::{Error, with_status};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use smile_core::{ApiError, ErrorCode};

pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/v1/webhooks", get(webhooks::list).post(webhooks::create))
        .route(
            "/v1/webhooks/{id}",
            get(webhooks::get)
                .patch(webhooks::update)
                .delete(webhooks::delete),
        )
        .route("/v1/webhooks/{id}/test", post(webhooks::test))
        .route(
            "/v1/webhooks/{id}/rotateSecret",
            post(webhooks::rotate_secret),
        )
        .route("/v1/webhooks/{id}/recover", post(webhooks::recover))
        .route(
            "/v1/webhooks/{id}/deliveries",
            get(deliveries::of_subscription),
        )
        .route("/v1/events", get(events::list))
        .route("/v1/events/{id}", get(events::get))
        .route("/v1/events/{id}/deliveries", get(deliveries::of_event))
        .route("/v1/deliveries/{id}", get(deliveries::get))
        .route("/v1/deliveries/{id}/retry", post(deliveries::retry))
        .route("/v1/eventTypes", get(catalog::event_types))
        .route("/v1/egressIps", get(catalog::egress_ips))
        .route("/v1/operator/events", post(operator::publish))
        .fallback(|| async {
            Error(ApiError::new(
                ErrorCode::MissingResource,
                "no such endpoint",
            ))
        })
        .method_not_allowed_fallback(|| async {
            with_status(
                ErrorCode::UnsupportedMethod,
                405,
                "this endpoint does not support that method",
            )
        })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::limits::enforce,
        ))
        .with_state(state)
}
