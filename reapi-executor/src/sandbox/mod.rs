//! [`reapi_core::Sandbox`] implementations: how one command runs.
//!
//! - [`ProcessSandbox`] (isolation level `process`): the command leads its
//!   own process group, which is killed as a whole on timeout, on cancel
//!   and when the command exits (so no background process outlives it).
//!
//! Shared pieces: [`launch`] starts commands so that they die with this
//! process (a pid namespace each), [`privileges`] takes every capability
//! from them before they exec, [`new_root`] makes the input root a
//! command's `/` when it asks (`rootfs=input-root`), [`cgroup`] gives each a control group
//! with the limits it asked for, [`resolve`] finds the program
//! `arguments[0]` names, [`group`] owns a running process group, and
//! [`leftovers`] kills what a killed predecessor left running.

pub mod cgroup;
pub mod group;
pub mod isolation;
pub mod launch;
pub mod leftovers;
mod new_root;
mod privileges;
mod process;
pub mod resolve;

pub use process::ProcessSandbox;
