//! The delivery engine: every published event reaches every matching subscription, signed,
//! at least once, with every attempt recorded. The store is the queue; memory is a window.
//!
//! One event, from publish to its attempt log, read in this order:
//!
//! ```text
//!  engine.rs    Engine::publish ──► Store::publish: the event and its fan-out in one transaction,
//!                   │               group-committed (SQLite: a large fan-out's rows in the
//!                   │               commits after it); deliveries behind an order key are parked
//!                   ▼ (due deliveries, with their bodies)
//!  lanes.rs     a lane per subscription, leased to one node: a bounded window of the store,
//!                   │               refilled by Store::load_lane as it drains; in-flight cap and
//!                   │               breaker per lane; retries come back by timer; a full,
//!                   │               paused or stalled lane falls behind (Store::fall_behind)
//!                   │               and reads the event log
//!                   ▼
//!  sender.rs    one signed HTTP attempt (pooled client, timeouts, SSRF guard), over
//!                   │               egress.rs: direct or through the proxy, TLS, local address
//!                   ▼
//!  verdict.rs   decide(): SUCCEEDED, PENDING (retry at …) or FAILED, and the subscription's
//!                   │               health (failing since, recovered, disabled)
//!                   ▼
//!  outcomes.rs  batched Store::record_outcomes: attempt rows, transitions (only from PENDING),
//!                                   the next parked delivery made due; then back to lanes.rs
//! ```
//!
//! - [`Engine`]: publish, test sends, and what the API tells the engine.
//! - [`DeliveryConfig`]: retry schedule, timeouts, windows and caps, egress, TLS roots.
//! - [`ssrf`]: which addresses production deliveries may not reach.
//! - [`relay`]: `smile listen` sessions, which take a subscription's attempts in place of HTTP.
//! - `trace`: OpenTelemetry spans over OTLP (publish, then each attempt), when configured.

mod config;
mod egress;
mod engine;
mod error;
mod lanes;
mod outcomes;
pub mod relay;
mod sender;
pub mod ssrf;
mod trace;
mod verdict;

pub use config::{DeliveryConfig, EgressConfig};
pub use engine::{Drained, Engine, Publication};
pub use error::EngineError;
pub use lanes::WindowStats;
