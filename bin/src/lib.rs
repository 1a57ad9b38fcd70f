//! What the three binaries share: their configuration (flags and one TOML
//! format, [`config`]) and how a process starts and stops ([`run`]). Every
//! piece of composition a library user would also need lives in the
//! crates; the binaries only parse configuration and call them.

pub mod config;
pub mod run;
