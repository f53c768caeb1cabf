//! Uploads ("archives"): through the API (JSON, base64 content) and through the widget's link
//! path (multipart), the file types, the stored files, and the sandbox's sample payslips.

use crate::AppState;
use crate::auth::{LinkToken, TenantKey};
use crate::envelope::{Data, Error, Result};
use crate::extract::{Id, JsonBody, QueryParams};
use crate::routes::platform::page_of;
use crate::views::ListView;
use axum::extract::DefaultBodyLimit;
use axum::extract::{Multipart, Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;
use smile_core::ApiError;
use smile_sandbox::archives::{self, FileType};
use smile_sandbox::{Archive, UploadFile, kinds};
use smile_store::DocumentFilter;

/// `POST /v1/archives` takes a JSON body this large: one 15 MB file in base64 (20 MB) and
/// room for the rest. A body that must be parsed whole is buffered whole, so this is what
/// one request may cost in memory.
pub const MAX_JSON_UPLOAD_BODY: usize = 21 * 1024 * 1024;
/// `POST /link/v1/archives` (multipart) takes at most this much. Parts are streamed to
/// temporary files, so memory does not grow with it; each file is still at most 15 MB.
pub const MAX_MULTIPART_BODY: usize = 10 * archives::MAX_FILE_BYTES + 1024 * 1024;

/// A route taking files as base64 in JSON: up to [`MAX_JSON_UPLOAD_BODY`], refused before
/// reading when the declared length is over.
pub fn json_upload(route: MethodRouter<AppState>) -> MethodRouter<AppState> {
    route
        .layer(DefaultBodyLimit::max(MAX_JSON_UPLOAD_BODY))
        .layer(axum::middleware::from_fn(|r, n| refuse_declared_over(MAX_JSON_UPLOAD_BODY, r, n)))
}

fn too_large(what: &str) -> Error {
    crate::envelope::with_status(smile_core::ErrorCode::InvalidParameters, 413, what)
}

/// Refuses a request whose declared length is over `limit` before reading any of it.
pub async fn refuse_declared_over(
    limit: usize,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large(&format!("the request body is over {} MB", limit / (1024 * 1024))).into_response();
    }
    next.run(request).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct FileObject {
    file_extension_type: String,
    file_subtype: Option<String>,
    file_name: Option<String>,
    file_content: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct CreateArchive {
    user_id: Option<String>,
    file_type: String,
    raw_files: Vec<FileObject>,
}

/// `POST /v1/archives`: files as base64 in JSON.
#[utoipa::path(
    post,
    path = "/v1/archives",
    tag = "sandbox",
    request_body = CreateArchive,
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("basic" = []))
)]
pub async fn create(
    TenantKey(scope): TenantKey,
    State(state): State<AppState>,
    body: JsonBody,
) -> Result<Data<Archive>> {
    let request: CreateArchive = body.parse()?;
    let files = decode(request.raw_files)?;
    Ok(Data(state.platform.create_archive(&scope, request.user_id, &request.file_type, files).await?))
}

fn decode(raw_files: Vec<FileObject>) -> Result<Vec<UploadFile>> {
    raw_files
        .into_iter()
        .map(|f| {
            let content = base64::engine::general_purpose::STANDARD
                .decode(f.file_content.trim())
                .map_err(|_| Error(ApiError::invalid("fileContent must be base64")))?;
            Ok(UploadFile {
                name: f.file_name,
                claimed: Some(f.file_extension_type),
                sub_type: f.file_subtype,
                content,
            })
        })
        .collect()
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ClassifyArchive {
    user_id: Option<String>,
    raw_files: Vec<FileObject>,
}

/// `POST /v1/archives/classify`: says what the files are and starts an archive of that type.
#[utoipa::path(post, path = "/v1/archives/classify", tag = "sandbox", request_body = ClassifyArchive,
    responses((status = 200, description = "the archive with its classification, in the Smile envelope")),
    security(("basic" = [])))]
pub async fn classify(
    TenantKey(scope): TenantKey,
    State(state): State<AppState>,
    body: JsonBody,
) -> Result<Data<Archive>> {
    let request: ClassifyArchive = body.parse()?;
    Ok(Data(state.platform.classify_archive(&scope, request.user_id, decode(request.raw_files)?).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PayslipUpload {
    user_id: String,
    file_extension_type: String,
    file_content: String,
}

/// `POST /v1/archives/-/payslips/uploadRawFile`: one payslip, analysed as `POST /v1/archives`.
#[utoipa::path(post, path = "/v1/archives/-/payslips/uploadRawFile", tag = "sandbox", request_body = PayslipUpload,
    responses((status = 200, description = "the archive, in the Smile envelope")), security(("basic" = [])))]
pub async fn upload_payslip(
    TenantKey(scope): TenantKey,
    State(state): State<AppState>,
    body: JsonBody,
) -> Result<Data<Archive>> {
    let request: PayslipUpload = body.parse()?;
    let file = FileObject {
        file_extension_type: request.file_extension_type,
        file_subtype: Some("PAYSLIP".into()),
        file_name: None,
        file_content: request.file_content,
    };
    Ok(Data(state.platform.create_archive(&scope, Some(request.user_id), "PAYSLIP", decode(vec![file])?).await?))
}

/// `GET /v1/archives/-/payslips/queryPrediction?archiveId=`: what an analysed payslip shows.
#[utoipa::path(get, path = "/v1/archives/-/payslips/queryPrediction", tag = "sandbox",
    params(("archiveId" = String, Query)),
    responses((status = 200, description = "the prediction, in the Smile envelope")), security(("basic" = [])))]
pub async fn payslip_prediction(
    TenantKey(scope): TenantKey,
    State(state): State<AppState>,
    q: QueryParams,
) -> Result<Data<Value>> {
    let id = q.get("archiveId").ok_or_else(|| Error(ApiError::invalid("archiveId is required")))?;
    Ok(Data(state.platform.payslip_prediction(&scope, id).await?))
}

/// `GET /v1/archives/-/payslips/listPredictions`: the predictions of every analysed payslip.
#[utoipa::path(get, path = "/v1/archives/-/payslips/listPredictions", tag = "sandbox",
    params(("size" = Option<u32>, Query, description = "1 to 150, default 10"), ("cursor" = Option<String>, Query, description = "a previous nextCursor"),
        ("startDate" = Option<String>, Query), ("endDate" = Option<String>, Query)),
    responses((status = 200, description = "a page of predictions, in the Smile envelope")), security(("basic" = [])))]
pub async fn payslip_predictions(
    TenantKey(scope): TenantKey,
    State(state): State<AppState>,
    q: QueryParams,
) -> Result<Data<ListView<Value>>> {
    let filter = super::platform::filter(&q)?;
    Ok(Data(ListView::of(state.platform.payslip_predictions(&scope, &filter, &q.page()?).await?, |p| p)))
}

/// `POST /v1/archives/-/payslips/sendManualResult`: a person's check of a prediction.
#[utoipa::path(post, path = "/v1/archives/-/payslips/sendManualResult", tag = "sandbox",
    request_body = smile_sandbox::ManualResult,
    responses((status = 200, description = "recorded")), security(("basic" = [])))]
pub async fn manual_result(
    TenantKey(scope): TenantKey,
    State(state): State<AppState>,
    body: JsonBody,
) -> Result<crate::envelope::Done> {
    state.platform.send_manual_result(&scope, body.parse()?).await?;
    Ok(crate::envelope::Done)
}

/// `POST /link/v1/archives`: the widget's upload, `multipart/form-data` with a `fileType`
/// field and one or more `file` parts.
pub async fn upload(
    LinkToken(session): LinkToken,
    State(state): State<AppState>,
    mut form: Multipart,
) -> Result<Data<Archive>> {
    let bad = |e: axum::extract::multipart::MultipartError| Error(ApiError::invalid(format!("bad upload: {e}")));
    let (mut file_type, mut files) = (None, Vec::new());
    while let Some(mut field) = form.next_field().await.map_err(bad)? {
        match field.name() {
            Some("fileType") => file_type = Some(field.text().await.map_err(bad)?),
            Some("file") => {
                let name = field.file_name().map(str::to_owned);
                if name.as_deref().is_some_and(|n| n.chars().any(char::is_control)) {
                    return Err(Error(ApiError::invalid("file names must not contain control characters")));
                }
                let content = spool(&mut field, name.as_deref().unwrap_or("file")).await?;
                files.push(UploadFile { name, claimed: None, sub_type: None, content });
            }
            _ => {}
        }
    }
    let file_type = file_type.ok_or_else(|| Error(ApiError::invalid("fileType is required")))?;
    let archive = state.platform.create_archive(&session.scope, Some(session.user_id), &file_type, files).await?;
    Ok(Data(archive))
}

/// Streams one file part to a temporary file, refusing it as soon as it passes 15 MB, and
/// reads it back only once it is known to fit: a large or endless part costs disk, briefly,
/// never memory.
async fn spool(field: &mut axum::extract::multipart::Field<'_>, name: &str) -> Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
    let failed = |e: std::io::Error| Error(ApiError::server(format!("cannot keep the upload: {e}")));
    let bad = |e: axum::extract::multipart::MultipartError| Error(ApiError::invalid(format!("bad upload: {e}")));
    let mut spooled = tokio::fs::File::from_std(tempfile::tempfile().map_err(failed)?);
    let mut size = 0usize;
    while let Some(chunk) = field.chunk().await.map_err(bad)? {
        size += chunk.len();
        if size > archives::MAX_FILE_BYTES {
            // As the platform's own check says it, so the answer does not depend on the route.
            return Err(Error(ApiError::invalid(format!("{name} is over 15 MB"))));
        }
        spooled.write_all(&chunk).await.map_err(failed)?;
    }
    spooled.rewind().await.map_err(failed)?;
    let mut content = Vec::with_capacity(size);
    spooled.read_to_end(&mut content).await.map_err(failed)?;
    Ok(content)
}

/// `GET /link/v1/archives`: the token's user's uploads.
#[utoipa::path(
    get,
    path = "/link/v1/archives",
    tag = "link",
    params(("size" = Option<u32>, Query, description = "1 to 150, default 10"), ("cursor" = Option<String>, Query, description = "a previous nextCursor")),
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("bearer" = []))
)]
pub async fn list_own(
    LinkToken(session): LinkToken,
    State(state): State<AppState>,
    q: QueryParams,
) -> Result<Data<ListView<Value>>> {
    let filter = DocumentFilter { user_id: Some(session.user_id.clone()), ..Default::default() };
    let page = state.platform.list(&session.scope, kinds::ARCHIVE, &filter, &q.page()?).await?;
    Ok(Data(ListView::of(page, |d| d.body)))
}

/// `DELETE /link/v1/archives/{id}`: the user deletes an upload.
#[utoipa::path(
    delete,
    path = "/link/v1/archives/{id}",
    tag = "link",
    params(("id" = String, Path)),
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("bearer" = []))
)]
pub async fn delete_own(
    LinkToken(session): LinkToken,
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Data<Archive>> {
    Ok(Data(state.platform.revoke_archive(&session.scope, &id, Some(&session.user_id)).await?))
}

/// `DELETE /v1/archives/{id}`
#[utoipa::path(
    delete,
    path = "/v1/archives/{id}",
    tag = "sandbox",
    params(("id" = String, Path)),
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("basic" = []))
)]
pub async fn delete(TenantKey(scope): TenantKey, State(state): State<AppState>, Id(id): Id) -> Result<Data<Archive>> {
    Ok(Data(state.platform.revoke_archive(&scope, &id, None).await?))
}

/// `GET /v1/archives/{id}/files/{fileId}`: an uploaded file, while it is kept.
#[utoipa::path(
    get,
    path = "/v1/archives/{id}/files/{file}",
    tag = "sandbox",
    params(("id" = String, Path), ("file" = String, Path)),
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("basic" = []))
)]
pub async fn file(
    TenantKey(scope): TenantKey,
    State(state): State<AppState>,
    Path((id, file_id)): Path<(String, String)>,
) -> Result<Response> {
    let (format, content) = state.platform.archive_file(&scope, &id, &file_id).await?;
    Ok(([(axum::http::header::CONTENT_TYPE, format.content_type())], content).into_response())
}

fn flag(q: &QueryParams, name: &str) -> Option<bool> {
    q.get(name).map(|v| v == "true")
}

fn filtered_file_types(q: &QueryParams) -> Vec<FileType> {
    archives::file_types()
        .into_iter()
        .filter(|t| q.get("type").is_none_or(|x| x == t.file_type))
        .filter(|t| flag(q, "active").is_none_or(|x| x == t.active))
        .filter(|t| flag(q, "enabled").is_none_or(|x| x == t.enabled))
        .filter(|t| flag(q, "ocr").is_none_or(|x| x == t.ocr))
        .collect()
}

/// `GET /v1/fileTypes`
#[utoipa::path(
    get,
    path = "/v1/fileTypes",
    tag = "sandbox",
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("basic" = []))
)]
pub async fn file_types(_: TenantKey, q: QueryParams) -> Result<Data<ListView<FileType>>> {
    Ok(Data(page_of(filtered_file_types(&q), &q)?))
}

/// `GET /link/v1/fileTypes`
#[utoipa::path(
    get,
    path = "/link/v1/fileTypes",
    tag = "link",
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("bearer" = []))
)]
pub async fn link_file_types(_: LinkToken, q: QueryParams) -> Result<Data<ListView<FileType>>> {
    Ok(Data(page_of(filtered_file_types(&q), &q)?))
}

/// `GET /sandbox/samples/{name}`: the sample payslips the sandbox recognises.
pub async fn sample(Path(name): Path<String>) -> Response {
    match archives::SAMPLES.iter().find(|s| s.name == name) {
        Some(s) => {
            let format =
                archives::Format::sniff(s.content).map(|f| f.content_type()).unwrap_or("application/octet-stream");
            let disposition = format!("attachment; filename=\"{}\"", s.name);
            (
                [
                    (axum::http::header::CONTENT_TYPE, format.to_owned()),
                    (axum::http::header::CONTENT_DISPOSITION, disposition),
                ],
                s.content,
            )
                .into_response()
        }
        None => Error(ApiError::missing("sample")).into_response(),
    }
}
