//! Identifiers: a documented prefix followed by 32 lowercase hex digits.

/// Prefix of event ids.
pub const EVENT: &str = "et-";
/// Prefix of delivery ids (ours; Smile has no delivery resource).
pub const DELIVERY: &str = "dlv-";
/// Prefix of attempt ids (ours).
pub const ATTEMPT: &str = "att-";

/// A fresh id: `prefix` + 32 hex digits, time-ordered (UUIDv7) so that the store appends
/// new rows to the end of its indexes instead of dirtying a random page per insert.
pub fn new_id(prefix: &str) -> String {
    let mut id = String::with_capacity(prefix.len() + 32);
    id.push_str(prefix);
    id.push_str(&uuid::Uuid::now_v7().simple().to_string());
    id
}

/// A fresh subscription id: 32 hex digits, as Smile's webhook ids are.
pub fn new_subscription_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A fresh bearer token (link tokens, portal links, demo inboxes): 64 hex digits of two random
/// (v4) UUIDs, 244 random bits; whoever holds it is let in.
pub fn new_token() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// A request id, returned in every response envelope.
pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().hyphenated().to_string()
}

/// Whether `name` may serve as a tenant id: it prefixes user ids, so keep it URL- and log-safe.
pub fn is_valid_tenant_id(name: &str) -> bool {
    (1..=40).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_prefix_and_32_hex() {
        let id = new_id(EVENT);
        assert!(id.starts_with("et-"));
        assert_eq!(id.len(), 35);
        assert!(id[3..].bytes().all(|b| b.is_ascii_hexdigit()));
        let (a, b) = (new_id(EVENT), new_id(EVENT));
        assert!(a < b, "later ids sort after earlier ones");
    }

    #[test]
    fn tenant_ids_are_slugs() {
        assert!(is_valid_tenant_id("acme-1"));
        assert!(!is_valid_tenant_id(""));
        assert!(!is_valid_tenant_id("Acme"));
        assert!(!is_valid_tenant_id("a/b"));
    }
}
