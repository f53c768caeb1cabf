//! Leases and claims, the multi-node contract of the store, on both backends.

use smile_core::{Mode, timefmt::now_ms};
use smile_store::*;
use std::collections::HashSet;
use std::sync::Arc;

async fn stores() -> Vec<(&'static str, Arc<dyn Store>, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().expect("dir");
    let sqlite: Arc<dyn Store> = Arc::new(sqlite::SqliteStore::open(&dir.path().join("s.db")).expect("sqlite"));
    let mut all = vec![("sqlite", sqlite, Some(dir))];
    if let Some(url) = testing::fresh_postgres_schema().await {
        let pg: Arc<dyn Store> = Arc::new(postgres::PostgresStore::connect(&url).await.expect("postgres"));
        all.push(("postgres", pg, None));
    }
    all
}

fn scope() -> Scope {
    Scope { tenant_id: "t".into(), mode: Mode::Sandbox }
}

async fn subscribe(store: &dyn Store) -> String {
    let now = now_ms();
    let sub = Subscription {
        id: smile_core::ids::new_subscription_id(),
        scope: scope(),
        name: "n".into(),
        url: "http://127.0.0.1:9/".into(),
        event_types: vec!["ALL_EVENTS".into()],
        active: true,
        secret: "s".into(),
        previous_secret: None,
        previous_secret_until_ms: None,
        include_payload: false,
        disabled_reason: None,
        failing_since_ms: None,
        created_ms: now,
        updated_ms: now,
    };
    store.insert_subscription(sub.clone()).await.expect("insert");
    sub.id
}

async fn publish(store: &dyn Store, lease: Lease) -> String {
    let id = smile_core::ids::new_id("et-");
    let created = store
        .publish(NewEvent {
            id: id.clone(),
            scope: scope(),
            event_type: "USER_CREATED".into(),
            created_ms: now_ms(),
            body: format!("{{\"id\":\"{id}\"}}"),
            lean_body: None,
            only_subscription: None,
            delivery_created_ms: now_ms(),
            lease,
        })
        .await
        .expect("publish");
    assert_eq!(created.len(), 1);
    created[0].id.clone()
}

fn lease(owner: &str, until_ms: i64) -> Lease {
    Lease { owner: owner.into(), until_ms }
}

#[tokio::test]
async fn concurrent_claims_never_hand_out_a_delivery_twice() {
    for (name, store, _dir) in stores().await {
        subscribe(store.as_ref()).await;
        let past = now_ms() - 1;
        let mut published = HashSet::new();
        for _ in 0..300 {
            published.insert(publish(store.as_ref(), lease("dead-node", past)).await);
        }
        let mut claimers = Vec::new();
        for n in 0..4 {
            let store = store.clone();
            claimers.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let now = now_ms();
                    let claimed =
                        store.claim_due(&lease(&format!("node-{n}"), now + 60_000), now, 25).await.expect("claim");
                    if claimed.is_empty() {
                        return mine;
                    }
                    mine.extend(claimed.into_iter().map(|c| c.delivery.id));
                }
            }));
        }
        let mut seen = HashSet::new();
        for claimer in claimers {
            for id in claimer.await.expect("join") {
                assert!(seen.insert(id), "{name}: a delivery was claimed twice");
            }
        }
        assert_eq!(seen, published, "{name}: every expired delivery claimed once");
    }
}

#[tokio::test]
async fn live_leases_hold_renewals_extend_and_expired_leases_are_taken_over() {
    for (name, store, _dir) in stores().await {
        subscribe(store.as_ref()).await;
        let now = now_ms();
        let id = publish(store.as_ref(), lease("a", now + 1_000)).await;
        let at = |ms: i64| lease("b", now + ms + 60_000);
        assert!(store.claim_due(&at(500), now + 500, 10).await.expect("claim").is_empty(), "{name}: live lease");
        // Only the holder can renew.
        store.renew_leases(&lease("b", now + 9_000), std::slice::from_ref(&id)).await.expect("renew");
        store.renew_leases(&lease("a", now + 5_000), std::slice::from_ref(&id)).await.expect("renew");
        assert!(store.claim_due(&at(2_000), now + 2_000, 10).await.expect("claim").is_empty(), "{name}: renewed");
        let taken = store.claim_due(&at(5_000), now + 5_000, 10).await.expect("claim");
        assert_eq!(taken.len(), 1, "{name}: expired lease taken over");
        assert_eq!(taken[0].delivery.id, id);
        assert!(taken[0].body.contains(&taken[0].delivery.event_id), "{name}: the body comes with the claim");
    }
}

fn outcome(
    delivery_id: &str,
    subscription_id: &str,
    ok: bool,
    next: Option<i64>,
    effect: SubscriptionEffect,
) -> Outcome {
    Outcome {
        attempt: Attempt {
            id: smile_core::ids::new_id("att-"),
            delivery_id: delivery_id.into(),
            attempt: 1,
            attempted_ms: now_ms(),
            status_code: Some(if ok { 200 } else { 500 }),
            latency_ms: 3,
            response_body: None,
            error: (!ok).then(|| "HTTP 500".into()),
        },
        subscription_id: subscription_id.into(),
        status: match (ok, next) {
            (true, _) => DeliveryStatus::Succeeded,
            (false, Some(_)) => DeliveryStatus::Pending,
            (false, None) => DeliveryStatus::Failed,
        },
        next_attempt_ms: next,
        subscription_effect: effect,
    }
}

#[tokio::test]
async fn outcomes_release_leases_and_the_store_decides_disabling() {
    for (name, store, _dir) in stores().await {
        let sub = subscribe(store.as_ref()).await;
        let now = now_ms();
        let first = publish(store.as_ref(), lease("a", now + 60_000)).await;
        let second = publish(store.as_ref(), lease("a", now + 60_000)).await;
        // A failure with a retry releases the lease: another node may take the retry when due.
        let failing = SubscriptionEffect::Failing { now_ms: now, disable_if_since_before_ms: now - 1_000 };
        let effects =
            store.record_outcomes(vec![outcome(&first, &sub, false, Some(now), failing)]).await.expect("record");
        assert!(effects.disabled.is_empty());
        let retry = store.claim_due(&lease("b", now + 60_000), now, 10).await.expect("claim");
        assert_eq!(retry.iter().map(|c| c.delivery.id.as_str()).collect::<Vec<_>>(), vec![first.as_str()], "{name}");
        assert_eq!(retry[0].delivery.attempts, 1);

        // Another node reports a failure long after the run began: the store disables.
        let later = SubscriptionEffect::Failing { now_ms: now + 10_000, disable_if_since_before_ms: now + 5_000 };
        let effects =
            store.record_outcomes(vec![outcome(&first, &sub, false, Some(now), later)]).await.expect("record");
        assert_eq!(effects.disabled, vec![sub.clone()], "{name}");
        let disabled = store.subscription_by_id(&sub).await.expect("read").expect("there");
        assert!(!disabled.active);
        assert!(disabled.disabled_reason.expect("reason").contains("failing without a success"));
        let other = store.get_delivery(&scope(), &second).await.expect("read").expect("there");
        assert_eq!(other.status, DeliveryStatus::Failed, "{name}: pending deliveries fail with it");
    }
}

#[tokio::test]
async fn a_success_anywhere_ends_the_run_of_failures() {
    for (name, store, _dir) in stores().await {
        let sub = subscribe(store.as_ref()).await;
        let now = now_ms();
        let a = publish(store.as_ref(), lease("a", now + 60_000)).await;
        let b = publish(store.as_ref(), lease("b", now + 60_000)).await;
        let failing = SubscriptionEffect::Failing { now_ms: now, disable_if_since_before_ms: now - 1 };
        store.record_outcomes(vec![outcome(&a, &sub, false, Some(now + 1), failing)]).await.expect("record");
        assert_eq!(store.subscription_by_id(&sub).await.expect("read").expect("sub").failing_since_ms, Some(now));
        store.record_outcomes(vec![outcome(&b, &sub, true, None, SubscriptionEffect::Healthy)]).await.expect("record");
        let healthy = store.subscription_by_id(&sub).await.expect("read").expect("sub");
        assert_eq!(healthy.failing_since_ms, None, "{name}");
        assert!(healthy.active);
    }
}

#[tokio::test]
async fn nodes_connecting_at_once_migrate_safely() {
    let Some(url) = testing::fresh_postgres_schema().await else {
        return;
    };
    let connects: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { postgres::PostgresStore::connect(&url).await.map(|_| ()) })
        })
        .collect();
    for connect in connects {
        connect.await.expect("join").expect("every node migrates or finds the migration done");
    }
}
