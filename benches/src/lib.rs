//! Benchmarks of the REAPI service: a load generator that speaks plain REAPI
//! to any server, and micro-benchmarks of the hot paths.
