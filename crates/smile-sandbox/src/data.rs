//! Deterministic synthetic data: the same person at the same provider always yields the same
//! records (only ids and timestamps are new). Each record is a type shaped as Smile's spec
//! has it.

use crate::people::Person;
use crate::providers::Provider;
use serde::Serialize;
use serde_json::{Map, Value, json};
use smile_core::ids;

/// Where a record came from, as each record's (and a task's) `metadata` says.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub created_at: String,
    pub item_created_at: String,
    pub source_id: String,
    /// `ACCOUNT` or `ARCHIVE`.
    pub source_type: &'static str,
    pub user_id: String,
    pub provider_id: String,
}

impl Metadata {
    /// Records read from an archive now.
    pub fn of_archive(archive_id: &str, user_id: &str, now: &str) -> Metadata {
        Metadata {
            created_at: now.to_owned(),
            item_created_at: now.to_owned(),
            source_id: archive_id.to_owned(),
            source_type: "ARCHIVE",
            user_id: user_id.to_owned(),
            provider_id: "user-provided".to_owned(),
        }
    }
}

/// A record kept under its own `id`.
pub trait Record: Serialize {
    fn id(&self) -> &str;
}

macro_rules! records {
    ($($record:ident),* $(,)?) => {
        $(impl Record for $record {
            fn id(&self) -> &str {
                &self.id
            }
        })*
    };
}

records!(
    Identity,
    Employment,
    Income,
    Contribution,
    Rating,
    Transaction,
    ProviderDocument,
    Eincome,
    Insight,
    Liability,
    Link
);

/// An e-mail address of an identity.
#[derive(Debug, Clone, Serialize)]
pub struct Email {
    pub address: &'static str,
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// A phone number of an identity.
#[derive(Debug, Clone, Serialize)]
pub struct Phone {
    pub number: &'static str,
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// A postal address of an identity.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    pub full_address: String,
    pub line1: &'static str,
    pub city: &'static str,
    pub country: &'static str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub tags: Vec<&'static str>,
}

/// Who the person is, as a provider knows them.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    pub id: String,
    pub full_name: String,
    pub first_name: &'static str,
    pub middle_name: Option<&'static str>,
    pub last_name: &'static str,
    pub suffix: Option<&'static str>,
    pub gender: &'static str,
    pub dob: &'static str,
    pub marital_status: &'static str,
    pub country_residence: &'static str,
    pub citizenship: &'static str,
    pub photo_url: Option<String>,
    pub reference_id: Option<&'static str>,
    pub profile_url: Option<String>,
    pub latest_employer_name: &'static str,
    pub emails: Vec<Email>,
    pub phones: Vec<Phone>,
    pub social_profiles: Vec<Value>,
    pub addresses: Vec<Address>,
    pub metadata: Metadata,
}

/// A job the person holds or held.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Employment {
    pub id: String,
    pub name: &'static str,
    pub description: Option<&'static str>,
    pub job_title: &'static str,
    pub department: &'static str,
    pub employee_number: Option<String>,
    pub employer_number: Option<String>,
    pub employer: String,
    pub status: &'static str,
    pub start_date: &'static str,
    pub end_date: Option<&'static str>,
    pub reported_date: Option<&'static str>,
    pub metadata: Metadata,
}

/// Pay for one period.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Income {
    pub id: String,
    pub work_item: Option<String>,
    pub employer: String,
    pub start_date: String,
    pub end_date: String,
    pub payment_method: &'static str,
    pub currency: &'static str,
    pub frequency: &'static str,
    pub base_amount: f64,
    pub gross_amount: f64,
    pub net_amount: f64,
    pub metadata: Metadata,
}

/// A social security or health contribution.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Contribution {
    pub id: String,
    pub date: String,
    pub currency: &'static str,
    pub amount: f64,
    pub reference_id: String,
    pub metadata: Metadata,
}

/// How the person is rated at a gig platform.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rating {
    pub id: String,
    pub current_rating: f64,
    pub max_rating: f64,
    pub calculated_percentage: f64,
    pub reviews_received: u32,
    pub likes_received: Option<u32>,
    pub jobs_completed: u32,
    pub metadata: Metadata,
}

/// A payout or payment.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Transaction {
    pub id: String,
    pub date: String,
    pub currency: &'static str,
    pub amount: f64,
    pub description: String,
    pub metadata: Metadata,
}

/// A document a provider issued (a clearance), as `GET /v1/documents` lists it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderDocument {
    pub id: String,
    pub name: String,
    pub doc_id: String,
    pub status: &'static str,
    pub document_type: &'static str,
    pub issue_date: &'static str,
    pub expiry_date: &'static str,
    pub file_url: Option<String>,
    pub remarks: Option<String>,
    pub metadata: Metadata,
}

/// An estimated income for one month.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Eincome {
    pub id: String,
    pub month: String,
    pub currency: &'static str,
    pub base_amount: f64,
    pub amount: f64,
    pub metadata: Metadata,
}

/// Features computed from the incomes, named as Smile's insights name them.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Insight {
    pub id: String,
    pub cutoff_time: String,
    pub features: Map<String, Value>,
    pub metadata: Metadata,
}

/// A loan being paid off.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Liability {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub reference_id: String,
    pub start_date: &'static str,
    pub end_date: &'static str,
    pub first_amortization_date: &'static str,
    pub amortization_frequency: &'static str,
    pub currency: &'static str,
    pub loan_amount: f64,
    pub amortization_amount: f64,
    pub outstanding_balance: f64,
    pub next_payment_amount: f64,
    pub overdue_payment_amount: f64,
    pub metadata: Metadata,
}

/// How often an account was linked.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Link {
    pub id: String,
    pub start_date: &'static str,
    pub end_date: String,
    pub records: Vec<LinkRecord>,
    pub metadata: Metadata,
}

/// Links in a period: how many, and when.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkRecord {
    pub count: u32,
    pub linked_at: Vec<String>,
}

/// Everything one sync of an account adds.
#[derive(Debug, Default)]
pub struct SyncedData {
    pub identity: Option<Identity>,
    pub employments: Vec<Employment>,
    pub incomes: Vec<Income>,
    pub contributions: Vec<Contribution>,
    pub rating: Option<Rating>,
    pub transactions: Vec<Transaction>,
    pub documents: Vec<ProviderDocument>,
    pub eincomes: Vec<Eincome>,
    pub liabilities: Vec<Liability>,
    /// How often the account was linked, at providers that keep that.
    pub link: Option<Link>,
    /// Computed from the incomes once they are in.
    pub insight: Option<Insight>,
}

/// Where the records came from, as each record's `metadata` says.
pub struct Source<'a> {
    pub account_id: &'a str,
    pub user_id: &'a str,
    pub provider: &'a Provider,
    pub now: &'a str,
}

impl Source<'_> {
    pub fn metadata(&self) -> Metadata {
        Metadata {
            created_at: self.now.to_owned(),
            item_created_at: self.now.to_owned(),
            source_id: self.account_id.to_owned(),
            source_type: "ACCOUNT",
            user_id: self.user_id.to_owned(),
            provider_id: self.provider.id.to_owned(),
        }
    }
}

/// The twelve months of 2025, as the sandbox's fixed pay history.
fn months() -> impl Iterator<Item = u32> {
    1..=12u32
}

fn last_day(month: u32) -> u32 {
    match month {
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn last_digits(text: &str, n: usize) -> &str {
    &text[text.len().saturating_sub(n)..]
}

/// The records `person` has at `source.provider`, for the datapoints it supports.
pub fn generate(person: &Person, source: &Source) -> SyncedData {
    let p = source.provider;
    let supports = |d: &str| p.supported.contains(&d);
    let employer = if p.provider_type == "EMPLOYER" { p.long_name } else { "ABC Corporation" };
    let pay = f64::from(person.monthly_pay);
    let mut data = SyncedData::default();
    if supports("IDENTITIES") {
        data.identity = Some(identity(person, source));
    }
    if supports("EMPLOYMENTS") {
        data.employments = employments(person, employer, source);
    }
    if supports("INCOMES") {
        data.incomes = months()
            .map(|m| {
                let gross = round2(pay * (1.0 + f64::from(m % 3) * 0.02));
                Income {
                    id: ids::new_id("inc-"),
                    work_item: None,
                    employer: employer.to_owned(),
                    start_date: format!("2025-{m:02}-01"),
                    end_date: format!("2025-{m:02}-{:02}", last_day(m)),
                    payment_method: "Bank",
                    currency: person.currency,
                    frequency: "Monthly",
                    base_amount: round2(pay),
                    gross_amount: gross,
                    net_amount: round2(gross * 0.82),
                    metadata: source.metadata(),
                }
            })
            .collect();
    }
    if supports("CONTRIBUTIONS") {
        data.contributions = (2024..=2025)
            .flat_map(|y| months().map(move |m| (y, m)))
            .map(|(y, m)| Contribution {
                id: ids::new_id("con-"),
                date: format!("{y}-{m:02}-{:02}", last_day(m)),
                currency: person.currency,
                amount: round2(pay * 0.045),
                reference_id: format!("PR{y}{m:02}{}", last_digits(person.phone, 4)),
                metadata: source.metadata(),
            })
            .collect();
    }
    if supports("RATINGS") {
        data.rating = Some(Rating {
            id: ids::new_id("r-"),
            current_rating: 4.8,
            max_rating: 5.0,
            calculated_percentage: 96.0,
            reviews_received: 327,
            likes_received: None,
            jobs_completed: 1_204,
            metadata: source.metadata(),
        });
    }
    if supports("DOCUMENTS") {
        data.documents = vec![ProviderDocument {
            id: ids::new_id("d-"),
            name: format!("{} clearance", p.name),
            doc_id: format!("CLR-{}", last_digits(person.phone, 6)),
            status: "Valid",
            document_type: "CLEARANCE",
            issue_date: "2025-06-30",
            expiry_date: "2026-06-30",
            file_url: None,
            remarks: None,
            metadata: source.metadata(),
        }];
    }
    if supports("EINCOMES") {
        data.eincomes = months()
            .map(|m| Eincome {
                id: ids::new_id("einc-"),
                month: format!("2025-{m:02}"),
                currency: person.currency,
                base_amount: pay,
                amount: round2(pay * (0.9 + f64::from(m % 4) * 0.05)),
                metadata: source.metadata(),
            })
            .collect();
    }
    if supports("LIABILITIES") {
        data.liabilities = vec![liability(person, source)];
    }
    if supports("LINK") {
        data.link = Some(Link {
            id: ids::new_id("lnk-"),
            start_date: "2025-01-01T00:00:00Z",
            end_date: source.now.to_owned(),
            records: vec![LinkRecord {
                count: 2,
                linked_at: vec!["2025-03-14T08:15:00Z".into(), source.now.to_owned()],
            }],
            metadata: source.metadata(),
        });
    }
    if !data.incomes.is_empty() {
        data.insight = Some(insight(&data.incomes, source));
    }
    if supports("TRANSACTIONS") {
        data.transactions = (1..=30u32)
            .map(|d| Transaction {
                id: ids::new_id("t-"),
                date: format!("2025-11-{d:02}"),
                currency: person.currency,
                amount: round2(pay / 30.0 * (0.8 + f64::from(d % 5) * 0.1)),
                description: format!("{} payout", p.name),
                metadata: source.metadata(),
            })
            .collect();
    }
    data
}

/// Features of the incomes, as Smile's insights name them: counts and amount statistics
/// over all months and the last 3, 6, 9 and 12.
fn insight(incomes: &[Income], source: &Source) -> Insight {
    let amounts: Vec<f64> = incomes.iter().map(|i| i.gross_amount).collect();
    let mut features = Map::new();
    features.insert("incomes_count".into(), json!(amounts.len()));
    features.insert("incomes_first_income_month_range".into(), json!(amounts.len()));
    features.insert("incomes_missing_month_max".into(), json!(0));
    features.insert("incomes_missing_month_count".into(), json!(0));
    let mut window = |prefix: &str, values: &[f64]| {
        let n = values.len().max(1) as f64;
        let mean = values.iter().sum::<f64>() / n;
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let median = match sorted.len() {
            0 => 0.0,
            l if l % 2 == 1 => sorted[l / 2],
            l => (sorted[l / 2 - 1] + sorted[l / 2]) / 2.0,
        };
        let std = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
        for (name, value) in [
            ("sum", values.iter().sum::<f64>()),
            ("average", mean),
            ("min", sorted.first().copied().unwrap_or(0.0)),
            ("max", sorted.last().copied().unwrap_or(0.0)),
            ("median", median),
            ("std", std),
        ] {
            features.insert(format!("{prefix}_amount_{name}"), json!(round2(value)));
        }
    };
    window("incomes", &amounts);
    for months in [3, 6, 9, 12] {
        window(&format!("incomes_last{months}_months"), &amounts[amounts.len().saturating_sub(months)..]);
    }
    Insight { id: ids::new_id("ins-"), cutoff_time: source.now.to_owned(), features, metadata: source.metadata() }
}

/// A personal loan of a year's pay over three years, eleven payments in.
fn liability(person: &Person, source: &Source) -> Liability {
    let loan = f64::from(person.monthly_pay) * 12.0;
    let payment = round2(loan / 36.0 * 1.12);
    Liability {
        id: ids::new_id("lia-"),
        kind: "Personal Loan",
        reference_id: format!("PL-{}", last_digits(person.phone, 6)),
        start_date: "2025-01-15",
        end_date: "2027-12-15",
        first_amortization_date: "2025-02-15",
        amortization_frequency: "Monthly",
        currency: person.currency,
        loan_amount: loan,
        amortization_amount: payment,
        outstanding_balance: round2(payment * 25.0),
        next_payment_amount: payment,
        overdue_payment_amount: 0.0,
        metadata: source.metadata(),
    }
}

/// The income a sample payslip of `month` (`yyyy-MM`) shows.
pub fn payslip_income(person: &Person, month: &str, metadata: Metadata) -> Income {
    let m: u32 = month.get(5..7).and_then(|m| m.parse().ok()).unwrap_or(1);
    let gross = round2(f64::from(person.monthly_pay) * 1.04);
    Income {
        id: ids::new_id("inc-"),
        work_item: None,
        employer: "ABC Corporation".into(),
        start_date: format!("{month}-01"),
        end_date: format!("{month}-{:02}", last_day(m)),
        payment_method: "Bank",
        currency: person.currency,
        frequency: "Monthly",
        base_amount: f64::from(person.monthly_pay),
        gross_amount: gross,
        net_amount: round2(gross * 0.82),
        metadata,
    }
}

/// What reading a sample payslip of `month` (`yyyy-MM`) finds: an archive's `analysis`, and
/// the prediction the payslip endpoints answer.
pub fn payslip_analysis(person: &Person, month: &str) -> Map<String, Value> {
    let income = payslip_income(person, month, Metadata::of_archive("", "", ""));
    let analysis = json!({
        "startDate": income.start_date, "endDate": income.end_date, "payDate": income.end_date,
        "currency": income.currency, "grossAmount": income.gross_amount, "netAmount": income.net_amount,
        "baseAmount": income.base_amount, "employerName": income.employer, "employeeName": person.full_name(),
        "ssNumber": person.ss_number,
    });
    analysis.as_object().cloned().unwrap_or_default()
}

/// The employment a sample payslip shows.
pub fn payslip_employment(person: &Person, metadata: Metadata) -> Employment {
    Employment {
        end_date: None,
        reported_date: None,
        description: None,
        employer: "ABC Corporation".into(),
        ..current_job(person, metadata)
    }
}

fn current_job(person: &Person, metadata: Metadata) -> Employment {
    Employment {
        id: ids::new_id("e-"),
        name: "Operations",
        description: Some("Runs day-to-day operations."),
        job_title: "Operations Associate",
        department: "Operations",
        employee_number: Some(format!("EMP-{}", last_digits(person.phone, 6))),
        employer_number: None,
        employer: String::new(),
        status: "Permanent",
        start_date: "2019-09-01",
        end_date: None,
        reported_date: Some("2025-12-31"),
        metadata,
    }
}

fn identity(person: &Person, source: &Source) -> Identity {
    let present = |text: &'static str| (!text.is_empty()).then_some(text);
    Identity {
        id: ids::new_id("i-"),
        full_name: person.full_name(),
        first_name: person.first_name,
        middle_name: present(person.middle_name),
        last_name: person.last_name,
        suffix: present(person.suffix),
        gender: person.gender,
        dob: person.dob,
        marital_status: person.marital_status,
        country_residence: person.country,
        citizenship: "Citizen",
        photo_url: None,
        reference_id: present(person.ss_number),
        profile_url: None,
        latest_employer_name: "ABC Corporation",
        emails: vec![Email { address: person.email, kind: "Primary" }],
        phones: vec![Phone { number: person.phone, kind: "Mobile" }],
        social_profiles: Vec::new(),
        addresses: vec![Address {
            full_address: format!("12 Mabini Street, {}, {}", person.city, person.country),
            line1: "12 Mabini Street",
            city: person.city,
            country: person.country,
            kind: "Primary",
            tags: vec!["Home"],
        }],
        metadata: source.metadata(),
    }
}

fn employments(person: &Person, employer: &str, source: &Source) -> Vec<Employment> {
    let current = Employment { employer: employer.to_owned(), ..current_job(person, source.metadata()) };
    let previous = Employment {
        id: ids::new_id("e-"),
        name: "Customer Support",
        description: Some("Answered customers by phone and chat."),
        job_title: "Support Specialist",
        department: "Customer Care",
        employee_number: None,
        employer_number: None,
        employer: "Sunrise Retail Inc.".into(),
        status: "Contractual",
        start_date: "2015-02-16",
        end_date: Some("2019-08-15"),
        reported_date: Some("2019-08-31"),
        metadata: source.metadata(),
    };
    if source.provider.provider_type == "GOVERNMENT" { vec![current, previous] } else { vec![current] }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{people, providers};

    #[test]
    fn the_same_person_at_the_same_provider_gets_the_same_records() {
        let provider = providers::find("sss").expect("sss");
        let source = Source { account_id: "a-1", user_id: "t-u", provider: &provider, now: "2026-01-01T00:00:00Z" };
        let (a, b) = (generate(&people::PEOPLE[0], &source), generate(&people::PEOPLE[0], &source));
        let strip = |v: &Contribution| {
            let mut v = serde_json::to_value(v).expect("json");
            v.as_object_mut().expect("object").remove("id");
            v
        };
        assert_eq!(a.contributions.len(), 24);
        assert_eq!(a.employments.len(), 2);
        assert!(a.incomes.is_empty(), "SSS has no incomes");
        assert_eq!(strip(&a.contributions[5]), strip(&b.contributions[5]));
        assert_eq!(a.identity.as_ref().map(|i| i.full_name.as_str()), Some("George Cimafranca Palomero Jr."));
    }
}
