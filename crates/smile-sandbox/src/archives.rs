//! Uploaded documents ("archives"): the file types, recognising a file by its content, the
//! sample payslips the sandbox can analyse, and the retention of stored files.

use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// The largest file accepted.
pub const MAX_FILE_BYTES: usize = 15 * 1024 * 1024;
/// How long uploaded files are kept.
pub const RETENTION: Duration = Duration::from_secs(60 * 24 * 3600);

/// A kind of document a user can upload, as `GET /v1/fileTypes` shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileType {
    pub logo_url: String,
    #[serde(rename = "type")]
    pub file_type: &'static str,
    pub type_label: &'static str,
    pub active: bool,
    pub enabled: bool,
    pub ocr: bool,
    pub supported: Vec<&'static str>,
}

const FILE_TYPES: &[(&str, &str, bool, &[&str])] = &[
    ("PAYSLIP", "Payslips", true, &["IDENTITIES", "EMPLOYMENTS", "INCOMES"]),
    ("SOCIAL_SECURITY", "SOCIAL SECURITY Records", true, &["IDENTITIES", "DOCUMENTS", "EMPLOYMENTS"]),
    ("INCOME_TAX", "Income Tax Returns", true, &["IDENTITIES", "INCOMES"]),
    ("EMPLOYMENT_CERTIFICATE", "Certificates of Employment", false, &["EMPLOYMENTS"]),
    ("BANK_STATEMENT", "Bank Statements", false, &["TRANSACTIONS"]),
];

/// Every file type.
pub fn file_types() -> Vec<FileType> {
    FILE_TYPES
        .iter()
        .map(|(t, label, ocr, supported)| FileType {
            logo_url: "/assets/providers/user-provided.svg".into(),
            file_type: t,
            type_label: label,
            active: true,
            enabled: true,
            ocr: *ocr,
            supported: supported.to_vec(),
        })
        .collect()
}

/// The `ARCHIVE_FAILED` code for a file the analysis could not read.
pub const UNREADABLE: &str = "FILE_UNABLE_TO_RECOGNIZE";

/// The archive's `state.errorCode` for the same: Smile's list for archive states has no
/// "unreadable", and a file that is not in a readable layout is a format error.
pub const UNREADABLE_STATE: &str = "INVALID_FIELD_FORMAT";

/// Whether `file_type` is one of ours.
pub fn is_file_type(file_type: &str) -> bool {
    FILE_TYPES.iter().any(|(t, ..)| *t == file_type)
}

/// The formats accepted, judged by content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum Format {
    #[serde(rename = "PDF")]
    Pdf,
    #[serde(rename = "PNG")]
    Png,
    #[serde(rename = "JPG")]
    Jpg,
    #[serde(rename = "TIFF")]
    Tiff,
}

impl Format {
    /// What the file's first bytes say it is.
    pub fn sniff(content: &[u8]) -> Option<Format> {
        if content.starts_with(b"%PDF-") {
            Some(Format::Pdf)
        } else if content.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Format::Png)
        } else if content.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Format::Jpg)
        } else if content.starts_with(b"II*\0") || content.starts_with(b"MM\0*") {
            Some(Format::Tiff)
        } else {
            None
        }
    }

    /// The format a name or declared extension claims (`PDF`, `report.jpeg`, …).
    pub fn claimed(name_or_extension: &str) -> Option<Format> {
        let ext = name_or_extension.rsplit('.').next().unwrap_or(name_or_extension).to_ascii_uppercase();
        match ext.as_str() {
            "PDF" => Some(Format::Pdf),
            "PNG" => Some(Format::Png),
            "JPG" | "JPEG" => Some(Format::Jpg),
            "TIF" | "TIFF" => Some(Format::Tiff),
            _ => None,
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Pdf => "pdf",
            Format::Png => "png",
            Format::Jpg => "jpg",
            Format::Tiff => "tiff",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Pdf => "application/pdf",
            Format::Png => "image/png",
            Format::Jpg => "image/jpeg",
            Format::Tiff => "image/tiff",
        }
    }
}

/// A sample payslip the sandbox recognises, and the pay period it carries.
pub struct Sample {
    pub name: &'static str,
    pub content: &'static [u8],
    /// The month it pays, `yyyy-MM`.
    pub month: &'static str,
}

/// The sample payslips, shipped in `crates/smile-sandbox/samples/` and served at
/// `/sandbox/samples/{name}`.
pub const SAMPLES: &[Sample] = &[
    Sample {
        name: "payslip-george-2025-11.pdf",
        content: include_bytes!("../samples/payslip-george-2025-11.pdf"),
        month: "2025-11",
    },
    Sample {
        name: "payslip-george-2025-10.png",
        content: include_bytes!("../samples/payslip-george-2025-10.png"),
        month: "2025-10",
    },
];

/// The sample a file is, judged by its bytes (not its name).
pub fn recognise(content: &[u8]) -> Option<&'static Sample> {
    let digest = Sha256::digest(content);
    SAMPLES.iter().find(|s| Sha256::digest(s.content) == digest)
}

/// Removes stored archive directories whose files are all older than `max_age`; returns how
/// many it removed.
pub fn sweep(files_dir: &Path, max_age: Duration) -> std::io::Result<usize> {
    let Ok(entries) = std::fs::read_dir(files_dir) else { return Ok(0) };
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in entries.flatten() {
        let dir = entry.path();
        if !dir.is_dir() {
            continue;
        }
        let newest = std::fs::read_dir(&dir)?
            .flatten()
            .filter_map(|f| f.metadata().ok()?.modified().ok())
            .max()
            .unwrap_or(SystemTime::UNIX_EPOCH);
        if now.duration_since(newest).unwrap_or_default() >= max_age {
            std::fs::remove_dir_all(&dir)?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_judged_by_content() {
        assert_eq!(Format::sniff(SAMPLES[0].content), Some(Format::Pdf));
        assert_eq!(Format::sniff(SAMPLES[1].content), Some(Format::Png));
        assert_eq!(Format::sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some(Format::Jpg));
        assert_eq!(Format::sniff(b"II*\0rest"), Some(Format::Tiff));
        assert_eq!(Format::sniff(b"GIF89a"), None);
        assert_eq!(Format::claimed("scan.JPEG"), Some(Format::Jpg));
        assert_eq!(Format::claimed("notes.txt"), None);
    }

    #[test]
    fn only_the_samples_are_recognised() {
        assert_eq!(recognise(SAMPLES[1].content).map(|s| s.month), Some("2025-10"));
        let mut changed = SAMPLES[0].content.to_vec();
        changed.push(b'\n');
        assert!(recognise(&changed).is_none());
    }

    #[test]
    fn old_files_are_swept_and_recent_ones_kept() {
        let dir = tempfile::tempdir().expect("dir");
        for (name, age_days) in [("u-old", 61u64), ("u-new", 1)] {
            let archive = dir.path().join(name);
            std::fs::create_dir(&archive).expect("mkdir");
            let file = std::fs::File::create(archive.join("f-1.pdf")).expect("file");
            file.set_modified(SystemTime::now() - Duration::from_secs(age_days * 24 * 3600)).expect("mtime");
        }
        assert_eq!(sweep(dir.path(), RETENTION).expect("sweep"), 1);
        assert!(!dir.path().join("u-old").exists());
        assert!(dir.path().join("u-new").exists());
    }
}
