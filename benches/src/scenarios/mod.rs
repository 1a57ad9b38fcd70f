//! One module per family of REAPI calls.

pub mod ac;
pub mod batch;
pub mod cas;
pub mod digest_functions;
pub mod dispatch;
pub mod execute;
pub mod find_missing;
pub mod zstd;
