//! Runnable examples of embedding the REAPI crates; see the `[[example]]`
//! targets in this package and the tests that run them.
