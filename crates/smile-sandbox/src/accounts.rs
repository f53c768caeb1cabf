//! Accounts: connecting one with a user's credentials (and an MFA code), its state machine,
//! revoking it, and resyncing continuously synced ones.

use crate::people::{self, LoginResult};
use crate::platform::{Job, LinkSession, Platform, kinds, server_error, stored};
use crate::providers::{self, Provider};
use serde::{Deserialize, Serialize};
use serde_json::json;
use smile_core::timefmt::{format_ms, now_ms};
use smile_core::{ApiError, EventType, ids};
use smile_store::{Document, Scope};

/// Wrong verification codes a user may enter before the connection fails.
pub const MFA_TRIES: u64 = 3;

/// What the widget sends to connect an account.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectRequest {
    pub provider_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// Where an account's connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConnectionStatus {
    Pending,
    AwaitingMfa,
    Error,
    Connected,
    Disconnected,
}

impl ConnectionStatus {
    /// The account state machine: which connection status may follow which.
    fn may_become(self, next: ConnectionStatus) -> bool {
        use ConnectionStatus::*;
        matches!(
            (self, next),
            (Pending | AwaitingMfa, AwaitingMfa | Connected | Error)
                | (Pending | AwaitingMfa | Error | Connected, Disconnected)
        )
    }
}

/// Whether an account is kept in sync continuously.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MonitorStatus {
    Active,
    UserActionRequired,
    Unsupported,
    CustomerDisabled,
}

/// An account's connection: its status, and the error that put it there.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    pub status: ConnectionStatus,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub updated_at: String,
    /// While waiting for a verification code: the wrong ones still allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa_attempts_left: Option<u64>,
}

/// An account's continuous sync.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Monitor {
    pub status: MonitorStatus,
    pub updated_at: String,
}

/// A user's account at a provider, as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub id: String,
    pub created_at: String,
    pub provider_id: String,
    pub user_id: String,
    pub connection_status: ConnectionStatus,
    pub connection: Connection,
    pub monitor_status: MonitorStatus,
    pub monitor: Monitor,
    pub login_name: String,
}

impl Account {
    fn new(provider: &Provider, user_id: &str, login_name: String) -> Account {
        let now = format_ms(now_ms());
        Account {
            id: ids::new_id("a-"),
            created_at: now.clone(),
            provider_id: provider.id.to_owned(),
            user_id: user_id.to_owned(),
            connection_status: ConnectionStatus::Pending,
            connection: Connection {
                status: ConnectionStatus::Pending,
                error_code: None,
                error_message: None,
                updated_at: now.clone(),
                mfa_attempts_left: None,
            },
            monitor_status: MonitorStatus::Unsupported,
            monitor: Monitor { status: MonitorStatus::Unsupported, updated_at: now },
            login_name,
        }
    }

    /// Moves the connection to `status` (with the error that caused it), if the state machine
    /// allows it.
    fn become_(&mut self, status: ConnectionStatus, error: Option<&str>) -> Result<(), ApiError> {
        if !self.connection_status.may_become(status) {
            return Err(ApiError::invalid(format!(
                "the account is {:?} and cannot become {status:?}",
                self.connection_status
            )));
        }
        self.connection_status = status;
        self.connection = Connection {
            status,
            error_code: error.map(str::to_owned),
            error_message: error.map(|code| people::error_message(code).to_owned()),
            updated_at: format_ms(now_ms()),
            mfa_attempts_left: None,
        };
        Ok(())
    }

    fn set_monitor(&mut self, status: MonitorStatus) {
        self.monitor_status = status;
        self.monitor = Monitor { status, updated_at: format_ms(now_ms()) };
    }

    fn provider(&self) -> Result<Provider, ApiError> {
        providers::find(&self.provider_id).ok_or_else(|| server_error("unknown provider"))
    }

    fn person(&self) -> Result<&'static people::Person, ApiError> {
        people::find(&self.login_name).ok_or_else(|| server_error("unknown person"))
    }

    fn document(&self, scope: &Scope) -> Result<Document, ApiError> {
        stored(kinds::ACCOUNT, &self.id, scope, &self.user_id, None, self)
    }
}

impl Platform {
    /// The account with this id, of `user_id` when given.
    pub async fn account(&self, scope: &Scope, id: &str, user_id: Option<&str>) -> Result<Account, ApiError> {
        match self.get(scope, kinds::ACCOUNT, id).await? {
            Some(d) if user_id.is_none() || d.user_id.as_deref() == user_id => {
                serde_json::from_value(d.body).map_err(server_error)
            }
            _ => Err(ApiError::missing("account")),
        }
    }

    pub(crate) async fn save_account(&self, scope: &Scope, account: &Account) -> Result<(), ApiError> {
        self.put(vec![account.document(scope)?]).await
    }

    /// Starts connecting an account with the user's credentials: `ACCOUNT_CREATED`, then
    /// AWAITING_MFA, CONNECTED (and a data sync) or ERROR (`ACCOUNT_FAILED`).
    pub async fn connect(&self, session: &LinkSession, request: ConnectRequest) -> Result<Account, ApiError> {
        let provider = providers::find(&request.provider_id)
            .ok_or_else(|| ApiError::invalid(format!("unknown providerId `{}`", request.provider_id)))?;
        if !provider.account_connection {
            return Err(ApiError::invalid(format!("{} only takes uploaded documents", provider.name)));
        }
        let scope = &session.scope;
        let mut account = Account::new(&provider, &session.user_id, request.username.clone().unwrap_or_default());
        self.save_account(scope, &account).await?;
        let ids = json!({"userId": session.user_id, "accountId": account.id, "providers": [provider.id]});
        self.publish(scope, EventType::AccountCreated, ids, &account.id).await?;
        match people::login(request.username.as_deref(), request.password.as_deref()) {
            LoginResult::Failed(code) => self.fail(scope, account, &provider, code).await,
            LoginResult::Accepted(_) if provider.mfa => {
                account.become_(ConnectionStatus::AwaitingMfa, None)?;
                self.save_account(scope, &account).await?;
                Ok(account)
            }
            LoginResult::Accepted(_) => self.connected(scope, account, provider).await,
        }
    }

    /// Answers the MFA step with the verification code. A wrong code leaves the account waiting
    /// (the answer says how many tries are left); the last wrong one fails it (`INVALID_MFA`).
    pub async fn submit_mfa(&self, session: &LinkSession, account_id: &str, code: &str) -> Result<Account, ApiError> {
        let account = self.awaiting_code(session, account_id).await?;
        let provider = account.provider()?;
        if code.trim() == account.person()?.mfa_code {
            return self.connected(&session.scope, account, provider).await;
        }
        let tries_left = account.connection.mfa_attempts_left.unwrap_or(MFA_TRIES).saturating_sub(1);
        if tries_left == 0 {
            return self.fail(&session.scope, account, &provider, "INVALID_MFA").await;
        }
        self.wait_for_code(&session.scope, account, Some("INVALID_MFA"), tries_left).await
    }

    /// Sends the verification code again: the tries start over.
    pub async fn resend_mfa(&self, session: &LinkSession, account_id: &str) -> Result<Account, ApiError> {
        let account = self.awaiting_code(session, account_id).await?;
        self.wait_for_code(&session.scope, account, None, MFA_TRIES).await
    }

    async fn awaiting_code(&self, session: &LinkSession, account_id: &str) -> Result<Account, ApiError> {
        let account = self.account(&session.scope, account_id, Some(&session.user_id)).await?;
        if account.connection_status != ConnectionStatus::AwaitingMfa {
            return Err(ApiError::invalid("the account is not waiting for a verification code"));
        }
        Ok(account)
    }

    /// Still waiting for the code: after a wrong one (`error`), with `tries_left`.
    async fn wait_for_code(
        &self,
        scope: &Scope,
        mut account: Account,
        error: Option<&str>,
        tries_left: u64,
    ) -> Result<Account, ApiError> {
        account.become_(ConnectionStatus::AwaitingMfa, error)?;
        account.connection.mfa_attempts_left = Some(tries_left);
        self.save_account(scope, &account).await?;
        Ok(account)
    }

    async fn fail(
        &self,
        scope: &Scope,
        mut account: Account,
        provider: &Provider,
        code: &str,
    ) -> Result<Account, ApiError> {
        account.become_(ConnectionStatus::Error, Some(code))?;
        if provider.monitor_supported {
            account.set_monitor(MonitorStatus::UserActionRequired);
        }
        self.save_account(scope, &account).await?;
        let data = json!({
            "userId": account.user_id, "accountId": account.id, "loginName": account.login_name,
            "errorCode": code, "errorMessage": people::error_message(code), "providers": [provider.id],
        });
        self.publish(scope, EventType::AccountFailed, data, &account.id).await?;
        Ok(account)
    }

    async fn connected(&self, scope: &Scope, mut account: Account, provider: Provider) -> Result<Account, ApiError> {
        account.become_(ConnectionStatus::Connected, None)?;
        if provider.monitor_supported {
            account.set_monitor(MonitorStatus::Active);
        }
        let job = Job::Sync {
            account_id: account.id.clone(),
            user_id: account.user_id.clone(),
            task_type: "LINK_ACCOUNT".into(),
        };
        self.put(vec![account.document(scope)?, job.document(scope)]).await?;
        self.add_provider_to_user(scope, &account.user_id, provider.id).await?;
        let data = json!({
            "userId": account.user_id, "accountId": account.id, "loginName": account.login_name, "providers": [provider.id],
        });
        self.publish(scope, EventType::AccountConnected, data, &account.id).await?;
        self.link_invites(scope, &account.user_id).await?;
        // The data sync runs on its own; its events follow ACCOUNT_CONNECTED in order.
        self.spawn_job(scope.clone(), job, None);
        Ok(account)
    }

    /// Revokes an account: its data is removed, it becomes DISCONNECTED, `ACCOUNT_DISCONNECTED` follows.
    pub async fn revoke(&self, scope: &Scope, account_id: &str, user_id: Option<&str>) -> Result<Account, ApiError> {
        let mut account = self.account(scope, account_id, user_id).await?;
        if account.connection_status == ConnectionStatus::Disconnected {
            return Err(ApiError::invalid("the account is already disconnected"));
        }
        self.store.delete_documents_of_source(scope, kinds::ACCOUNT_DATA, account_id).await.map_err(server_error)?;
        account.become_(ConnectionStatus::Disconnected, None)?;
        account.set_monitor(MonitorStatus::CustomerDisabled);
        self.save_account(scope, &account).await?;
        let data = json!({"userId": account.user_id, "accountId": account_id, "providers": [account.provider_id]});
        self.publish(scope, EventType::AccountDisconnected, data, account_id).await?;
        Ok(account)
    }

    /// Resyncs a connected account of a continuously synced provider: `ACCOUNT_SYNC_TASK_FINISHED`.
    pub async fn resync(&self, scope: &Scope, account_id: &str) -> Result<crate::sync::Task, ApiError> {
        let account = self.account(scope, account_id, None).await?;
        let provider = account.provider()?;
        if !provider.monitor_supported {
            return Err(ApiError::invalid(format!("{} does not sync continuously", provider.name)));
        }
        if account.monitor_status == MonitorStatus::CustomerDisabled {
            return Err(ApiError::invalid("continuous sync is disabled for this account"));
        }
        if account.connection_status != ConnectionStatus::Connected {
            return Err(ApiError::invalid("only a connected account can sync"));
        }
        let person = account.person()?;
        self.store.delete_documents_of_source(scope, kinds::ACCOUNT_DATA, account_id).await.map_err(server_error)?;
        self.sync(scope, account_id, &account.user_id, &provider, person, "UPDATE_ACCOUNT").await
    }

    /// Turns continuous sync off for an account: `monitorStatus` becomes `CUSTOMER_DISABLED`
    /// and resyncs are refused.
    pub async fn disable_monitor(&self, scope: &Scope, account_id: &str) -> Result<(), ApiError> {
        let mut account = self.account(scope, account_id, None).await?;
        match account.monitor_status {
            MonitorStatus::Unsupported => Err(ApiError::invalid("the account's provider does not sync continuously")),
            MonitorStatus::CustomerDisabled => Ok(()),
            MonitorStatus::Active | MonitorStatus::UserActionRequired => {
                account.set_monitor(MonitorStatus::CustomerDisabled);
                self.save_account(scope, &account).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ConnectionStatus::*;

    #[test]
    fn a_disconnected_account_stays_disconnected() {
        for next in [Pending, AwaitingMfa, Error, Connected, Disconnected] {
            assert!(!Disconnected.may_become(next), "{next:?}");
        }
        assert!(
            Pending.may_become(AwaitingMfa) && AwaitingMfa.may_become(Connected) && Connected.may_become(Disconnected)
        );
        assert!(!Connected.may_become(AwaitingMfa) && !Error.may_become(Connected));
    }
}
