//! The delivery engine: every published event reaches every matching subscription, signed,
//! at least once, with every attempt recorded.
//!
//! - [`Engine`]: publish (durable fan-out in one group-committed transaction), test sends,
//!   replays; it feeds the scheduler directly and reloads pending work on start.
//! - [`DeliveryConfig`]: retry schedule, timeouts, per-endpoint concurrency, egress, TLS roots.
//! - [`ssrf`]: which addresses production deliveries may not reach.
//! - `scheduler`: per-endpoint queues with an in-flight cap, and the retry timer.
//! - `sender`: the pooled HTTP client and the signed request of one attempt.

mod config;
mod engine;
mod scheduler;
mod sender;
pub mod ssrf;

pub use config::{DeliveryConfig, EgressConfig};
pub use engine::{Engine, EngineError};
