//! What both stores share: column encodings, paging, key generation.

use crate::{
    Delivery, DeliveryStatus, LaneDelivery, MinuteCount, NewDelivery, NewEvent, NewKey, Page, PageRequest, Scope,
};
use sha2::{Digest, Sha256};
use smile_core::{Mode, ids};

/// A stored mode. An unknown text fails closed: read as PRODUCTION, where the SSRF guard
/// applies, never as SANDBOX, where it does not.
pub(crate) fn mode_of(s: &str) -> Mode {
    s.parse().unwrap_or_else(|_| {
        tracing::warn!(mode = s, "unknown mode in the database; treating it as PRODUCTION");
        Mode::Production
    })
}

pub(crate) fn types_to_column(types: &[String]) -> String {
    format!(",{},", types.join(","))
}

pub(crate) fn types_from_column(s: &str) -> Vec<String> {
    s.split(',').filter(|t| !t.is_empty()).map(str::to_owned).collect()
}

/// Turns `size + 1` rows, newest first, into a page and its next cursor.
pub(crate) fn paginate<T>(mut rows: Vec<(i64, T)>, size: u32) -> Page<T> {
    let more = rows.len() > size as usize;
    rows.truncate(size as usize);
    let next_cursor = if more { rows.last().map(|(seq, _)| seq.to_string()) } else { None };
    Page { items: rows.into_iter().map(|(_, t)| t).collect(), next_cursor }
}

/// A page of deliveries as both stores list them: those still in the event log first (newer
/// than any row), under negative cursors, then the rows by their `seq`.
pub(crate) struct DeliveryPage {
    size: u32,
    before: Option<i64>,
    items: Vec<(i64, Delivery)>,
}

impl DeliveryPage {
    pub(crate) fn new(page: &PageRequest) -> Self {
        DeliveryPage { size: page.size, before: page.before_seq, items: Vec::new() }
    }

    /// The log position to read below, and how many at most; None when the page starts past
    /// the log.
    pub(crate) fn log(&self) -> Option<(i64, u32)> {
        self.before.is_none_or(|b| b < 0).then(|| (self.before.map_or(i64::MAX, |b| -b), self.size + 1))
    }

    /// Adds the log's deliveries, by position.
    pub(crate) fn add_log(&mut self, in_log: Vec<(i64, Delivery)>) {
        self.items.extend(in_log.into_iter().map(|(position, d)| (-position, d)));
    }

    /// The `seq` to read rows below, and how many at most; None when the log filled the page.
    pub(crate) fn rows(&self) -> Option<(i64, i64)> {
        let wanted = (self.size as usize + 1).saturating_sub(self.items.len());
        (wanted > 0).then(|| (self.before.filter(|b| *b >= 0).unwrap_or(i64::MAX), wanted as i64))
    }

    /// Adds rows, by `seq`.
    pub(crate) fn add_rows(&mut self, rows: impl IntoIterator<Item = (i64, Delivery)>) {
        self.items.extend(rows);
    }

    pub(crate) fn finish(self) -> Page<Delivery> {
        paginate(self.items, self.size)
    }
}

/// Adds a subscription's deliveries still in its log, counted by minute, to its PENDING ones.
pub(crate) fn add_log_counts(counts: &mut Vec<MinuteCount>, in_log: impl IntoIterator<Item = (i64, u64)>) {
    for (minute_ms, count) in in_log {
        match counts.iter_mut().find(|m| m.minute_ms == minute_ms && m.status == DeliveryStatus::Pending) {
            Some(m) => m.count += count,
            None => counts.push(MinuteCount { minute_ms, status: DeliveryStatus::Pending, count }),
        }
    }
}

/// What a delivery sends, as SQL over its event `e`: the lean body where the event has one and
/// `lean` (an SQL condition: the delivery goes without payloads) holds, else the full body.
pub(crate) fn sent_body(lean: &str) -> String {
    format!("CASE WHEN {lean} AND e.lean_body IS NOT NULL THEN e.lean_body ELSE e.body END")
}

/// A delivery just written from a lane's log, as the lane sends it: none if it is parked
/// behind an earlier delivery of its order key.
pub(crate) fn due_from_log(written: NewDelivery, event_id: String, body: String) -> Option<LaneDelivery> {
    written.due.then_some(LaneDelivery {
        seq: written.seq,
        id: written.id,
        event_id,
        attempts: 0,
        order_key: written.order_key,
        body,
    })
}

/// What a delivery row takes from its event, whether fresh or read from the log.
pub(crate) struct EventHead<'a> {
    pub(crate) id: &'a str,
    pub(crate) event_type: &'a str,
    pub(crate) scope: &'a Scope,
    pub(crate) created_ms: i64,
    /// The event has a body without `data.payload`.
    pub(crate) lean: bool,
}

impl<'a> EventHead<'a> {
    pub(crate) fn of(e: &'a NewEvent) -> Self {
        EventHead {
            id: &e.id,
            event_type: &e.event_type,
            scope: &e.scope,
            created_ms: e.created_ms,
            lean: e.lean_body.is_some(),
        }
    }
}

/// The id of an event's delivery to the subscription numbered `subscription_seq`: the
/// event's time-ordered id with the number, so new rows append to the indexes, and a delivery
/// still in the log has its id before it is a row.
pub(crate) fn delivery_id(event_id: &str, subscription_seq: i64) -> String {
    let stem = event_id.get(ids::EVENT.len()..ids::EVENT.len() + 24).unwrap_or_default();
    format!("dlv-{stem}{subscription_seq:08x}")
}

/// The start of the id of a delivery's event (see [`delivery_id`]), or None for an id that is
/// not one of ours: the event is the one id in the store from it to it + `g`.
pub(crate) fn event_id_prefix(delivery_id: &str) -> Option<String> {
    let stem = delivery_id.strip_prefix(ids::DELIVERY)?.get(..24)?;
    Some(format!("{}{stem}", ids::EVENT))
}

pub(crate) fn random_hex(bytes: usize) -> String {
    let buf: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    hex::encode(buf)
}

pub(crate) fn new_key_pair() -> (NewKey, [u8; 32]) {
    let key = NewKey { api_key: random_hex(16), api_secret: random_hex(32) };
    let hash: [u8; 32] = Sha256::digest(key.api_secret.as_bytes()).into();
    (key, hash)
}

pub(crate) fn now() -> i64 {
    smile_core::timefmt::now_ms()
}

/// How often a write that loses a deadlock or a serialization conflict is tried again.
const CONFLICT_RETRIES: u32 = 12;

/// Runs `write` again while it fails with [`StoreError::Conflict`]. PostgreSQL resolves a
/// deadlock by failing one side; that side's work (an attempt outcome, a publish) must be
/// written anyway, not dropped. Backs off a little, with jitter, so the two sides part.
pub(crate) async fn retry_conflicts<T, F, Fut>(what: &str, mut write: F) -> crate::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = crate::Result<T>>,
{
    let mut tries = 1;
    loop {
        match write().await {
            Err(crate::StoreError::Conflict(why)) if tries < CONFLICT_RETRIES => {
                tracing::info!(what, tries, %why, "write conflicted; trying again");
                let pause = (2u64 << tries.min(7)) + rand::random::<u64>() % 10;
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                tries += 1;
            }
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreError;

    #[tokio::test]
    async fn a_conflicting_write_is_tried_again_until_it_succeeds() {
        let mut calls = 0;
        let result = retry_conflicts("test", || {
            calls += 1;
            let fails = calls < 4;
            async move { if fails { Err(StoreError::Conflict("deadlock detected".into())) } else { Ok(calls) } }
        })
        .await;
        assert_eq!(result.expect("written in the end"), 4);
    }

    #[tokio::test]
    async fn other_failures_are_not_retried() {
        let mut calls = 0;
        let result: crate::Result<()> = retry_conflicts("test", || {
            calls += 1;
            async { Err(StoreError::Database("unique violation".into())) }
        })
        .await;
        assert!(matches!(result, Err(StoreError::Database(_))));
        assert_eq!(calls, 1);
    }
}

#[cfg(test)]
mod mode_tests {
    use super::*;

    #[test]
    fn an_unknown_mode_is_guarded() {
        assert_eq!(mode_of("SANDBOX"), Mode::Sandbox);
        assert_eq!(mode_of("PRODUCTION"), Mode::Production);
        assert_eq!(mode_of("sandbox "), Mode::Production);
        assert_eq!(mode_of(""), Mode::Production);
    }
}
