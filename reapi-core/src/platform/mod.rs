//! Platform-property matching: which executors may run an action.
//!
//! An executor offers [`ExecutorProperties`]; an action asks for
//! [`Requirements`], read from `Action.platform` with a fallback to the
//! deprecated `Command.platform` ([`required_platform`]). The rules:
//!
//! - `cpus` and `memory` are numeric resources compared as "at least": an
//!   executor with 8 CPUs satisfies an action asking for 4. `cpus` is a whole
//!   number of CPUs; `memory` is bytes, written plain (`1073741824`) or with a
//!   binary unit (`4G`, see [`crate::config::parse_byte_size`]). Absent, both
//!   default to 0, meaning "no claim": the action matches any executor, reserves
//!   nothing and gets no CPU or memory limit of its own. (A default of one CPU
//!   would cap every undeclared action, linkers included, at one core.)
//! - `network` (`on`, `off`) and `rootfs` (`host`, `input-root`) are
//!   interpreted by the sandbox (see [`CHOICES`]); they are matched like any
//!   string property, and a value outside the set, or two values at once,
//!   is INVALID_ARGUMENT.
//! - Every other property is compared by exact, case-sensitive string
//!   equality.
//! - Several values under one name: an executor listing `label=gpu` and
//!   `label=fast` offers both; an action listing both needs both (every
//!   requirement must be met). A numeric resource an action lists twice
//!   asks for the larger value, which is what meeting both amounts to.
//!
//! The spec says properties are sorted by name then value; we accept them in
//! any order and ignore exact duplicates, because the order changes nothing
//! about what is asked.
//!
//! Matching against an executor's capacity ([`ExecutorProperties::check`],
//! [`ensure_satisfiable`]) answers "could it ever run this"; whether it can
//! run it now is for the scheduler, which keeps the books of the CPUs and
//! memory that running actions hold.
//!
//! One file per concern: `resources` (the numeric resources and their
//! parsing), `choices` (the properties a sandbox interprets), `properties` (what an executor offers), `requirements` (what an
//! action asks for) and `matching` (the one against the other); everything
//! public is re-exported here.

mod choices;
mod matching;
mod properties;
mod requirements;
mod resources;
#[cfg(test)]
mod test_support;

pub use choices::{
    Choice, RootFs, CHOICES, NETWORK, NETWORK_OFF, NETWORK_ON, ROOTFS, ROOTFS_HOST,
    ROOTFS_INPUT_ROOT,
};
pub use matching::{ensure_satisfiable, Mismatch};
pub use properties::ExecutorProperties;
pub use requirements::{required_platform, Requirements};
pub use resources::{Resources, CPUS, MEMORY};
