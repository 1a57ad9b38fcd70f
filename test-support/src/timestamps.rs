//! Protocol timestamps as numbers a test can compare.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reapi_core::proto::protobuf::Timestamp;

/// Nanoseconds since the epoch of a protocol timestamp, which must be set.
pub fn nanos(ts: &Option<Timestamp>) -> u128 {
    let ts = ts.as_ref().expect("timestamp is set");
    let at = UNIX_EPOCH + Duration::new(ts.seconds as u64, ts.nanos as u32);
    at.duration_since(UNIX_EPOCH).unwrap().as_nanos()
}

/// Nanoseconds since the epoch now.
pub fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}
