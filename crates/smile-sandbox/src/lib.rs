//! The sandbox platform: the things that happen to users, accounts and data, each publishing
//! the webhook events the Smile contract documents.
//!
//! - [`providers`]: the sandbox provider catalog.
//! - [`people`]: the documented test users, and how to simulate each account error.
//! - [`archives`]: uploaded documents: file types, content sniffing, the sample payslips.
//! - [`data`]: deterministic synthetic identities, employments, incomes, contributions, …
//!
//! [`Platform`] is the handle every flow hangs off, one module per job:
//! - `users`: users, their link tokens, employer surveys;
//! - `accounts`: connecting an account (credentials, MFA), the [`Account`] state machine,
//!   revoking, resyncing, continuous sync off;
//! - `sync`: a data sync's [`Task`], its records and `*_ADDED` events;
//! - `uploads`: archives: files checked and stored, their analysis, deletion;
//! - `invites`: invites, their outbox, and linking;
//! - `templates`: consent and invite templates;
//! - `payload`: an account's or a session's records in one answer, session resets, exports;
//! - `predictions`: classification and the payslip predictions;
//! - `platform`: the handle itself, and work that outlives its request (kept as a document
//!   until done, so a crash does not lose it).

pub mod archives;
pub mod data;
pub mod people;
pub mod providers;

mod accounts;
mod invites;
mod payload;
mod platform;
mod predictions;
mod sync;
mod templates;
mod uploads;
mod users;

pub use accounts::{Account, ConnectRequest, ConnectionStatus, MFA_TRIES, MonitorStatus};
pub use invites::{Invite, InviteLog, InviteRequest, InviteStatus, OutboxMessage};
pub use payload::{AccountExport, AccountPayload, ExportFormat, UserPayload};
pub use platform::{LinkSession, Platform, kinds};
pub use predictions::ManualResult;
pub use sync::Task;
pub use templates::{ConsentTemplate, ConsentTemplateRequest, InviteTemplate, InviteTemplateRequest};
pub use uploads::{Archive, ArchiveState, ArchiveStatus, Classification, RawFile, UploadFile};
pub use users::{EmployerSurvey, Token, User};
