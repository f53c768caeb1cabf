use crate::archives::{self, Format};
use crate::data::{self, Source, SyncedData};
use crate::people::{self, LoginResult, Person};
use crate::providers::{self, Provider};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use smile_core::timefmt::{format_ms, now_ms};
use smile_core::{ApiError, ErrorCode, EventType, ids};
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
enum Job {
    #[serde(rename_all = "camelCase")]
    Sync { account_id: String, user_id: String, task_type: String },
    #[serde(rename_all = "camelCase")]
    Analyse { archive_id: String, user_id: String, file_type: String },
}

impl Job {
    fn id(&self) -> &str {
        match self {
            Job::Sync { account_id, .. } => account_id,
            Job::Analyse { archive_id, .. } => archive_id,
        }
    }

    fn document(&self, scope: &Scope) -> Document {
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

/// List data in a `TASK_FINISHED` payload is capped at this many items per list.
const PAYLOAD_LIST_CAP: usize = 300;

/// Who a link token speaks for.
#[derive(Debug, Clone)]
pub struct LinkSession {
    pub scope: Scope,
    pub user_id: String,
}

/// What the widget sends to connect an account.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectRequest {
    pub provider_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// The sandbox platform of one process; cheap to clone.
#[derive(Clone)]
pub struct Platform {
    pub(crate) store: Arc<dyn Store>,
    engine: Engine,
    token_ttl: Duration,
    /// Where uploaded files are kept, one directory per archive.
    pub(crate) files_dir: PathBuf,
    pub(crate) public_url: String,
}

/// What `POST /v1/invites` takes.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InviteRequest {
    pub full_name: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub template_id: String,
    pub wink_template_id: Option<String>,
}

impl InviteRequest {
    fn check(&self) -> Result<(), ApiError> {
        let within = |v: &str, max: usize| !v.trim().is_empty() && v.chars().count() <= max;
        if !within(&self.full_name, 200) {
            return Err(ApiError::invalid("fullName must be 1 to 200 characters"));
        }
        if !within(&self.template_id, 64) {
            return Err(ApiError::invalid("templateId must be 1 to 64 characters"));
        }
        for (name, value) in [("firstName", &self.first_name), ("lastName", &self.last_name)] {
            if value.as_deref().is_some_and(|v| !within(v, 64)) {
                return Err(ApiError::invalid(format!("{name} must be 1 to 64 characters")));
            }
        }
        match (&self.email, &self.phone) {
            (None, None) => Err(ApiError::invalid("send an email or a phone to invite")),
            (Some(email), _) if !within(email, 200) || !email.contains('@') => {
                Err(ApiError::invalid("email must be an e-mail address"))
            }
            (_, Some(phone))
                if !phone.starts_with('+') || phone.len() < 8 || !phone[1..].bytes().all(|b| b.is_ascii_digit()) =>
            {
                Err(ApiError::invalid("phone must be E.164, like +639559991234"))
            }
            _ => Ok(()),
        }
    }
}

/// One file of an upload.
#[derive(Debug)]
pub struct UploadFile {
    /// The file's name, whose extension (or `claimed`) says what it claims to be.
    pub name: Option<String>,
    /// The declared format (`PDF`, `PNG`, `JPG`, `JPEG`, `TIFF`), when sent apart from the name.
    pub claimed: Option<String>,
    pub sub_type: Option<String>,
    pub content: Vec<u8>,
}

pub(crate) fn server_error(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "sandbox platform failure");
    ApiError::server("the request could not be completed; try again")
}

fn document(kind: &str, id: &str, scope: &Scope, user_id: &str, source_id: Option<&str>, body: Value) -> Document {
    Document {
        kind: kind.to_owned(),
        id: id.to_owned(),
        scope: scope.clone(),
        user_id: Some(user_id.to_owned()),
        source_id: source_id.map(str::to_owned),
        created_ms: now_ms(),
        body,
    }
}

/// A data record from `source_id`, named by its own `id`.
fn item(kind: &str, body: Value, scope: &Scope, user_id: &str, source_id: &str) -> Document {
    let id = body["id"].as_str().unwrap_or_default().to_owned();
    document(kind, &id, scope, user_id, Some(source_id), body)
}

/// Checks `externalMetadata`: at most 5 string pairs, ASCII, keys ≤ 50 and values ≤ 500 long.
fn check_external_metadata(metadata: &Map<String, Value>) -> Result<(), ApiError> {
    if metadata.len() > 5 {
        return Err(ApiError::invalid("externalMetadata takes at most 5 key/value pairs"));
    }
    for (key, value) in metadata {
        let Some(value) = value.as_str() else {
            return Err(ApiError::invalid(format!("externalMetadata.{key} must be a string")));
        };
        if key.is_empty() || key.len() > 50 || value.len() > 500 || !key.is_ascii() || !value.is_ascii() {
            return Err(ApiError::invalid("externalMetadata keys (1-50) and values (up to 500) must be ASCII strings"));
        }
    }
    Ok(())
}

/// Wrong verification codes a user may enter before the connection fails.
pub const MFA_TRIES: u64 = 3;

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
    /// every minute (for a PostgreSQL node that died; its work is left alone for a minute first).
    pub fn resume_jobs(&self) {
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
        });
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
    fn spawn_job(&self, scope: Scope, job: Job, contents: Option<Vec<Vec<u8>>>) {
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
                let Some(account) = self.get(scope, kinds::ACCOUNT, account_id).await? else { return Ok(()) };
                if account.body["connectionStatus"] != "CONNECTED" {
                    return Ok(()); // revoked meanwhile: nothing to sync
                }
                let provider = providers::find(account.body["providerId"].as_str().unwrap_or_default())
                    .ok_or_else(|| server_error("unknown provider"))?;
                let person = people::find(account.body["loginName"].as_str().unwrap_or_default())
                    .ok_or_else(|| server_error("unknown person"))?;
                self.sync(scope, account_id, user_id, &provider, person, task_type).await.map(|_| ())
            }
            Job::Analyse { archive_id, file_type, .. } => {
                let Some(archive) = self.get(scope, kinds::ARCHIVE, archive_id).await? else { return Ok(()) };
                if archive.body["state"]["status"] != "STARTED" {
                    return Ok(()); // analysed, or revoked, meanwhile
                }
                let contents = match contents {
                    Some(contents) => contents,
                    None => self.stored_contents(scope, archive_id, &archive.body).await?,
                };
                self.analyse(scope, archive.body, file_type, &contents).await
            }
        }
    }

    /// The files of an archive, read back from disk.
    async fn stored_contents(
        &self,
        scope: &Scope,
        archive_id: &str,
        archive: &Value,
    ) -> Result<Vec<Vec<u8>>, ApiError> {
        let mut contents = Vec::new();
        for file in archive["rawFiles"].as_array().into_iter().flatten() {
            let file_id = file["id"].as_str().unwrap_or_default();
            contents.push(self.archive_file(scope, archive_id, file_id).await?.1);
        }
        Ok(contents)
    }

    /// Removes uploaded files past their retention, now and then every hour.
    pub fn start_retention(&self) {
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
        });
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

    // ---- users and link tokens ----

    /// Creates a user and its first link token; `USER_CREATED` follows.
    pub async fn create_user(
        &self,
        scope: &Scope,
        external_metadata: Map<String, Value>,
    ) -> Result<(Value, Value), ApiError> {
        check_external_metadata(&external_metadata)?;
        let user_id = format!("{}-{}", scope.tenant_id, uuid::Uuid::new_v4().simple());
        let user = json!({
            "id": user_id, "externalMetadata": external_metadata, "createdAt": format_ms(now_ms()), "providers": [],
        });
        self.put(vec![document(kinds::USER, &user_id, scope, &user_id, None, user.clone())]).await?;
        let token = self.new_token(scope, &user_id).await?;
        self.publish(scope, EventType::UserCreated, json!({ "userId": user_id }), &user_id).await?;
        Ok((user, token))
    }

    /// A fresh link token for an existing user (the Refresh Token API).
    pub async fn issue_token(&self, scope: &Scope, user_id: &str) -> Result<Value, ApiError> {
        if self.get(scope, kinds::USER, user_id).await?.is_none() {
            return Err(ApiError::missing("user"));
        }
        self.new_token(scope, user_id).await
    }

    async fn new_token(&self, scope: &Scope, user_id: &str) -> Result<Value, ApiError> {
        let access_token = ids::new_token();
        let expires_ms = now_ms() + self.token_ttl.as_millis() as i64;
        let token = json!({
            "id": ids::new_id("tok-"), "expiresAt": format_ms(expires_ms), "mode": scope.mode.as_str(),
            "accessToken": access_token,
        });
        let mut stored = token.clone();
        stored["expiresMs"] = json!(expires_ms);
        self.put(vec![document(kinds::TOKEN, &access_token, scope, user_id, None, stored)]).await?;
        Ok(token)
    }

    /// The user and mode a link token speaks for, while it has not expired.
    pub async fn authenticate(&self, access_token: &str) -> Result<LinkSession, ApiError> {
        let invalid = || ApiError::new(ErrorCode::InvalidToken, "the link token is invalid or has expired");
        if access_token.is_empty() || access_token.len() > 128 {
            return Err(invalid());
        }
        let token =
            self.store.document_by_id(kinds::TOKEN, access_token).await.map_err(server_error)?.ok_or_else(invalid)?;
        let expires_ms = token.body["expiresMs"].as_i64().unwrap_or(0);
        if expires_ms <= now_ms() {
            return Err(invalid());
        }
        Ok(LinkSession { scope: token.scope, user_id: token.user_id.unwrap_or_default() })
    }

    // ---- employer surveys ----

    /// Records an employer the user could not find, for the integrator to read at
    /// `GET /v1/employerSurveys` and follow up.
    pub async fn submit_survey(&self, session: &LinkSession, employer_name: &str) -> Result<Value, ApiError> {
        let name = employer_name.trim();
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(ApiError::invalid("employerName must be 1 to 200 characters, without control characters"));
        }
        let id = ids::new_id("es-");
        let survey = json!({
            "id": id, "userId": session.user_id, "employerName": name, "createdAt": format_ms(now_ms()),
        });
        self.put(vec![document(kinds::EMPLOYER_SURVEY, &id, &session.scope, &session.user_id, None, survey.clone())])
            .await?;
        Ok(survey)
    }

    // ---- accounts ----

    /// Starts connecting an account with the user's credentials: `ACCOUNT_CREATED`, then
    /// AWAITING_MFA, CONNECTED (and a data sync) or ERROR (`ACCOUNT_FAILED`).
    pub async fn connect(&self, session: &LinkSession, request: ConnectRequest) -> Result<Value, ApiError> {
        let provider = providers::find(&request.provider_id)
            .ok_or_else(|| ApiError::invalid(format!("unknown providerId `{}`", request.provider_id)))?;
        if !provider.account_connection {
            return Err(ApiError::invalid(format!("{} only takes uploaded documents", provider.name)));
        }
        let scope = &session.scope;
        let now = format_ms(now_ms());
        let account_id = ids::new_id("a-");
        let login_name = request.username.clone().unwrap_or_default();
        let account = json!({
            "id": account_id, "createdAt": now, "providerId": provider.id, "userId": session.user_id,
            "connectionStatus": "PENDING", "connection": {"status": "PENDING", "errorCode": null, "errorMessage": null, "updatedAt": now},
            "monitorStatus": "UNSUPPORTED", "monitor": {"status": "UNSUPPORTED", "updatedAt": now},
            "loginName": login_name,
        });
        self.put(vec![document(kinds::ACCOUNT, &account_id, scope, &session.user_id, None, account.clone())]).await?;
        let ids = json!({"userId": session.user_id, "accountId": account_id, "providers": [provider.id]});
        self.publish(scope, EventType::AccountCreated, ids, &account_id).await?;
        match people::login(request.username.as_deref(), request.password.as_deref()) {
            LoginResult::Failed(code) => self.fail(scope, account, &provider, code).await,
            LoginResult::Accepted(_) if provider.mfa => self.set_status(scope, account, "AWAITING_MFA", None).await,
            LoginResult::Accepted(_) => self.connected(scope, account, provider).await,
        }
    }

    /// Answers the MFA step with the verification code. A wrong code leaves the account waiting
    /// (the answer says how many tries are left); the last wrong one fails it (`INVALID_MFA`).
    pub async fn submit_mfa(&self, session: &LinkSession, account_id: &str, code: &str) -> Result<Value, ApiError> {
        let account = self.own_account(session, account_id).await?;
        if account["connectionStatus"] != "AWAITING_MFA" {
            return Err(ApiError::invalid("the account is not waiting for a verification code"));
        }
        let provider = providers::find(account["providerId"].as_str().unwrap_or_default())
            .ok_or_else(|| server_error("unknown provider"))?;
        let person = people::find(account["loginName"].as_str().unwrap_or_default())
            .ok_or_else(|| server_error("unknown person"))?;
        if code.trim() == person.mfa_code {
            return self.connected(&session.scope, account, provider).await;
        }
        let tries_left = account["connection"]["mfaAttemptsLeft"].as_u64().unwrap_or(MFA_TRIES).saturating_sub(1);
        if tries_left == 0 {
            return self.fail(&session.scope, account, &provider, "INVALID_MFA").await;
        }
        self.awaiting_mfa(&session.scope, account, Some("INVALID_MFA"), tries_left).await
    }

    /// Sends the verification code again: the tries start over.
    pub async fn resend_mfa(&self, session: &LinkSession, account_id: &str) -> Result<Value, ApiError> {
        let account = self.own_account(session, account_id).await?;
        if account["connectionStatus"] != "AWAITING_MFA" {
            return Err(ApiError::invalid("the account is not waiting for a verification code"));
        }
        self.awaiting_mfa(&session.scope, account, None, MFA_TRIES).await
    }

    /// Still waiting for the code: after a wrong one (`error`), with `tries_left`.
    async fn awaiting_mfa(
        &self,
        scope: &Scope,
        account: Value,
        error: Option<&str>,
        tries_left: u64,
    ) -> Result<Value, ApiError> {
        let mut account = self.set_status(scope, account, "AWAITING_MFA", error).await?;
        account["connection"]["mfaAttemptsLeft"] = json!(tries_left);
        let (id, user) = (account["id"].as_str().unwrap_or_default(), account["userId"].as_str().unwrap_or_default());
        self.put(vec![document(kinds::ACCOUNT, id, scope, user, None, account.clone())]).await?;
        Ok(account)
    }

    /// The account, if it belongs to the session's user.
    pub async fn own_account(&self, session: &LinkSession, account_id: &str) -> Result<Value, ApiError> {
        match self.get(&session.scope, kinds::ACCOUNT, account_id).await? {
            Some(d) if d.user_id.as_deref() == Some(session.user_id.as_str()) => Ok(d.body),
            _ => Err(ApiError::missing("account")),
        }
    }

    async fn set_status(
        &self,
        scope: &Scope,
        mut account: Value,
        status: &str,
        error: Option<&str>,
    ) -> Result<Value, ApiError> {
        let now = format_ms(now_ms());
        account["connectionStatus"] = json!(status);
        account["connection"] = json!({
            "status": status, "errorCode": error, "errorMessage": error.map(people::error_message), "updatedAt": now,
        });
        let (id, user) = (account["id"].as_str().unwrap_or_default(), account["userId"].as_str().unwrap_or_default());
        self.put(vec![document(kinds::ACCOUNT, id, scope, user, None, account.clone())]).await?;
        Ok(account)
    }

    async fn fail(&self, scope: &Scope, account: Value, provider: &Provider, code: &str) -> Result<Value, ApiError> {
        let mut account = self.set_status(scope, account, "ERROR", Some(code)).await?;
        if provider.monitor_supported {
            account["monitorStatus"] = json!("USER_ACTION_REQUIRED");
            account["monitor"] = json!({"status": "USER_ACTION_REQUIRED", "updatedAt": format_ms(now_ms())});
            let (id, user) =
                (account["id"].as_str().unwrap_or_default(), account["userId"].as_str().unwrap_or_default());
            self.put(vec![document(kinds::ACCOUNT, id, scope, user, None, account.clone())]).await?;
        }
        let data = json!({
            "userId": account["userId"], "accountId": account["id"], "loginName": account["loginName"],
            "errorCode": code, "errorMessage": people::error_message(code), "providers": [provider.id],
        });
        self.publish(scope, EventType::AccountFailed, data, account["id"].as_str().unwrap_or_default()).await?;
        Ok(account)
    }

    async fn connected(&self, scope: &Scope, account: Value, provider: Provider) -> Result<Value, ApiError> {
        let mut account = self.set_status(scope, account, "CONNECTED", None).await?;
        if provider.monitor_supported {
            account["monitorStatus"] = json!("ACTIVE");
            account["monitor"] = json!({"status": "ACTIVE", "updatedAt": format_ms(now_ms())});
        }
        let (account_id, user_id) = (
            account["id"].as_str().unwrap_or_default().to_owned(),
            account["userId"].as_str().unwrap_or_default().to_owned(),
        );
        let job =
            Job::Sync { account_id: account_id.clone(), user_id: user_id.clone(), task_type: "LINK_ACCOUNT".into() };
        let account_document = document(kinds::ACCOUNT, &account_id, scope, &user_id, None, account.clone());
        self.put(vec![account_document, job.document(scope)]).await?;
        self.add_provider_to_user(scope, &user_id, provider.id).await?;
        let data = json!({
            "userId": user_id, "accountId": account_id, "loginName": account["loginName"], "providers": [provider.id],
        });
        self.publish(scope, EventType::AccountConnected, data, &account_id).await?;
        self.link_invites(scope, &user_id).await?;
        // The data sync runs on its own; its events follow ACCOUNT_CONNECTED in order.
        self.spawn_job(scope.clone(), job, None);
        Ok(account)
    }

    async fn add_provider_to_user(&self, scope: &Scope, user_id: &str, provider_id: &str) -> Result<(), ApiError> {
        let Some(mut user) = self.get(scope, kinds::USER, user_id).await? else { return Ok(()) };
        if let Some(list) = user.body["providers"].as_array_mut()
            && !list.iter().any(|p| p == provider_id)
        {
            list.push(json!(provider_id));
            self.put(vec![user]).await?;
        }
        Ok(())
    }

    /// Revokes an account: its data is removed, it becomes DISCONNECTED, `ACCOUNT_DISCONNECTED` follows.
    pub async fn revoke(&self, scope: &Scope, account_id: &str, user_id: Option<&str>) -> Result<Value, ApiError> {
        let document = match self.get(scope, kinds::ACCOUNT, account_id).await? {
            Some(d) if user_id.is_none() || d.user_id.as_deref() == user_id => d,
            _ => return Err(ApiError::missing("account")),
        };
        if document.body["connectionStatus"] == "DISCONNECTED" {
            return Err(ApiError::invalid("the account is already disconnected"));
        }
        self.store.delete_documents_of_source(scope, kinds::ACCOUNT_DATA, account_id).await.map_err(server_error)?;
        let mut account = self.set_status(scope, document.body, "DISCONNECTED", None).await?;
        account["monitorStatus"] = json!("CUSTOMER_DISABLED");
        account["monitor"] = json!({"status": "CUSTOMER_DISABLED", "updatedAt": format_ms(now_ms())});
        let user = account["userId"].as_str().unwrap_or_default().to_owned();
        self.put(vec![self::document(kinds::ACCOUNT, account_id, scope, &user, None, account.clone())]).await?;
        let data = json!({"userId": user, "accountId": account_id, "providers": [account["providerId"]]});
        self.publish(scope, EventType::AccountDisconnected, data, account_id).await?;
        Ok(account)
    }

    /// Resyncs a connected account of a continuously synced provider: `ACCOUNT_SYNC_TASK_FINISHED`.
    pub async fn resync(&self, scope: &Scope, account_id: &str) -> Result<Value, ApiError> {
        let account =
            self.get(scope, kinds::ACCOUNT, account_id).await?.ok_or_else(|| ApiError::missing("account"))?.body;
        let provider = providers::find(account["providerId"].as_str().unwrap_or_default())
            .ok_or_else(|| server_error("unknown provider"))?;
        if !provider.monitor_supported {
            return Err(ApiError::invalid(format!("{} does not sync continuously", provider.name)));
        }
        if account["monitorStatus"] == "CUSTOMER_DISABLED" {
            return Err(ApiError::invalid("continuous sync is disabled for this account"));
        }
        if account["connectionStatus"] != "CONNECTED" {
            return Err(ApiError::invalid("only a connected account can sync"));
        }
        let person = people::find(account["loginName"].as_str().unwrap_or_default())
            .ok_or_else(|| server_error("unknown person"))?;
        let user_id = account["userId"].as_str().unwrap_or_default().to_owned();
        self.store.delete_documents_of_source(scope, kinds::ACCOUNT_DATA, account_id).await.map_err(server_error)?;
        self.sync(scope, account_id, &user_id, &provider, person, "UPDATE_ACCOUNT").await
    }

    /// One data sync task: `TASK_STARTED`, the data and its `*_ADDED` events, then
    /// `TASK_FINISHED` (or `ACCOUNT_SYNC_TASK_FINISHED` for a resync).
    async fn sync(
        &self,
        scope: &Scope,
        account_id: &str,
        user_id: &str,
        provider: &Provider,
        person: &Person,
        task_type: &str,
    ) -> Result<Value, ApiError> {
        let started = format_ms(now_ms());
        let task_id = ids::new_id("task-");
        let metadata = json!({
            "createdAt": started, "itemCreatedAt": started, "sourceId": account_id, "sourceType": "ACCOUNT",
            "userId": user_id, "providerId": provider.id,
        });
        let mut task = json!({
            "id": task_id, "type": task_type, "startedAt": started, "finishedAt": null, "status": "Started",
            "datapoints": [], "metadata": metadata,
        });
        self.put(vec![document(kinds::TASK, &task_id, scope, user_id, Some(account_id), task.clone())]).await?;
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

        task["status"] = json!("Finished");
        task["finishedAt"] = json!(format_ms(now_ms()));
        task["datapoints"] = json!(datapoints);
        self.put(vec![document(kinds::TASK, &task_id, scope, user_id, Some(account_id), task.clone())]).await?;
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
        let mut documents = Vec::new();
        let mut datapoints = Vec::new();
        let mut events: Vec<(EventType, Value)> = Vec::new();
        let ids = |extra: (&str, Value)| {
            let mut v = json!({"userId": user_id, "accountId": account_id, "providers": [provider.id]});
            v[extra.0] = extra.1;
            v
        };
        let mut add = |kind: &str, items: Vec<&Value>| {
            documents.extend(items.into_iter().map(|v| item(kind, v.clone(), scope, user_id, account_id)));
        };
        if let Some(identity) = &synced.identity {
            add(kinds::IDENTITY, vec![identity]);
            datapoints.push("IDENTITIES");
            events.push((EventType::IdentityAdded, ids(("identityId", identity["id"].clone()))));
        }
        for (kind, items, datapoint, event) in [
            (kinds::EMPLOYMENT, &synced.employments, "EMPLOYMENTS", EventType::EmploymentsAdded),
            (kinds::INCOME, &synced.incomes, "INCOMES", EventType::IncomesAdded),
            (kinds::CONTRIBUTION, &synced.contributions, "CONTRIBUTIONS", EventType::ContributionsAdded),
        ] {
            if !items.is_empty() {
                add(kind, items.iter().collect());
                datapoints.push(datapoint);
                events.push((event, ids(("count", json!(items.len())))));
            }
        }
        if let Some(rating) = &synced.rating {
            add(kinds::RATING, vec![rating]);
            datapoints.push("RATINGS");
            events.push((EventType::RatingAdded, ids(("ratingId", rating["id"].clone()))));
        }
        for (kind, items, datapoint, event) in [
            (kinds::TRANSACTION, &synced.transactions, "TRANSACTIONS", EventType::TransactionsAdded),
            (kinds::DOCUMENT, &synced.documents, "DOCUMENTS", EventType::DocumentsAdded),
            (kinds::EINCOME, &synced.eincomes, "EINCOMES", EventType::EincomesAdded),
            (kinds::LIABILITY, &synced.liabilities, "LIABILITIES", EventType::LiabilitiesAdded),
        ] {
            if !items.is_empty() {
                add(kind, items.iter().collect());
                datapoints.push(datapoint);
                events.push((event, ids(("count", json!(items.len())))));
            }
        }
        if let Some(link) = &synced.link {
            add(kinds::LINK, vec![link]);
            datapoints.push("LINK");
            events.push((EventType::LinkAdded, ids(("id", link["id"].clone()))));
        }
        if let Some(insight) = &synced.insight {
            add(kinds::INSIGHT, vec![insight]);
            datapoints.push("INSIGHTS");
            events.push((EventType::InsightAdded, ids(("id", insight["id"].clone()))));
        }
        self.put(documents).await?;
        if announce {
            for (event_type, data) in events {
                self.publish(scope, event_type, data, account_id).await?;
            }
        }
        Ok(datapoints)
    }

    /// Accepts uploaded files: every check first (type, size, content), then the files are
    /// stored and `ARCHIVE_STARTED` sent; analysis follows on its own.
    pub async fn create_archive(
        &self,
        scope: &Scope,
        user_id: Option<String>,
        file_type: &str,
        files: Vec<UploadFile>,
    ) -> Result<Value, ApiError> {
        if !archives::is_file_type(file_type) {
            return Err(ApiError::invalid(format!("unknown fileType `{file_type}`; see GET /v1/fileTypes")));
        }
        self.start_archive(scope, user_id, file_type, files).await
    }

    /// Stores the files of an archive of `file_type` (not checked: a classification may name
    /// one no upload can) and starts its analysis.
    pub(crate) async fn start_archive(
        &self,
        scope: &Scope,
        user_id: Option<String>,
        file_type: &str,
        files: Vec<UploadFile>,
    ) -> Result<Value, ApiError> {
        if files.is_empty() {
            return Err(ApiError::invalid("send at least one file"));
        }
        let formats = files.iter().map(check_file).collect::<Result<Vec<_>, _>>()?;
        let user_id = match user_id {
            Some(id) => {
                if self.get(scope, kinds::USER, &id).await?.is_none() {
                    return Err(ApiError::missing("user"));
                }
                id
            }
            None => self.create_user(scope, Map::new()).await?.0["id"].as_str().unwrap_or_default().to_owned(),
        };
        let now = format_ms(now_ms());
        let archive_id = ids::new_id("u-");
        let dir = self.files_dir.join(&archive_id);
        let mut raw_files = Vec::new();
        for (file, format) in files.iter().zip(&formats) {
            let file_id = ids::new_id("f-");
            let path = dir.join(format!("{file_id}.{}", format.extension()));
            let content = file.content.clone();
            let (d, p) = (dir.clone(), path.clone());
            tokio::task::spawn_blocking(move || std::fs::create_dir_all(&d).and_then(|_| std::fs::write(&p, content)))
                .await
                .map_err(server_error)?
                .map_err(server_error)?;
            raw_files.push(json!({
                "id": file_id, "createdAt": now, "name": file.name.clone().unwrap_or_else(|| format!("{file_type}.{}", format.extension())),
                "subType": file.sub_type, "size": file.content.len().div_ceil(1024), "format": format,
                "url": format!("/v1/archives/{archive_id}/files/{file_id}"),
            }));
        }
        let archive = json!({
            "id": archive_id, "createdAt": now, "providerId": "user-provided", "userId": user_id, "type": file_type,
            "state": {"status": "STARTED", "errorCode": null, "errorMessage": null, "updatedAt": now},
            "rawFiles": raw_files,
        });
        let job =
            Job::Analyse { archive_id: archive_id.clone(), user_id: user_id.clone(), file_type: file_type.to_owned() };
        let archive_document = document(kinds::ARCHIVE, &archive_id, scope, &user_id, None, archive.clone());
        self.put(vec![archive_document, job.document(scope)]).await?;
        let data = json!({"userId": user_id, "archiveId": archive_id});
        self.publish(scope, EventType::ArchiveStarted, data, &archive_id).await?;
        let contents: Vec<Vec<u8>> = files.into_iter().map(|f| f.content).collect();
        self.spawn_job(scope.clone(), job, Some(contents));
        Ok(json!({"id": archive_id, "userId": user_id, "createdAt": now, "type": file_type,
            "state": {"status": "STARTED", "errorCode": null, "errorMessage": null, "updatedAt": now}}))
    }

    /// Sandbox analysis: the sample payslips are read (their data added); anything else fails.
    async fn analyse(
        &self,
        scope: &Scope,
        mut archive: Value,
        file_type: &str,
        contents: &[Vec<u8>],
    ) -> Result<(), ApiError> {
        let archive_id = archive["id"].as_str().unwrap_or_default().to_owned();
        let user_id = archive["userId"].as_str().unwrap_or_default().to_owned();
        let samples: Vec<_> = contents.iter().filter_map(|c| archives::recognise(c)).collect();
        let recognised = file_type == "PAYSLIP" && samples.len() == contents.len();
        let (status, message) = match (recognised, file_type) {
            (true, _) => ("ANALYZED", None),
            (false, "PAYSLIP") => ("ERROR", Some("The file could not be read as a payslip.")),
            _ => ("UNSUPPORTED", Some("The sandbox can only analyse its sample payslips.")),
        };
        // The event names the failure as Smile's events do (FILE_UNABLE_TO_RECOGNIZE); the
        // archive's state takes a code of its own list, where an unreadable file is a format error.
        let (code, state_code) = match message {
            Some(_) => (Some(archives::UNREADABLE), Some(archives::UNREADABLE_STATE)),
            None => (None, None),
        };
        archive["state"] = json!({
            "status": status, "errorCode": state_code, "errorMessage": message, "updatedAt": format_ms(now_ms()),
        });
        let mut documents = vec![document(kinds::ARCHIVE, &archive_id, scope, &user_id, None, archive.clone())];
        let ids = json!({"userId": user_id, "archiveId": archive_id});
        if !recognised {
            self.put(documents).await?;
            let mut data = ids;
            data["errorCode"] = json!(code);
            data["errorMessage"] = json!(message);
            return self.publish(scope, EventType::ArchiveFailed, data, &archive_id).await;
        }
        let now = format_ms(now_ms());
        let metadata = json!({"createdAt": now, "itemCreatedAt": now, "sourceId": archive_id, "sourceType": "ARCHIVE",
            "userId": user_id, "providerId": "user-provided"});
        let person = &people::PEOPLE[0];
        archive["classification"] = json!({"fileType": "PAYSLIP"});
        archive["analysis"] = data::payslip_analysis(person, samples[0].month);
        documents[0].body = archive;
        for sample in &samples {
            let income = data::payslip_income(person, sample.month, metadata.clone());
            documents.push(item(kinds::INCOME, income, scope, &user_id, &archive_id));
        }
        let employment = data::payslip_employment(person, metadata);
        documents.push(item(kinds::EMPLOYMENT, employment, scope, &user_id, &archive_id));
        // The data is there before ARCHIVE_ANALYZED says so: a receiver acting on the event
        // (reading, or deleting the archive) finds it.
        self.put(documents).await?;
        self.publish(scope, EventType::ArchiveAnalyzed, ids, &archive_id).await?;
        let added = |count: usize| json!({"userId": user_id, "accountId": archive_id, "count": count, "providers": ["user-provided"]});
        self.publish(scope, EventType::EmploymentsAdded, added(1), &archive_id).await?;
        self.publish(scope, EventType::IncomesAdded, added(samples.len()), &archive_id).await
    }

    /// Deletes an archive: its files and data go, it becomes REVOKED, `ARCHIVE_REVOKED` follows.
    pub async fn revoke_archive(
        &self,
        scope: &Scope,
        archive_id: &str,
        user_id: Option<&str>,
    ) -> Result<Value, ApiError> {
        let mut archive = match self.get(scope, kinds::ARCHIVE, archive_id).await? {
            Some(d) if user_id.is_none() || d.user_id.as_deref() == user_id => d,
            _ => return Err(ApiError::missing("archive")),
        };
        if archive.body["state"]["status"] == "REVOKED" {
            return Err(ApiError::invalid("the archive is already deleted"));
        }
        self.store.delete_documents_of_source(scope, kinds::ACCOUNT_DATA, archive_id).await.map_err(server_error)?;
        let dir = self.files_dir.join(archive_id);
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
        archive.body["state"] =
            json!({"status": "REVOKED", "errorCode": null, "errorMessage": null, "updatedAt": format_ms(now_ms())});
        let user = archive.user_id.clone().unwrap_or_default();
        let body = archive.body.clone();
        self.put(vec![archive]).await?;
        self.publish(scope, EventType::ArchiveRevoked, json!({"userId": user, "archiveId": archive_id}), archive_id)
            .await?;
        Ok(body)
    }

    /// The bytes of one uploaded file, while its archive keeps it.
    pub async fn archive_file(
        &self,
        scope: &Scope,
        archive_id: &str,
        file_id: &str,
    ) -> Result<(Format, Vec<u8>), ApiError> {
        let archive = self.find(scope, kinds::ARCHIVE, archive_id).await?;
        let file = archive["rawFiles"]
            .as_array()
            .and_then(|files| files.iter().find(|f| f["id"] == file_id))
            .ok_or_else(|| ApiError::missing("file"))?;
        let format = file["format"].as_str().and_then(Format::claimed).ok_or_else(|| ApiError::missing("file"))?;
        let path = self.files_dir.join(archive_id).join(format!("{file_id}.{}", format.extension()));
        let content = tokio::fs::read(path).await.map_err(|_| ApiError::missing("file (deleted or past retention)"))?;
        Ok((format, content))
    }

    /// Invites someone: a user and a link token for them, the invite, its message in the
    /// outbox (nothing is really sent), `USER_CREATED` and `INVITE_INVITED`.
    pub async fn invite(&self, scope: &Scope, request: InviteRequest) -> Result<Value, ApiError> {
        request.check()?;
        let (user, token) = self.create_user(scope, Map::new()).await?;
        let user_id = user["id"].as_str().unwrap_or_default().to_owned();
        let now = format_ms(now_ms());
        let invite_id = ids::new_id("iv-");
        let landing = format!(
            "{}/invite/{invite_id}?token={}",
            self.public_url,
            token["accessToken"].as_str().unwrap_or_default()
        );
        // Until the user links, `linkedAt` is the invite's own time, as Smile's examples show
        // (the field is a required date-time); `status` says whether it is linked.
        let mut invite = json!({
            "id": invite_id, "createdAt": now, "fullName": request.full_name, "templateId": request.template_id,
            "userId": user_id, "status": "INVITED", "updatedAt": now, "invitedAt": now, "linkedAt": now,
            "inviteLandingPageUrl": landing,
        });
        for (name, value) in [
            ("firstName", &request.first_name),
            ("lastName", &request.last_name),
            ("email", &request.email),
            ("phone", &request.phone),
            ("winkTemplateId", &request.wink_template_id),
        ] {
            if let Some(value) = value {
                invite[name] = json!(value);
            }
        }
        let (channel, to) = match (&request.email, &request.phone) {
            (Some(email), _) => ("EMAIL", email.clone()),
            (None, phone) => ("SMS", phone.clone().unwrap_or_default()),
        };
        // An invite template the tenant made words the message; any other templateId is
        // taken as one of Smile's own.
        let (subject, body) = match self.invite_template(scope, &request.template_id).await? {
            Some(template) => (template.email.subject, format!("{}\n\n{landing}", template.email.body)),
            None => (
                "Share your employment and income data".to_owned(),
                format!("Hello {}, follow this link to connect your accounts: {landing}", request.full_name),
            ),
        };
        let message = json!({"channel": channel, "to": to, "subject": subject, "body": body});
        self.put(vec![
            document(kinds::INVITE, &invite_id, scope, &user_id, None, invite.clone()),
            self.invite_log(scope, &invite_id, &user_id, "INVITED", Some(message)),
        ])
        .await?;
        let data = json!({"userId": user_id, "inviteId": invite_id});
        self.publish(scope, EventType::InviteInvited, data, &user_id).await?;
        Ok(invite)
    }

    fn invite_log(
        &self,
        scope: &Scope,
        invite_id: &str,
        user_id: &str,
        status: &str,
        message: Option<Value>,
    ) -> Document {
        let id = ids::new_id("invl-");
        let log = json!({
            "id": id, "inviteId": invite_id, "createdAt": format_ms(now_ms()), "inviteStatus": status, "userId": user_id,
            "message": message,
        });
        document(kinds::INVITE_LOG, &id, scope, user_id, Some(invite_id), log)
    }

    /// The invites of a user who just connected an account become LINKED: `INVITE_LINKED`.
    async fn link_invites(&self, scope: &Scope, user_id: &str) -> Result<(), ApiError> {
        let filter = DocumentFilter { user_id: Some(user_id.to_owned()), ..Default::default() };
        let page = PageRequest { size: 150, before_seq: None };
        let invites = self.list(scope, kinds::INVITE, &filter, &page).await?;
        for mut invite in invites.items.into_iter().filter(|i| i.body["status"] == "INVITED") {
            let now = format_ms(now_ms());
            invite.body["status"] = json!("LINKED");
            invite.body["linkedAt"] = json!(now);
            invite.body["updatedAt"] = json!(now);
            let invite_id = invite.id.clone();
            self.put(vec![invite, self.invite_log(scope, &invite_id, user_id, "LINKED", None)]).await?;
            let data = json!({"userId": user_id, "inviteId": invite_id});
            self.publish(scope, EventType::InviteLinked, data, user_id).await?;
        }
        Ok(())
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

/// Checks one uploaded file and says what it is: not empty, at most 15 MB, a PDF, PNG, JPG or
/// TIFF by its content, and what its name or declared type claims.
fn check_file(file: &UploadFile) -> Result<Format, ApiError> {
    let name = file.name.as_deref().unwrap_or("file");
    if file.content.is_empty() {
        return Err(ApiError::invalid(format!("{name} is empty")));
    }
    if file.content.len() > archives::MAX_FILE_BYTES {
        return Err(ApiError::invalid(format!("{name} is over 15 MB")));
    }
    let unsupported = |m: String| ApiError::new(ErrorCode::UnsupportedType, m);
    let actual = Format::sniff(&file.content)
        .ok_or_else(|| unsupported(format!("{name} is not a PDF, PNG, JPG or TIFF file")))?;
    let claimed = file.claimed.as_deref().or(file.name.as_deref()).and_then(Format::claimed);
    match claimed {
        Some(claimed) if claimed != actual => {
            Err(unsupported(format!("{name} claims to be {claimed:?} but its content is {actual:?}")))
        }
        None if file.claimed.is_some() => Err(unsupported(format!("{name}: only PDF, PNG, JPG or TIFF files"))),
        _ => Ok(actual),
    }
}

/// The `payload` of a finished task: every datapoint, lists capped at 300 items.
fn payload(synced: &SyncedData) -> Value {
    let capped = |items: &Vec<Value>| Value::Array(items.iter().take(PAYLOAD_LIST_CAP).cloned().collect());
    json!({
        "identity": synced.identity, "employments": capped(&synced.employments), "incomes": capped(&synced.incomes),
        "contributions": capped(&synced.contributions), "rating": synced.rating, "transactions": capped(&synced.transactions),
        "documents": capped(&synced.documents), "eincomes": capped(&synced.eincomes), "insight": synced.insight,
        "liabilities": capped(&synced.liabilities), "link": synced.link,
    })
}
