//! Classifying uploaded files, and the payslip predictions: what reading a payslip found,
//! corrected by a person where they checked it by hand.

use crate::archives;
use crate::platform::{Platform, kinds, server_error};
use crate::uploads::{Archive, ArchiveState, ArchiveStatus, Classification, UploadFile};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use smile_core::ApiError;
use smile_core::timefmt::{format_ms, now_ms};
use smile_store::{DocumentFilter, Page, PageRequest, Scope};

/// What `POST /v1/archives/-/payslips/sendManualResult` takes: a person's check of a
/// prediction.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManualResult {
    pub archive_id: String,
    /// Whether the file is a payslip at all.
    pub valid_file: bool,
    #[serde(default)]
    pub checked_fields: Vec<String>,
    /// The values the person found, which replace the predicted ones.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub data: Map<String, Value>,
}

/// The fields a manual result may correct.
const CORRECTABLE: &[&str] = &[
    "startDate",
    "endDate",
    "payDate",
    "currency",
    "grossAmount",
    "netAmount",
    "employerName",
    "employeeName",
    "ssNumber",
    "philHealthNumber",
    "taxNumber",
    "pagIbigNumber",
];

impl ManualResult {
    fn check(&self) -> Result<(), ApiError> {
        for (name, value) in &self.data {
            if !CORRECTABLE.contains(&name.as_str()) {
                return Err(ApiError::invalid(format!("data.{name} is not a field of a payslip prediction")));
            }
            let fits = match name.as_str() {
                "grossAmount" | "netAmount" => value.is_number(),
                _ => value.as_str().is_some_and(|s| s.chars().count() <= 200),
            };
            if !fits {
                return Err(ApiError::invalid(format!("data.{name} has the wrong type")));
            }
        }
        Ok(())
    }
}

/// Whether every file is one of the sandbox's sample payslips: the one thing the sandbox
/// can classify.
fn classify(files: &[UploadFile]) -> &'static str {
    if !files.is_empty() && files.iter().all(|f| archives::recognise(&f.content).is_some()) {
        "PAYSLIP"
    } else {
        "OTHERS"
    }
}

/// A payslip archive's prediction: its analysis, any manual corrections, and where it came from.
fn prediction(archive: &Archive) -> Option<Value> {
    let mut found = archive.analysis.clone()?;
    if let Some(corrections) = archive.manual_result.as_ref().and_then(|m| m["data"].as_object()) {
        found.extend(corrections.clone());
    }
    let score = json!(100);
    found.insert(
        "matchResult".into(),
        json!({"employeeNameAndSsNumberMatchScore": score, "employeeNameAndIdentificationNumberMatchScore": score}),
    );
    found.insert(
        "metadata".into(),
        json!({
            "createdAt": archive.created_at, "itemCreatedAt": archive.state.updated_at, "sourceId": archive.id,
            "sourceType": "ARCHIVE", "userId": archive.user_id, "providerId": archive.provider_id,
        }),
    );
    Some(Value::Object(found))
}

impl Platform {
    /// Classifies the files and starts an archive of what they are: a sample payslip is
    /// `PAYSLIP` (analysed, `ARCHIVE_ANALYZED`), anything else `OTHERS` (`ARCHIVE_FAILED`,
    /// unsupported).
    pub async fn classify_archive(
        &self,
        scope: &Scope,
        user_id: Option<String>,
        files: Vec<UploadFile>,
    ) -> Result<Archive, ApiError> {
        let file_type = classify(&files);
        let analysis = files
            .first()
            .and_then(|f| archives::recognise(&f.content))
            .filter(|_| file_type == "PAYSLIP")
            .map(|sample| crate::data::payslip_analysis(&crate::people::PEOPLE[0], sample.month));
        let mut archive = self.start_archive(scope, user_id, file_type, files).await?;
        archive.classification = Some(Classification { file_type: file_type.to_owned() });
        archive.analysis = analysis;
        Ok(archive)
    }

    /// The prediction of one analysed payslip archive.
    pub async fn payslip_prediction(&self, scope: &Scope, archive_id: &str) -> Result<Value, ApiError> {
        let archive = self.archive(scope, archive_id, None).await?;
        prediction(&archive).ok_or_else(|| ApiError::missing("prediction (the archive is not an analysed payslip)"))
    }

    /// The predictions of the tenant's analysed payslips, newest first.
    pub async fn payslip_predictions(
        &self,
        scope: &Scope,
        filter: &DocumentFilter,
        page: &PageRequest,
    ) -> Result<Page<Value>, ApiError> {
        let filter = DocumentFilter { body_type: Some("PAYSLIP".into()), ..filter.clone() };
        let found = self.list(scope, kinds::ARCHIVE, &filter, page).await?;
        let archives: Vec<Archive> = found
            .items
            .into_iter()
            .map(|d| serde_json::from_value(d.body).map_err(server_error))
            .collect::<Result<_, _>>()?;
        Ok(Page { items: archives.iter().filter_map(prediction).collect(), next_cursor: found.next_cursor })
    }

    /// Records a person's check of a prediction; its corrections show in the prediction from
    /// then on. A file found not to be a payslip fails the archive (`ARCHIVE_FAILED`).
    pub async fn send_manual_result(&self, scope: &Scope, result: ManualResult) -> Result<(), ApiError> {
        result.check()?;
        let mut archive = self.archive(scope, &result.archive_id, None).await?;
        if archive.analysis.is_none() {
            return Err(ApiError::invalid("the archive is not an analysed payslip"));
        }
        let mut recorded = serde_json::to_value(&result).map_err(server_error)?;
        recorded["receivedAt"] = json!(format_ms(now_ms()));
        archive.manual_result = Some(recorded);
        let message = "A manual check found the file is not a payslip.";
        let failed = !result.valid_file && archive.state.status == ArchiveStatus::Analyzed;
        if failed {
            archive.state = ArchiveState::now(ArchiveStatus::Error, Some((archives::UNREADABLE_STATE, message)));
        }
        self.put(vec![archive.document(scope)?]).await?;
        if failed {
            let data = json!({"userId": archive.user_id, "archiveId": archive.id, "errorCode": archives::UNREADABLE,
                "errorMessage": message});
            self.publish(scope, smile_core::EventType::ArchiveFailed, data, &archive.id).await?;
        }
        Ok(())
    }
}
