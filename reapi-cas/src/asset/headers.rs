//! HTTP headers a FetchBlob client asks the server to send with its
//! download: `http_header:NAME` for every URI of the request, and
//! `http_header:NAME` overridden by `http_header_url:INDEX:NAME` for the URI
//! at that index (what Bazel 7 sends with
//! `--experimental_remote_downloader_propagate_credentials`, from its netrc
//! and credential helpers).
//!
//! They are usually credentials, so they are not part of an asset's
//! identity (two users' tokens fetch the same file), they go only to the
//! URI's own origin (a redirect to another host drops them, as curl does),
//! and headers that would change what is downloaded (a range, a condition,
//! an encoding) or how the connection is made are refused.

use std::collections::BTreeMap;

use http::{HeaderName, HeaderValue};
use reapi_core::{Error, Result};

pub const HTTP_HEADER_PREFIX: &str = "http_header:";
pub const HTTP_HEADER_URL_PREFIX: &str = "http_header_url:";

/// Headers that would make the download something other than the whole
/// resource, or that belong to the connection rather than the request.
const REFUSED: [&str; 16] = [
    "accept-encoding",
    "connection",
    "content-length",
    "expect",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "keep-alive",
    "proxy-connection",
    "range",
    "te",
    "transfer-encoding",
    "upgrade",
];

/// The header qualifiers of one request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchHeaders {
    global: Vec<(HeaderName, HeaderValue)>,
    per_uri: BTreeMap<usize, Vec<(HeaderName, HeaderValue)>>,
}

impl FetchHeaders {
    /// Takes the qualifier `name` = `value` if it is a header qualifier;
    /// `Ok(false)` if it is some other qualifier.
    pub fn take(&mut self, name: &str, value: &str) -> Result<bool> {
        if let Some(header) = name.strip_prefix(HTTP_HEADER_PREFIX) {
            self.global.push(header_pair(name, header, value)?);
            return Ok(true);
        }
        if let Some(rest) = name.strip_prefix(HTTP_HEADER_URL_PREFIX) {
            let bad = |why: &str| Error::invalid_argument(format!("qualifier {name:?}: {why}"));
            let (index, header) = rest
                .split_once(':')
                .ok_or_else(|| bad("expected http_header_url:INDEX:NAME"))?;
            let index: usize = index
                .parse()
                .map_err(|_| bad("the URI index is not a number"))?;
            let pair = header_pair(name, header, value)?;
            self.per_uri.entry(index).or_default().push(pair);
            return Ok(true);
        }
        Ok(false)
    }

    /// Checks that every per-URI header names one of `uri_count` URIs.
    pub fn check_indexes(&self, uri_count: usize) -> Result<()> {
        match self.per_uri.keys().find(|&&index| index >= uri_count) {
            Some(index) => Err(Error::invalid_argument(format!(
                "qualifier {HTTP_HEADER_URL_PREFIX}{index}:...: the request has {uri_count} URIs"
            ))),
            None => Ok(()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.global.is_empty() && self.per_uri.is_empty()
    }

    /// The headers for the URI at `index`: the global ones, each replaced
    /// by a per-URI header of the same name.
    pub fn for_uri(&self, index: usize) -> Vec<(HeaderName, HeaderValue)> {
        let specific = self.per_uri.get(&index).map_or(&[][..], Vec::as_slice);
        self.global
            .iter()
            .filter(|(name, _)| !specific.iter().any(|(s, _)| s == name))
            .chain(specific)
            .cloned()
            .collect()
    }
}

fn header_pair(qualifier: &str, name: &str, value: &str) -> Result<(HeaderName, HeaderValue)> {
    let bad = |why: &str| Error::invalid_argument(format!("qualifier {qualifier:?}: {why}"));
    let name =
        HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad("not a valid HTTP header name"))?;
    if REFUSED.contains(&name.as_str()) {
        return Err(bad(
            "this header would change what is downloaded or how; it is not sent",
        ));
    }
    let mut value = HeaderValue::from_str(value)
        .map_err(|_| bad("the value is not a valid HTTP header value"))?;
    // Usually a credential: kept out of debug output.
    value.set_sensitive(true);
    Ok((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Result<FetchHeaders> {
        let mut headers = FetchHeaders::default();
        for (name, value) in pairs {
            assert!(headers.take(name, value)?, "{name} is a header qualifier");
        }
        Ok(headers)
    }

    fn values(list: &[(HeaderName, HeaderValue)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
            .collect()
    }

    #[test]
    fn per_uri_headers_replace_global_ones_of_the_same_name() {
        let h = headers(&[
            ("http_header:Authorization", "Bearer everyone"),
            ("http_header:X-Trace", "1"),
            ("http_header_url:1:Authorization", "Bearer second"),
        ])
        .unwrap();
        let pair = |n: &str, v: &str| (n.to_string(), v.to_string());
        assert_eq!(
            values(&h.for_uri(0)),
            vec![
                pair("authorization", "Bearer everyone"),
                pair("x-trace", "1")
            ]
        );
        assert_eq!(
            values(&h.for_uri(1)),
            vec![pair("x-trace", "1"), pair("authorization", "Bearer second")]
        );
        h.check_indexes(2).unwrap();
        assert_eq!(
            h.check_indexes(1).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        assert!(!h.is_empty());
        assert!(FetchHeaders::default().is_empty());
    }

    #[test]
    fn other_qualifiers_are_left_alone_and_bad_headers_refused() {
        let mut h = FetchHeaders::default();
        assert!(!h.take("checksum.sri", "sha256-x").unwrap());
        assert!(!h.take("bazel.auth_headers", "{}").unwrap());
        for (name, value, why) in [
            (
                "http_header:Range",
                "bytes=0-1",
                "change what is downloaded",
            ),
            ("http_header:HOST", "elsewhere", "change what is downloaded"),
            ("http_header:Bad Name", "x", "not a valid HTTP header name"),
            ("http_header:", "x", "not a valid HTTP header name"),
            ("http_header:X", "a\nb", "not a valid HTTP header value"),
            ("http_header_url:x:Authorization", "t", "not a number"),
            ("http_header_url:Authorization", "t", "INDEX:NAME"),
        ] {
            let err = h.take(name, value).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
            assert!(err.message().contains(why), "{name}: {}", err.message());
        }
    }

    #[test]
    fn header_values_are_not_printed() {
        let h = headers(&[("http_header:Authorization", "Bearer secret")]).unwrap();
        assert!(!format!("{h:?}").contains("secret"));
    }
}
