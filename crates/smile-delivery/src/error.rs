/// Why the engine refused or failed a request.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] smile_store::StoreError),
    #[error("data does not match the event type's schema: {0}")]
    InvalidData(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("subscription not found")]
    SubscriptionNotFound,
    #[error("subscription is inactive")]
    SubscriptionInactive,
    #[error("this Idempotency-Key was used within the last 24 hours for a different request")]
    IdempotencyKeyReused,
}

/// What connectors and resolvers fail with.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
