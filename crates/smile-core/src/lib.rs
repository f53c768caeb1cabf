//! Domain types shared by every crate of the Smile event notification system.
//!
//! - [`ids`]: identifiers with the documented prefixes.
//! - [`Mode`]: SANDBOX or PRODUCTION; every key, query and event belongs to one.
//! - [`catalog`]: every event type, its `data` shape as a Rust type and a JSON Schema.
//! - [`Event`]: the envelope a receiver gets.
//! - [`error`]: the Smile error codes and their HTTP statuses.
//! - [`timefmt`]: the wire formats of dates and date-times.
//! - [`metric`]: the names and meanings of the metrics every crate records.

pub mod catalog;
pub mod error;
pub mod ids;
pub mod metric;
pub mod timefmt;

mod event;
mod mode;

pub use catalog::EventType;
pub use error::{ApiError, ErrorCode};
pub use event::{EVENT_VERSION, Event};
pub use mode::Mode;
