//! Uploads: an archive's files checked and stored, their analysis (the sample payslips are
//! read, anything else fails), the files served back, and deleting an archive.

use crate::archives::{self, Format};
use crate::data;
use crate::people;
use crate::platform::{Job, Platform, item, kinds, server_error, stored};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use smile_core::timefmt::{format_ms, now_ms};
use smile_core::{ApiError, ErrorCode, EventType, ids};
use smile_store::{Document, Scope};

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

/// Where an archive's analysis stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ArchiveStatus {
    Started,
    Analyzed,
    Unsupported,
    Error,
    Revoked,
}

/// An archive's state: its status, and why it failed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveState {
    pub status: ArchiveStatus,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub updated_at: String,
}

impl ArchiveState {
    pub(crate) fn now(status: ArchiveStatus, error: Option<(&str, &str)>) -> ArchiveState {
        ArchiveState {
            status,
            error_code: error.map(|(code, _)| code.to_owned()),
            error_message: error.map(|(_, message)| message.to_owned()),
            updated_at: format_ms(now_ms()),
        }
    }
}

/// One uploaded file of an archive.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawFile {
    pub id: String,
    pub created_at: String,
    pub name: String,
    pub sub_type: Option<String>,
    /// In KiB, rounded up.
    pub size: usize,
    pub format: Format,
    pub url: String,
}

/// Files a user or the integrator uploaded, and what their analysis found.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Archive {
    pub id: String,
    pub created_at: String,
    pub provider_id: String,
    pub user_id: String,
    #[serde(rename = "type")]
    pub file_type: String,
    pub state: ArchiveState,
    pub raw_files: Vec<RawFile>,
    /// What the files are, once classified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<Classification>,
    /// What reading a payslip found (see `data::payslip_analysis`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Map<String, Value>>,
    /// A person's check of the analysis (`sendManualResult`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual_result: Option<Value>,
}

/// What an archive's files are.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Classification {
    pub file_type: String,
}

impl Archive {
    pub(crate) fn document(&self, scope: &Scope) -> Result<Document, ApiError> {
        stored(kinds::ARCHIVE, &self.id, scope, &self.user_id, None, self)
    }
}

impl Platform {
    /// Accepts uploaded files: every check first (type, size, content), then the files are
    /// stored and `ARCHIVE_STARTED` sent; analysis follows on its own.
    pub async fn create_archive(
        &self,
        scope: &Scope,
        user_id: Option<String>,
        file_type: &str,
        files: Vec<UploadFile>,
    ) -> Result<Archive, ApiError> {
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
    ) -> Result<Archive, ApiError> {
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
            None => self.create_user(scope, Map::new()).await?.0.id,
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
            raw_files.push(RawFile {
                id: file_id.clone(),
                created_at: now.clone(),
                name: file.name.clone().unwrap_or_else(|| format!("{file_type}.{}", format.extension())),
                sub_type: file.sub_type.clone(),
                size: file.content.len().div_ceil(1024),
                format: *format,
                url: format!("/v1/archives/{archive_id}/files/{file_id}"),
            });
        }
        let archive = Archive {
            id: archive_id.clone(),
            created_at: now,
            provider_id: "user-provided".into(),
            user_id: user_id.clone(),
            file_type: file_type.to_owned(),
            state: ArchiveState::now(ArchiveStatus::Started, None),
            raw_files,
            classification: None,
            analysis: None,
            manual_result: None,
        };
        let job = Job::Analyse { archive_id: archive_id.clone(), user_id: user_id.clone() };
        self.put(vec![archive.document(scope)?, job.document(scope)]).await?;
        let data = json!({"userId": user_id, "archiveId": archive_id});
        self.publish(scope, EventType::ArchiveStarted, data, &archive_id).await?;
        let contents: Vec<Vec<u8>> = files.into_iter().map(|f| f.content).collect();
        self.spawn_job(scope.clone(), job, Some(contents));
        Ok(archive)
    }

    /// Sandbox analysis: the sample payslips are read (their data added); anything else fails.
    pub(crate) async fn analyse(
        &self,
        scope: &Scope,
        mut archive: Archive,
        contents: &[Vec<u8>],
    ) -> Result<(), ApiError> {
        let samples: Vec<_> = contents.iter().filter_map(|c| archives::recognise(c)).collect();
        let recognised = archive.file_type == "PAYSLIP" && samples.len() == contents.len();
        let ids = json!({"userId": archive.user_id, "archiveId": archive.id});
        if !recognised {
            let (status, message) = match archive.file_type.as_str() {
                "PAYSLIP" => (ArchiveStatus::Error, "The file could not be read as a payslip."),
                _ => (ArchiveStatus::Unsupported, "The sandbox can only analyse its sample payslips."),
            };
            // The event names the failure as Smile's events do (FILE_UNABLE_TO_RECOGNIZE); the
            // archive's state takes a code of its own list, where an unreadable file is a
            // format error.
            archive.state = ArchiveState::now(status, Some((archives::UNREADABLE_STATE, message)));
            self.put(vec![archive.document(scope)?]).await?;
            let mut data = ids;
            data["errorCode"] = json!(archives::UNREADABLE);
            data["errorMessage"] = json!(message);
            return self.publish(scope, EventType::ArchiveFailed, data, &archive.id).await;
        }
        let metadata = data::Metadata::of_archive(&archive.id, &archive.user_id, &format_ms(now_ms()));
        let person = &people::PEOPLE[0];
        archive.state = ArchiveState::now(ArchiveStatus::Analyzed, None);
        archive.classification = Some(Classification { file_type: "PAYSLIP".into() });
        archive.analysis = Some(data::payslip_analysis(person, samples[0].month));
        let mut documents = vec![archive.document(scope)?];
        for sample in &samples {
            let income = data::payslip_income(person, sample.month, metadata.clone());
            documents.push(item(kinds::INCOME, &income, scope, &archive.user_id, &archive.id)?);
        }
        let employment = data::payslip_employment(person, metadata);
        documents.push(item(kinds::EMPLOYMENT, &employment, scope, &archive.user_id, &archive.id)?);
        // The data is there before ARCHIVE_ANALYZED says so: a receiver acting on the event
        // (reading, or deleting the archive) finds it.
        self.put(documents).await?;
        self.publish(scope, EventType::ArchiveAnalyzed, ids, &archive.id).await?;
        let added = |count: usize| json!({"userId": archive.user_id, "accountId": archive.id, "count": count, "providers": ["user-provided"]});
        self.publish(scope, EventType::EmploymentsAdded, added(1), &archive.id).await?;
        self.publish(scope, EventType::IncomesAdded, added(samples.len()), &archive.id).await
    }

    /// The archive with this id, of `user_id` when given.
    pub async fn archive(&self, scope: &Scope, id: &str, user_id: Option<&str>) -> Result<Archive, ApiError> {
        match self.get(scope, kinds::ARCHIVE, id).await? {
            Some(d) if user_id.is_none() || d.user_id.as_deref() == user_id => {
                serde_json::from_value(d.body).map_err(server_error)
            }
            _ => Err(ApiError::missing("archive")),
        }
    }

    /// Deletes an archive: its files and data go, it becomes REVOKED, `ARCHIVE_REVOKED` follows.
    pub async fn revoke_archive(
        &self,
        scope: &Scope,
        archive_id: &str,
        user_id: Option<&str>,
    ) -> Result<Archive, ApiError> {
        let mut archive = self.archive(scope, archive_id, user_id).await?;
        if archive.state.status == ArchiveStatus::Revoked {
            return Err(ApiError::invalid("the archive is already deleted"));
        }
        self.store.delete_documents_of_source(scope, kinds::ACCOUNT_DATA, archive_id).await.map_err(server_error)?;
        let dir = self.files_dir.join(archive_id);
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
        archive.state = ArchiveState::now(ArchiveStatus::Revoked, None);
        self.put(vec![archive.document(scope)?]).await?;
        let data = json!({"userId": archive.user_id, "archiveId": archive_id});
        self.publish(scope, EventType::ArchiveRevoked, data, archive_id).await?;
        Ok(archive)
    }

    /// The bytes of one uploaded file, while its archive keeps it.
    pub async fn archive_file(
        &self,
        scope: &Scope,
        archive_id: &str,
        file_id: &str,
    ) -> Result<(Format, Vec<u8>), ApiError> {
        let archive = self.archive(scope, archive_id, None).await?;
        let format =
            archive.raw_files.iter().find(|f| f.id == file_id).ok_or_else(|| ApiError::missing("file"))?.format;
        let path = self.files_dir.join(archive_id).join(format!("{file_id}.{}", format.extension()));
        let content = tokio::fs::read(path).await.map_err(|_| ApiError::missing("file (deleted or past retention)"))?;
        Ok((format, content))
    }

    /// The files of an archive, read back from disk.
    pub(crate) async fn stored_contents(&self, scope: &Scope, archive: &Archive) -> Result<Vec<Vec<u8>>, ApiError> {
        let mut contents = Vec::new();
        for file in &archive.raw_files {
            contents.push(self.archive_file(scope, &archive.id, &file.id).await?.1);
        }
        Ok(contents)
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
