//! Invites: the invited user and their landing link, the message in the outbox, and the
//! invite becoming LINKED when they connect an account.

use crate::platform::{Platform, is_email_address, kinds, server_error, stored};
use serde::{Deserialize, Serialize};
use serde_json::{Map, json};
use smile_core::timefmt::{format_ms, now_ms};
use smile_core::{ApiError, EventType, ids};
use smile_store::{Document, DocumentFilter, PageRequest, Scope};

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
            (Some(email), _) if !within(email, 200) || !is_email_address(email) => {
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

/// Where an invite stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InviteStatus {
    Invited,
    Linked,
}

/// An invitation to connect accounts, as `GET /v1/invites` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Invite {
    pub id: String,
    pub created_at: String,
    pub full_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    pub template_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wink_template_id: Option<String>,
    pub user_id: String,
    pub status: InviteStatus,
    pub updated_at: String,
    pub invited_at: String,
    /// Until the user links, the invite's own time, as Smile's examples show (the field is a
    /// required date-time); `status` says whether it is linked.
    pub linked_at: String,
    pub invite_landing_page_url: String,
}

/// A message in the outbox (nothing is really sent).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboxMessage {
    /// `EMAIL` or `SMS`.
    pub channel: &'static str,
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// What happened to an invite, with the message it sent.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InviteLog {
    pub id: String,
    pub invite_id: String,
    pub created_at: String,
    pub invite_status: InviteStatus,
    pub user_id: String,
    pub message: Option<OutboxMessage>,
}

impl Platform {
    /// Invites someone: a user and a link token for them, the invite, its message in the
    /// outbox (nothing is really sent), `USER_CREATED` and `INVITE_INVITED`.
    pub async fn invite(&self, scope: &Scope, request: InviteRequest) -> Result<Invite, ApiError> {
        request.check()?;
        let (user, token) = self.create_user(scope, Map::new()).await?;
        let now = format_ms(now_ms());
        let id = ids::new_id("iv-");
        let landing = format!("{}/invite/{id}?token={}", self.public_url, token.access_token);
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
        let invite = Invite {
            id,
            created_at: now.clone(),
            full_name: request.full_name,
            first_name: request.first_name,
            last_name: request.last_name,
            email: request.email,
            phone: request.phone,
            template_id: request.template_id,
            wink_template_id: request.wink_template_id,
            user_id: user.id,
            status: InviteStatus::Invited,
            updated_at: now.clone(),
            invited_at: now.clone(),
            linked_at: now,
            invite_landing_page_url: landing,
        };
        let message = OutboxMessage { channel, to, subject, body };
        self.put(vec![
            stored(kinds::INVITE, &invite.id, scope, &invite.user_id, None, &invite)?,
            self.invite_log(scope, &invite, Some(message))?,
        ])
        .await?;
        let data = json!({"userId": invite.user_id, "inviteId": invite.id});
        self.publish(scope, EventType::InviteInvited, data, &invite.user_id).await?;
        Ok(invite)
    }

    fn invite_log(&self, scope: &Scope, invite: &Invite, message: Option<OutboxMessage>) -> Result<Document, ApiError> {
        let log = InviteLog {
            id: ids::new_id("invl-"),
            invite_id: invite.id.clone(),
            created_at: format_ms(now_ms()),
            invite_status: invite.status,
            user_id: invite.user_id.clone(),
            message,
        };
        stored(kinds::INVITE_LOG, &log.id, scope, &invite.user_id, Some(&invite.id), &log)
    }

    /// The invites of a user who just connected an account become LINKED: `INVITE_LINKED`.
    pub(crate) async fn link_invites(&self, scope: &Scope, user_id: &str) -> Result<(), ApiError> {
        let filter = DocumentFilter { user_id: Some(user_id.to_owned()), ..Default::default() };
        let page = PageRequest { size: 150, before_seq: None };
        let invites = self.list(scope, kinds::INVITE, &filter, &page).await?;
        for document in invites.items {
            let mut invite: Invite = serde_json::from_value(document.body).map_err(server_error)?;
            if invite.status != InviteStatus::Invited {
                continue;
            }
            let now = format_ms(now_ms());
            invite.status = InviteStatus::Linked;
            invite.linked_at = now.clone();
            invite.updated_at = now;
            self.put(vec![
                stored(kinds::INVITE, &invite.id, scope, user_id, None, &invite)?,
                self.invite_log(scope, &invite, None)?,
            ])
            .await?;
            let data = json!({"userId": user_id, "inviteId": invite.id});
            self.publish(scope, EventType::InviteLinked, data, user_id).await?;
        }
        Ok(())
    }
}
