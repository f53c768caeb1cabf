//! The store as the queue, on both backends: lane leases (the multi-node contract), lane
//! reads, order keys, and the state machine's guard.

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

async fn subscribe_with(store: &dyn Store, ordering: Ordering) -> String {
    let sub = subscription(ordering);
    store.insert_subscription(sub.clone()).await.expect("insert");
    sub.id
}

/// A subscription to every event, without payloads.
fn subscription(ordering: Ordering) -> Subscription {
    let now = now_ms();
    Subscription {
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
        ordering,
        disabled_reason: None,
        failing_since_ms: None,
        created_ms: now,
        updated_ms: now,
    }
}

async fn subscribe(store: &dyn Store) -> String {
    subscribe_with(store, Ordering::Concurrent).await
}

async fn publish_keyed(store: &dyn Store, order_key: Option<&str>) -> Vec<NewDelivery> {
    let id = smile_core::ids::new_id("et-");
    store
        .publish(NewEvent {
            id: id.clone(),
            scope: scope(),
            event_type: "USER_CREATED".into(),
            created_ms: now_ms(),
            body: format!("{{\"id\":\"{id}\"}}"),
            lean_body: None,
            only_subscription: None,
            order_key: order_key.map(str::to_owned),
            idempotency: None,
        })
        .await
        .expect("publish")
        .created()
        .await
}

trait CreatedDeliveries {
    /// Every delivery the publish wrote, a large fan-out's included.
    async fn created(self) -> Vec<NewDelivery>;
}

impl CreatedDeliveries for Published {
    async fn created(self) -> Vec<NewDelivery> {
        match self {
            Published::Created(deliveries) => deliveries,
            Published::Spreading { mut deliveries, mut rest, .. } => {
                while let Some(part) = rest.recv().await {
                    deliveries.extend(part.expect("spread"));
                }
                deliveries
            }
            Published::Replayed { event_id, .. } => panic!("replayed {event_id}, expected a new event"),
        }
    }
}

fn keyed_event(key: &str, created_ms: i64) -> NewEvent {
    let id = smile_core::ids::new_id("et-");
    NewEvent {
        id: id.clone(),
        scope: scope(),
        event_type: "USER_CREATED".into(),
        created_ms,
        body: format!("{{\"id\":\"{id}\"}}"),
        lean_body: None,
        only_subscription: None,
        order_key: None,
        idempotency: Some(IdempotencyKey { key: key.into(), fingerprint: "f".into() }),
    }
}

/// Two nodes on one PostgreSQL schema (or one SQLite store twice), 16 publishes of one key at
/// once: exactly one writes an event, and every other names it.
#[tokio::test]
async fn one_idempotency_key_makes_one_event_across_nodes() {
    let dir = tempfile::tempdir().expect("dir");
    let sqlite: Arc<dyn Store> = Arc::new(sqlite::SqliteStore::open(&dir.path().join("s.db")).expect("sqlite"));
    let mut pairs = vec![("sqlite", sqlite.clone(), sqlite)];
    if let Some(url) = testing::fresh_postgres_schema().await {
        let node = |url: String| async move { Arc::new(postgres::PostgresStore::connect(&url).await.expect("node")) };
        pairs.push(("postgres", node(url.clone()).await, node(url).await));
    }
    for (name, store, second) in pairs {
        let sub = subscribe(&*store).await;
        let publishes = (0..16).map(|i| {
            let node = if i % 2 == 0 { store.clone() } else { second.clone() };
            tokio::spawn(async move { node.publish(keyed_event("k", now_ms())).await.expect("publish") })
        });
        let mut created = Vec::new();
        let mut named = HashSet::new();
        for publish in publishes {
            match publish.await.expect("joined") {
                Published::Created(deliveries) => created.push(deliveries),
                Published::Spreading { .. } => panic!("{name}: one subscription, no spread"),
                Published::Replayed { event_id, fingerprint } => {
                    assert_eq!(fingerprint, "f");
                    named.insert(event_id);
                }
            }
        }
        assert_eq!(created.len(), 1, "{name}: exactly one publish creates");
        assert_eq!(created[0].len(), 1, "{name}: with its one delivery");
        assert_eq!(named.len(), 1, "{name}: every replay names the same event");
        let page = PageRequest { size: 150, before_seq: None };
        let events = store.list_events(&scope(), &EventFilter::default(), &page).await.expect("events");
        assert_eq!(events.items.len(), 1, "{name}");
        let deliveries = store.list_deliveries(&scope(), DeliveriesOf::Subscription(&sub), &page).await.expect("list");
        assert_eq!(deliveries.items.len(), 1, "{name}");
    }
}

/// After its 24 hours a key may be used afresh; a forgotten key too.
#[tokio::test]
async fn an_idempotency_key_past_its_window_makes_a_new_event() {
    for (name, store, _dir) in stores().await {
        let day_ago = now_ms() - IDEMPOTENCY_WINDOW_MS - 1;
        store.publish(keyed_event("old", day_ago)).await.expect("publish").created().await;
        store.publish(keyed_event("old", now_ms())).await.expect("publish").created().await;
        assert!(matches!(store.publish(keyed_event("old", now_ms())).await, Ok(Published::Replayed { .. })), "{name}");
        assert_eq!(store.forget_idempotency_keys(now_ms() + 1).await.expect("forget"), 1, "{name}");
        store.publish(keyed_event("old", now_ms())).await.expect("publish").created().await;
    }
}

async fn publish(store: &dyn Store) -> NewDelivery {
    let mut created = publish_keyed(store, None).await;
    assert_eq!(created.len(), 1);
    created.remove(0)
}

fn lease(owner: &str, until_ms: i64) -> Lease {
    Lease { owner: owner.into(), until_ms }
}

fn outcome(d: &NewDelivery, status: DeliveryStatus, next: Option<i64>, effect: SubscriptionEffect) -> Outcome {
    Outcome {
        attempt: Attempt {
            id: smile_core::ids::new_id("att-"),
            delivery_id: d.id.clone(),
            attempt: 1,
            attempted_ms: now_ms(),
            status_code: Some(if status == DeliveryStatus::Succeeded { 200 } else { 500 }),
            latency_ms: 3,
            response_body: None,
            error: None,
        },
        subscription_id: d.subscription_id.clone(),
        status,
        next_attempt_ms: next,
        subscription_effect: effect,
    }
}

async fn status(store: &dyn Store, d: &NewDelivery) -> DeliveryStatus {
    store.get_delivery(&scope(), &d.id).await.expect("read").expect("there").status
}

#[tokio::test]
async fn concurrent_claims_give_each_lane_to_one_node() {
    for (name, store, _dir) in stores().await {
        let mut lanes = Vec::new();
        for _ in 0..40 {
            lanes.push(subscribe(store.as_ref()).await);
        }
        // Nodes that are present: a lease of one that is gone is free (on PostgreSQL).
        let mut presences = Vec::new();
        for n in 0..4 {
            presences.push(store.listen(&format!("node-{n}")).await.expect("presence"));
        }
        let mut claimers = Vec::new();
        for n in 0..4 {
            let (store, lanes) = (store.clone(), lanes.clone());
            claimers.push(tokio::spawn(async move {
                let now = now_ms();
                store.claim_lanes(&lease(&format!("node-{n}"), now + 60_000), &lanes, now).await.expect("claim")
            }));
        }
        let mut seen = HashSet::new();
        for claimer in claimers {
            for id in claimer.await.expect("join") {
                assert!(seen.insert(id), "{name}: a lane was given to two nodes");
            }
        }
        assert_eq!(seen.len(), lanes.len(), "{name}: every free lane was taken");
    }
}

#[tokio::test]
async fn live_lane_leases_hold_renewals_extend_and_expired_ones_are_taken_over() {
    for (name, store, _dir) in stores().await {
        let mut presences = Vec::new();
        for node in ["a", "b", "c"] {
            presences.push(store.listen(node).await.expect("presence"));
        }
        let sub = subscribe(store.as_ref()).await;
        publish(store.as_ref()).await;
        let now = now_ms();
        let ids = std::slice::from_ref(&sub);
        assert_eq!(store.claim_lanes(&lease("a", now + 1_000), ids, now).await.expect("claim"), ids, "{name}");
        assert!(store.claim_lanes(&lease("b", now + 9_000), ids, now + 500).await.expect("claim").is_empty());
        assert!(store.lanes_with_work("b", now + 500, 10).await.expect("find").is_empty(), "{name}: held by a");
        assert_eq!(store.lanes_with_work("a", now + 500, 10).await.expect("find"), ids, "{name}: a's own");
        // Only the holder renews.
        assert!(store.renew_lanes(&lease("b", now + 9_000), ids).await.expect("renew").is_empty());
        assert_eq!(store.renew_lanes(&lease("a", now + 5_000), ids).await.expect("renew"), ids);
        assert!(store.claim_lanes(&lease("b", now + 9_000), ids, now + 2_000).await.expect("claim").is_empty());
        assert_eq!(store.lanes_with_work("b", now + 5_000, 10).await.expect("find"), ids, "{name}: expired");
        assert_eq!(store.claim_lanes(&lease("b", now + 9_000), ids, now + 5_000).await.expect("claim"), ids);
        assert!(store.renew_lanes(&lease("a", now + 9_000), ids).await.expect("renew").is_empty(), "{name}: lost");
        store.release_lanes("b", ids, now + 8_000).await.expect("release");
        assert!(store.claim_lanes(&lease("c", now + 9_000), ids, now).await.expect("claim").is_empty(), "{name}: kept");
        store.release_lanes("b", ids, now + 9_000).await.expect("release");
        assert_eq!(store.claim_lanes(&lease("c", now + 9_000), ids, now).await.expect("claim"), ids, "{name}: free");
    }
}

/// A node that dies (its process killed, its connection lost) ends its presence, and its
/// lanes are free at once instead of when their leases run out: a restarted node, or another,
/// sends them within moments. A lease whose holder is present still holds.
#[tokio::test]
async fn a_lease_whose_holder_is_gone_is_free_before_it_runs_out() {
    let Some(url) = testing::fresh_postgres_schema().await else {
        return;
    };
    let store = postgres::PostgresStore::connect(&url).await.expect("postgres");
    let holder = store.listen("a").await.expect("presence");
    let _other = store.listen("b").await.expect("presence");
    let sub = subscribe(&store).await;
    publish(&store).await;
    let (now, ids) = (now_ms(), std::slice::from_ref(&sub));
    assert_eq!(store.claim_lanes(&lease("a", now + 60_000), ids, now).await.expect("claim"), ids);
    assert!(store.claim_lanes(&lease("b", now + 60_000), ids, now).await.expect("claim").is_empty(), "a is there");
    assert!(store.lanes_with_work("b", now, 10).await.expect("find").is_empty(), "a is there");

    drop(holder); // its listening connection closes, as a killed process's does
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.lanes_with_work("b", now_ms(), 10).await.expect("find").is_empty() {
        assert!(std::time::Instant::now() < deadline, "a's lane was not free 10 s after it left (its lease: 60 s)");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(store.claim_lanes(&lease("b", now_ms() + 60_000), ids, now_ms()).await.expect("claim"), ids);
    assert!(store.renew_lanes(&lease("a", now_ms() + 60_000), ids).await.expect("renew").is_empty(), "a lost it");
    // b is there: its lease holds against a node that comes back as a.
    let _back = store.listen("a").await.expect("presence");
    assert!(store.claim_lanes(&lease("a", now_ms() + 60_000), ids, now_ms()).await.expect("claim").is_empty());
}

/// A node whose listening connection failed on its side only, while the server kept the
/// session and with it the node's presence, is present again at once: it ends that session,
/// its own, instead of waiting hours for the server's keepalive. Another node's claim, which
/// holds the presence shared for a moment, is waited for and left alone.
#[tokio::test]
async fn a_node_ends_the_session_the_server_kept_for_it_and_leaves_claims_alone() {
    let Some(url) = testing::fresh_postgres_schema().await else {
        return;
    };
    let store = Arc::new(postgres::PostgresStore::connect(&url).await.expect("postgres"));
    let presence = |node: &str| format!("1936551024, hashtext(current_schema() || '/' || '{node}')");
    let kept = beside_the_store(&url).await;
    let lock = format!("SELECT pg_advisory_lock({})", presence("a"));
    kept.execute(&lock, &[]).await.expect("a's presence, as the server kept it");
    let back = tokio::time::timeout(std::time::Duration::from_secs(10), store.listen("a")).await;
    let _present = back.expect("not kept away by its old session").expect("presence");
    assert!(kept.simple_query("SELECT 1").await.is_err(), "the session the server kept for a is ended");

    let claim = beside_the_store(&url).await;
    let test = format!("BEGIN; SELECT pg_advisory_xact_lock_shared({})", presence("b"));
    claim.batch_execute(&test).await.expect("a claim tests b's presence");
    let coming_back = tokio::spawn({
        let store = store.clone();
        async move { store.listen("b").await.expect("presence") }
    });
    let db = beside_the_store(&url).await;
    let waiting = "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted)";
    until_postgres(&db, waiting, "b waits for the claim").await;
    claim.batch_execute("COMMIT").await.expect("the claim is left alone and ends");
    let present = tokio::time::timeout(std::time::Duration::from_secs(10), coming_back).await;
    present.expect("b is present once the claim ends").expect("b");
}

#[tokio::test]
async fn a_lane_reads_due_deliveries_in_order_leaving_out_what_it_holds() {
    for (name, store, _dir) in stores().await {
        subscribe(store.as_ref()).await;
        let mut published = Vec::new();
        for _ in 0..5 {
            published.push(publish(store.as_ref()).await);
        }
        let sub = published[0].subscription_id.clone();
        let now = now_ms();
        let batch = store.load_lane(&sub, now, &[], 3).await.expect("load");
        let seqs: Vec<i64> = batch.deliveries.iter().map(|d| d.seq).collect();
        assert_eq!(seqs, published[..3].iter().map(|d| d.seq).collect::<Vec<_>>(), "{name}: earliest first");
        assert!(batch.deliveries[0].body.contains(&batch.deliveries[0].event_id), "{name}: with its body");
        let rest = store.load_lane(&sub, now, &seqs, 10).await.expect("load");
        assert_eq!(rest.deliveries.len(), 2, "{name}: what it holds is left out");
        // A retry later is not due yet, and the read says when it will be.
        let retry = outcome(&published[0], DeliveryStatus::Pending, Some(now + 60_000), SubscriptionEffect::None);
        store.record_outcomes(vec![retry].into()).await.expect("record");
        let after = store.load_lane(&sub, now, &[], 10).await.expect("load");
        assert_eq!(after.deliveries.len(), 4, "{name}");
        assert_eq!(after.next_due_ms, Some(now + 60_000), "{name}");
    }
}

#[tokio::test]
async fn order_keys_park_later_deliveries_until_the_earlier_one_ends() {
    for (name, store, _dir) in stores().await {
        let concurrent = subscribe(store.as_ref()).await;
        let fifo = subscribe_with(store.as_ref(), Ordering::Fifo).await;
        let mut rounds = Vec::new();
        for key in [Some("acct-1"), Some("acct-1"), None, Some("acct-2")] {
            rounds.push(publish_keyed(store.as_ref(), key).await);
        }
        let of = |round: &Vec<NewDelivery>, sub: &str| {
            round.iter().find(|d| d.subscription_id == sub).cloned().expect("a delivery")
        };
        let due = |sub: &str| rounds.iter().map(|r| of(r, sub).due).collect::<Vec<_>>();
        assert_eq!(due(&concurrent), vec![true, false, true, true], "{name}: per account on a concurrent lane");
        assert_eq!(due(&fifo), vec![true, false, false, false], "{name}: everything in order on a FIFO lane");
        // A retry keeps the order; the end of the first makes the next one due.
        let first = of(&rounds[0], &fifo);
        let retry = outcome(&first, DeliveryStatus::Pending, Some(now_ms()), SubscriptionEffect::None);
        let effects = store.record_outcomes(vec![retry].into()).await.expect("record");
        assert!(effects.unparked.is_empty(), "{name}");
        let blocked = store.blocked_head(&scope(), &fifo).await.expect("head").expect("blocked after a failure");
        assert_eq!(blocked.id, first.id, "{name}");
        let failed = outcome(&first, DeliveryStatus::Failed, None, SubscriptionEffect::None);
        let effects = store.record_outcomes(vec![failed].into()).await.expect("record");
        assert_eq!(effects.unparked, vec![fifo.clone()], "{name}");
        let next = store.load_lane(&fifo, now_ms(), &[], 10).await.expect("load");
        assert_eq!(next.deliveries.iter().map(|d| d.seq).collect::<Vec<_>>(), vec![of(&rounds[1], &fifo).seq]);
        assert!(store.blocked_head(&scope(), &fifo).await.expect("head").is_none(), "{name}: new head not failed");
    }
}

#[tokio::test]
async fn finished_deliveries_never_come_back_by_themselves() {
    for (name, store, _dir) in stores().await {
        let sub = subscribe(store.as_ref()).await;
        let (a, b, c) = (publish(store.as_ref()).await, publish(store.as_ref()).await, publish(store.as_ref()).await);
        // A disable fails every pending delivery of the subscription at once.
        let disable = SubscriptionEffect::Disable { reason: "the endpoint answered 410 Gone".into() };
        let effects = store.record_outcomes(vec![outcome(&a, DeliveryStatus::Failed, None, disable)].into()).await;
        assert_eq!(effects.expect("record").disabled, vec![sub.clone()], "{name}");
        assert_eq!(status(store.as_ref(), &b).await, DeliveryStatus::Failed, "{name}");
        // Late outcomes of attempts that were in flight change nothing.
        let late = vec![
            outcome(&b, DeliveryStatus::Pending, Some(now_ms()), SubscriptionEffect::None),
            outcome(&c, DeliveryStatus::Succeeded, None, SubscriptionEffect::Recovered),
        ];
        store.record_outcomes(late.into()).await.expect("record");
        assert_eq!(status(store.as_ref(), &b).await, DeliveryStatus::Failed, "{name}: no way back from FAILED");
        assert_eq!(status(store.as_ref(), &c).await, DeliveryStatus::Failed, "{name}");
        assert!(store.lanes_with_work("x", now_ms(), 10).await.expect("find").is_empty(), "{name}: none pending");
        // A delete cancels; an explicit retry may not revive a cancelled delivery.
        let other = subscribe(store.as_ref()).await;
        let created = publish_keyed(store.as_ref(), None).await;
        let d = created.into_iter().find(|d| d.subscription_id == other).expect("a delivery");
        assert!(store.delete_subscription(&scope(), &other).await.expect("delete"));
        let late = outcome(&d, DeliveryStatus::Succeeded, None, SubscriptionEffect::None);
        store.record_outcomes(vec![late].into()).await.expect("record");
        assert_eq!(status(store.as_ref(), &d).await, DeliveryStatus::Cancelled, "{name}");
        store.retry_delivery(&scope(), &d.id, now_ms()).await.expect("retry");
        assert_eq!(status(store.as_ref(), &d).await, DeliveryStatus::Cancelled, "{name}");
    }
}

#[tokio::test]
async fn health_decisions_are_written_as_the_engine_gives_them() {
    for (name, store, _dir) in stores().await {
        let sub = subscribe(store.as_ref()).await;
        let (a, b) = (publish(store.as_ref()).await, publish(store.as_ref()).await);
        let since = now_ms() - 5;
        let failing = outcome(&a, DeliveryStatus::Pending, Some(since), SubscriptionEffect::FailingSince(since));
        store.record_outcomes(vec![failing].into()).await.expect("record");
        assert_eq!(store.subscription_by_id(&sub).await.expect("read").expect("sub").failing_since_ms, Some(since));
        let recovered = outcome(&b, DeliveryStatus::Succeeded, None, SubscriptionEffect::Recovered);
        store.record_outcomes(vec![recovered].into()).await.expect("record");
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

#[tokio::test]
async fn a_publish_racing_the_end_of_its_predecessor_is_never_left_parked() {
    for (name, store, _dir) in stores().await {
        let sub = subscribe_with(store.as_ref(), Ordering::Fifo).await;
        let mut head = publish(store.as_ref()).await;
        for round in 0..60 {
            let ended = outcome(&head, DeliveryStatus::Succeeded, None, SubscriptionEffect::None);
            let (writer, publisher) = (store.clone(), store.clone());
            let end = tokio::spawn(async move { writer.record_outcomes(vec![ended].into()).await.expect("record") });
            let next = tokio::spawn(async move { publish(publisher.as_ref()).await });
            let (_, next) = (end.await.expect("join"), next.await.expect("join"));
            let due = store.load_lane(&sub, now_ms() + 1, &[], 10).await.expect("load");
            let seqs: Vec<i64> = due.deliveries.iter().map(|d| d.seq).collect();
            assert_eq!(seqs, vec![next.seq], "{name}: round {round}: the next delivery is due, alone");
            head = next;
        }
    }
}

#[tokio::test]
async fn a_patch_sets_only_its_fields_so_a_disable_made_meanwhile_stands() {
    for (name, store, _dir) in stores().await {
        let sub = subscribe_with(store.as_ref(), Ordering::Concurrent).await;
        let stale = store.subscription_by_id(&sub).await.expect("read").expect("there");
        assert!(stale.active);
        // The engine disables it (410 Gone) after the API read it.
        let head = publish(store.as_ref()).await;
        let gone = SubscriptionEffect::Disable { reason: "the endpoint answered 410 Gone".into() };
        store.record_outcomes(vec![outcome(&head, DeliveryStatus::Failed, None, gone)].into()).await.expect("record");
        // A rename based on the earlier read must not bring it back.
        let renamed = SubscriptionPatch { name: Some("renamed".into()), ..Default::default() };
        let after = store.patch_subscription(&scope(), &sub, &renamed, now_ms()).await.expect("patch").expect("there");
        assert_eq!(after.name, "renamed", "{name}");
        assert!(!after.active, "{name}: the disable stands");
        assert!(after.disabled_reason.is_some(), "{name}");

        let activate = SubscriptionPatch { active: Some(true), ..Default::default() };
        let after = store.patch_subscription(&scope(), &sub, &activate, now_ms()).await.expect("patch").expect("there");
        assert!(after.active && after.disabled_reason.is_none() && after.failing_since_ms.is_none(), "{name}");

        let until = now_ms() + 60_000;
        let rotate = SubscriptionPatch {
            secret: Some("new".into()),
            previous_secret_until_ms: Some(until),
            ..Default::default()
        };
        let after = store.patch_subscription(&scope(), &sub, &rotate, now_ms()).await.expect("patch").expect("there");
        assert_eq!(
            (after.secret.as_str(), after.previous_secret.as_deref()),
            ("new", Some(stale.secret.as_str())),
            "{name}"
        );
        assert_eq!(after.previous_secret_until_ms, Some(until), "{name}");

        let other = Scope { tenant_id: "other".into(), mode: Mode::Sandbox };
        let missing = store.patch_subscription(&other, &sub, &renamed, now_ms()).await.expect("patch");
        assert!(missing.is_none(), "{name}: scoped to the tenant");
    }
}

/// Every delivery of a list, page after page (two a page).
async fn every_delivery(store: &dyn Store, of: DeliveriesOf<'_>) -> Vec<Delivery> {
    let (mut all, mut page) = (Vec::new(), PageRequest { size: 2, before_seq: None });
    loop {
        let got = store.list_deliveries(&scope(), of, &page).await.expect("list");
        all.extend(got.items);
        match got.next_cursor {
            Some(cursor) => page.before_seq = Some(cursor.parse().expect("a cursor")),
            None => return all,
        }
    }
}

async fn test_send(store: &dyn Store, to: &str) {
    let id = smile_core::ids::new_id("et-");
    let event = NewEvent {
        id: id.clone(),
        scope: scope(),
        event_type: "TEST".into(),
        created_ms: now_ms(),
        body: format!("{{\"id\":\"{id}\"}}"),
        lean_body: None,
        only_subscription: Some(to.to_owned()),
        order_key: None,
        idempotency: None,
    };
    store.publish(event).await.expect("test send");
}

/// A lane that fell behind gets every later event from the log, in publish order, once, and
/// none of another subscription's test sends; once it has read the log to its end, publishes
/// write its deliveries again.
#[tokio::test]
async fn a_lane_that_fell_behind_reads_every_later_event_from_the_log_once_in_order() {
    for (name, store, _dir) in stores().await {
        let (behind, other) = (subscribe(&*store).await, subscribe(&*store).await);
        let mut expected = Vec::new();
        for _ in 0..3 {
            expected.extend(publish_keyed(&*store, None).await.into_iter().filter(|d| d.subscription_id == behind));
        }
        let fell = store.fall_behind(&behind).await.expect("fall behind");
        assert!(fell, "{name}: the lane falls behind");
        for i in 0..5 {
            let created = publish_keyed(&*store, None).await;
            let to_behind = created.iter().filter(|d| d.subscription_id == behind).count();
            assert_eq!(to_behind, 0, "{name}: no row for the lane that fell behind");
            if i == 2 {
                test_send(&*store, &other).await;
            }
        }
        let page = PageRequest { size: 100, before_seq: None };
        let listed = store.list_events(&scope(), &EventFilter::default(), &page).await.expect("events");
        let mut published: Vec<String> =
            listed.items.into_iter().filter(|e| e.event_type != "TEST").map(|e| e.id).collect();
        published.reverse();
        let listed = every_delivery(&*store, DeliveriesOf::Subscription(&behind)).await;
        assert_eq!(listed.len(), 8, "{name}: listed, in the log or not");
        assert!(listed.iter().all(|d| d.status == DeliveryStatus::Pending), "{name}");
        let newest = &listed[0];
        assert_eq!(newest.event_id, published[published.len() - 1], "{name}: newest first");
        let found = store.get_delivery(&scope(), &newest.id).await.expect("get").expect("found by its id");
        assert_eq!((found.id.as_str(), found.subscription_id.as_str()), (newest.id.as_str(), behind.as_str()));
        let retried = store.retry_delivery(&scope(), &newest.id, now_ms()).await.expect("retry").expect("there");
        assert_eq!(retried.status, DeliveryStatus::Pending, "{name}: a retry finds it pending");
        let of_event = every_delivery(&*store, DeliveriesOf::Event(&newest.event_id)).await;
        assert_eq!(of_event.len(), 2, "{name}: the event's deliveries to both subscriptions");
        let counted: u64 =
            store.delivery_counts(&scope(), &behind, 0).await.expect("counts").iter().map(|m| m.count).sum();
        assert_eq!(counted, 8, "{name}: counted per minute");
        let now = now_ms() + 1;
        let first = store.load_lane(&behind, now, &[], 4).await.expect("load");
        assert_eq!(first.deliveries.len(), 4, "{name}");
        assert!(first.behind, "{name}: the log is not read to its end yet");
        let held: Vec<i64> = first.deliveries.iter().map(|d| d.seq).collect();
        let rest = store.load_lane(&behind, now, &held, 100).await.expect("load");
        assert!(!rest.behind, "{name}: read to the end");
        let read: Vec<LaneDelivery> = first.deliveries.into_iter().chain(rest.deliveries).collect();
        assert_eq!(read.len(), 8, "{name}: 3 rows and 5 from the log, no test send of another");
        let ids: Vec<&str> = read.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(&ids[..3], expected.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), "{name}");
        let event_ids: Vec<&str> = read.iter().map(|d| d.event_id.as_str()).collect();
        assert_eq!(event_ids, published, "{name}: every event once, in publish order");
        assert!(read.iter().all(|d| d.body.contains(&d.event_id)), "{name}: each with its body");
        let ids_listed: Vec<String> = listed.iter().map(|d| d.id.clone()).collect();
        let ids_after: Vec<String> =
            every_delivery(&*store, DeliveriesOf::Subscription(&behind)).await.into_iter().map(|d| d.id).collect();
        assert_eq!(ids_after, ids_listed, "{name}: each keeps the id it was listed with");
        let again = publish_keyed(&*store, None).await;
        assert!(again.iter().any(|d| d.subscription_id == behind), "{name}: caught up, written at publish again");
    }
}

/// A lane reads from its log what it would read from its rows: each body as its subscription
/// takes it (the lean one without payloads) and none of the deliveries parked behind an
/// earlier one of their order key.
#[tokio::test]
async fn a_lane_reads_from_its_log_the_bodies_it_takes_and_nothing_parked() {
    for (name, store, _dir) in stores().await {
        let lean = subscribe(&*store).await;
        let full = Subscription { include_payload: true, ..subscription(Ordering::Concurrent) };
        store.insert_subscription(full.clone()).await.expect("insert");
        let fifo = subscribe_with(&*store, Ordering::Fifo).await;
        for sub in [&lean, &full.id, &fifo] {
            assert!(store.fall_behind(sub).await.expect("fall behind"), "{name}");
        }
        let mut events = Vec::new();
        for key in [Some("acct-1"), Some("acct-1"), None] {
            let event = typed_event("USER_CREATED");
            let lean_body = Some(format!("{{\"id\":\"{}\",\"lean\":true}}", event.id));
            let event = NewEvent { order_key: key.map(str::to_owned), lean_body, ..event };
            events.push(event.id.clone());
            let created = store.publish(event).await.expect("publish").created().await;
            assert!(created.is_empty(), "{name}: every lane reads this event from its log");
        }
        let read = |sub: String| {
            let store = store.clone();
            async move { store.load_lane(&sub, now_ms() + 1, &[], 100).await.expect("load").deliveries }
        };
        let (lean_read, full_read) = (read(lean).await, read(full.id).await);
        let unkeyed = vec![events[0].clone(), events[2].clone()];
        for (read, lean) in [(&lean_read, true), (&full_read, false)] {
            let event_ids: Vec<String> = read.iter().map(|d| d.event_id.clone()).collect();
            assert_eq!(event_ids, unkeyed, "{name}: the second of acct-1 waits for the first");
            for d in read {
                assert!(d.body.contains(&d.event_id), "{name}: its own event's body");
                assert_eq!(d.body.contains("\"lean\""), lean, "{name}: lean: {lean}");
                assert_eq!(d.attempts, 0, "{name}");
            }
        }
        assert_eq!(lean_read[0].order_key.as_deref(), Some("acct-1"), "{name}");
        let fifo_read: Vec<String> = read(fifo).await.into_iter().map(|d| d.event_id).collect();
        assert_eq!(fifo_read, vec![events[0].clone()], "{name}: a FIFO lane, its head alone");
    }
}

/// Disabling a subscription that fell behind ends its deliveries still in the log as FAILED,
/// so none is pending and `recover` finds them all.
#[tokio::test]
async fn a_disable_ends_the_deliveries_still_in_the_log_and_recover_finds_them() {
    for (name, store, _dir) in stores().await {
        let sub = subscribe(&*store).await;
        publish_keyed(&*store, None).await;
        store.fall_behind(&sub).await.expect("fall behind");
        for _ in 0..4 {
            publish_keyed(&*store, None).await;
        }
        let off = SubscriptionPatch { active: Some(false), ..Default::default() };
        store.patch_subscription(&scope(), &sub, &off, now_ms()).await.expect("patch").expect("there");
        let page = PageRequest { size: 100, before_seq: None };
        let listed = store.list_deliveries(&scope(), DeliveriesOf::Subscription(&sub), &page).await.expect("list");
        assert_eq!(listed.items.len(), 5, "{name}: every event has its delivery");
        assert!(listed.items.iter().all(|d| d.status == DeliveryStatus::Failed), "{name}: all FAILED");
        assert_eq!(store.backlog().await.expect("backlog").pending, 0, "{name}: nothing pending");
        let on = SubscriptionPatch { active: Some(true), ..Default::default() };
        store.patch_subscription(&scope(), &sub, &on, now_ms()).await.expect("patch").expect("there");
        let recovered = store.recover_deliveries(&scope(), &sub, 0, now_ms()).await.expect("recover");
        assert_eq!(recovered.len(), 5, "{name}: recover sends them all");
    }
}

/// `/metrics`' backlog counts the deliveries a lane that fell behind has in the log, and a
/// node that starts finds that lane among those with work.
#[tokio::test]
async fn deliveries_in_the_log_count_as_backlog_and_as_lane_work() {
    for (name, store, _dir) in stores().await {
        let sub = subscribe(&*store).await;
        store.fall_behind(&sub).await.expect("fall behind");
        for _ in 0..3 {
            publish_keyed(&*store, None).await;
        }
        assert_eq!(store.backlog().await.expect("backlog").pending, 3, "{name}");
        let with_work = store.lanes_with_work("n", now_ms() + 1, 10).await.expect("find");
        assert_eq!(with_work, vec![sub], "{name}");
    }
}

/// Every attempt is in the log, in order: the first, the first sent again after a crash (the
/// same number), a later one, and one recorded after the delivery finished.
#[tokio::test]
async fn every_attempt_is_logged_in_order_however_it_is_stored() {
    for (name, store, _dir) in stores().await {
        subscribe(&*store).await;
        let d = publish(&*store).await;
        let mut made = Vec::new();
        for (no, status, body) in [
            (1, DeliveryStatus::Pending, "first"),
            (1, DeliveryStatus::Pending, "first, sent again"),
            (2, DeliveryStatus::Succeeded, "second"),
            (3, DeliveryStatus::Succeeded, "after it finished"),
        ] {
            let mut o = outcome(&d, status, Some(now_ms()), SubscriptionEffect::None);
            o.attempt.attempt = no;
            o.attempt.attempted_ms = now_ms() + made.len() as i64;
            o.attempt.response_body = Some(body.to_owned());
            made.push((o.attempt.id.clone(), no, body));
            store.record_outcomes(Arc::from(vec![o])).await.expect("record");
        }
        let logged: Vec<(String, u32, String)> = store
            .list_attempts(&d.id)
            .await
            .expect("attempts")
            .into_iter()
            .map(|a| (a.id, a.attempt, a.response_body.unwrap_or_default()))
            .collect();
        let want: Vec<(String, u32, String)> = made.into_iter().map(|(id, no, b)| (id, no, b.to_owned())).collect();
        assert_eq!(logged, want, "{name}");
        assert_eq!(status(&*store, &d).await, DeliveryStatus::Succeeded, "{name}");
    }
}

/// A publish to more subscriptions than SQLite writes in its own commit answers once its
/// event is durable and writes the rest in parts after it: every subscription gets exactly
/// one delivery, listed under the event. PostgreSQL writes them all at publish.
#[tokio::test]
async fn a_large_fan_out_gives_every_subscription_one_delivery() {
    for (name, store, _dir) in stores().await {
        let mut subscriptions = HashSet::new();
        for _ in 0..300 {
            subscriptions.insert(subscribe(&*store).await);
        }
        let id = smile_core::ids::new_id("et-");
        let event = NewEvent { id: id.clone(), ..keyed_event("fan-out", now_ms()) };
        let published = store.publish(NewEvent { idempotency: None, ..event }).await.expect("publish");
        let spread = matches!(published, Published::Spreading { later: 300, .. });
        assert_eq!(spread, name == "sqlite", "{name}: SQLite answers before the rows, PostgreSQL with them");
        let created = published.created().await;
        let to: HashSet<String> = created.iter().map(|d| d.subscription_id.clone()).collect();
        assert_eq!((created.len(), &to), (300, &subscriptions), "{name}: one each");
        let page = PageRequest { size: 500, before_seq: None };
        let listed = store.list_deliveries(&scope(), DeliveriesOf::Event(&id), &page).await.expect("list");
        assert_eq!(listed.items.len(), 300, "{name}: listed under the event");
        assert!(listed.items.iter().all(|d| d.status == DeliveryStatus::Pending), "{name}");
    }
}

/// Three subscriptions, numbered 1, 2, 3 in a fresh file, the third deleted: the one kept
/// and the one a test disables.
async fn kept_disabled_and_deleted(store: &dyn Store) -> (String, String) {
    let (kept, disabled, deleted) = (subscribe(store).await, subscribe(store).await, subscribe(store).await);
    assert!(store.delete_subscription(&scope(), &deleted).await.expect("delete"));
    (kept, disabled)
}

/// A fan-out's rows written after its event, as its publish would have written them: the
/// kept subscription's PENDING, the one disabled (410) since FAILED with the reason, none
/// for the deleted one.
async fn written_as_a_publish_would(store: &dyn Store, event_id: &str, kept: &str, disabled: &str) {
    let written = every_delivery(store, DeliveriesOf::Event(event_id)).await;
    let status_of = |sub: &str| written.iter().find(|d| d.subscription_id == sub).map(|d| d.status);
    assert_eq!(status_of(kept), Some(DeliveryStatus::Pending));
    assert_eq!(status_of(disabled), Some(DeliveryStatus::Failed));
    assert_eq!(written.len(), 2, "none for the deleted subscription");
    let failed = written.iter().find(|d| d.subscription_id == disabled).expect("failed one");
    assert_eq!(failed.last_error.as_deref(), Some("gone (410)"));
}

/// A crash between a large fan-out's event and its delivery rows leaves the rest in the
/// store; the next open writes it: a subscription still active gets its delivery pending, one
/// disabled in between gets it FAILED (as a disable ends the pending ones), a deleted one none.
#[tokio::test]
async fn a_fan_out_a_crash_cut_short_is_written_at_the_next_open() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("s.db");
    let store = sqlite::SqliteStore::open(&path).expect("sqlite");
    let (kept, disabled) = kept_disabled_and_deleted(&store).await;
    drop(store);
    let conn = rusqlite::Connection::open(&path).expect("open");
    conn.execute("UPDATE subscriptions SET active = 0, disabled_reason = 'gone (410)' WHERE id = ?1", [&disabled])
        .expect("disable");
    conn.execute_batch(
        "INSERT INTO events (id, tenant_id, mode, type, created_ms, body) VALUES ('et-0123456789abcdef01234567', 't', 'SANDBOX', 'USER_CREATED', 1, '{}'); \
         INSERT INTO spreads (event_seq, part, subscriptions) VALUES (last_insert_rowid(), 0, '[1, 2, 3]');",
    )
    .expect("an event whose fan-out was cut short");
    drop(conn);
    let store = sqlite::SqliteStore::open(&path).expect("reopen");
    written_as_a_publish_would(&store, "et-0123456789abcdef01234567", &kept, &disabled).await;
    assert_eq!(store.lanes_with_work("n", now_ms(), 10).await.expect("work"), vec![kept]);
}

/// A large fan-out's part its publisher left (a failed write) is written by the poll's sweep
/// once it is older than the grace, exactly once; a younger one is left to its publisher.
/// Written as a publish would have: a subscription disabled in between gets its delivery
/// FAILED, a deleted one none. (PostgreSQL writes every row in the publish: nothing to sweep.)
#[tokio::test]
async fn a_fan_out_its_publisher_left_is_written_by_the_sweep_once() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("s.db");
    let store = sqlite::SqliteStore::open(&path).expect("sqlite");
    let (kept, disabled) = kept_disabled_and_deleted(&store).await;
    let (old, young) = ("et-0123456789abcdef0123old0", "et-0123456789abcdef0young0");
    let now = now_ms();
    let event = |id: &str, at: i64| {
        format!(
            "INSERT INTO events (id, tenant_id, mode, type, created_ms, body) \
             VALUES ('{id}', 't', 'SANDBOX', 'USER_CREATED', {at}, '{{}}');"
        )
    };
    // A fresh file numbers the three subscriptions 1, 2, 3.
    let left = format!(
        "UPDATE subscriptions SET active = 0, disabled_reason = 'gone (410)' WHERE id = '{disabled}'; \
         {} INSERT INTO spreads (event_seq, part, subscriptions) VALUES (last_insert_rowid(), 0, '[1, 2, 3]'); \
         {} INSERT INTO spreads (event_seq, part, subscriptions) VALUES (last_insert_rowid(), 0, '[1]');",
        event(old, now - 60_000),
        event(young, now)
    );
    rusqlite::Connection::open(&path).expect("open").execute_batch(&left).expect("what a failed write leaves");
    assert_eq!(store.write_left_over_spreads(now).await.expect("sweep"), vec![kept.clone()]);
    written_as_a_publish_would(&store, old, &kept, &disabled).await;
    assert!(every_delivery(&store, DeliveriesOf::Event(young)).await.is_empty(), "left to its publisher");
    assert!(store.write_left_over_spreads(now).await.expect("sweep").is_empty(), "once");
    let later = now + 60_000;
    assert_eq!(store.write_left_over_spreads(later).await.expect("sweep"), vec![kept.clone()]);
    assert_eq!(every_delivery(&store, DeliveriesOf::Event(young)).await.len(), 1);
    assert!(store.write_left_over_spreads(later).await.expect("sweep").is_empty(), "once");
}

fn typed_event(event_type: &str) -> NewEvent {
    let id = smile_core::ids::new_id("et-");
    NewEvent {
        id: id.clone(),
        scope: scope(),
        event_type: event_type.into(),
        created_ms: now_ms(),
        body: format!("{{\"id\":\"{id}\"}}"),
        lean_body: None,
        only_subscription: None,
        order_key: None,
        idempotency: None,
    }
}

/// A connection of the test's own to the store's database, beside the store's pool.
async fn beside_the_store(url: &str) -> tokio_postgres::Client {
    let (db, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    db
}

/// Polls `query` (one boolean) on `db` until it is true, for at most 10 s.
async fn until_postgres(db: &tokio_postgres::Client, query: &str, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !db.query_one(query, &[]).await.expect("poll").get::<_, bool>(0) {
        assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Polls until `task` has finished or waits on a lock beside the one already waiting, for at
/// most 10 s.
async fn until_done_or_waiting<T>(db: &tokio_postgres::Client, task: &tokio::task::JoinHandle<T>, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let two_waiting = "SELECT COUNT(*) >= 2 FROM pg_locks WHERE NOT granted";
    while !task.is_finished() && !db.query_one(two_waiting, &[]).await.expect("poll").get::<_, bool>(0) {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what} to finish or wait");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// On PostgreSQL a publish can commit after a later one (each draws its `seq` first). A lane
/// that fell behind must not read its log past the earlier one meanwhile, or it would never
/// send it. Here the earlier publish is held open (an uncommitted insert holds its event's id)
/// while the later one commits and the lane reads its log; then it goes on. Once as one
/// statement, once as a transaction (an order key).
#[tokio::test]
async fn a_lane_reading_its_log_never_skips_a_publish_that_commits_after_a_later_one() {
    for order_key in [None, Some("k")] {
        let Some(url) = testing::fresh_postgres_schema().await else {
            return;
        };
        a_lane_reads_a_publish_held_open(&url, order_key).await;
    }
}

async fn a_lane_reads_a_publish_held_open(url: &str, order_key: Option<&str>) {
    let store = Arc::new(postgres::PostgresStore::connect(url).await.expect("postgres"));
    let behind = subscribe(&*store).await;
    let other = subscribe(&*store).await;
    let only_created = SubscriptionPatch { event_types: Some(vec!["USER_CREATED".into()]), ..Default::default() };
    store.patch_subscription(&scope(), &other, &only_created, now_ms()).await.expect("patch").expect("there");
    assert!(store.fall_behind(&behind).await.expect("fall behind"));

    let db = beside_the_store(url).await;
    let event = NewEvent { order_key: order_key.map(str::to_owned), ..typed_event("USER_CREATED") };
    let earlier_id = event.id.clone();
    db.batch_execute(&format!(
        "BEGIN; INSERT INTO events (id, tenant_id, mode, type, created_ms, body) \
         VALUES ('{earlier_id}', 't', 'SANDBOX', 'USER_CREATED', 0, '{{}}')"
    ))
    .await
    .expect("hold the earlier event's id");
    let earlier = tokio::spawn({
        let store = store.clone();
        async move { store.publish(event).await.expect("publish").created().await }
    });
    let waiting = "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE NOT granted AND locktype = 'transactionid')";
    until_postgres(&db, waiting, "the earlier publish waits to insert its event").await;

    let event = typed_event("USER_UPDATED");
    let later_id = event.id.clone();
    let later_publish = tokio::time::timeout(std::time::Duration::from_secs(10), store.publish(event));
    let created = later_publish.await.expect("not held").expect("the later publish commits").created().await;
    assert!(created.is_empty(), "the later event goes only to the lane that fell behind, through the log");

    let reading = tokio::spawn({
        let (store, behind) = (store.clone(), behind.clone());
        async move { store.load_lane(&behind, now_ms() + 1, &[], 100).await.expect("load") }
    });
    // The lane reads at once, or waits for the earlier publish.
    until_done_or_waiting(&db, &reading, "the lane").await;
    db.batch_execute("ROLLBACK").await.expect("release");

    let earlier = earlier.await.expect("earlier publish");
    assert!(earlier.iter().any(|d| d.subscription_id == other), "the other's row");
    let mut read = reading.await.expect("read").deliveries;
    loop {
        let held: Vec<i64> = read.iter().map(|d| d.seq).collect();
        let more = store.load_lane(&behind, now_ms() + 1, &held, 100).await.expect("load").deliveries;
        if more.is_empty() {
            break;
        }
        read.extend(more);
    }
    let mut read: Vec<String> = read.into_iter().map(|d| d.event_id).collect();
    if order_key.is_some() {
        assert_eq!(read, vec![earlier_id, later_id], "both events, in publish order, once");
    } else {
        read.sort();
        let mut both = vec![earlier_id, later_id];
        both.sort();
        assert_eq!(read, both, "both events, once each");
    }
}

/// On PostgreSQL a publish reads a lane's cursor as it locks the lane's row, inside a statement
/// whose snapshot is older: here the lane is reading its log to the end (held on an
/// uncommitted row of the id it writes) as the publish begins and waits for the lock. The lane
/// then has caught up, so the publish must write its row, not leave it in a log nobody reads.
#[tokio::test]
async fn a_publish_waiting_for_a_lane_to_catch_up_writes_its_row() {
    let Some(url) = testing::fresh_postgres_schema().await else {
        return;
    };
    let store = Arc::new(postgres::PostgresStore::connect(&url).await.expect("postgres"));
    let sub = subscribe(&*store).await;
    assert!(store.fall_behind(&sub).await.expect("fall behind"));
    assert!(publish_keyed(&*store, None).await.is_empty(), "the first event waits in the log");
    let in_log = every_delivery(&*store, DeliveriesOf::Subscription(&sub)).await;
    let db = beside_the_store(&url).await;
    db.batch_execute(&format!(
        "BEGIN; INSERT INTO deliveries (id, event_id, event_type, subscription_id, tenant_id, mode, status, \
         attempts, lean, created_ms, updated_ms) VALUES ('{}', '{}', 'USER_CREATED', '{sub}', 't', 'SANDBOX', \
         'PENDING', 0, FALSE, 0, 0)",
        in_log[0].id, in_log[0].event_id
    ))
    .await
    .expect("hold the row the lane writes");
    let reading = tokio::spawn({
        let (store, sub) = (store.clone(), sub.clone());
        async move { store.load_lane(&sub, now_ms() + 1, &[], 100).await.expect("load") }
    });
    let waiting = "SELECT COUNT(*) >= 1 FROM pg_locks WHERE NOT granted AND locktype = 'transactionid'";
    until_postgres(&db, waiting, "the lane waits to write its row").await;
    let publishing = tokio::spawn({
        let store = store.clone();
        async move { publish_keyed(&*store, None).await }
    });
    until_done_or_waiting(&db, &publishing, "the publish").await;
    db.batch_execute("ROLLBACK").await.expect("release");

    let first = reading.await.expect("read");
    assert!(!first.behind, "the lane read its log to the end");
    let created = publishing.await.expect("publish");
    assert_eq!(created.len(), 1, "the publish wrote its row: the lane caught up before it");
    let held: Vec<i64> = first.deliveries.iter().map(|d| d.seq).collect();
    let rest = store.load_lane(&sub, now_ms() + 1, &held, 100).await.expect("load").deliveries;
    let read: Vec<String> = first.deliveries.iter().chain(&rest).map(|d| d.id.clone()).collect();
    assert_eq!(read, vec![in_log[0].id.clone(), created[0].id.clone()], "both, once each");
}

/// On PostgreSQL a publish that read a lane's cursor as NULL writes its row even when the
/// lane falls behind before the publish draws its event's `seq`: that event is then past the
/// cursor and a row. It is one delivery: listed, counted and read once.
#[tokio::test]
async fn a_row_written_as_its_lane_fell_behind_is_one_delivery_not_two() {
    let Some(url) = testing::fresh_postgres_schema().await else {
        return;
    };
    let store = Arc::new(postgres::PostgresStore::connect(&url).await.expect("postgres"));
    let sub = subscribe(&*store).await;
    let db = beside_the_store(&url).await;
    db.batch_execute("BEGIN; LOCK TABLE deliveries IN SHARE MODE").await.expect("hold inserts");
    let publishing = tokio::spawn({
        let store = store.clone();
        async move { publish_keyed(&*store, None).await }
    });
    let waiting = "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE NOT granted AND relation = 'deliveries'::regclass)";
    until_postgres(&db, waiting, "the publish waits to write").await;
    assert!(store.fall_behind(&sub).await.expect("fall behind"));
    db.batch_execute("COMMIT").await.expect("release");
    let created = publishing.await.expect("publish");
    assert_eq!(created.len(), 1, "the publish wrote its row");
    let listed = every_delivery(&*store, DeliveriesOf::Subscription(&sub)).await;
    assert_eq!(listed.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), vec![created[0].id.as_str()], "listed once");
    assert_eq!(store.backlog().await.expect("backlog").pending, 1, "counted once");
    let read = store.load_lane(&sub, now_ms() + 1, &[], 100).await.expect("load");
    assert_eq!(read.deliveries.len(), 1, "read once");
}
