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
//! A subscription may sign with an **ed25519** key pair instead (Standard Webhooks `v1a`): the
//! server keeps the `whsk_` secret key, the receiver verifies with the `whpk_` public key
//! ([`Secret`], [`asymmetric_verify`]), and no shared secret exists, so no Smile-Signature.
//!
//! ```
//! let body = br#"{"id":"et-1","version":1,"type":"USER_CREATED","createdAt":"2021-04-14T09:30:24Z","data":{"userId":"u"}}"#;
//! let header = smile_signature::smile_sign(b"a little secret", body);
//! assert!(smile_signature::smile_verify(b"a little secret", body, &header).is_ok());
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::Signer as _;
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
/// Prefix of a serialised ed25519 secret key (Standard Webhooks).
pub const SECRET_KEY_PREFIX: &str = "whsk_";
/// Prefix of a serialised ed25519 public key (Standard Webhooks).
pub const PUBLIC_KEY_PREFIX: &str = "whpk_";
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
    smile_text(hmac_sha512(secret), body)
}

fn smile_text(mut mac: Hmac<Sha512>, body: &[u8]) -> String {
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

/// `mac` (an HMAC-SHA256 keyed, nothing hashed yet) over `msg_id.timestamp.body`.
fn standard_mac(mut mac: Hmac<Sha256>, msg_id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// One Standard Webhooks signature, `v1,<base64>`, of `msg_id.timestamp.body`.
pub fn standard_sign(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    standard_text(standard_mac(hmac_sha256(key), msg_id, timestamp, body))
}

fn standard_text(mac: Hmac<Sha256>) -> String {
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
    let window = (now_secs, tolerance_secs);
    verify_any(timestamp_header, window, signature_header, "v1,", |timestamp, expected| {
        standard_mac(hmac_sha256(key), msg_id, timestamp, body).verify_slice(expected).is_ok()
    })
}

/// The checks both schemes share: the signed timestamp within `tolerance` of `now`, then
/// any signature of the space-separated list with `scheme` (`v1,`, `v1a,`) that `matches`.
fn verify_any(
    timestamp_header: &str,
    (now, tolerance): (i64, i64),
    signature_header: &str,
    scheme: &str,
    matches: impl Fn(i64, &[u8]) -> bool,
) -> Result<(), VerifyError> {
    let timestamp: i64 = timestamp_header.trim().parse().map_err(|_| VerifyError::BadTimestamp)?;
    if (now - timestamp).abs() > tolerance {
        return Err(VerifyError::StaleTimestamp);
    }
    let mut seen = false;
    for candidate in signature_header.split(' ').filter(|s| !s.is_empty()) {
        let Some(encoded) = candidate.strip_prefix(scheme) else {
            continue;
        };
        seen = true;
        if BASE64.decode(encoded).is_ok_and(|signature| matches(timestamp, &signature)) {
            return Ok(());
        }
    }
    Err(if seen { VerifyError::Mismatch } else { VerifyError::MissingSignature })
}

/// What a subscription signs with, read from its stored secret: a `whsk_` key is an ed25519
/// secret key; any other string is a shared secret whose bytes key the HMACs.
#[derive(Clone)]
pub enum Secret {
    Shared(Box<SharedKey>),
    Ed25519(Box<ed25519_dalek::SigningKey>),
}

/// A shared secret as its two HMACs, keyed once: each signature clones one instead of hashing
/// the key into it again.
#[derive(Clone)]
pub struct SharedKey {
    smile: Hmac<Sha512>,
    standard: Hmac<Sha256>,
}

/// Why a `whsk_`/`whpk_` key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the key must be `{0}` followed by the base64 of 32 bytes")]
    Malformed(&'static str),
    #[error("the bytes are not an ed25519 public key")]
    NotAPoint,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key itself: secrets stay out of logs.
        f.write_str(match self {
            Secret::Shared(_) => "Secret::Shared(..)",
            Secret::Ed25519(_) => "Secret::Ed25519(..)",
        })
    }
}

fn key_of(prefix: &'static str, text: &str) -> Result<[u8; 32], KeyError> {
    let encoded = text.strip_prefix(prefix).ok_or(KeyError::Malformed(prefix))?;
    let bytes = BASE64.decode(encoded).map_err(|_| KeyError::Malformed(prefix))?;
    // Some libraries serialise the 64-byte keypair (seed, then public key): its seed is enough.
    bytes.get(..32).and_then(|seed| seed.try_into().ok()).ok_or(KeyError::Malformed(prefix))
}

impl Secret {
    /// Reads a stored secret; a `whsk_` that is not a valid key is refused, never taken as a
    /// shared secret by mistake.
    pub fn parse(stored: &str) -> Result<Secret, KeyError> {
        if stored.starts_with(SECRET_KEY_PREFIX) {
            let seed = key_of(SECRET_KEY_PREFIX, stored)?;
            return Ok(Secret::Ed25519(Box::new(ed25519_dalek::SigningKey::from_bytes(&seed))));
        }
        Ok(Secret::shared(stored.as_bytes()))
    }

    /// A shared secret of these bytes, whatever they look like.
    pub fn shared(key: &[u8]) -> Secret {
        Secret::Shared(Box::new(SharedKey { smile: hmac_sha512(key), standard: hmac_sha256(key) }))
    }

    /// A new ed25519 secret key, `whsk_…`, from 32 random bytes the caller draws.
    pub fn ed25519_from_seed(seed: [u8; 32]) -> String {
        format!("{SECRET_KEY_PREFIX}{}", BASE64.encode(seed))
    }

    /// The `whpk_…` public key receivers verify with; None for a shared secret.
    pub fn public_key(&self) -> Option<String> {
        match self {
            Secret::Shared(_) => None,
            Secret::Ed25519(key) => {
                Some(format!("{PUBLIC_KEY_PREFIX}{}", BASE64.encode(key.verifying_key().to_bytes())))
            }
        }
    }

    /// The `Smile-Signature` value; None for ed25519, which shares no secret to key an HMAC.
    pub fn smile_signature(&self, body: &[u8]) -> Option<String> {
        match self {
            Secret::Shared(key) => Some(smile_text(key.smile.clone(), body)),
            Secret::Ed25519(_) => None,
        }
    }

    /// One `webhook-signature` entry: `v1,…` (HMAC-SHA256) or `v1a,…` (ed25519).
    pub fn standard_signature(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        match self {
            Secret::Shared(key) => standard_text(standard_mac(key.standard.clone(), msg_id, timestamp, body)),
            Secret::Ed25519(key) => {
                let signature = key.sign(&signed_content(msg_id, timestamp, body));
                format!("v1a,{}", BASE64.encode(signature.to_bytes()))
            }
        }
    }
}

fn signed_content(msg_id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(msg_id.len() + 24 + body.len());
    content.extend_from_slice(msg_id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.to_string().as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

/// Checks Standard Webhooks headers against a `whpk_` public key: the timestamp within
/// `tolerance_secs` of `now_secs`, and any `v1a,` signature of the list valid (strict ed25519).
pub fn asymmetric_verify(
    public_key: &str,
    msg_id: &str,
    timestamp_header: &str,
    body: &[u8],
    signature_header: &str,
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    let key = ed25519_dalek::VerifyingKey::from_bytes(
        &key_of(PUBLIC_KEY_PREFIX, public_key).map_err(|_| VerifyError::Mismatch)?,
    )
    .map_err(|_| VerifyError::Mismatch)?;
    verify_any(timestamp_header, (now_secs, tolerance_secs), signature_header, "v1a,", |timestamp, signature| {
        let content = signed_content(msg_id, timestamp, body);
        ed25519_dalek::Signature::from_slice(signature)
            .is_ok_and(|signature| key.verify_strict(&content, &signature).is_ok())
    })
}

/// Checks that `public_key` is a `whpk_` ed25519 public key.
pub fn check_public_key(public_key: &str) -> Result<(), KeyError> {
    ed25519_dalek::VerifyingKey::from_bytes(&key_of(PUBLIC_KEY_PREFIX, public_key)?)
        .map(|_| ())
        .map_err(|_| KeyError::NotAPoint)
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
    fn a_shared_secret_keyed_once_signs_every_body_as_the_reference_hmacs_do() {
        let secret = Secret::parse("a little secret").expect("a shared secret");
        let body = br#"{"id":"et-1"}"#;
        // Python's hmac module, for the same key and content.
        let smile = "2dc3b505e3247e1a6ce49b04bc7d3301ad0eca310688160a67894cae83bb66c9\
                     8988faa8ec6f3b570d085e58bfbd2e5db7f6eb8b831374ff75d51ab0c5164847";
        let standard = "v1,0D/uROxdNIWniRVrZqi3OCmypCPeli6574S4lBfIegE=";
        for _ in 0..2 {
            // The keyed state is cloned, never consumed: a second signature is the same.
            assert_eq!(secret.smile_signature(body).as_deref(), Some(smile));
            assert_eq!(secret.standard_signature("et-1", 1000, body), standard);
        }
        assert_eq!(smile_sign(b"a little secret", body), smile);
        assert_eq!(standard_sign(b"a little secret", "et-1", 1000, body), standard);
        assert_ne!(secret.smile_signature(b"{}").as_deref(), Some(smile));
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
    fn ed25519_signs_v1a_and_verifies_with_the_public_key() {
        let secret_text = Secret::ed25519_from_seed([7; 32]);
        let secret = Secret::parse(&secret_text).unwrap();
        let public = secret.public_key().unwrap();
        assert!(public.starts_with("whpk_"));
        assert!(secret.smile_signature(b"{}").is_none());
        let sig = secret.standard_signature("et-1", 1000, b"{}");
        assert!(sig.starts_with("v1a,"));
        assert!(asymmetric_verify(&public, "et-1", "1000", b"{}", &sig, 1000, 300).is_ok());
        assert_eq!(asymmetric_verify(&public, "et-1", "1000", b"{ }", &sig, 1000, 300), Err(VerifyError::Mismatch));
        assert_eq!(
            asymmetric_verify(&public, "et-1", "1000", b"{}", &sig, 2000, 300),
            Err(VerifyError::StaleTimestamp)
        );
        let other = Secret::parse(&Secret::ed25519_from_seed([8; 32])).unwrap().public_key().unwrap();
        assert_eq!(asymmetric_verify(&other, "et-1", "1000", b"{}", &sig, 1000, 300), Err(VerifyError::Mismatch));
        // A rotation sends both; either public key verifies.
        let both = format!(
            "{} {sig}",
            Secret::parse(&Secret::ed25519_from_seed([8; 32])).unwrap().standard_signature("et-1", 1000, b"{}")
        );
        assert!(asymmetric_verify(&public, "et-1", "1000", b"{}", &both, 1000, 300).is_ok());
        assert!(asymmetric_verify(&other, "et-1", "1000", b"{}", &both, 1000, 300).is_ok());
    }

    #[test]
    fn a_broken_whsk_is_refused_not_used_as_a_shared_secret() {
        assert!(Secret::parse("whsk_not base64").is_err());
        assert!(Secret::parse("whsk_AAAA").is_err());
        let plain = Secret::parse("plain").unwrap();
        assert!(matches!(plain, Secret::Shared(_)));
        assert_eq!(plain.smile_signature(b"{}"), Some(smile_sign(b"plain", b"{}")));
        assert!(format!("{:?}", Secret::parse(&Secret::ed25519_from_seed([1; 32])).unwrap()).ends_with("(..)"));
    }

    #[test]
    fn whsec_keys_round_trip() {
        assert_eq!(standard_key_for(b"x"), "whsec_eA==");
        assert_eq!(key_bytes("whsec_eA=="), b"x");
        assert_eq!(key_bytes("plain"), b"plain");
    }
}
