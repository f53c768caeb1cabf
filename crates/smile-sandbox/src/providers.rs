//! The sandbox provider catalog: every provider type, with and without MFA, with other
//! login options, continuous sync, and a source that only takes uploads.

use serde::Serialize;

/// How a user may identify themselves at a provider.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LoginOption {
    Email,
    Phone,
    SsNumber,
}

/// A provider, as `GET /v1/providers` shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Provider {
    pub id: &'static str,
    pub name: &'static str,
    pub long_name: &'static str,
    pub logo_url: String,
    #[serde(rename = "type")]
    pub provider_type: &'static str,
    pub type_label: &'static str,
    pub sub_type: &'static str,
    pub sub_type_label: &'static str,
    pub active: bool,
    pub enabled: bool,
    pub mfa: bool,
    pub account_connection: bool,
    pub supported: Vec<&'static str>,
    pub monitor_supported: bool,
    /// Ours: the ways to log in besides the first (the widget's login options page).
    pub login_options: Vec<LoginOption>,
}

struct Entry {
    id: &'static str,
    name: &'static str,
    long_name: &'static str,
    kind: (&'static str, &'static str),
    sub: (&'static str, &'static str),
    mfa: bool,
    connects: bool,
    supported: &'static [&'static str],
    monitor: bool,
    logins: &'static [LoginOption],
}

const GIG: (&str, &str) = ("GIG", "Gig Platform");
const GOVERNMENT: (&str, &str) = ("GOVERNMENT", "Govt Service");
const SYSTEM: (&str, &str) = ("SYSTEM", "System");
const EMPLOYER: (&str, &str) = ("EMPLOYER", "Employer");
const CREDENTIAL: (&str, &str) = ("CREDENTIAL", "Credential");

use LoginOption::{Email, Phone, SsNumber};

const CATALOG: &[Entry] = &[
    Entry {
        id: "sss",
        name: "SSS",
        long_name: "Social Security System (Philippines)",
        kind: GOVERNMENT,
        sub: ("INSURANCE", "Social Insurance"),
        mfa: false,
        connects: true,
        supported: &["IDENTITIES", "EMPLOYMENTS", "CONTRIBUTIONS"],
        monitor: true,
        logins: &[Email, SsNumber],
    },
    Entry {
        id: "philhealth",
        name: "PhilHealth",
        long_name: "Philippine Health Insurance Corporation",
        kind: GOVERNMENT,
        sub: ("INSURANCE", "Social Insurance"),
        mfa: true,
        connects: true,
        supported: &["IDENTITIES", "CONTRIBUTIONS"],
        monitor: true,
        logins: &[Email],
    },
    Entry {
        id: "pagibig",
        name: "Pag-IBIG",
        long_name: "Home Development Mutual Fund",
        kind: GOVERNMENT,
        sub: ("INSURANCE", "Social Insurance"),
        mfa: false,
        connects: true,
        supported: &["IDENTITIES", "EMPLOYMENTS", "CONTRIBUTIONS"],
        monitor: true,
        logins: &[Email, Phone],
    },
    Entry {
        id: "grab",
        name: "Grab",
        long_name: "Grab Holdings Inc.",
        kind: GIG,
        sub: ("TRANSPORTATION", "Transport and Delivery"),
        mfa: true,
        connects: true,
        supported: &["IDENTITIES", "INCOMES", "EINCOMES", "RATINGS", "TRANSACTIONS"],
        monitor: false,
        logins: &[Phone, Email],
    },
    Entry {
        id: "upwork",
        name: "Upwork",
        long_name: "Upwork Global Inc.",
        kind: GIG,
        sub: ("SERVICES", "Professional Services"),
        mfa: true,
        connects: true,
        supported: &["IDENTITIES", "EMPLOYMENTS", "INCOMES", "RATINGS", "TRANSACTIONS"],
        monitor: false,
        logins: &[Email],
    },
    Entry {
        id: "lazada",
        name: "Lazada",
        long_name: "Lazada Group",
        kind: GIG,
        sub: ("TRADING", "Online Selling"),
        mfa: false,
        connects: true,
        supported: &["IDENTITIES", "INCOMES", "TRANSACTIONS", "LINK"],
        monitor: false,
        logins: &[Email, Phone],
    },
    Entry {
        id: "abccorp",
        name: "ABC Corporation",
        long_name: "ABC Corporation Philippines",
        kind: EMPLOYER,
        sub: ("ISIC-C", "Manufacturing"),
        mfa: false,
        connects: true,
        supported: &["IDENTITIES", "EMPLOYMENTS", "INCOMES"],
        monitor: false,
        logins: &[Email],
    },
    Entry {
        id: "xyzbank",
        name: "XYZ Bank",
        long_name: "XYZ Bank Singapore",
        kind: EMPLOYER,
        sub: ("ISIC-K", "Financial and insurance activities"),
        mfa: true,
        connects: true,
        supported: &["IDENTITIES", "EMPLOYMENTS", "INCOMES", "LIABILITIES"],
        monitor: false,
        logins: &[Email],
    },
    Entry {
        id: "sprout",
        name: "Sprout Payroll",
        long_name: "Sprout Solutions Payroll",
        kind: SYSTEM,
        sub: ("PAYROLL", "Payroll System"),
        mfa: false,
        connects: true,
        supported: &["IDENTITIES", "EMPLOYMENTS", "INCOMES"],
        monitor: false,
        logins: &[Email, Phone],
    },
    Entry {
        id: "bamboohr",
        name: "BambooHR",
        long_name: "BambooHR LLC",
        kind: SYSTEM,
        sub: ("HRIS", "Human Resource Information System"),
        mfa: true,
        connects: true,
        supported: &["IDENTITIES", "EMPLOYMENTS"],
        monitor: false,
        logins: &[Email],
    },
    Entry {
        id: "nbi_ph",
        name: "NBI Clearance",
        long_name: "National Bureau of Investigation (Philippines)",
        kind: CREDENTIAL,
        sub: ("IDENTIFICATION", "Identification"),
        mfa: false,
        connects: true,
        supported: &["IDENTITIES", "DOCUMENTS"],
        monitor: false,
        logins: &[Email],
    },
    Entry {
        id: "user-provided",
        name: "Upload documents",
        long_name: "Documents uploaded by the user",
        kind: CREDENTIAL,
        sub: ("IDENTIFICATION", "Identification"),
        mfa: false,
        connects: false,
        supported: &["IDENTITIES", "EMPLOYMENTS", "INCOMES"],
        monitor: false,
        logins: &[],
    },
];

fn build(e: &Entry) -> Provider {
    Provider {
        id: e.id,
        name: e.name,
        long_name: e.long_name,
        logo_url: format!("/assets/providers/{}.svg", e.id),
        provider_type: e.kind.0,
        type_label: e.kind.1,
        sub_type: e.sub.0,
        sub_type_label: e.sub.1,
        active: true,
        enabled: true,
        mfa: e.mfa,
        account_connection: e.connects,
        supported: e.supported.to_vec(),
        monitor_supported: e.monitor,
        login_options: e.logins.to_vec(),
    }
}

/// Every sandbox provider, in catalog order.
pub fn all() -> Vec<Provider> {
    CATALOG.iter().map(build).collect()
}

/// The provider with this id.
pub fn find(id: &str) -> Option<Provider> {
    CATALOG.iter().find(|e| e.id == id).map(build)
}

/// A logo that needs no other host: the provider's initials on a colour of its own.
pub fn logo_svg(id: &str) -> Option<String> {
    let p = find(id)?;
    let initials: String = p.name.split_whitespace().filter_map(|w| w.chars().next()).take(2).collect();
    let hue = p.id.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b))) % 360;
    Some(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"64\" height=\"64\" viewBox=\"0 0 64 64\">\
         <rect width=\"64\" height=\"64\" rx=\"14\" fill=\"hsl({hue},55%,42%)\"/>\
         <text x=\"32\" y=\"40\" style=\"font:700 22px sans-serif\" fill=\"#fff\" text-anchor=\"middle\">{initials}</text></svg>"
    ))
}
