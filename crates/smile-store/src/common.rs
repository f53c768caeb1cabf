//! What both stores share: column encodings, paging, key generation.

use crate::{NewKey, Page};
use sha2::{Digest, Sha256};
use smile_core::Mode;

pub(crate) fn mode_of(s: &str) -> Mode {
    s.parse().unwrap_or(Mode::Sandbox)
}

pub(crate) fn types_to_column(types: &[String]) -> String {
    format!(",{},", types.join(","))
}

pub(crate) fn types_from_column(s: &str) -> Vec<String> {
    s.split(',').filter(|t| !t.is_empty()).map(str::to_owned).collect()
}

/// Turns `size + 1` rows, newest first, into a page and its next cursor.
pub(crate) fn paginate<T>(mut rows: Vec<(i64, T)>, size: u32) -> Page<T> {
    let more = rows.len() > size as usize;
    rows.truncate(size as usize);
    let next_cursor = if more { rows.last().map(|(seq, _)| seq.to_string()) } else { None };
    Page { items: rows.into_iter().map(|(_, t)| t).collect(), next_cursor }
}

pub(crate) fn random_hex(bytes: usize) -> String {
    let buf: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    hex::encode(buf)
}

pub(crate) fn new_key_pair() -> (NewKey, [u8; 32]) {
    let key = NewKey { api_key: random_hex(16), api_secret: random_hex(32) };
    let hash: [u8; 32] = Sha256::digest(key.api_secret.as_bytes()).into();
    (key, hash)
}

pub(crate) fn now() -> i64 {
    smile_core::timefmt::now_ms()
}
