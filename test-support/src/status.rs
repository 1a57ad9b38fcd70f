//! Failures as the tests check them: the code of a failed call, and of a
//! `google.rpc.Status` inside a response (a blob's, an ExecuteResponse's).

use std::fmt::Debug;

use reapi_core::proto::rpc;
use tonic::{Code, Status};

/// Asserts `result` failed with `code`; returns the status.
#[track_caller]
pub fn assert_code<T: Debug>(result: Result<T, Status>, code: Code, what: &str) -> Status {
    match result {
        Ok(v) => panic!("{what}: expected {code:?}, got Ok({v:?})"),
        Err(status) => {
            assert_eq!(
                status.code(),
                code,
                "{what}: wrong code; message: {}",
                status.message()
            );
            status
        }
    }
}

/// Code of a `google.rpc.Status` field (a blob's in a batch response, an
/// ExecuteResponse's), OK when absent.
pub fn rpc_code(status: &Option<rpc::Status>) -> Code {
    Code::from_i32(status.as_ref().map_or(0, |s| s.code))
}
