use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The environment a key, a subscription and an event belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Mode {
    Sandbox,
    Production,
}

impl Mode {
    /// The wire and storage spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Sandbox => "SANDBOX",
            Mode::Production => "PRODUCTION",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A mode name that is neither sandbox nor production.
#[derive(Debug, thiserror::Error)]
#[error("unknown mode `{0}`: expected sandbox or production")]
pub struct UnknownMode(String);

impl FromStr for Mode {
    type Err = UnknownMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "SANDBOX" => Ok(Mode::Sandbox),
            "PRODUCTION" => Ok(Mode::Production),
            _ => Err(UnknownMode(s.to_owned())),
        }
    }
}
