//! Deterministic synthetic data: the same person at the same provider always yields the same
//! records (only ids and timestamps are new).

use crate::people::Person;
use crate::providers::Provider;
use serde_json::{Value, json};
use smile_core::ids;

/// Everything one sync of an account adds.
#[derive(Debug, Default)]
pub struct SyncedData {
    pub identity: Option<Value>,
    pub employments: Vec<Value>,
    pub incomes: Vec<Value>,
    pub contributions: Vec<Value>,
    pub rating: Option<Value>,
    pub transactions: Vec<Value>,
    pub documents: Vec<Value>,
    pub eincomes: Vec<Value>,
    pub liabilities: Vec<Value>,
    /// How often the account was linked, at providers that keep that.
    pub link: Option<Value>,
    /// Computed from the incomes once they are in.
    pub insight: Option<Value>,
}

/// Where the records came from, as each record's `metadata` says.
pub struct Source<'a> {
    pub account_id: &'a str,
    pub user_id: &'a str,
    pub provider: &'a Provider,
    pub now: &'a str,
}

impl Source<'_> {
    fn metadata(&self) -> Value {
        json!({
            "createdAt": self.now, "itemCreatedAt": self.now, "sourceId": self.account_id, "sourceType": "ACCOUNT",
            "userId": self.user_id, "providerId": self.provider.id,
        })
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

/// The records `person` has at `source.provider`, for the datapoints it supports.
pub fn generate(person: &Person, source: &Source) -> SyncedData {
    let p = source.provider;
    let supports = |d: &str| p.supported.contains(&d);
    let employer = if p.provider_type == "EMPLOYER" { p.long_name } else { "ABC Corporation" };
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
                let gross = round2(f64::from(person.monthly_pay) * (1.0 + f64::from(m % 3) * 0.02));
                json!({
                    "id": ids::new_id("inc-"), "workItem": null, "employer": employer,
                    "startDate": format!("2025-{m:02}-01"), "endDate": format!("2025-{m:02}-{:02}", last_day(m)),
                    "paymentMethod": "Bank", "currency": person.currency, "frequency": "Monthly",
                    "baseAmount": round2(f64::from(person.monthly_pay)), "grossAmount": gross, "netAmount": round2(gross * 0.82),
                    "metadata": source.metadata(),
                })
            })
            .collect();
    }
    if supports("CONTRIBUTIONS") {
        data.contributions = (2024..=2025)
            .flat_map(|y| months().map(move |m| (y, m)))
            .map(|(y, m)| {
                json!({
                    "id": ids::new_id("con-"), "date": format!("{y}-{m:02}-{:02}", last_day(m)),
                    "currency": person.currency, "amount": round2(f64::from(person.monthly_pay) * 0.045),
                    "referenceId": format!("PR{y}{m:02}{}", &person.phone[person.phone.len() - 4..]),
                    "metadata": source.metadata(),
                })
            })
            .collect();
    }
    if supports("RATINGS") {
        data.rating = Some(json!({
            "id": ids::new_id("r-"), "rating": 4.8, "maxRating": 5, "count": 327, "metadata": source.metadata(),
        }));
    }
    if supports("DOCUMENTS") {
        data.documents = vec![json!({
            "id": ids::new_id("d-"), "type": "CLEARANCE", "name": format!("{} clearance", p.name),
            "issuedDate": "2025-06-30", "expiryDate": "2026-06-30", "referenceId": format!("CLR-{}", &person.phone[person.phone.len() - 6..]),
            "metadata": source.metadata(),
        })];
    }
    if supports("EINCOMES") {
        data.eincomes = months()
            .map(|m| {
                let base = f64::from(person.monthly_pay);
                json!({
                    "id": ids::new_id("einc-"), "month": format!("2025-{m:02}"), "currency": person.currency,
                    "baseAmount": base, "amount": round2(base * (0.9 + f64::from(m % 4) * 0.05)), "metadata": source.metadata(),
                })
            })
            .collect();
    }
    if supports("LIABILITIES") {
        data.liabilities = vec![liability(person, source)];
    }
    if supports("LINK") {
        data.link = Some(json!({
            "id": ids::new_id("lnk-"), "startDate": "2025-01-01T00:00:00Z", "endDate": source.now,
            "records": [{"count": 2, "linkedAt": ["2025-03-14T08:15:00Z", source.now]}], "metadata": source.metadata(),
        }));
    }
    if !data.incomes.is_empty() {
        data.insight = Some(insight(&data.incomes, source));
    }
    if supports("TRANSACTIONS") {
        data.transactions = (1..=30u32)
            .map(|d| {
                json!({
                    "id": ids::new_id("t-"), "date": format!("2025-11-{d:02}"), "currency": person.currency,
                    "amount": round2(f64::from(person.monthly_pay) / 30.0 * (0.8 + f64::from(d % 5) * 0.1)),
                    "description": format!("{} payout", p.name), "metadata": source.metadata(),
                })
            })
            .collect();
    }
    data
}

/// Features of the incomes, as Smile's insights name them: counts and amount statistics
/// over all months and the last 3, 6, 9 and 12.
fn insight(incomes: &[Value], source: &Source) -> Value {
    let amounts: Vec<f64> = incomes.iter().filter_map(|i| i["grossAmount"].as_f64()).collect();
    let mut features = serde_json::Map::new();
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
    json!({"id": ids::new_id("ins-"), "cutoffTime": source.now, "features": features, "metadata": source.metadata()})
}

/// A personal loan of a year's pay over three years, eleven payments in.
fn liability(person: &Person, source: &Source) -> Value {
    let loan = f64::from(person.monthly_pay) * 12.0;
    let payment = round2(loan / 36.0 * 1.12);
    json!({
        "id": ids::new_id("lia-"), "type": "Personal Loan", "referenceId": format!("PL-{}", &person.phone[person.phone.len() - 6..]),
        "startDate": "2025-01-15", "endDate": "2027-12-15", "firstAmortizationDate": "2025-02-15",
        "amortizationFrequency": "Monthly", "currency": person.currency, "loanAmount": loan, "amortizationAmount": payment,
        "outstandingBalance": round2(payment * 25.0), "nextPaymentAmount": payment, "overduePaymentAmount": 0.0,
        "metadata": source.metadata(),
    })
}

/// The income a sample payslip of `month` (`yyyy-MM`) shows.
pub fn payslip_income(person: &Person, month: &str, metadata: Value) -> Value {
    let m: u32 = month.get(5..7).and_then(|m| m.parse().ok()).unwrap_or(1);
    let gross = round2(f64::from(person.monthly_pay) * 1.04);
    json!({
        "id": ids::new_id("inc-"), "workItem": null, "employer": "ABC Corporation",
        "startDate": format!("{month}-01"), "endDate": format!("{month}-{:02}", last_day(m)), "paymentMethod": "Bank",
        "currency": person.currency, "frequency": "Monthly", "baseAmount": f64::from(person.monthly_pay),
        "grossAmount": gross, "netAmount": round2(gross * 0.82), "metadata": metadata,
    })
}

/// What reading a sample payslip of `month` (`yyyy-MM`) finds: an archive's `analysis`, and
/// the prediction the payslip endpoints answer.
pub fn payslip_analysis(person: &Person, month: &str) -> Value {
    let m: u32 = month.get(5..7).and_then(|m| m.parse().ok()).unwrap_or(1);
    let gross = round2(f64::from(person.monthly_pay) * 1.04);
    json!({
        "startDate": format!("{month}-01"), "endDate": format!("{month}-{:02}", last_day(m)),
        "payDate": format!("{month}-{:02}", last_day(m)), "currency": person.currency, "grossAmount": gross,
        "netAmount": round2(gross * 0.82), "baseAmount": f64::from(person.monthly_pay), "employerName": "ABC Corporation",
        "employeeName": person.full_name(), "ssNumber": person.ss_number,
    })
}

/// The employment a sample payslip shows.
pub fn payslip_employment(person: &Person, metadata: Value) -> Value {
    json!({
        "id": ids::new_id("e-"), "name": "Operations", "description": null, "jobTitle": "Operations Associate",
        "department": "Operations", "employeeNumber": format!("EMP-{}", &person.phone[person.phone.len() - 6..]),
        "employerNumber": null, "employer": "ABC Corporation", "status": "Permanent", "startDate": "2019-09-01",
        "endDate": null, "reportedDate": null, "metadata": metadata,
    })
}

fn identity(person: &Person, source: &Source) -> Value {
    json!({
        "id": ids::new_id("i-"),
        "fullName": person.full_name(),
        "firstName": person.first_name,
        "middleName": (!person.middle_name.is_empty()).then_some(person.middle_name),
        "lastName": person.last_name,
        "suffix": (!person.suffix.is_empty()).then_some(person.suffix),
        "gender": person.gender,
        "dob": person.dob,
        "maritalStatus": person.marital_status,
        "countryResidence": person.country,
        "citizenship": "Citizen",
        "photoUrl": null,
        "referenceId": (!person.ss_number.is_empty()).then_some(person.ss_number),
        "profileUrl": null,
        "latestEmployerName": "ABC Corporation",
        "emails": [{"address": person.email, "type": "Primary"}],
        "phones": [{"number": person.phone, "type": "Mobile"}],
        "socialProfiles": [],
        "addresses": [{
            "fullAddress": format!("12 Mabini Street, {}, {}", person.city, person.country), "line1": "12 Mabini Street",
            "city": person.city, "country": person.country, "type": "Primary", "tags": ["Home"],
        }],
        "metadata": source.metadata(),
    })
}

fn employments(person: &Person, employer: &str, source: &Source) -> Vec<Value> {
    let current = json!({
        "id": ids::new_id("e-"), "name": "Operations", "description": "Runs day-to-day operations.",
        "jobTitle": "Operations Associate", "department": "Operations", "employeeNumber": format!("EMP-{}", &person.phone[person.phone.len() - 6..]),
        "employerNumber": null, "employer": employer, "status": "Permanent", "startDate": "2019-09-01", "endDate": null,
        "reportedDate": "2025-12-31", "metadata": source.metadata(),
    });
    let previous = json!({
        "id": ids::new_id("e-"), "name": "Customer Support", "description": "Answered customers by phone and chat.",
        "jobTitle": "Support Specialist", "department": "Customer Care", "employeeNumber": null, "employerNumber": null,
        "employer": "Sunrise Retail Inc.", "status": "Contractual", "startDate": "2015-02-16", "endDate": "2019-08-15",
        "reportedDate": "2019-08-31", "metadata": source.metadata(),
    });
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
        let strip = |v: &Value| {
            let mut v = v.clone();
            v.as_object_mut().expect("object").remove("id");
            v
        };
        assert_eq!(a.contributions.len(), 24);
        assert_eq!(a.employments.len(), 2);
        assert!(a.incomes.is_empty(), "SSS has no incomes");
        assert_eq!(strip(&a.contributions[5]), strip(&b.contributions[5]));
        assert_eq!(a.identity.as_ref().map(|i| i["fullName"].clone()), Some(json!("George Cimafranca Palomero Jr.")));
    }
}
