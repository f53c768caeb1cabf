//! Users, their link tokens, and the employers they could not find.

use crate::platform::{LinkSession, Platform, document, kinds, server_error, stored};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use smile_core::timefmt::{format_ms, now_ms};
use smile_core::{ApiError, ErrorCode, EventType, Mode, ids};
use smile_store::Scope;

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

/// A user of the integrator's, as `GET /v1/users` shows them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    pub external_metadata: Map<String, Value>,
    pub created_at: String,
    /// The providers the user has connected an account at.
    pub providers: Vec<String>,
}

/// A link token, as `POST /v1/users` and `POST /v1/tokens` hand it out.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Token {
    pub id: String,
    pub expires_at: String,
    pub mode: Mode,
    pub access_token: String,
    /// When it expires, for checking (not shown).
    #[serde(default, skip_serializing)]
    pub expires_ms: i64,
}

/// An employer a user could not find in the widget.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EmployerSurvey {
    pub id: String,
    pub user_id: String,
    pub employer_name: String,
    pub created_at: String,
}

impl Platform {
    /// Creates a user and its first link token; `USER_CREATED` follows.
    pub async fn create_user(
        &self,
        scope: &Scope,
        external_metadata: Map<String, Value>,
    ) -> Result<(User, Token), ApiError> {
        check_external_metadata(&external_metadata)?;
        let user = User {
            id: format!("{}-{}", scope.tenant_id, uuid::Uuid::new_v4().simple()),
            external_metadata,
            created_at: format_ms(now_ms()),
            providers: Vec::new(),
        };
        self.put(vec![stored(kinds::USER, &user.id, scope, &user.id, None, &user)?]).await?;
        let token = self.new_token(scope, &user.id).await?;
        self.publish(scope, EventType::UserCreated, json!({ "userId": user.id }), &user.id).await?;
        Ok((user, token))
    }

    /// A fresh link token for an existing user (the Refresh Token API).
    pub async fn issue_token(&self, scope: &Scope, user_id: &str) -> Result<Token, ApiError> {
        if self.get(scope, kinds::USER, user_id).await?.is_none() {
            return Err(ApiError::missing("user"));
        }
        self.new_token(scope, user_id).await
    }

    async fn new_token(&self, scope: &Scope, user_id: &str) -> Result<Token, ApiError> {
        let expires_ms = now_ms() + self.token_ttl.as_millis() as i64;
        let token = Token {
            id: ids::new_id("tok-"),
            expires_at: format_ms(expires_ms),
            mode: scope.mode,
            access_token: ids::new_token(),
            expires_ms,
        };
        // Stored with `expiresMs`, which the API does not show.
        let mut body = serde_json::to_value(&token).map_err(server_error)?;
        body["expiresMs"] = json!(expires_ms);
        self.put(vec![document(kinds::TOKEN, &token.access_token, scope, user_id, None, body)]).await?;
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
        let expires_ms = token.body.get("expiresMs").and_then(Value::as_i64).ok_or_else(invalid)?;
        if expires_ms <= now_ms() {
            return Err(invalid());
        }
        Ok(LinkSession { scope: token.scope, user_id: token.user_id.unwrap_or_default() })
    }

    // ---- employer surveys ----

    /// Records an employer the user could not find, for the integrator to read at
    /// `GET /v1/employerSurveys` and follow up.
    pub async fn submit_survey(&self, session: &LinkSession, employer_name: &str) -> Result<EmployerSurvey, ApiError> {
        let name = employer_name.trim();
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(ApiError::invalid("employerName must be 1 to 200 characters, without control characters"));
        }
        let survey = EmployerSurvey {
            id: ids::new_id("es-"),
            user_id: session.user_id.clone(),
            employer_name: name.to_owned(),
            created_at: format_ms(now_ms()),
        };
        self.put(vec![stored(kinds::EMPLOYER_SURVEY, &survey.id, &session.scope, &session.user_id, None, &survey)?])
            .await?;
        Ok(survey)
    }

    pub(crate) async fn add_provider_to_user(
        &self,
        scope: &Scope,
        user_id: &str,
        provider_id: &str,
    ) -> Result<(), ApiError> {
        let Some(document) = self.get(scope, kinds::USER, user_id).await? else { return Ok(()) };
        let mut user: User = serde_json::from_value(document.body).map_err(server_error)?;
        if !user.providers.iter().any(|p| p == provider_id) {
            user.providers.push(provider_id.to_owned());
            self.put(vec![stored(kinds::USER, user_id, scope, user_id, None, &user)?]).await?;
        }
        Ok(())
    }
}
