//! The one error type of the project: a gRPC status code plus a message and
//! a stack of context lines added as the error bubbles up.
//!
//! The code decides what a client sees; the context lines are for the
//! operator reading the log. Conversion to `tonic::Status` happens here and
//! nowhere else.

use std::fmt;

use bytes::Bytes;
use tonic::Code;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub struct Error {
    code: Code,
    message: String,
    /// Outermost context last: pushed as the error travels up.
    context: Vec<String>,
    /// An encoded `google.rpc.Status` for rich error details (for example a
    /// `PreconditionFailure` listing missing blobs).
    details: Option<Bytes>,
}

impl Error {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
            context: Vec::new(),
            details: None,
        }
    }

    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Code::NotFound, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Code::Internal, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(Code::Unavailable, message)
    }

    pub fn resource_exhausted(message: impl Into<String>) -> Self {
        Self::new(Code::ResourceExhausted, message)
    }

    pub fn failed_precondition(message: impl Into<String>) -> Self {
        Self::new(Code::FailedPrecondition, message)
    }

    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(Code::AlreadyExists, message)
    }

    pub fn out_of_range(message: impl Into<String>) -> Self {
        Self::new(Code::OutOfRange, message)
    }

    pub fn cancelled(message: impl Into<String>) -> Self {
        Self::new(Code::Cancelled, message)
    }

    pub fn deadline_exceeded(message: impl Into<String>) -> Self {
        Self::new(Code::DeadlineExceeded, message)
    }

    /// An I/O error, classified: a missing file is NOT_FOUND, a full disk is
    /// RESOURCE_EXHAUSTED, anything else INTERNAL.
    pub fn io(context: impl Into<String>, err: std::io::Error) -> Self {
        let code = match err.kind() {
            std::io::ErrorKind::NotFound => Code::NotFound,
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
                Code::ResourceExhausted
            }
            _ if err.raw_os_error() == Some(28) => Code::ResourceExhausted, // ENOSPC
            _ => Code::Internal,
        };
        Error::new(code, err.to_string()).context(context)
    }

    /// Adds a line of context ("reading blob abc/12").
    pub fn context(mut self, line: impl Into<String>) -> Self {
        self.context.push(line.into());
        self
    }

    /// Attaches an encoded `google.rpc.Status` with details.
    pub fn with_details(mut self, encoded_status: Bytes) -> Self {
        self.details = Some(encoded_status);
        self
    }

    pub fn code(&self) -> Code {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn details(&self) -> Option<&Bytes> {
        self.details.as_ref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in self.context.iter().rev() {
            write!(f, "{line}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.code, self)
    }
}

/// Numbers the server-side failures a process reports, so a client's
/// message and the log line can be matched.
static NEXT_ERROR_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Error {
    /// Whether the code blames the server (or what it depends on) rather
    /// than the request.
    fn is_server_fault(&self) -> bool {
        matches!(
            self.code,
            Code::Internal | Code::Unavailable | Code::DataLoss | Code::Unknown
        )
    }

    /// The message a client gets: the error with its context, file paths
    /// of this server replaced by `<path>`. A server-side failure is logged
    /// here, once, whole, under an id the message repeats.
    fn client_message(&self) -> String {
        let full = self.to_string();
        let message = scrub_paths(&full);
        if !self.is_server_fault() {
            return message;
        }
        let id = format!(
            "{:x}-{}",
            std::process::id(),
            NEXT_ERROR_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        if self.code == Code::Unavailable {
            tracing::warn!(error_id = %id, code = ?self.code, error = %full, "request failed");
        } else {
            tracing::error!(error_id = %id, code = ?self.code, error = %full, "request failed");
        }
        format!("{message} (error id {id}; details in the server's log)")
    }
}

/// Replaces every absolute file path (a word starting with `/` with at
/// least one more `/` in it) by `<path>`: clients need not know the
/// server's layout.
fn scrub_paths(text: &str) -> String {
    let is_path_char = |c: char| c.is_alphanumeric() || "/._-+@~%".contains(c);
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('/') {
        let (before, from) = rest.split_at(at);
        let starts_word = before
            .chars()
            .next_back()
            .is_none_or(|c| c.is_whitespace() || "(\"'=:,[".contains(c));
        let len = from.find(|c: char| !is_path_char(c)).unwrap_or(from.len());
        let word = &from[..len];
        out.push_str(before);
        if starts_word && word[1..].contains('/') {
            out.push_str("<path>");
        } else {
            out.push_str(word);
        }
        rest = &from[len..];
    }
    out.push_str(rest);
    out
}

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        let message = err.client_message();
        match err.details {
            Some(details) => tonic::Status::with_details(err.code, message, details),
            None => tonic::Status::new(err.code, message),
        }
    }
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        let mut err = Error::new(status.code(), status.message());
        if !status.details().is_empty() {
            err.details = Some(Bytes::copy_from_slice(status.details()));
        }
        err
    }
}

/// Adds context to the error of a `Result`.
pub trait ErrorExt<T> {
    fn context(self, line: impl Into<String>) -> Result<T>;
    fn with_context<S: Into<String>>(self, line: impl FnOnce() -> S) -> Result<T>;
}

impl<T> ErrorExt<T> for Result<T> {
    fn context(self, line: impl Into<String>) -> Result<T> {
        self.map_err(|e| e.context(line))
    }

    fn with_context<S: Into<String>>(self, line: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| e.context(line()))
    }
}

impl<T> ErrorExt<T> for std::io::Result<T> {
    fn context(self, line: impl Into<String>) -> Result<T> {
        self.map_err(|e| Error::io(line, e))
    }

    fn with_context<S: Into<String>>(self, line: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| Error::io(line(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_reads_outermost_first() {
        let err = Error::not_found("blob abc/1 is missing")
            .context("reading input tree")
            .context("action def/2");
        assert_eq!(
            err.to_string(),
            "action def/2: reading input tree: blob abc/1 is missing"
        );
        let status = tonic::Status::from(err);
        assert_eq!(status.code(), Code::NotFound);
        assert!(status.message().starts_with("action def/2"));
    }

    #[test]
    fn client_messages_hide_server_paths_and_number_server_faults() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let err = Error::io("opening /srv/reapi/cas/ab/abcd-5", io).context("reading blob abcd/5");
        let status = tonic::Status::from(err);
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(
            status.message(),
            "reading blob abcd/5: opening <path>: No such file or directory"
        );

        let err = Error::internal("rename failed")
            .context("moving /tmp/x/upload-1 to /srv/cas/ab/cd")
            .context("storing blob cd/3");
        let status = tonic::Status::from(err.clone());
        assert_eq!(status.code(), Code::Internal);
        assert!(
            status.message().starts_with(
                "storing blob cd/3: moving <path> to <path>: rename failed (error id "
            ),
            "{}",
            status.message()
        );
        assert!(!err.to_rpc_status().message.contains("/srv"));
        // Two reports of one failure have different ids.
        assert_ne!(tonic::Status::from(err.clone()).message(), status.message());
    }

    #[test]
    fn scrubbing_keeps_what_is_not_a_path() {
        for text in [
            "instance ci/linux: blob abc/12 is missing",
            "resource main/uploads/u/blobs/ab/3 is malformed",
            "ratio 1/2",
            "a/b and /single",
        ] {
            assert_eq!(scrub_paths(text), text);
        }
        assert_eq!(
            scrub_paths("at (/a/b) and '/c/d'"),
            "at (<path>) and '<path>'"
        );
    }

    #[test]
    fn io_errors_are_classified() {
        let nf = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert_eq!(Error::io("x", nf).code(), Code::NotFound);
        let full = std::io::Error::from_raw_os_error(28);
        assert_eq!(Error::io("x", full).code(), Code::ResourceExhausted);
        let other = std::io::Error::other("boom");
        assert_eq!(Error::io("x", other).code(), Code::Internal);
    }

    #[test]
    fn details_survive_status_conversion() {
        let err =
            Error::failed_precondition("missing").with_details(Bytes::from_static(b"\x08\x09"));
        let status = tonic::Status::from(err);
        assert_eq!(status.details(), b"\x08\x09");
    }
}

impl Error {
    /// FAILED_PRECONDITION listing each missing blob as a `MISSING`
    /// violation with subject `blobs/{hash}/{size}`: the form clients such as
    /// Bazel read to upload the blobs and retry.
    pub fn missing_blobs(digests: &[crate::Digest]) -> Self {
        use crate::proto::error_details::{
            precondition_failure::Violation, PreconditionFailure, PRECONDITION_FAILURE_TYPE_URL,
        };
        use prost::Message;
        let failure = PreconditionFailure {
            violations: digests
                .iter()
                .map(|d| Violation {
                    r#type: "MISSING".into(),
                    subject: format!("blobs/{}/{}", d.hash_hex(), d.size()),
                    description: String::new(),
                })
                .collect(),
        };
        let shown: Vec<String> = digests.iter().take(5).map(|d| d.to_string()).collect();
        let message = format!(
            "{} input blob(s) missing from the CAS: {}{}",
            digests.len(),
            shown.join(", "),
            if digests.len() > shown.len() {
                ", ..."
            } else {
                ""
            }
        );
        let status = crate::proto::rpc::Status {
            code: Code::FailedPrecondition as i32,
            message: message.clone(),
            details: vec![crate::proto::protobuf::Any {
                type_url: PRECONDITION_FAILURE_TYPE_URL.into(),
                value: failure.encode_to_vec(),
            }],
        };
        Error::failed_precondition(message).with_details(Bytes::from(status.encode_to_vec()))
    }

    /// The error a `google.rpc.Status` message describes (from a worker's
    /// report or a peer); details are kept. An OK status, which is no
    /// error, becomes UNKNOWN rather than a silent success.
    pub fn from_rpc_status(status: &crate::proto::rpc::Status) -> Self {
        use prost::Message;
        let code = match Code::from_i32(status.code) {
            Code::Ok => Code::Unknown,
            code => code,
        };
        let error = Error::new(code, status.message.clone());
        if status.details.is_empty() {
            error
        } else {
            error.with_details(Bytes::from(status.encode_to_vec()))
        }
    }

    /// This error as a `google.rpc.Status` message (for
    /// `ExecuteResponse.status` and operation errors).
    pub fn to_rpc_status(&self) -> crate::proto::rpc::Status {
        use prost::Message;
        if let Some(status) = self
            .details
            .as_ref()
            .and_then(|d| crate::proto::rpc::Status::decode(d.clone()).ok())
        {
            return status;
        }
        crate::proto::rpc::Status {
            code: self.code as i32,
            message: self.client_message(),
            details: vec![],
        }
    }
}

#[cfg(test)]
mod missing_blob_tests {
    use super::*;
    use crate::proto::error_details::PreconditionFailure;
    use prost::Message;

    #[test]
    fn missing_blobs_lists_each_subject() {
        let a = crate::Digest::of_bytes(b"a");
        let err = Error::missing_blobs(&[a]);
        assert_eq!(err.code(), Code::FailedPrecondition);
        let status = err.to_rpc_status();
        assert_eq!(status.details.len(), 1);
        let failure = PreconditionFailure::decode(status.details[0].value.as_slice()).unwrap();
        assert_eq!(failure.violations[0].r#type, "MISSING");
        assert_eq!(
            failure.violations[0].subject,
            format!("blobs/{}/1", a.hash_hex())
        );
        let grpc = tonic::Status::from(err);
        assert!(!grpc.details().is_empty());
    }
}
