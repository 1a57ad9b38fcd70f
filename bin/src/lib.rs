//! What the three binaries share: their configuration (flags and one TOML
//! format, [`config`]), how a process starts and stops ([`run`]), and what
//! it offers operators ([`ops`]). Every
//! piece of composition a library user would also need lives in the
//! crates; the binaries only parse configuration and call them.

pub mod config;
pub mod ops;
pub mod run;

/// The three binaries allocate with mimalloc. FindMissingBlobs and the
/// cluster CAS allocate a string per digest in every message they decode
/// and encode (the generated types hold hashes as `String`), and glibc's
/// allocator was the largest cost of a FindMissingBlobs fanned out to the
/// workers (a quarter of the scheduler's CPU).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
