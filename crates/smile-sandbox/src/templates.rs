//! Consent and invite templates: wording an integrator writes once and reuses. An invite that
//! names an invite template gets its e-mail subject and body in the outbox.

use crate::platform::{Platform, is_email_address, kinds, server_error};
use serde::{Deserialize, Serialize};
use smile_core::timefmt::{format_ms, now_ms};
use smile_core::{ApiError, ids};
use smile_store::{Document, DocumentFilter, Page, PageRequest, Scope};

/// Checks that `value` is `min..=max` characters long.
fn check_len(name: &str, value: &str, min: usize, max: usize) -> Result<(), ApiError> {
    let n = value.chars().count();
    if n < min || n > max || (min > 0 && value.trim().is_empty()) {
        return Err(ApiError::invalid(format!("{name} must be {min} to {max} characters")));
    }
    Ok(())
}

/// What `POST /v1/consentTemplates` takes.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsentTemplateRequest {
    pub consent_type: String,
    pub title: Option<String>,
    pub version: String,
    pub consent_method: Option<String>,
    pub consent_text: String,
}

/// The wording a user agrees to, versioned.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsentTemplate {
    pub id: String,
    pub created_at: String,
    pub consent_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consent_method: Option<String>,
    pub consent_text: String,
}

impl ConsentTemplateRequest {
    fn check(&self) -> Result<(), ApiError> {
        check_len("consentType", &self.consent_type, 1, 200)?;
        check_len("version", &self.version, 1, 64)?;
        check_len("consentText", &self.consent_text, 1, 65_535)?;
        if let Some(title) = &self.title {
            check_len("title", title, 1, 200)?;
        }
        if let Some(method) = &self.consent_method {
            check_len("consentMethod", method, 0, 200)?;
        }
        Ok(())
    }
}

/// The company an invite speaks for.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InviteCompany {
    pub name: String,
    pub logo_url: String,
}

/// The invite's e-mail.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InviteEmail {
    pub send_email: bool,
    pub sender_name: String,
    pub reply_address: String,
    pub subject: String,
    pub body: String,
}

/// A page the invited user sees: before connecting (landing) or after (success).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InvitePage {
    pub header: String,
    pub description: String,
    pub button: String,
}

/// What `POST` and `PUT /v1/inviteTemplates` take.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InviteTemplateRequest {
    pub name: String,
    pub company: InviteCompany,
    pub email: InviteEmail,
    pub landing_page: InvitePage,
    pub success_page: InvitePage,
}

/// How invites are worded: their e-mail and the pages the invited user sees.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InviteTemplate {
    pub id: String,
    pub created_at: String,
    pub updated_at: String,
    pub name: String,
    pub company: InviteCompany,
    pub email: InviteEmail,
    pub landing_page: InvitePage,
    pub success_page: InvitePage,
}

impl InviteTemplateRequest {
    fn check(&self) -> Result<(), ApiError> {
        check_len("name", &self.name, 1, 64)?;
        check_len("company.name", &self.company.name, 1, 200)?;
        check_len("company.logoUrl", &self.company.logo_url, 1, 200)?;
        let email = &self.email;
        check_len("email.senderName", &email.sender_name, 1, 200)?;
        check_len("email.replyAddress", &email.reply_address, 1, 200)?;
        if !is_email_address(&email.reply_address) {
            return Err(ApiError::invalid("email.replyAddress must be an e-mail address"));
        }
        check_len("email.subject", &email.subject, 1, 200)?;
        check_len("email.body", &email.body, 1, 5_000)?;
        for (name, page) in [("landingPage", &self.landing_page), ("successPage", &self.success_page)] {
            check_len(&format!("{name}.header"), &page.header, 1, 200)?;
            check_len(&format!("{name}.description"), &page.description, 1, 5_000)?;
            check_len(&format!("{name}.button"), &page.button, 1, 200)?;
        }
        Ok(())
    }
}

/// A template is its own source, so deleting it is deleting its source.
fn stored<T: Serialize>(kind: &str, id: &str, scope: &Scope, record: &T) -> Result<Document, ApiError> {
    Ok(Document::new(kind, id, scope, serde_json::to_value(record).map_err(server_error)?).from_source(id))
}

fn read<T: for<'de> Deserialize<'de>>(document: Document) -> Result<T, ApiError> {
    serde_json::from_value(document.body).map_err(server_error)
}

impl Platform {
    pub async fn create_consent_template(
        &self,
        scope: &Scope,
        request: ConsentTemplateRequest,
    ) -> Result<ConsentTemplate, ApiError> {
        request.check()?;
        let template = ConsentTemplate {
            id: ids::new_id("ct-"),
            created_at: format_ms(now_ms()),
            consent_type: request.consent_type,
            title: request.title,
            version: request.version,
            consent_method: request.consent_method,
            consent_text: request.consent_text,
        };
        self.put(vec![stored(kinds::CONSENT_TEMPLATE, &template.id, scope, &template)?]).await?;
        Ok(template)
    }

    pub async fn consent_templates(
        &self,
        scope: &Scope,
        page: &PageRequest,
    ) -> Result<Page<ConsentTemplate>, ApiError> {
        let found = self.list(scope, kinds::CONSENT_TEMPLATE, &DocumentFilter::default(), page).await?;
        Ok(Page { items: found.items.into_iter().map(read).collect::<Result<_, _>>()?, next_cursor: found.next_cursor })
    }

    pub async fn create_invite_template(
        &self,
        scope: &Scope,
        request: InviteTemplateRequest,
    ) -> Result<InviteTemplate, ApiError> {
        request.check()?;
        let now = format_ms(now_ms());
        let template = InviteTemplate {
            id: ids::new_id("ivt-"),
            created_at: now.clone(),
            updated_at: now,
            name: request.name,
            company: request.company,
            email: request.email,
            landing_page: request.landing_page,
            success_page: request.success_page,
        };
        self.put(vec![stored(kinds::INVITE_TEMPLATE, &template.id, scope, &template)?]).await?;
        Ok(template)
    }

    pub async fn update_invite_template(
        &self,
        scope: &Scope,
        id: &str,
        request: InviteTemplateRequest,
    ) -> Result<InviteTemplate, ApiError> {
        request.check()?;
        let before = self.invite_template(scope, id).await?.ok_or_else(|| ApiError::missing("invite template"))?;
        let template = InviteTemplate {
            updated_at: format_ms(now_ms()),
            name: request.name,
            company: request.company,
            email: request.email,
            landing_page: request.landing_page,
            success_page: request.success_page,
            ..before
        };
        self.put(vec![stored(kinds::INVITE_TEMPLATE, id, scope, &template)?]).await?;
        Ok(template)
    }

    /// The invite template with this id, if the tenant has one.
    pub async fn invite_template(&self, scope: &Scope, id: &str) -> Result<Option<InviteTemplate>, ApiError> {
        self.get(scope, kinds::INVITE_TEMPLATE, id).await?.map(read).transpose()
    }

    pub async fn invite_templates(&self, scope: &Scope, page: &PageRequest) -> Result<Page<InviteTemplate>, ApiError> {
        let found = self.list(scope, kinds::INVITE_TEMPLATE, &DocumentFilter::default(), page).await?;
        Ok(Page { items: found.items.into_iter().map(read).collect::<Result<_, _>>()?, next_cursor: found.next_cursor })
    }

    /// Deletes a consent or invite template (`kind`); an unknown id is `MISSING_RESOURCE`.
    pub async fn delete_template(&self, scope: &Scope, kind: &str, id: &str) -> Result<(), ApiError> {
        let removed = self.store.delete_documents_of_source(scope, &[kind], id).await.map_err(server_error)?;
        if removed == 0 {
            return Err(ApiError::missing("template"));
        }
        Ok(())
    }
}
