//! Everything known about an account, or about a user's session, in one answer; resetting a
//! session; exports of an account's data; turning continuous sync off.

use crate::accounts::{Account, ConnectionStatus};
use crate::platform::{Platform, kinds, server_error, stored};
use crate::uploads::{Archive, ArchiveStatus};
use md5::{Digest, Md5};
use serde::Serialize;
use serde_json::{Map, Value, json};
use smile_core::timefmt::{format_ms, now_ms};
use smile_core::{ApiError, EventType, ids};
use smile_store::{Document, DocumentFilter, PageRequest, Scope};

/// Records of one kind a payload carries at most.
const PAYLOAD_LIST_CAP: u32 = 300;

/// The single records of a source, by payload name and kind.
const SINGLE: &[(&str, &str)] =
    &[("identity", kinds::IDENTITY), ("rating", kinds::RATING), ("insight", kinds::INSIGHT)];

/// The record lists of a source, by payload name and kind.
const LISTS: &[(&str, &str)] = &[
    ("documents", kinds::DOCUMENT),
    ("incomes", kinds::INCOME),
    ("transactions", kinds::TRANSACTION),
    ("employments", kinds::EMPLOYMENT),
    ("contributions", kinds::CONTRIBUTION),
    ("liabilities", kinds::LIABILITY),
    ("eincomes", kinds::EINCOME),
    ("links", kinds::LINK),
];

/// Where an account's or an archive's records came from.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceMetadata {
    pub source_id: String,
    pub source_type: &'static str,
    pub user_id: String,
    pub provider_id: String,
}

/// `GET /v1/accounts/{id}/payload`: an account's (or archive's) records in one answer.
#[derive(Debug, Serialize)]
pub struct AccountPayload {
    pub metadata: SourceMetadata,
    #[serde(flatten)]
    pub records: Map<String, Value>,
}

/// Whose session a user payload describes, and how far it got.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionMetadata {
    pub user_id: String,
    pub channel: &'static str,
    pub status: SessionStatus,
}

/// How far a user's session got.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SessionStatus {
    /// Nothing connected or analysed since the session (re)started.
    InProgress,
    /// At least one account connected, or archive analysed.
    Completed,
    /// Everything the session connected was revoked since.
    Revoked,
}

/// One account or archive in a user payload.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionSource {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_type: Option<String>,
    pub payload: Map<String, Value>,
}

/// `GET /v1/users/{id}/payload`: what a user's session connected, with the records.
#[derive(Debug, Serialize)]
pub struct UserPayload {
    pub metadata: SessionMetadata,
    pub forms: Vec<Value>,
    pub accounts: Vec<SessionSource>,
    pub archives: Vec<SessionSource>,
}

/// The format of an export.
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum ExportFormat {
    Pdf,
    Csv,
}

impl ExportFormat {
    fn extension(self) -> &'static str {
        match self {
            ExportFormat::Pdf => "pdf",
            ExportFormat::Csv => "csv",
        }
    }

    /// The content type the file is served with.
    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Pdf => "application/pdf",
            ExportFormat::Csv => "text/csv; charset=utf-8",
        }
    }
}

/// A file made of an account's records, to download.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountExport {
    pub id: String,
    pub account_id: String,
    pub export_extension_type: ExportFormat,
    pub created_at: String,
    pub download_url: String,
    pub md5: String,
}

impl Platform {
    /// The records of one account or archive, by payload name: single records as objects,
    /// lists wrapped by `wrap` (a bare array for an account payload, `{items}` in a user's).
    async fn records_of(
        &self,
        scope: &Scope,
        source_id: &str,
        wrap: fn(Vec<Value>) -> Value,
    ) -> Result<Map<String, Value>, ApiError> {
        let filter = DocumentFilter { source_id: Some(source_id.to_owned()), ..Default::default() };
        let page = PageRequest { size: PAYLOAD_LIST_CAP, before_seq: None };
        let mut records = Map::new();
        for (name, kind) in SINGLE {
            if let Some(first) = self.list(scope, kind, &filter, &page).await?.items.into_iter().next() {
                records.insert((*name).to_owned(), first.body);
            }
        }
        for (name, kind) in LISTS {
            let items: Vec<Value> =
                self.list(scope, kind, &filter, &page).await?.items.into_iter().map(|d| d.body).collect();
            records.insert((*name).to_owned(), wrap(items));
        }
        Ok(records)
    }

    pub async fn account_payload(&self, scope: &Scope, id: &str) -> Result<AccountPayload, ApiError> {
        let (source_type, user_id, provider_id) = match self.account(scope, id, None).await {
            Ok(account) => ("ACCOUNT", account.user_id, account.provider_id),
            Err(_) => {
                let archive = self.archive(scope, id, None).await.map_err(|_| ApiError::missing("account"))?;
                ("ARCHIVE", archive.user_id, archive.provider_id)
            }
        };
        let metadata = SourceMetadata { source_id: id.to_owned(), source_type, user_id, provider_id };
        Ok(AccountPayload { metadata, records: self.records_of(scope, id, Value::Array).await? })
    }

    pub async fn user_payload(&self, scope: &Scope, user_id: &str) -> Result<UserPayload, ApiError> {
        if self.get(scope, kinds::USER, user_id).await?.is_none() {
            return Err(ApiError::missing("user"));
        }
        let session = self.get(scope, kinds::SESSION, user_id).await?;
        let since = session.and_then(|s| s.body.get("startedMs").and_then(Value::as_i64)).unwrap_or(0);
        let wrap = |items: Vec<Value>| json!({ "items": items });
        let (mut accounts, mut archives) = (Vec::new(), Vec::new());
        let (mut live, mut revoked) = (0, 0);
        for document in self.session_sources(scope, user_id, kinds::ACCOUNT, since).await? {
            let account: Account = serde_json::from_value(document.body).map_err(server_error)?;
            match account.connection_status {
                ConnectionStatus::Connected => live += 1,
                ConnectionStatus::Disconnected => revoked += 1,
                _ => {}
            }
            accounts.push(SessionSource {
                payload: self.records_of(scope, &account.id, wrap).await?,
                provider_id: Some(account.provider_id),
                file_type: None,
                id: account.id,
            });
        }
        for document in self.session_sources(scope, user_id, kinds::ARCHIVE, since).await? {
            let archive: Archive = serde_json::from_value(document.body).map_err(server_error)?;
            match archive.state.status {
                ArchiveStatus::Analyzed => live += 1,
                ArchiveStatus::Revoked => revoked += 1,
                _ => {}
            }
            archives.push(SessionSource {
                payload: self.records_of(scope, &archive.id, wrap).await?,
                provider_id: None,
                file_type: Some(archive.file_type),
                id: archive.id,
            });
        }
        let status = match (live, revoked) {
            (0, 0) => SessionStatus::InProgress,
            (0, _) => SessionStatus::Revoked,
            _ => SessionStatus::Completed,
        };
        let metadata = SessionMetadata { user_id: user_id.to_owned(), channel: "Default", status };
        Ok(UserPayload { metadata, forms: Vec::new(), accounts, archives })
    }

    /// The user's accounts or archives (`kind`) made since the session started.
    async fn session_sources(
        &self,
        scope: &Scope,
        user_id: &str,
        kind: &str,
        since_ms: i64,
    ) -> Result<Vec<Document>, ApiError> {
        let filter = DocumentFilter { user_id: Some(user_id.to_owned()), ..Default::default() };
        let page = PageRequest { size: 150, before_seq: None };
        let found = self.list(scope, kind, &filter, &page).await?;
        Ok(found.items.into_iter().filter(|d| d.created_ms >= since_ms).collect())
    }

    /// Starts the user's session over: its payload forgets what was connected so far (the
    /// accounts and their records stay); `USER_SESSION_RESET` follows.
    pub async fn reset_session(&self, scope: &Scope, user_id: &str) -> Result<(), ApiError> {
        if self.get(scope, kinds::USER, user_id).await?.is_none() {
            return Err(ApiError::missing("user"));
        }
        let started = Document::new(kinds::SESSION, user_id, scope, json!({"startedMs": now_ms() + 1}));
        self.put(vec![started.of_user(user_id)]).await?;
        let session = json!({"session": {"userId": user_id, "channel": "Default", "status": "IN_PROGRESS"}});
        self.publish(scope, EventType::UserSessionReset, session, user_id).await
    }

    /// Makes a file of the account's records (CSV, or a one-page PDF listing them).
    pub async fn export_account(
        &self,
        scope: &Scope,
        account_id: &str,
        format: ExportFormat,
    ) -> Result<AccountExport, ApiError> {
        let account = self.account(scope, account_id, None).await?;
        let records = self.records_of(scope, account_id, Value::Array).await?;
        let content = match format {
            ExportFormat::Csv => csv(&records).into_bytes(),
            ExportFormat::Pdf => pdf(&format!("Account {account_id}"), &csv(&records)),
        };
        let id = ids::new_id("exp-");
        let (dir, path) =
            (self.files_dir.join(&id), self.files_dir.join(&id).join(format!("export.{}", format.extension())));
        let written = content.clone();
        tokio::task::spawn_blocking(move || std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, written)))
            .await
            .map_err(server_error)?
            .map_err(server_error)?;
        let export = AccountExport {
            download_url: format!("{}/v1/accounts/{account_id}/exports/{id}", self.public_url),
            md5: Md5::digest(&content).iter().map(|b| format!("{b:02x}")).collect(),
            id,
            account_id: account_id.to_owned(),
            export_extension_type: format,
            created_at: format_ms(now_ms()),
        };
        let user_id = account.user_id.clone();
        self.put(vec![stored(kinds::EXPORT, &export.id, scope, &user_id, Some(account_id), &export)?]).await?;
        Ok(export)
    }

    /// An export's file, while its account keeps it.
    pub async fn export_file(
        &self,
        scope: &Scope,
        account_id: &str,
        export_id: &str,
    ) -> Result<(ExportFormat, Vec<u8>), ApiError> {
        let export = self.get(scope, kinds::EXPORT, export_id).await?;
        let export: AccountExport = match export {
            Some(d) if d.source_id.as_deref() == Some(account_id) => {
                serde_json::from_value(d.body).map_err(server_error)?
            }
            _ => return Err(ApiError::missing("export")),
        };
        let format = export.export_extension_type;
        let path = self.files_dir.join(export_id).join(format!("export.{}", format.extension()));
        let content = tokio::fs::read(path).await.map_err(|_| ApiError::missing("export (past retention)"))?;
        Ok((format, content))
    }
}

/// One line per record: its kind, id, date, currency, amount and description.
fn csv(records: &Map<String, Value>) -> String {
    let field = |v: &Value| {
        let text = match v {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if text.contains([',', '"', '\n']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text }
    };
    let mut out = String::from("kind,id,date,currency,amount,description\n");
    for (name, value) in records {
        let items = match value {
            Value::Array(items) => items.iter().collect::<Vec<_>>(),
            single => vec![single],
        };
        for r in items {
            let date = r.get("date").or_else(|| r.get("startDate")).unwrap_or(&Value::Null);
            let amount = r.get("amount").or_else(|| r.get("grossAmount")).or_else(|| r.get("loanAmount"));
            let description = r.get("description").or_else(|| r.get("jobTitle")).or_else(|| r.get("fullName"));
            out.push_str(&format!(
                "{name},{},{},{},{},{}\n",
                field(&r["id"]),
                field(date),
                field(&r["currency"]),
                field(amount.unwrap_or(&Value::Null)),
                field(description.unwrap_or(&Value::Null))
            ));
        }
    }
    out
}

/// A one-page PDF showing `title` and the first lines of `text`, in Courier.
fn pdf(title: &str, text: &str) -> Vec<u8> {
    let escape = |s: &str| s.replace('\\', "\\\\").replace('(', "\\(").replace(')', "\\)");
    let mut stream = format!("BT /F1 9 Tf 36 800 Td 12 TL ({}) Tj T*", escape(title));
    for line in text.lines().take(60) {
        let ascii: String = line.chars().filter(|c| c.is_ascii() && !c.is_ascii_control()).collect();
        stream.push_str(&format!(" ({}) '", escape(&ascii)));
    }
    stream.push_str(" ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>"
            .to_owned(),
        format!("<< /Length {} >>\nstream\n{stream}\nendstream", stream.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Courier >>".to_owned(),
    ];
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{object}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for offset in offsets {
        out.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1).as_bytes(),
    );
    out
}
