//! The sandbox platform: the things that happen to users, accounts and data, each publishing
//! the webhook events the Smile contract documents.
//!
//! - [`providers`]: the sandbox provider catalog.
//! - [`people`]: the documented test users, and how to simulate each account error.
//! - [`archives`]: uploaded documents: file types, content sniffing, the sample payslips.
//! - [`data`]: deterministic synthetic identities, employments, incomes, contributions, …
//! - [`Platform`]: users and link tokens, account connection (credentials, MFA), data sync
//!   tasks, revocation, continuous sync.

pub mod archives;
pub mod data;
pub mod people;
pub mod providers;

mod payload;
mod platform;
mod predictions;
mod templates;

pub use payload::{AccountExport, AccountPayload, ExportFormat, UserPayload};
pub use platform::{ConnectRequest, InviteRequest, LinkSession, Platform, UploadFile, kinds};
pub use predictions::ManualResult;
pub use templates::{ConsentTemplate, ConsentTemplateRequest, InviteTemplate, InviteTemplateRequest};
