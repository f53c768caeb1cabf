//! Sign and verify Smile webhook deliveries. No async, no I/O: a receiver can depend on it.
//!
//! Two schemes travel on every delivery:
//! - **Smile-Signature**: lowercase hex HMAC-SHA512 of the raw body, keyed with the
//!   subscription secret ([`smile_sign`], [`smile_verify`]).
//! - **Standard Webhooks v1**: `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`,
//!   keyed with the secret's bytes ([`standard_sign`], [`standard_verify`]). It adds replay
//!   protection: the timestamp is signed and checked against a tolerance.
//!
//! During a secret rotation both headers carry several signatures (Smile-Signature comma
//! separated, webhook-signature space separated); a receiver accepts any one that matches.
//!
//! ```
//! let body = br#"{"id":"et-1","version":1,"type":"USER_CREATED","createdAt":"2021-04-14T09:30:24Z","data":{"userId":"u"}}"#;
//! let header = smile_signature::smile_sign(b"a little secret", body);
//! assert!(smile_signature::smile_verify(b"a little secret", body, &header).is_ok());
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha512};

/// Header carrying Smile's signature.
pub const SMILE_SIGNATURE_HEADER: &str = "Smile-Signature";
/// Standard Webhooks: the message id (our event id).
pub const WEBHOOK_ID_HEADER: &str = "webhook-id";
/// Standard Webhooks: seconds since the Unix epoch when the attempt was signed.
pub const WEBHOOK_TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// Standard Webhooks: space-separated `v1,<base64>` signatures.
pub const WEBHOOK_SIGNATURE_HEADER: &str = "webhook-signature";
/// The replay window Standard Webhooks recommends, in seconds.
pub const DEFAULT_TOLERANCE_SECS: i64 = 5 * 60;

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("no signature in the header")]
    MissingSignature,
    #[error("no signature in the header matches the body")]
    Mismatch,
    #[error("the webhook-timestamp header is not a whole number of seconds")]
    BadTimestamp,
    #[error("the webhook-timestamp is outside the tolerance window (replay?)")]
    StaleTimestamp,
}

fn hmac_sha512(key: &[u8]) -> Hmac<Sha512> {
    // HMAC takes keys of any length; new_from_slice cannot fail for it.
    <Hmac<Sha512> as Mac>::new_from_slice(key).expect("HMAC accepts any key length")
}

fn hmac_sha256(key: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length")
}

/// The `Smile-Signature` value: lowercase hex HMAC-SHA512 of `body` keyed with `secret`.
pub fn smile_sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = hmac_sha512(secret);
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Checks a `Smile-Signature` header (one or more comma-separated hex digests) in constant time.
pub fn smile_verify(secret: &[u8], body: &[u8], header: &str) -> Result<(), VerifyError> {
    let mut seen = false;
    for candidate in header.split([',', ' ']).filter(|s| !s.is_empty()) {
        seen = true;
        let Ok(expected) = hex::decode(candidate.trim()) else {
            continue;
        };
        let mut mac = hmac_sha512(secret);
        mac.update(body);
        if mac.verify_slice(&expected).is_ok() {
            return Ok(());
        }
    }
    Err(if seen { VerifyError::Mismatch } else { VerifyError::MissingSignature })
}

fn standard_mac(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = hmac_sha256(key);
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// One Standard Webhooks signature, `v1,<base64>`, of `msg_id.timestamp.body`.
pub fn standard_sign(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mac = standard_mac(key, msg_id, timestamp, body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

/// Checks Standard Webhooks headers: the timestamp within `tolerance_secs` of `now_secs`,
/// and any `v1,` signature of the space-separated list matching, in constant time.
pub fn standard_verify(
    key: &[u8],
    msg_id: &str,
    timestamp_header: &str,
    body: &[u8],
    signature_header: &str,
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    let timestamp: i64 = timestamp_header.trim().parse().map_err(|_| VerifyError::BadTimestamp)?;
    if (now_secs - timestamp).abs() > tolerance_secs {
        return Err(VerifyError::StaleTimestamp);
    }
    let mut seen = false;
    for candidate in signature_header.split(' ').filter(|s| !s.is_empty()) {
        let Some(encoded) = candidate.strip_prefix("v1,") else {
            continue;
        };
        seen = true;
        let Ok(expected) = BASE64.decode(encoded) else {
            continue;
        };
        if standard_mac(key, msg_id, timestamp, body).verify_slice(&expected).is_ok() {
            return Ok(());
        }
    }
    Err(if seen { VerifyError::Mismatch } else { VerifyError::MissingSignature })
}

/// The key a Standard Webhooks library expects for `secret`: `whsec_` + base64 of its bytes.
pub fn standard_key_for(secret: &[u8]) -> String {
    format!("whsec_{}", BASE64.encode(secret))
}

/// The raw key bytes of a `whsec_…` key (or of any other string, taken as it is).
pub fn key_bytes(secret_or_whsec: &str) -> Vec<u8> {
    secret_or_whsec
        .strip_prefix("whsec_")
        .and_then(|b64| BASE64.decode(b64).ok())
        .unwrap_or_else(|| secret_or_whsec.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_smile_signatures_any_may_match() {
        let body = b"{}";
        let header = format!("{},{}", smile_sign(b"old", body), smile_sign(b"new", body));
        assert!(smile_verify(b"new", body, &header).is_ok());
        assert!(smile_verify(b"old", body, &header).is_ok());
        assert_eq!(smile_verify(b"other", body, &header), Err(VerifyError::Mismatch));
        assert_eq!(smile_verify(b"new", body, ""), Err(VerifyError::MissingSignature));
        assert_eq!(smile_verify(b"new", b"{ }", &header), Err(VerifyError::Mismatch));
    }

    #[test]
    fn standard_checks_timestamp_tolerance() {
        let sig = standard_sign(b"k", "et-1", 1000, b"{}");
        assert!(standard_verify(b"k", "et-1", "1000", b"{}", &sig, 1200, 300).is_ok());
        assert_eq!(standard_verify(b"k", "et-1", "1000", b"{}", &sig, 1301, 300), Err(VerifyError::StaleTimestamp));
        assert_eq!(standard_verify(b"k", "et-1", "abc", b"{}", &sig, 1000, 300), Err(VerifyError::BadTimestamp));
        // The timestamp is signed: moving it breaks the signature.
        let moved = standard_verify(b"k", "et-1", "1001", b"{}", &sig, 1000, 300);
        assert_eq!(moved, Err(VerifyError::Mismatch));
        let two = format!("v1,AAAA {sig}");
        assert!(standard_verify(b"k", "et-1", "1000", b"{}", &two, 1000, 300).is_ok());
    }

    #[test]
    fn whsec_keys_round_trip() {
        assert_eq!(standard_key_for(b"x"), "whsec_eA==");
        assert_eq!(key_bytes("whsec_eA=="), b"x");
        assert_eq!(key_bytes("plain"), b"plain");
    }
}
