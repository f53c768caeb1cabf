//! Data syncs: the task, the records of an account and their `*_ADDED` events, and the
//! payload `TASK_FINISHED` carries.

use crate::data::{self, Metadata, Record, Source, SyncedData};
use crate::people::Person;
use crate::platform::{Platform, item, kinds, stored};
use crate::providers::Provider;
use serde::Serialize;
use serde_json::{Value, json};
use smile_core::timefmt::{format_ms, now_ms};
use smile_core::{ApiError, EventType, ids};
use smile_store::{Document, Scope};

/// List data in a `TASK_FINISHED` payload is capped at this many items per list.
const PAYLOAD_LIST_CAP: usize = 300;

/// How far a sync task got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TaskStatus {
    Started,
    Finished,
}

/// One data sync of an account, as `GET /v1/tasks` shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub id: String,
    #[serde(rename = "type")]
    pub task_type: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub status: TaskStatus,
    pub datapoints: Vec<&'static str>,
    pub metadata: Metadata,
}

impl Task {
    fn document(&self, scope: &Scope) -> Result<Document, ApiError> {
        let (user, source) = (&self.metadata.user_id, &self.metadata.source_id);
        stored(kinds::TASK, &self.id, scope, user, Some(source), self)
    }
}

impl Platform {
    /// One data sync task: `TASK_STARTED`, the data and its `*_ADDED` events, then
    /// `TASK_FINISHED` (or `ACCOUNT_SYNC_TASK_FINISHED` for a resync).
    pub(crate) async fn sync(
        &self,
        scope: &Scope,
        account_id: &str,
        user_id: &str,
        provider: &Provider,
        person: &Person,
        task_type: &str,
    ) -> Result<Task, ApiError> {
        let started = format_ms(now_ms());
        let mut task = Task {
            id: ids::new_id("task-"),
            task_type: task_type.to_owned(),
            started_at: started.clone(),
            finished_at: None,
            status: TaskStatus::Started,
            datapoints: Vec::new(),
            metadata: Source { account_id, user_id, provider, now: &started }.metadata(),
        };
        self.put(vec![task.document(scope)?]).await?;
        let first = task_type == "LINK_ACCOUNT";
        let base =
            json!({"userId": user_id, "sourceId": account_id, "sourceType": "ACCOUNT", "providers": [provider.id]});
        if first {
            let mut data = base.clone();
            data["taskType"] = json!(task_type);
            self.publish(scope, EventType::TaskStarted, data, account_id).await?;
        }

        let source = Source { account_id, user_id, provider, now: &started };
        let synced = data::generate(person, &source);
        let datapoints = self.store_synced(scope, account_id, user_id, provider, &synced, first).await?;

        task.status = TaskStatus::Finished;
        task.finished_at = Some(format_ms(now_ms()));
        task.datapoints = datapoints.clone();
        self.put(vec![task.document(scope)?]).await?;
        let mut data = base;
        data["status"] = json!("SUCCEEDED");
        data["datapoints"] = json!(datapoints);
        data["payload"] = payload(&synced);
        if first {
            data["taskType"] = json!(task_type);
            data["errorCode"] = Value::Null;
            self.publish(scope, EventType::TaskFinished, data, account_id).await?;
        } else {
            data["monitorStatus"] = json!("ACTIVE");
            self.publish(scope, EventType::AccountSyncTaskFinished, data, account_id).await?;
        }
        Ok(task)
    }

    /// Writes the synced records, and on a first sync says so with the `*_ADDED` events.
    async fn store_synced(
        &self,
        scope: &Scope,
        account_id: &str,
        user_id: &str,
        provider: &Provider,
        synced: &SyncedData,
        announce: bool,
    ) -> Result<Vec<&'static str>, ApiError> {
        let mut added = Added {
            scope,
            user_id,
            account_id,
            provider,
            documents: Vec::new(),
            datapoints: Vec::new(),
            events: Vec::new(),
        };
        added.one(kinds::IDENTITY, synced.identity.as_ref(), "IDENTITIES", EventType::IdentityAdded, "identityId")?;
        added.list(kinds::EMPLOYMENT, &synced.employments, "EMPLOYMENTS", EventType::EmploymentsAdded)?;
        added.list(kinds::INCOME, &synced.incomes, "INCOMES", EventType::IncomesAdded)?;
        added.list(kinds::CONTRIBUTION, &synced.contributions, "CONTRIBUTIONS", EventType::ContributionsAdded)?;
        added.one(kinds::RATING, synced.rating.as_ref(), "RATINGS", EventType::RatingAdded, "ratingId")?;
        added.list(kinds::TRANSACTION, &synced.transactions, "TRANSACTIONS", EventType::TransactionsAdded)?;
        added.list(kinds::DOCUMENT, &synced.documents, "DOCUMENTS", EventType::DocumentsAdded)?;
        added.list(kinds::EINCOME, &synced.eincomes, "EINCOMES", EventType::EincomesAdded)?;
        added.list(kinds::LIABILITY, &synced.liabilities, "LIABILITIES", EventType::LiabilitiesAdded)?;
        added.one(kinds::LINK, synced.link.as_ref(), "LINK", EventType::LinkAdded, "id")?;
        added.one(kinds::INSIGHT, synced.insight.as_ref(), "INSIGHTS", EventType::InsightAdded, "id")?;
        let Added { documents, datapoints, events, .. } = added;
        self.put(documents).await?;
        if announce {
            for (event_type, data) in events {
                self.publish(scope, event_type, data, account_id).await?;
            }
        }
        Ok(datapoints)
    }
}

/// The documents, datapoints and `*_ADDED` events of one sync, gathered in event order.
struct Added<'a> {
    scope: &'a Scope,
    user_id: &'a str,
    account_id: &'a str,
    provider: &'a Provider,
    documents: Vec<Document>,
    datapoints: Vec<&'static str>,
    events: Vec<(EventType, Value)>,
}

impl Added<'_> {
    fn data(&self, field: &str, value: Value) -> Value {
        let mut data = json!({"userId": self.user_id, "accountId": self.account_id, "providers": [self.provider.id]});
        data[field] = value;
        data
    }

    /// A list of records, announced with their count.
    fn list<T: Record>(
        &mut self,
        kind: &str,
        items: &[T],
        datapoint: &'static str,
        event: EventType,
    ) -> Result<(), ApiError> {
        if items.is_empty() {
            return Ok(());
        }
        for record in items {
            self.documents.push(item(kind, record, self.scope, self.user_id, self.account_id)?);
        }
        self.datapoints.push(datapoint);
        self.events.push((event, self.data("count", json!(items.len()))));
        Ok(())
    }

    /// A single record, announced by its id (in `field`).
    fn one<T: Record>(
        &mut self,
        kind: &str,
        record: Option<&T>,
        datapoint: &'static str,
        event: EventType,
        field: &str,
    ) -> Result<(), ApiError> {
        let Some(record) = record else { return Ok(()) };
        self.documents.push(item(kind, record, self.scope, self.user_id, self.account_id)?);
        self.datapoints.push(datapoint);
        self.events.push((event, self.data(field, json!(record.id()))));
        Ok(())
    }
}

/// The `payload` of a finished task: every datapoint, lists capped at 300 items.
fn payload(synced: &SyncedData) -> Value {
    fn capped<T: Record>(items: &[T]) -> &[T] {
        &items[..items.len().min(PAYLOAD_LIST_CAP)]
    }
    json!({
        "identity": synced.identity, "employments": capped(&synced.employments), "incomes": capped(&synced.incomes),
        "contributions": capped(&synced.contributions), "rating": synced.rating, "transactions": capped(&synced.transactions),
        "documents": capped(&synced.documents), "eincomes": capped(&synced.eincomes), "insight": synced.insight,
        "liabilities": capped(&synced.liabilities), "link": synced.link,
    })
}
