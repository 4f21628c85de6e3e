//! The command line's one error type, and the exit status each kind maps
//! to, so scripts can tell "the API said no" from "you typed it wrong" from
//! "nothing answered".

use crate::signature::VerifyError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The gateway answered with an error (problem+json).
    #[error("{detail}")]
    Api { status: u16, detail: String, fields: Vec<(String, String)> },
    /// Nothing answered at the gateway's address, or not in time.
    #[error("cannot reach the gateway at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The gateway answered something that is not the API's JSON.
    #[error("unexpected answer from the gateway: {0}")]
    Answer(String),
    /// Input the command cannot use (bad JSON, an unreadable file, a bad time).
    #[error("{0}")]
    Usage(String),
    /// The profile file could not be read or written.
    #[error("profile file {path}: {reason}")]
    Profile { path: String, reason: String },
    #[error("signature INVALID: {0}")]
    Verify(#[from] VerifyError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> Self {
        CliError::Usage(message.into())
    }

    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> CliError {
        let context = context.into();
        move |source| CliError::Io { context, source }
    }

    /// 1: refused or failed; 2: usage (as clap's own errors); 3: unreachable.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Api { .. } | CliError::Answer(_) | CliError::Verify(_) | CliError::Io { .. } => 1,
            CliError::Usage(_) | CliError::Profile { .. } => 2,
            CliError::Unreachable { .. } => 3,
        }
    }

    /// What is printed on standard error.
    pub fn report(&self) -> String {
        match self {
            CliError::Api { status, detail, fields } => {
                let mut out = format!("error: {detail} ({status})");
                for (field, message) in fields {
                    out.push_str(&format!("\n  {field}: {message}"));
                }
                out
            }
            CliError::Verify(_) => self.to_string(),
            other => format!("error: {other}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_exit_status() {
        let api = CliError::Api { status: 404, detail: "endpoint not found".into(), fields: Vec::new() };
        assert_eq!(api.exit_code(), 1);
        assert_eq!(api.report(), "error: endpoint not found (404)");
        assert_eq!(CliError::usage("bad").exit_code(), 2);
        let down = CliError::Unreachable { url: "http://x".into(), reason: "refused".into() };
        assert_eq!(down.exit_code(), 3);
        assert!(down.report().contains("cannot reach the gateway"));
    }
}
