//! S3 failures as gRPC codes, each with the operation, bucket and key as
//! context.
//!
//! | failure                                                  | code                |
//! |----------------------------------------------------------|---------------------|
//! | 404, `NoSuchKey`                                         | NOT_FOUND           |
//! | `NoSuchBucket`, 301 (another region), no credentials     | FAILED_PRECONDITION |
//! | 401, 403, `AccessDenied`, `InvalidAccessKeyId`, `SignatureDoesNotMatch` | PERMISSION_DENIED |
//! | 416, `InvalidRange`                                      | OUT_OF_RANGE        |
//! | 5xx, 408, 429, `SlowDown`, `RequestTimeout`, timeouts, refused or cut connections | UNAVAILABLE |
//! | any other 4xx                                            | INTERNAL            |
//!
//! Retries happen below this, in the SDK (see `client.rs`): an error seen
//! here is final.

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use reapi_core::Error;
use tonic::Code;

/// What was being done, for the error's context line.
#[derive(Clone, Copy)]
pub(super) struct Op<'a> {
    pub name: &'static str,
    pub bucket: &'a str,
    pub key: &'a str,
}

impl Op<'_> {
    fn describe(&self) -> String {
        format!("S3 {} s3://{}/{}", self.name, self.bucket, self.key)
    }
}

/// Maps a failed SDK call.
pub(super) fn sdk_error<E>(err: SdkError<E, HttpResponse>, op: Op<'_>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let error = match &err {
        SdkError::TimeoutError(_) => Error::unavailable(format!(
            "S3 backend unavailable: the request timed out: {}",
            chain(&err)
        )),
        SdkError::DispatchFailure(_) if is_credentials_error(&err) => {
            Error::failed_precondition(format!(
                "no AWS credentials: set access_key_id and secret_access_key in the S3 \
                 configuration, or provide them the standard AWS ways: {}",
                chain(&err)
            ))
        }
        SdkError::DispatchFailure(failure) if failure.is_user() => {
            Error::failed_precondition(format!(
                "S3 request could not be sent (check the endpoint): {}",
                chain(&err)
            ))
        }
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Error::unavailable(format!("S3 backend unavailable: {}", chain(&err)))
        }
        SdkError::ServiceError(_) => {
            let status = err.raw_response().map(|r| r.status().as_u16());
            service_error(status, err.code(), err.message(), op)
        }
        // Building the request failed: most often no credentials were found.
        _ => Error::failed_precondition(format!("S3 request could not be made: {}", chain(&err))),
    };
    error.context(op.describe())
}

/// Whether the credential provider failed (nothing found, or it could not
/// load them), rather than the request.
fn is_credentials_error(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.is::<CredentialsError>() {
            return true;
        }
        next = e.source();
    }
    false
}

/// An error and its sources, `: `-separated, each once.
pub(super) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// A response from the server that says no.
fn service_error(
    status: Option<u16>,
    code: Option<&str>,
    message: Option<&str>,
    op: Op<'_>,
) -> Error {
    let mut what = status.map_or_else(|| "no HTTP status".to_string(), |s| format!("HTTP {s}"));
    if let Some(code) = code {
        what = format!("{code}, {what}");
    }
    if let Some(message) = message {
        what = format!("{what}: {message}");
    }
    let grpc_code = classify(status, code);
    let text = match grpc_code {
        Code::NotFound => format!("not found ({what})"),
        Code::FailedPrecondition if code == Some("NoSuchBucket") => {
            format!("bucket {:?} does not exist ({what})", op.bucket)
        }
        Code::FailedPrecondition => format!(
            "bucket {:?} is not usable as configured, wrong region? ({what})",
            op.bucket
        ),
        Code::PermissionDenied => format!(
            "S3 denied access ({what}): check access_key_id and secret_access_key (or the \
             credentials found in the environment) and the bucket's policy"
        ),
        Code::Unavailable => format!("S3 backend unavailable ({what})"),
        Code::OutOfRange => format!("range not satisfiable ({what})"),
        _ => format!("S3 rejected the request ({what})"),
    };
    Error::new(grpc_code, text)
}

/// The gRPC code of an S3 error response.
pub(super) fn classify(status: Option<u16>, code: Option<&str>) -> Code {
    match code {
        Some("NoSuchKey" | "NotFound") => return Code::NotFound,
        Some("NoSuchBucket" | "PermanentRedirect" | "AuthorizationHeaderMalformed") => {
            return Code::FailedPrecondition
        }
        Some(
            "AccessDenied"
            | "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "InvalidToken"
            | "ExpiredToken"
            | "TokenRefreshRequired",
        ) => return Code::PermissionDenied,
        Some(
            "SlowDown"
            | "Throttling"
            | "ThrottlingException"
            | "RequestTimeout"
            | "RequestTimeTooSkewed"
            | "InternalError"
            | "ServiceUnavailable",
        ) => return Code::Unavailable,
        Some("InvalidRange") => return Code::OutOfRange,
        _ => {}
    }
    match status {
        Some(404) => Code::NotFound,
        Some(301) => Code::FailedPrecondition,
        Some(401 | 403) => Code::PermissionDenied,
        Some(416) => Code::OutOfRange,
        Some(408 | 429) => Code::Unavailable,
        Some(s) if s >= 500 => Code::Unavailable,
        _ => Code::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        let cases = [
            (Some(404), Some("NoSuchKey"), Code::NotFound),
            (Some(404), None, Code::NotFound),
            (Some(404), Some("NoSuchBucket"), Code::FailedPrecondition),
            (Some(301), None, Code::FailedPrecondition),
            (
                Some(403),
                Some("SignatureDoesNotMatch"),
                Code::PermissionDenied,
            ),
            (
                Some(403),
                Some("InvalidAccessKeyId"),
                Code::PermissionDenied,
            ),
            (Some(403), None, Code::PermissionDenied),
            (Some(503), Some("SlowDown"), Code::Unavailable),
            (Some(500), None, Code::Unavailable),
            (Some(400), Some("RequestTimeout"), Code::Unavailable),
            (Some(416), Some("InvalidRange"), Code::OutOfRange),
            (Some(400), Some("InvalidPart"), Code::Internal),
            (Some(409), None, Code::Internal),
        ];
        for (status, code, expected) in cases {
            assert_eq!(classify(status, code), expected, "{status:?} {code:?}");
        }
    }

    #[test]
    fn missing_bucket_is_named() {
        let op = Op {
            name: "HeadObject",
            bucket: "blobs",
            key: "k",
        };
        let err = service_error(Some(404), Some("NoSuchBucket"), None, op);
        assert_eq!(err.code(), Code::FailedPrecondition);
        assert!(err.message().contains("\"blobs\""), "{err}");
    }
}
