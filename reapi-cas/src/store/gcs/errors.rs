//! Turning GCS failures into the project's errors: the HTTP status decides
//! the gRPC code, the JSON error body supplies the message.

use http::StatusCode;
use reapi_core::Error;
use tonic::Code;

/// Longest part of an error body quoted in a message.
const MAX_QUOTED: usize = 300;

/// The error for a non-success `status` with response body `body`.
pub(super) fn from_status(status: StatusCode, body: &[u8]) -> Error {
    let detail = body_message(body);
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    };
    match status {
        StatusCode::NOT_FOUND => Error::not_found(format!("not found in GCS (HTTP 404){detail}")),
        StatusCode::UNAUTHORIZED => Error::new(
            Code::Unauthenticated,
            format!(
                "GCS rejected the credentials (HTTP 401); check credentials_file or the \
                 default GCP credentials{detail}"
            ),
        ),
        StatusCode::FORBIDDEN => Error::new(
            Code::PermissionDenied,
            format!(
                "GCS denied access (HTTP 403); the account needs object read/write on the \
                 bucket{detail}"
            ),
        ),
        StatusCode::RANGE_NOT_SATISFIABLE => {
            Error::out_of_range(format!("GCS: range not satisfiable (HTTP 416){detail}"))
        }
        status if super::retry::is_transient(status) => {
            Error::unavailable(format!("GCS backend unavailable: HTTP {status}{detail}"))
        }
        status => Error::internal(format!("GCS answered HTTP {status}{detail}")),
    }
}

/// The error for a request that got no response: refused or reset
/// connection, TLS failure, timeout.
pub(super) fn unavailable(endpoint: &str, cause: &(dyn std::error::Error + 'static)) -> Error {
    Error::unavailable(format!(
        "GCS backend unavailable: {endpoint}: {}",
        error_chain(cause)
    ))
}

pub(super) use crate::http_client::error_chain;

/// `error.message` of a JSON API error body, else the body as text, cut short.
fn body_message(body: &[u8]) -> String {
    let from_json = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned));
    let text = from_json.unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
    if text.len() <= MAX_QUOTED {
        return text;
    }
    let mut end = MAX_QUOTED;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_status() {
        let cases = [
            (404, Code::NotFound),
            (401, Code::Unauthenticated),
            (403, Code::PermissionDenied),
            (416, Code::OutOfRange),
            (429, Code::Unavailable),
            (503, Code::Unavailable),
            (400, Code::Internal),
        ];
        for (status, code) in cases {
            let err = from_status(StatusCode::from_u16(status).unwrap(), b"");
            assert_eq!(err.code(), code, "{status}");
        }
    }

    #[test]
    fn quotes_the_json_message() {
        let body = br#"{"error":{"code":403,"message":"sa@p.iam lacks storage.objects.get"}}"#;
        let err = from_status(StatusCode::FORBIDDEN, body);
        assert!(err
            .message()
            .ends_with(": sa@p.iam lacks storage.objects.get"));
        let long = "x".repeat(1000);
        let err = from_status(StatusCode::BAD_GATEWAY, long.as_bytes());
        assert!(err.message().len() < 400);
        assert!(err
            .message()
            .starts_with("GCS backend unavailable: HTTP 502"));
    }
}
