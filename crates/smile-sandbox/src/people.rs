//! The documented sandbox test users, and the sandbox way to make a login fail with any of the
//! account error codes.

/// A person the sandbox providers know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Person {
    pub first_name: &'static str,
    pub middle_name: &'static str,
    pub last_name: &'static str,
    pub suffix: &'static str,
    pub gender: &'static str,
    pub dob: &'static str,
    pub marital_status: &'static str,
    pub country: &'static str,
    pub currency: &'static str,
    pub email: &'static str,
    pub phone: &'static str,
    pub ss_number: &'static str,
    pub password: &'static str,
    pub mfa_code: &'static str,
    /// Monthly base pay, in `currency`.
    pub monthly_pay: u32,
    pub city: &'static str,
}

impl Person {
    pub fn full_name(&self) -> String {
        [self.first_name, self.middle_name, self.last_name, self.suffix]
            .iter()
            .filter(|p| !p.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The sandbox users of the Smile documentation.
pub const PEOPLE: &[Person] = &[
    Person {
        first_name: "George",
        middle_name: "Cimafranca",
        last_name: "Palomero",
        suffix: "Jr.",
        gender: "Male",
        dob: "1970-08-24",
        marital_status: "Married",
        country: "PH",
        currency: "PHP",
        email: "gpalomero1234@smileapi.io",
        phone: "+639559991234",
        ss_number: "3300000008",
        password: "123456",
        mfa_code: "1234",
        monthly_pay: 42_000,
        city: "Quezon City",
    },
    Person {
        first_name: "Ryan",
        middle_name: "",
        last_name: "Ng",
        suffix: "",
        gender: "Male",
        dob: "1988-03-14",
        marital_status: "Single",
        country: "ID",
        currency: "IDR",
        email: "ryan1234@smileapi.io",
        phone: "+628119994321",
        ss_number: "",
        password: "654321",
        mfa_code: "1234",
        monthly_pay: 12_500_000,
        city: "Jakarta",
    },
    Person {
        first_name: "Christina",
        middle_name: "",
        last_name: "Tan",
        suffix: "",
        gender: "Female",
        dob: "1992-11-02",
        marital_status: "Single",
        country: "SG",
        currency: "SGD",
        email: "christina4321@smileapi.io",
        phone: "+6599996789",
        ss_number: "",
        password: "YGUS1",
        mfa_code: "1234",
        monthly_pay: 6_800,
        city: "Singapore",
    },
    Person {
        first_name: "Anisha",
        middle_name: "",
        last_name: "Bhatia",
        suffix: "",
        gender: "Female",
        dob: "1995-06-19",
        marital_status: "Married",
        country: "IN",
        currency: "INR",
        email: "anisha98765@smileapi.io",
        phone: "+919511198765",
        ss_number: "",
        password: "123456",
        mfa_code: "1234",
        monthly_pay: 95_000,
        city: "Mumbai",
    },
];

/// The login that makes a sandbox login fail: its password names the error code.
pub const FAILING_LOGIN: &str = "fail@smileapi.io";

/// Every account error code, with the message an account shows for it.
pub const ACCOUNT_ERRORS: &[(&str, &str)] = &[
    ("ACCOUNT_DISABLED", "The account is disabled at the provider."),
    ("ACCOUNT_INACCESSIBLE", "The provider says the account cannot be accessed."),
    ("ACCOUNT_INCOMPLETE", "The account is incomplete at the provider."),
    ("ACCOUNT_LOCKED", "The account is locked at the provider."),
    ("AUTH_REQUIRED", "No credentials were sent."),
    ("EXPIRED_CREDENTIALS", "The credentials have expired; reset them at the provider."),
    ("INVALID_ACCOUNT_TYPE", "This type of account is not supported."),
    ("INVALID_AUTH", "Authentication failed."),
    ("INVALID_CREDENTIALS", "Invalid username or password!"),
    ("INVALID_MFA", "The verification code is not right."),
    ("MFA_TIMEOUT", "The verification code was not entered in time."),
    ("SERVICE_UNAVAILABLE", "The provider is not available right now."),
    ("SYSTEM_ERROR", "Something went wrong on our side."),
    ("TOS_REQUIRED", "Accept the provider's terms of service first."),
    ("UNSUPPORTED_AUTH_TYPE", "This way of logging in is not supported."),
    ("UNSUPPORTED_MFA_METHOD", "This verification method is not supported."),
];

/// The message of an account error code.
pub fn error_message(code: &str) -> &'static str {
    ACCOUNT_ERRORS.iter().find(|(c, _)| *c == code).map(|(_, m)| *m).unwrap_or("The connection failed.")
}

/// The person a login names: by e-mail, phone (digits compared) or social security number.
pub fn find(login: &str) -> Option<&'static Person> {
    let login = login.trim();
    let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
    PEOPLE.iter().find(|p| {
        p.email.eq_ignore_ascii_case(login)
            || (!digits(login).is_empty() && (digits(p.phone) == digits(login) || p.ss_number == digits(login)))
    })
}

/// What the provider answers to a login.
#[derive(Debug, PartialEq, Eq)]
pub enum LoginResult {
    Accepted(&'static Person),
    Failed(&'static str),
}

/// Checks a sandbox login: a known person with the right password, or the failing login.
pub fn login(username: Option<&str>, password: Option<&str>) -> LoginResult {
    let (Some(username), Some(password)) = (username.filter(|u| !u.is_empty()), password.filter(|p| !p.is_empty()))
    else {
        return LoginResult::Failed("AUTH_REQUIRED");
    };
    if username.eq_ignore_ascii_case(FAILING_LOGIN) {
        let code = ACCOUNT_ERRORS.iter().find(|(c, _)| *c == password).map(|(c, _)| *c);
        return LoginResult::Failed(code.unwrap_or("INVALID_CREDENTIALS"));
    }
    match find(username) {
        Some(person) if person.password == password => LoginResult::Accepted(person),
        _ => LoginResult::Failed("INVALID_CREDENTIALS"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_users_log_in_by_email_phone_or_ss_number() {
        for login_name in ["gpalomero1234@smileapi.io", "+63 9559991234", "3300000008"] {
            assert!(
                matches!(login(Some(login_name), Some("123456")), LoginResult::Accepted(p) if p.first_name == "George")
            );
        }
        assert!(matches!(login(Some("christina4321@smileapi.io"), Some("YGUS1")), LoginResult::Accepted(_)));
        assert_eq!(login(Some("gpalomero1234@smileapi.io"), Some("nope")), LoginResult::Failed("INVALID_CREDENTIALS"));
        assert_eq!(login(None, None), LoginResult::Failed("AUTH_REQUIRED"));
    }

    #[test]
    fn every_error_code_can_be_simulated() {
        assert_eq!(ACCOUNT_ERRORS.len(), 16);
        for (code, _) in ACCOUNT_ERRORS {
            assert_eq!(login(Some(FAILING_LOGIN), Some(code)), LoginResult::Failed(code));
        }
    }
}
