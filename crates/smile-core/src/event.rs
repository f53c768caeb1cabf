use crate::catalog::EventType;
use serde::{Deserialize, Serialize};

/// The schema version of every envelope we emit.
pub const EVENT_VERSION: u32 = 1;

/// The envelope a receiver gets: `{id, version, type, createdAt, data}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub id: String,
    pub version: u32,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub created_at: String,
    pub data: serde_json::Value,
}
