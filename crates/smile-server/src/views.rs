//! How stored records look on the wire.

use serde::Serialize;
use smile_core::timefmt::format_ms;
use smile_store::{Attempt, Delivery, DeliveryStatus, Ordering, Page, StoredEvent, Subscription};

/// A subscription, with the fields of the contract's `Webhook` and ours after them.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionView {
    id: String,
    created_at: String,
    name: String,
    url: String,
    event_types: Vec<String>,
    active: bool,
    /// The shared secret; for an ed25519 subscription, its public key (the secret key stays
    /// on the server).
    secret: String,
    include_payload: bool,
    updated_at: String,
    mode: &'static str,
    /// Until when the previous secret still signs too (after a rotation).
    previous_secret_expires_at: Option<String>,
    disabled_reason: Option<String>,
    /// `concurrent` (the default) or `fifo`.
    ordering: Ordering,
    /// `hmac` or `ed25519`.
    signing: &'static str,
    /// For `ed25519`: the `whpk_` key receivers verify `v1a` signatures with.
    #[serde(skip_serializing_if = "Option::is_none")]
    public_key: Option<String>,
    /// For a FIFO subscription whose next delivery has failed: the lane waits on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    blocked_by: Option<BlockedView>,
}

/// The delivery a FIFO lane waits on.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockedView {
    delivery_id: String,
    event_id: String,
    attempt_count: u32,
    next_attempt_at: Option<String>,
    last_status_code: Option<u16>,
    last_error: Option<String>,
}

impl SubscriptionView {
    /// Adds the delivery a FIFO lane is blocked on, if any.
    pub fn blocked_by(mut self, head: Option<Delivery>) -> Self {
        self.blocked_by = head.map(|d| BlockedView {
            delivery_id: d.id,
            event_id: d.event_id,
            attempt_count: d.attempts,
            next_attempt_at: d.next_attempt_ms.map(format_ms),
            last_status_code: d.last_status_code,
            last_error: d.last_error,
        });
        self
    }
}

impl From<&Subscription> for SubscriptionView {
    fn from(s: &Subscription) -> Self {
        let now = smile_core::timefmt::now_ms();
        let public_key = smile_signature::Secret::parse(&s.secret).ok().and_then(|k| k.public_key());
        SubscriptionView {
            id: s.id.clone(),
            created_at: format_ms(s.created_ms),
            name: s.name.clone(),
            url: s.url.clone(),
            event_types: s.event_types.clone(),
            active: s.active,
            secret: public_key.clone().unwrap_or_else(|| s.secret.clone()),
            include_payload: s.include_payload,
            updated_at: format_ms(s.updated_ms),
            mode: s.scope.mode.as_str(),
            previous_secret_expires_at: s.previous_secret_until_ms.filter(|t| *t > now).map(format_ms),
            disabled_reason: s.disabled_reason.clone(),
            ordering: s.ordering,
            signing: if public_key.is_some() { "ed25519" } else { "hmac" },
            public_key,
            blocked_by: None,
        }
    }
}

/// One HTTP try, as the attempt log shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptView {
    #[serde(flatten)]
    attempt: Attempt,
    attempted_at: String,
}

/// A delivery and its attempts.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    id: String,
    event_id: String,
    event_type: String,
    webhook_id: String,
    status: DeliveryStatus,
    attempt_count: u32,
    next_attempt_at: Option<String>,
    last_status_code: Option<u16>,
    last_error: Option<String>,
    created_at: String,
    updated_at: String,
    attempts: Vec<AttemptView>,
}

impl DeliveryView {
    pub fn new(d: Delivery, attempts: Vec<Attempt>) -> Self {
        DeliveryView {
            id: d.id,
            event_id: d.event_id,
            event_type: d.event_type,
            webhook_id: d.subscription_id,
            status: d.status,
            attempt_count: d.attempts,
            next_attempt_at: d.next_attempt_ms.filter(|_| d.status == DeliveryStatus::Pending).map(format_ms),
            last_status_code: d.last_status_code,
            last_error: d.last_error,
            created_at: format_ms(d.created_ms),
            updated_at: format_ms(d.updated_ms),
            attempts: attempts
                .into_iter()
                .map(|a| AttemptView { attempted_at: format_ms(a.attempted_ms), attempt: a })
                .collect(),
        }
    }
}

/// An event exactly as it was delivered (the stored body).
pub fn event_json(e: &StoredEvent) -> serde_json::Value {
    serde_json::from_str(&e.body).unwrap_or(serde_json::Value::Null)
}

/// A list page: `{nextCursor, items}`; `nextCursor` (a string, in Smile's spec) is left out
/// on the last page.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListView<T: Serialize> {
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
    items: Vec<T>,
}

impl<T: Serialize> ListView<T> {
    pub fn new(items: Vec<T>, next_cursor: Option<String>) -> Self {
        ListView { next_cursor, items }
    }

    pub fn of<S>(page: Page<S>, f: impl FnMut(S) -> T) -> Self {
        ListView { next_cursor: page.next_cursor, items: page.items.into_iter().map(f).collect() }
    }
}
