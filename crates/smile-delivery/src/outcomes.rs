//! The attempt log writer: outcomes queued while the last batch committed are written
//! together in one transaction, then reported back to the lanes.

use smile_core::metric;
use smile_store::{Outcome, OutcomeEffects, Store};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// An outcome on its way to the store, with the lane position of its delivery.
#[derive(Debug)]
pub(crate) struct Recording {
    pub outcome: Outcome,
    pub seq: i64,
}

/// What one batch did, for the lanes: which deliveries left memory, and what changed.
#[derive(Debug, Default)]
pub(crate) struct Committed {
    /// (subscription, delivery seq, when it is due again if it is)
    pub deliveries: Vec<(String, i64, Option<i64>)>,
    pub effects: OutcomeEffects,
}

/// The most outcomes one transaction takes.
const MAX_BATCH: usize = 1024;

/// Starts the writer; `report` hears of every batch, written or not (a lost outcome only
/// means the delivery is read and sent again).
pub(crate) fn spawn(
    store: Arc<dyn Store>,
    report: impl Fn(Committed) + Send + 'static,
) -> mpsc::UnboundedSender<Recording> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Recording>();
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            let deliveries =
                batch.iter().map(|r| (r.outcome.subscription_id.clone(), r.seq, r.outcome.next_attempt_ms)).collect();
            let outcomes: Arc<[Outcome]> = batch.into_iter().map(|r| r.outcome).collect();
            let effects = match record(&*store, outcomes).await {
                Ok(effects) => {
                    metrics::counter!(metric::AUTO_DISABLES).increment(effects.disabled.len() as u64);
                    effects
                }
                Err(error) => {
                    tracing::error!(%error, "could not record attempt outcomes; those deliveries will be sent again");
                    OutcomeEffects::default()
                }
            };
            report(Committed { deliveries, effects });
        }
    });
    tx
}

/// How long a batch is retried while the database is unreachable. Past this, its deliveries
/// are read and sent again once the database is back: a duplicate rather than a stall.
const GIVE_UP_AFTER: Duration = Duration::from_secs(30);

/// Records a batch, trying again while the failure is transient (the database restarting).
/// Deadlocks are retried inside the store.
async fn record(store: &dyn Store, outcomes: Arc<[Outcome]>) -> smile_store::Result<OutcomeEffects> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(50);
    loop {
        match store.record_outcomes(outcomes.clone()).await {
            Err(error) if error.is_transient() && started.elapsed() < GIVE_UP_AFTER => {
                tracing::warn!(%error, "recording attempt outcomes failed; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            result => return result,
        }
    }
}
