//! The platform's handle, the kinds of documents it keeps, and the work that outlives its
//! request (a sync, an analysis): kept as a document until done, and redone after a crash.

use crate::archives;
use crate::people;
use crate::providers;
use serde_json::Value;
use smile_core::timefmt::now_ms;
use smile_core::{ApiError, EventType};
use smile_delivery::Engine;
use smile_store::{Document, DocumentFilter, PageRequest, Scope, Store};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The document kinds the platform keeps.
pub mod kinds {
    pub const USER: &str = "user";
    pub const TOKEN: &str = "token";
    pub const ACCOUNT: &str = "account";
    pub const TASK: &str = "task";
    pub const IDENTITY: &str = "identity";
    pub const EMPLOYMENT: &str = "employment";
    pub const INCOME: &str = "income";
    pub const CONTRIBUTION: &str = "contribution";
    pub const RATING: &str = "rating";
    pub const TRANSACTION: &str = "transaction";
    pub const DOCUMENT: &str = "document";
    pub const EINCOME: &str = "eincome";
    pub const INSIGHT: &str = "insight";
    pub const LIABILITY: &str = "liability";
    pub const LINK: &str = "link";
    pub const CONSENT_TEMPLATE: &str = "consent_template";
    pub const INVITE_TEMPLATE: &str = "invite_template";
    /// A file made of an account's data (`POST /v1/accounts/{id}/exports/generate`).
    pub const EXPORT: &str = "export";
    /// When a user's session last started over (`POST /v1/users/{id}/resetSession`).
    pub const SESSION: &str = "user_session";
    pub const ARCHIVE: &str = "archive";
    pub const INVITE: &str = "invite";
    /// An employer a user could not find in the widget, passed on to the integrator.
    pub const EMPLOYER_SURVEY: &str = "employer_survey";
    /// The outbox: what was sent (or would be, by e-mail or SMS) about an invite.
    pub const INVITE_LOG: &str = "invite_log";
    /// Work that runs after its request (a sync, an analysis) and is not finished yet.
    pub const JOB: &str = "sandbox_job";
    /// Everything a sync adds to an account, removed with it.
    pub const ACCOUNT_DATA: &[&str] = &[
        TASK,
        IDENTITY,
        EMPLOYMENT,
        INCOME,
        CONTRIBUTION,
        RATING,
        TRANSACTION,
        DOCUMENT,
        EINCOME,
        INSIGHT,
        LIABILITY,
        LINK,
        EXPORT,
    ];
}

/// Work a request starts and a task finishes later. It is kept as a document until it is
/// done, so that a crash leaves it to be redone at the next start instead of losing the
/// events it would send (`TASK_FINISHED`, `ARCHIVE_*`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(tag = "work", rename_all = "camelCase")]
pub(crate) enum Job {
    #[serde(rename_all = "camelCase")]
    Sync { account_id: String, user_id: String, task_type: String },
    #[serde(rename_all = "camelCase")]
    Analyse { archive_id: String, user_id: String },
}

impl Job {
    fn id(&self) -> &str {
        match self {
            Job::Sync { account_id, .. } => account_id,
            Job::Analyse { archive_id, .. } => archive_id,
        }
    }

    pub(crate) fn document(&self, scope: &Scope) -> Document {
        let (id, user_id) = match self {
            Job::Sync { account_id, user_id, .. } => (account_id, user_id),
            Job::Analyse { archive_id, user_id, .. } => (archive_id, user_id),
        };
        let body = serde_json::to_value(self).unwrap_or(Value::Null);
        document(kinds::JOB, id, scope, user_id, Some(id), body)
    }
}

/// A node that finds unfinished work of another node's (PostgreSQL) leaves it this long: the
/// other node may still be doing it. Work of this node's own earlier run (SQLite) is redone
/// at once.
const JOB_ORPHANED_AFTER: Duration = Duration::from_secs(60);

/// Who a link token speaks for.
#[derive(Debug, Clone)]
pub struct LinkSession {
    pub scope: Scope,
    pub user_id: String,
}

/// The sandbox platform of one process; cheap to clone.
#[derive(Clone)]
pub struct Platform {
    pub(crate) store: Arc<dyn Store>,
    engine: Engine,
    pub(crate) token_ttl: Duration,
    /// Where uploaded files are kept, one directory per archive.
    pub(crate) files_dir: PathBuf,
    pub(crate) public_url: String,
}

/// Whether `s` is an e-mail address as the spec's `format: email` means it (RFC 5321's
/// dot-atom local part, a host name): what we accept is answered back, and must validate.
pub(crate) fn is_email_address(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else { return false };
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    let word = |w: &str| !w.is_empty() && w.chars().all(atext);
    let label = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    local.len() <= 64 && domain.len() <= 253 && local.split('.').all(word) && domain.split('.').all(label)
}

pub(crate) fn server_error(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "sandbox platform failure");
    ApiError::server("the request could not be completed; try again")
}

pub(crate) fn document(
    kind: &str,
    id: &str,
    scope: &Scope,
    user_id: &str,
    source_id: Option<&str>,
    body: Value,
) -> Document {
    let document = Document::new(kind, id, scope, body).of_user(user_id);
    match source_id {
        Some(source) => document.from_source(source),
        None => document,
    }
}

/// A typed record as the document that keeps it.
pub(crate) fn stored<T: serde::Serialize>(
    kind: &str,
    id: &str,
    scope: &Scope,
    user_id: &str,
    source_id: Option<&str>,
    record: &T,
) -> Result<Document, ApiError> {
    Ok(document(kind, id, scope, user_id, source_id, serde_json::to_value(record).map_err(server_error)?))
}

/// A data record from `source_id`, named by its own `id`.
pub(crate) fn item<T: crate::data::Record>(
    kind: &str,
    record: &T,
    scope: &Scope,
    user_id: &str,
    source_id: &str,
) -> Result<Document, ApiError> {
    stored(kind, record.id(), scope, user_id, Some(source_id), record)
}

impl Platform {
    /// `public_url`: where clients reach the server, without a trailing slash; links the
    /// platform hands out (invite landing pages) start with it.
    pub fn new(
        store: Arc<dyn Store>,
        engine: Engine,
        token_ttl: Duration,
        files_dir: PathBuf,
        public_url: String,
    ) -> Self {
        Platform { store, engine, token_ttl, files_dir, public_url }
    }

    /// Redoes work left unfinished by a crash: now (for this node's own earlier run), then
    /// every minute (for a PostgreSQL node that died; its work is left alone for a minute first),
    /// until the returned task is aborted.
    pub fn resume_jobs(&self) -> tokio::task::JoinHandle<()> {
        let platform = self.clone();
        tokio::spawn(async move {
            let mut first = true;
            loop {
                let age = if first && platform.store.single_node() { Duration::ZERO } else { JOB_ORPHANED_AFTER };
                first = false;
                if let Err(error) = platform.resume_orphans(age).await {
                    tracing::warn!(?error, "could not look for unfinished sandbox work");
                }
                tokio::time::sleep(JOB_ORPHANED_AFTER).await;
            }
        })
    }

    async fn resume_orphans(&self, age: Duration) -> Result<(), ApiError> {
        let until = now_ms() - age.as_millis() as i64;
        let orphans = self.store.documents_of_kind(kinds::JOB, until, 100).await.map_err(server_error)?;
        for orphan in orphans {
            let Ok(job) = serde_json::from_value::<Job>(orphan.body.clone()) else {
                tracing::warn!(id = orphan.id, "dropping unreadable sandbox work");
                self.finish_job(&orphan.scope, orphan.id.as_str()).await;
                continue;
            };
            // Taking it: only the node whose delete removed it redoes it.
            let taken = self
                .store
                .delete_documents_of_source(&orphan.scope, &[kinds::JOB], job.id())
                .await
                .map_err(server_error)?;
            if taken == 0 {
                continue;
            }
            tracing::info!(?job, "redoing sandbox work left unfinished");
            self.put(vec![job.document(&orphan.scope)]).await?;
            self.spawn_job(orphan.scope, job, None);
        }
        Ok(())
    }

    /// Runs `job` on its own, then forgets it. `contents`: an analysis's files, when at hand
    /// (else they are read back from disk).
    pub(crate) fn spawn_job(&self, scope: Scope, job: Job, contents: Option<Vec<Vec<u8>>>) {
        let platform = self.clone();
        tokio::spawn(async move {
            if let Err(error) = platform.run_job(&scope, &job, contents).await {
                tracing::error!(?error, ?job, "sandbox work failed");
            }
            platform.finish_job(&scope, job.id()).await;
        });
    }

    async fn finish_job(&self, scope: &Scope, id: &str) {
        if let Err(error) = self.store.delete_documents_of_source(scope, &[kinds::JOB], id).await {
            tracing::warn!(%error, id, "could not mark sandbox work done; it will be redone");
        }
    }

    async fn run_job(&self, scope: &Scope, job: &Job, contents: Option<Vec<Vec<u8>>>) -> Result<(), ApiError> {
        match job {
            Job::Sync { account_id, user_id, task_type } => {
                let account = self.account(scope, account_id, None).await?;
                if account.connection_status != crate::ConnectionStatus::Connected {
                    return Ok(()); // revoked meanwhile: nothing to sync
                }
                let provider = providers::find(&account.provider_id).ok_or_else(|| server_error("unknown provider"))?;
                let person = people::find(&account.login_name).ok_or_else(|| server_error("unknown person"))?;
                self.sync(scope, account_id, user_id, &provider, person, task_type).await.map(|_| ())
            }
            Job::Analyse { archive_id, .. } => {
                let archive = self.archive(scope, archive_id, None).await?;
                if archive.state.status != crate::uploads::ArchiveStatus::Started {
                    return Ok(()); // analysed, or revoked, meanwhile
                }
                let contents = match contents {
                    Some(contents) => contents,
                    None => self.stored_contents(scope, &archive).await?,
                };
                self.analyse(scope, archive, &contents).await
            }
        }
    }

    /// Removes uploaded files past their retention, now and then every hour, until the
    /// returned task is aborted.
    pub fn start_retention(&self) -> tokio::task::JoinHandle<()> {
        let dir = self.files_dir.clone();
        tokio::spawn(async move {
            loop {
                let sweep_dir = dir.clone();
                match tokio::task::spawn_blocking(move || archives::sweep(&sweep_dir, archives::RETENTION)).await {
                    Ok(Ok(removed)) if removed > 0 => tracing::info!(removed, "removed archives past retention"),
                    Ok(Err(error)) => tracing::warn!(%error, "could not sweep old archives"),
                    _ => {}
                }
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
        })
    }

    pub(crate) async fn publish(
        &self,
        scope: &Scope,
        event_type: EventType,
        data: Value,
        order: &str,
    ) -> Result<(), ApiError> {
        self.engine.publish_in_order(scope, event_type, data, order).await.map(|_| ()).map_err(server_error)
    }

    pub(crate) async fn put(&self, documents: Vec<Document>) -> Result<(), ApiError> {
        self.store.put_documents(documents).await.map_err(server_error)
    }

    pub(crate) async fn get(&self, scope: &Scope, kind: &str, id: &str) -> Result<Option<Document>, ApiError> {
        self.store.get_document(scope, kind, id).await.map_err(server_error)
    }

    /// Lists documents of a kind for the API.
    pub async fn list(
        &self,
        scope: &Scope,
        kind: &str,
        filter: &DocumentFilter,
        page: &PageRequest,
    ) -> Result<smile_store::Page<Document>, ApiError> {
        self.store.list_documents(scope, kind, filter, page).await.map_err(server_error)
    }

    /// One document of a kind for the API.
    pub async fn find(&self, scope: &Scope, kind: &str, id: &str) -> Result<Value, ApiError> {
        self.get(scope, kind, id).await?.map(|d| d.body).ok_or_else(|| ApiError::missing(kind))
    }
}
