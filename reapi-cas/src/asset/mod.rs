//! The Remote Asset API (v1): clients ask for content by URI (and
//! qualifiers) instead of by digest. Fetch answers from what was pushed or
//! fetched before, and FetchBlob downloads from allowed hosts ([`fetch`]);
//! Push records what a client already uploaded. Associations live in the
//! action cache ([`associations`]).

pub mod associations;
pub mod fetch;
pub mod headers;
pub mod qualifiers;
pub mod service;

pub use fetch::{FetchPolicy, Fetcher};
pub use service::AssetServices;
