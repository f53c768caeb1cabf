//! The event catalog: every event type of the Smile contract, its `data` shape as a Rust
//! type, a JSON Schema derived from that type, and validation of published data against it.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// What a catalog entry tells an integrator about one event type.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventTypeInfo {
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub description: &'static str,
    pub deprecated: bool,
    /// Whether `includePayload` subscriptions get the datapoint payload in this event.
    pub carries_payload: bool,
    /// What makes the sandbox send it.
    pub produced_by: &'static str,
    pub schema: Value,
}

macro_rules! catalog {
    ($( $variant:ident = $name:literal : $data:ty, deprecated = $deprecated:literal, $desc:literal; )*) => {
        /// An event type of the catalog.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventType { $($variant),* }

        impl EventType {
            /// Every event type, in catalog order.
            pub const ALL: &'static [EventType] = &[$(EventType::$variant),*];

            /// The wire spelling, e.g. `ACCOUNT_CONNECTED`.
            pub fn as_str(self) -> &'static str {
                match self { $(EventType::$variant => $name),* }
            }

            /// The event type spelled `name`, if the catalog has it.
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $($name => Some(EventType::$variant),)* _ => None }
            }

            /// When this event fires, in one sentence.
            pub fn description(self) -> &'static str {
                match self { $(EventType::$variant => $desc),* }
            }

            /// Whether the contract deprecates this type (the `*_UPDATED` family).
            pub fn deprecated(self) -> bool {
                match self { $(EventType::$variant => $deprecated),* }
            }

            /// The JSON Schema of this type's `data`.
            pub fn data_schema(self) -> Value {
                match self {
                    $(EventType::$variant => serde_json::to_value(schemars::schema_for!($data))
                        .unwrap_or(Value::Null)),*
                }
            }

            /// Checks that `data` has this type's shape: required fields present, types right.
            pub fn validate_data(self, data: &Value) -> Result<(), String> {
                match self {
                    $(EventType::$variant => <$data>::deserialize(data)
                        .map(|_| ())
                        .map_err(|e| e.to_string())),*
                }
            }

            /// A well-formed `data` for this type, used by test sends.
            pub fn sample_data(self) -> Value {
                let mut data = match self {
                    $(EventType::$variant => serde_json::to_value(<$data>::default())
                        .unwrap_or(Value::Null)),*
                };
                fill_sample_strings(&mut data);
                data
            }
        }
    };
}

catalog! {
    UserCreated = "USER_CREATED": UserCreatedData, deprecated = false,
        "A user and its link token were created.";
    AccountCreated = "ACCOUNT_CREATED": AccountData, deprecated = false,
        "A user started connecting an account (also for providers that need no login).";
    AccountConnected = "ACCOUNT_CONNECTED": AccountConnectedData, deprecated = false,
        "An account connected successfully.";
    AccountDisconnected = "ACCOUNT_DISCONNECTED": AccountData, deprecated = false,
        "The user revoked an account; its data was removed.";
    AccountFailed = "ACCOUNT_FAILED": AccountFailedData, deprecated = false,
        "Connecting an account failed; errorCode says why.";
    TaskStarted = "TASK_STARTED": TaskStartedData, deprecated = false,
        "A data sync task of an account started.";
    TaskFinished = "TASK_FINISHED": TaskFinishedData, deprecated = false,
        "A data sync task finished; includePayload subscriptions also get the data.";
    AccountSyncTaskFinished = "ACCOUNT_SYNC_TASK_FINISHED": AccountSyncTaskFinishedData, deprecated = false,
        "A continuous-sync (monitored) account finished a resync.";
    ArchiveStarted = "ARCHIVE_STARTED": ArchiveData, deprecated = false,
        "Files were uploaded and their analysis started.";
    ArchiveAnalyzed = "ARCHIVE_ANALYZED": ArchiveData, deprecated = false,
        "An uploaded archive was analysed and turned into data.";
    ArchiveRevoked = "ARCHIVE_REVOKED": ArchiveData, deprecated = false,
        "An archive was deleted.";
    ArchiveFailed = "ARCHIVE_FAILED": ArchiveFailedData, deprecated = false,
        "An archive could not be analysed; errorCode says why.";
    InviteInvited = "INVITE_INVITED": InviteData, deprecated = false,
        "An invite was sent.";
    InviteLinked = "INVITE_LINKED": InviteData, deprecated = false,
        "An invited user connected an account.";
    IdentityAdded = "IDENTITY_ADDED": IdentityAddedData, deprecated = false,
        "Identity data was added.";
    RatingAdded = "RATING_ADDED": RatingAddedData, deprecated = false,
        "Rating data (gig providers) was added.";
    TransactionsAdded = "TRANSACTIONS_ADDED": CountAddedData, deprecated = false,
        "Transactions were added.";
    DocumentsAdded = "DOCUMENTS_ADDED": CountAddedData, deprecated = false,
        "Documents were added.";
    DocumentsUpdated = "DOCUMENTS_UPDATED": IdsUpdatedData, deprecated = true,
        "Documents were updated (deprecated: use ACCOUNT_SYNC_TASK_FINISHED).";
    EmploymentsAdded = "EMPLOYMENTS_ADDED": CountAddedData, deprecated = false,
        "Employments were added.";
    EmploymentsUpdated = "EMPLOYMENTS_UPDATED": IdsUpdatedData, deprecated = true,
        "Employments were updated (deprecated: use ACCOUNT_SYNC_TASK_FINISHED).";
    IncomesAdded = "INCOMES_ADDED": CountAddedData, deprecated = false,
        "Incomes were added.";
    IncomesUpdated = "INCOMES_UPDATED": RangeUpdatedData, deprecated = true,
        "Incomes were updated (deprecated: use ACCOUNT_SYNC_TASK_FINISHED).";
    ContributionsAdded = "CONTRIBUTIONS_ADDED": CountAddedData, deprecated = false,
        "Contributions were added.";
    ContributionsUpdated = "CONTRIBUTIONS_UPDATED": RangeUpdatedData, deprecated = true,
        "Contributions were updated (deprecated: use ACCOUNT_SYNC_TASK_FINISHED).";
    EincomesAdded = "EINCOMES_ADDED": CountAddedData, deprecated = false,
        "Estimated incomes were added.";
    EincomesUpdated = "EINCOMES_UPDATED": RangeUpdatedData, deprecated = true,
        "Estimated incomes were updated (deprecated: use ACCOUNT_SYNC_TASK_FINISHED).";
    LiabilitiesAdded = "LIABILITIES_ADDED": CountAddedData, deprecated = false,
        "Liabilities were added.";
    LiabilitiesUpdated = "LIABILITIES_UPDATED": IdsUpdatedData, deprecated = true,
        "Liabilities were updated (deprecated: use ACCOUNT_SYNC_TASK_FINISHED).";
    InsightAdded = "INSIGHT_ADDED": ItemAddedData, deprecated = false,
        "Insights were computed after an account was linked.";
    LinkAdded = "LINK_ADDED": ItemAddedData, deprecated = false,
        "Link data about a user was added.";
    VerificationStarted = "VERIFICATION_STARTED": VerificationStartedData, deprecated = false,
        "A verification started.";
    VerificationCompleted = "VERIFICATION_COMPLETED": VerificationCompletedData, deprecated = false,
        "A verification completed.";
    RecordCreated = "RECORD_CREATED": RecordCreatedData, deprecated = false,
        "A record (e.g. a social security record request) was created.";
    RecordCompleted = "RECORD_COMPLETED": RecordCompletedData, deprecated = false,
        "A record finished.";
    UserSessionCompleted = "USER_SESSION_COMPLETED": UserSessionCompletedData, deprecated = false,
        "A user session completed.";
    UserSessionReset = "USER_SESSION_RESET": UserSessionResetData, deprecated = false,
        "A user session was reset.";
}

/// The subscription filter that matches every event type.
pub const ALL_EVENTS: &str = "ALL_EVENTS";

impl EventType {
    /// Whether `includePayload` applies to this type.
    pub fn carries_payload(self) -> bool {
        matches!(self, EventType::TaskFinished | EventType::AccountSyncTaskFinished)
    }

    /// What makes the sandbox send this event: a platform flow, or the operator's publish.
    pub fn produced_by(self) -> &'static str {
        use EventType::*;
        const OPERATOR: &str = "operator publish (POST /v1/operator/events); no sandbox flow produces it";
        match self {
            UserCreated => "POST /v1/users, POST /v1/invites, or an upload without a userId",
            AccountCreated => "the widget submits credentials (POST /link/v1/accounts)",
            AccountConnected => "a login succeeds (after the MFA code where the provider asks for one)",
            AccountDisconnected => "DELETE /v1/accounts/{id}, or the user revokes in the widget",
            AccountFailed => "a wrong password or MFA code; fail@smileapi.io with an error code as password",
            TaskStarted | TaskFinished => "the data sync after an account connects",
            AccountSyncTaskFinished => {
                "POST /v1/accounts/{id}/sync on a continuous-sync provider (sss, philhealth, pagibig)"
            }
            ArchiveStarted => "an upload (POST /v1/archives, or the widget)",
            ArchiveAnalyzed => "an upload of a sample payslip (/sandbox/samples/…)",
            ArchiveFailed => "an upload of any other file, or a manual check that finds it is not a payslip",
            ArchiveRevoked => "DELETE /v1/archives/{id}, or the user deletes in the widget",
            InviteInvited => "POST /v1/invites",
            InviteLinked => "an invited user connects an account",
            IdentityAdded | EmploymentsAdded | IncomesAdded | ContributionsAdded => {
                "a data sync (and, for employments and incomes, an analysed payslip)"
            }
            RatingAdded | TransactionsAdded => "a data sync at a gig provider (grab, upwork, lazada)",
            DocumentsAdded => "a data sync at nbi_ph",
            EincomesAdded => "a data sync at grab",
            InsightAdded => "a data sync that adds incomes",
            LinkAdded => "a data sync at lazada",
            LiabilitiesAdded => "a data sync at xyzbank",
            UserSessionReset => "POST /v1/users/{id}/resetSession",
            VerificationStarted
            | VerificationCompleted
            | RecordCreated
            | RecordCompleted
            | UserSessionCompleted
            | DocumentsUpdated
            | EmploymentsUpdated
            | IncomesUpdated
            | ContributionsUpdated
            | EincomesUpdated
            | LiabilitiesUpdated => OPERATOR,
        }
    }

    /// The catalog entry served at `GET /v1/eventTypes`.
    pub fn info(self) -> EventTypeInfo {
        EventTypeInfo {
            event_type: self,
            description: self.description(),
            deprecated: self.deprecated(),
            carries_payload: self.carries_payload(),
            produced_by: self.produced_by(),
            schema: self.data_schema(),
        }
    }
}

impl Serialize for EventType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        EventType::from_name(&name).ok_or_else(|| serde::de::Error::custom(format!("unknown event type `{name}`")))
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Sample strings name their field, so a test event reads as a sample, not as real data.
fn fill_sample_strings(data: &mut Value) {
    if let Value::Object(map) = data {
        for (key, value) in map.iter_mut() {
            match value {
                Value::String(s) if s.is_empty() => *s = format!("sample-{key}"),
                Value::Array(items) if items.is_empty() && key == "providers" => {
                    items.push(Value::String("sample-provider".into()))
                }
                Value::Object(_) => fill_sample_strings(value),
                _ => {}
            }
        }
    }
}

// ---- data shapes -------------------------------------------------------------------------

/// Where a task's data came from.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SourceType {
    #[default]
    Account,
    Upload,
    Archive,
    SocialSecurity,
}

/// How a task ended.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    #[default]
    Succeeded,
    Failed,
}

/// Whether a continuously synced account is still monitored.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MonitorStatus {
    #[default]
    Active,
    UserActionRequired,
    Unsupported,
    CustomerDisabled,
}

/// A kind of data a task can add.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Datapoint {
    Identities,
    Transactions,
    Ratings,
    Employments,
    Documents,
    Incomes,
    Contributions,
    Eincomes,
    Liabilities,
    Link,
    Insights,
}

/// A user session, as `USER_CREATED` and the session events carry it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserSession {
    pub user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_id: Option<String>,
    pub status: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserCreatedData {
    pub user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<UserSession>,
}

/// `ACCOUNT_CREATED`, `ACCOUNT_DISCONNECTED`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountData {
    pub user_id: String,
    pub account_id: String,
    pub providers: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountConnectedData {
    pub user_id: String,
    pub account_id: String,
    pub login_name: String,
    pub providers: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountFailedData {
    pub user_id: String,
    pub account_id: String,
    pub login_name: String,
    pub error_code: String,
    pub error_message: String,
    pub providers: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskStartedData {
    pub user_id: String,
    pub source_id: String,
    pub source_type: SourceType,
    pub task_type: String,
    pub providers: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskFinishedData {
    pub user_id: String,
    pub source_id: String,
    pub source_type: SourceType,
    #[serde(default)]
    pub task_type: Option<String>,
    #[serde(default)]
    pub status: Option<TaskStatus>,
    #[serde(default)]
    pub error_code: Option<String>,
    pub providers: Vec<String>,
    pub datapoints: Vec<Datapoint>,
    /// Present only for subscriptions with `includePayload`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Map<String, Value>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountSyncTaskFinishedData {
    pub user_id: String,
    pub source_id: String,
    pub source_type: SourceType,
    pub providers: Vec<String>,
    pub status: TaskStatus,
    pub monitor_status: MonitorStatus,
    pub datapoints: Vec<Datapoint>,
    /// Present only for subscriptions with `includePayload`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Map<String, Value>>,
}

/// `ARCHIVE_STARTED`, `ARCHIVE_ANALYZED`, `ARCHIVE_REVOKED`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveData {
    pub user_id: String,
    pub archive_id: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveFailedData {
    pub user_id: String,
    pub archive_id: String,
    pub error_code: String,
    pub error_message: String,
}

/// `INVITE_INVITED`, `INVITE_LINKED`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InviteData {
    pub user_id: String,
    pub invite_id: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdentityAddedData {
    pub user_id: String,
    pub account_id: String,
    pub identity_id: String,
    pub providers: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RatingAddedData {
    pub user_id: String,
    pub account_id: String,
    pub rating_id: String,
    pub providers: Vec<String>,
}

/// The `*_ADDED` events that carry a count.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CountAddedData {
    pub user_id: String,
    pub account_id: String,
    pub count: u64,
    pub providers: Vec<String>,
}

/// `INSIGHT_ADDED`, `LINK_ADDED`: one item, named by `id`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemAddedData {
    pub user_id: String,
    pub account_id: String,
    pub id: String,
    pub providers: Vec<String>,
}

/// Deprecated `*_UPDATED` events that name the updated ids.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdsUpdatedData {
    pub user_id: String,
    pub account_id: String,
    pub providers: Vec<String>,
    pub updated_ids: Vec<String>,
    pub count: u64,
    pub updated_at: String,
}

/// Deprecated `*_UPDATED` events that name the updated time range.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RangeUpdatedData {
    pub user_id: String,
    pub account_id: String,
    pub providers: Vec<String>,
    pub count: u64,
    pub updated_from: String,
    pub updated_to: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerificationStartedData {
    pub verification_id: String,
}

/// The outcome of a verification's name matching.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerificationResult {
    pub final_matches: bool,
    pub names: serde_json::Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_data: Option<serde_json::Map<String, Value>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerificationCompletedData {
    pub verification_id: String,
    pub result_code: String,
    #[serde(default)]
    pub result_message: Option<String>,
    pub result: VerificationResult,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordCreatedData {
    pub record_id: String,
    pub record_type: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordCompletedData {
    pub record_id: String,
    pub record_type: String,
    pub status: String,
    #[serde(default)]
    pub result_code: Option<String>,
    #[serde(default)]
    pub result_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Map<String, Value>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserSessionCompletedData {
    pub session: UserSession,
    pub payload: serde_json::Map<String, Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserSessionResetData {
    pub session: UserSession,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_contract_type_is_in_the_catalog() {
        // The spec's RefWebhookEventType, less the ALL_EVENTS filter.
        let spec = "USER_CREATED ACCOUNT_CREATED ACCOUNT_CONNECTED ACCOUNT_DISCONNECTED \
            ACCOUNT_FAILED TASK_STARTED TASK_FINISHED ACCOUNT_SYNC_TASK_FINISHED ARCHIVE_STARTED \
            ARCHIVE_ANALYZED ARCHIVE_REVOKED ARCHIVE_FAILED INVITE_INVITED INVITE_LINKED \
            IDENTITY_ADDED RATING_ADDED TRANSACTIONS_ADDED DOCUMENTS_ADDED DOCUMENTS_UPDATED \
            EMPLOYMENTS_ADDED EMPLOYMENTS_UPDATED INCOMES_ADDED INCOMES_UPDATED \
            CONTRIBUTIONS_ADDED CONTRIBUTIONS_UPDATED EINCOMES_ADDED EINCOMES_UPDATED \
            LIABILITIES_ADDED LIABILITIES_UPDATED INSIGHT_ADDED LINK_ADDED VERIFICATION_STARTED \
            VERIFICATION_COMPLETED RECORD_CREATED RECORD_COMPLETED USER_SESSION_COMPLETED \
            USER_SESSION_RESET";
        let names: Vec<&str> = spec.split_whitespace().collect();
        assert_eq!(names.len(), EventType::ALL.len());
        for name in names {
            let t = EventType::from_name(name).unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(t.as_str(), name);
        }
    }

    #[test]
    fn every_sample_validates_and_has_a_schema() {
        for &t in EventType::ALL {
            t.validate_data(&t.sample_data()).unwrap_or_else(|e| panic!("{t}: {e}"));
            assert!(t.data_schema().get("properties").is_some(), "{t} schema");
        }
    }

    #[test]
    fn validation_rejects_missing_and_mistyped_fields() {
        let t = EventType::AccountFailed;
        let ok = json!({"userId":"u","accountId":"a-1","loginName":"x","errorCode":"INVALID_CREDENTIALS",
            "errorMessage":"m","providers":["p"]});
        assert!(t.validate_data(&ok).is_ok());
        let missing = json!({"userId":"u","accountId":"a-1","providers":["p"]});
        assert!(t.validate_data(&missing).unwrap_err().contains("loginName"));
        let mistyped = json!({"userId":1,"accountId":"a-1","loginName":"x","errorCode":"E",
            "errorMessage":"m","providers":["p"]});
        assert!(t.validate_data(&mistyped).is_err());
        let bad_count = json!({"userId":"u","accountId":"a","count":"3","providers":[]});
        assert!(EventType::IncomesAdded.validate_data(&bad_count).is_err());
    }

    #[test]
    fn schema_names_required_fields() {
        let schema = EventType::AccountConnected.data_schema();
        let required = schema["required"].as_array().expect("required");
        for field in ["userId", "accountId", "loginName", "providers"] {
            assert!(required.iter().any(|r| r == field), "{field}");
        }
    }
}
