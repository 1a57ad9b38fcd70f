//! Platform-property matching: which executors may run an action, and the
//! bookkeeping of the CPUs and memory an action holds while it runs.
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
//! run it now is the [`ResourceLedger`]'s question.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::config::parse_byte_size;
use crate::error::{Error, Result};
use crate::proto::remote_execution::{platform::Property, Action, Command, Platform};

/// Name of the numeric property counting CPUs.
pub const CPUS: &str = "cpus";
/// Name of the numeric property counting bytes of memory.
pub const MEMORY: &str = "memory";

static EMPTY_PLATFORM: Platform = Platform {
    properties: Vec::new(),
};

/// The platform an action asks for: `Action.platform` (REAPI 2.2+), or the
/// deprecated `Command.platform` that older clients set instead.
///
/// An `Action.platform` that is present but empty also falls back: a client
/// that filled only the Command would otherwise run anywhere, possibly on the
/// wrong OS.
pub fn required_platform<'a>(action: &'a Action, command: &'a Command) -> &'a Platform {
    if let Some(platform) = action.platform.as_ref() {
        if !platform.properties.is_empty() {
            return platform;
        }
    }
    #[allow(deprecated)]
    let legacy = command.platform.as_ref();
    legacy.unwrap_or(&EMPTY_PLATFORM)
}

/// The numeric resources: CPUs and bytes of memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Resources {
    pub cpus: u32,
    pub memory: u64,
}

impl Resources {
    /// True when `self` is at least `wanted` in every resource.
    pub fn covers(&self, wanted: &Resources) -> bool {
        self.cpus >= wanted.cpus && self.memory >= wanted.memory
    }
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{CPUS}={}, {MEMORY}={}",
            self.cpus,
            format_bytes(self.memory)
        )
    }
}

/// What one executor offers: string properties (a name may carry several
/// values) and its total resources.
///
/// Executors with equal properties form a pool, hence `Eq + Hash`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ExecutorProperties {
    properties: BTreeMap<String, BTreeSet<String>>,
    resources: Resources,
}

impl ExecutorProperties {
    /// Parses `name=value` strings, as given by `--platform OSFamily=linux`
    /// flags. The value is everything after the first `=` and may be empty.
    /// `cpus` and `memory` are parsed as numbers; giving either twice with
    /// different values is an error. An executor that states no `cpus` or
    /// `memory` offers 0, so it only takes actions that claim none: the
    /// binary, not this type, should fill in the host's figures.
    pub fn from_pairs<I, S>(pairs: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut builder = OfferBuilder::default();
        for pair in pairs {
            let pair = pair.as_ref();
            let (name, value) = pair.split_once('=').ok_or_else(|| {
                Error::invalid_argument(format!(
                    "executor property {pair:?} is not of the form name=value"
                ))
            })?;
            builder.add(name, value)?;
        }
        Ok(builder.finish())
    }

    /// Reads the properties an executor announced as a `Platform` message
    /// (for example when a worker registers).
    pub fn from_platform(platform: &Platform) -> Result<Self> {
        let mut builder = OfferBuilder::default();
        for property in &platform.properties {
            builder.add(&property.name, &property.value)?;
        }
        Ok(builder.finish())
    }

    /// The properties as a `Platform` message in the spec's canonical order
    /// (by name, then value). Resources are included when non-zero, so
    /// `from_platform(&p.to_platform())` gives back `p`.
    pub fn to_platform(&self) -> Platform {
        let mut properties: Vec<Property> = self
            .properties
            .iter()
            .flat_map(|(name, values)| {
                values.iter().map(move |value| Property {
                    name: name.clone(),
                    value: value.clone(),
                })
            })
            .collect();
        if self.resources.cpus > 0 {
            properties.push(Property {
                name: CPUS.into(),
                value: self.resources.cpus.to_string(),
            });
        }
        if self.resources.memory > 0 {
            properties.push(Property {
                name: MEMORY.into(),
                value: self.resources.memory.to_string(),
            });
        }
        properties.sort_by(|a, b| (&a.name, &a.value).cmp(&(&b.name, &b.value)));
        Platform { properties }
    }

    /// The executor's total resources (not what is free right now).
    pub fn resources(&self) -> Resources {
        self.resources
    }

    /// The values offered under `name` (empty when the name is not offered).
    pub fn values(&self, name: &str) -> impl Iterator<Item = &str> {
        self.properties
            .get(name)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    /// Every string property as `(name, value)`, sorted.
    pub fn properties(&self) -> impl Iterator<Item = (&str, &str)> {
        iter_pairs(&self.properties)
    }

    /// Whether this executor could ever run an action with `wanted`: `Ok`,
    /// or the first requirement it fails (string properties by name, then
    /// `cpus`, then `memory`).
    pub fn check(&self, wanted: &Requirements) -> Result<(), Mismatch> {
        match self.mismatches(wanted).next() {
            Some(mismatch) => Err(mismatch),
            None => Ok(()),
        }
    }

    /// True when [`check`](Self::check) passes.
    pub fn satisfies(&self, wanted: &Requirements) -> bool {
        self.check(wanted).is_ok()
    }

    fn mismatches<'a>(&'a self, wanted: &'a Requirements) -> impl Iterator<Item = Mismatch> + 'a {
        let properties = iter_pairs(&wanted.properties).filter_map(move |(name, value)| {
            let offered = self.properties.get(name);
            if offered.is_some_and(|values| values.contains(value)) {
                return None;
            }
            Some(Mismatch::Property {
                name: name.to_string(),
                wanted: value.to_string(),
                offered: offered.into_iter().flatten().cloned().collect(),
            })
        });
        let have = self.resources;
        let want = wanted.resources;
        let cpus = (want.cpus > have.cpus).then_some(Mismatch::Cpus {
            wanted: want.cpus,
            offered: have.cpus,
        });
        let memory = (want.memory > have.memory).then_some(Mismatch::Memory {
            wanted: want.memory,
            offered: have.memory,
        });
        properties.chain(cpus).chain(memory)
    }
}

impl fmt::Display for ExecutorProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, value) in self.properties() {
            write!(f, "{name}={value}, ")?;
        }
        write!(f, "{}", self.resources)
    }
}

/// Collects an executor's offer, rejecting a resource given twice with
/// different values: which one was meant cannot be guessed.
#[derive(Default)]
struct OfferBuilder {
    offer: ExecutorProperties,
    cpus: Option<u32>,
    memory: Option<u64>,
}

impl OfferBuilder {
    fn add(&mut self, name: &str, value: &str) -> Result<()> {
        if name.is_empty() {
            return Err(Error::invalid_argument(format!(
                "executor property with value {value:?} has an empty name"
            )));
        }
        match name {
            CPUS => {
                let cpus = parse_cpus(value, "executor property")?;
                set_once(&mut self.cpus, cpus, name)?;
                self.offer.resources.cpus = cpus;
            }
            MEMORY => {
                let memory = parse_memory(value, "executor property")?;
                set_once(&mut self.memory, memory, name)?;
                self.offer.resources.memory = memory;
            }
            _ => {
                self.offer
                    .properties
                    .entry(name.to_string())
                    .or_default()
                    .insert(value.to_string());
            }
        }
        Ok(())
    }

    fn finish(self) -> ExecutorProperties {
        self.offer
    }
}

fn set_once<T: PartialEq + fmt::Display + Copy>(
    slot: &mut Option<T>,
    value: T,
    name: &str,
) -> Result<()> {
    match *slot {
        Some(previous) if previous != value => Err(Error::invalid_argument(format!(
            "executor property {name} is given twice, as {previous} and {value}"
        ))),
        _ => {
            *slot = Some(value);
            Ok(())
        }
    }
}

/// What an action asks of its executor.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Requirements {
    properties: BTreeMap<String, BTreeSet<String>>,
    resources: Resources,
}

impl Requirements {
    /// Parses an action's platform. A malformed `cpus` or `memory` is
    /// INVALID_ARGUMENT naming the property; anything else is kept as an
    /// exact-match constraint. An empty property name is INVALID_ARGUMENT,
    /// as no executor could offer it.
    pub fn from_platform(platform: &Platform) -> Result<Self> {
        let mut wanted = Requirements::default();
        for Property { name, value } in &platform.properties {
            match name.as_str() {
                "" => {
                    return Err(Error::invalid_argument(format!(
                        "platform property with value {value:?} has an empty name"
                    )))
                }
                CPUS => {
                    let cpus = parse_cpus(value, "platform property")?;
                    wanted.resources.cpus = wanted.resources.cpus.max(cpus);
                }
                MEMORY => {
                    let memory = parse_memory(value, "platform property")?;
                    wanted.resources.memory = wanted.resources.memory.max(memory);
                }
                _ => {
                    wanted
                        .properties
                        .entry(name.clone())
                        .or_default()
                        .insert(value.clone());
                }
            }
        }
        Ok(wanted)
    }

    /// The requirements of an action, from [`required_platform`].
    pub fn for_action(action: &Action, command: &Command) -> Result<Self> {
        Self::from_platform(required_platform(action, command))
    }

    /// The resources to reserve (and to limit the action to) while it runs.
    pub fn resources(&self) -> Resources {
        self.resources
    }

    /// Every string constraint as `(name, value)`, sorted.
    pub fn properties(&self) -> impl Iterator<Item = (&str, &str)> {
        iter_pairs(&self.properties)
    }
}

impl fmt::Display for Requirements {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self
            .properties()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        if self.resources.cpus > 0 {
            parts.push(format!("{CPUS}={}", self.resources.cpus));
        }
        if self.resources.memory > 0 {
            parts.push(format!("{MEMORY}={}", format_bytes(self.resources.memory)));
        }
        if parts.is_empty() {
            f.write_str("no properties")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// The first requirement an executor does not meet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// A string property the executor lacks; `offered` holds the values it has
    /// under that name (empty when it has none).
    Property {
        name: String,
        wanted: String,
        offered: Vec<String>,
    },
    Cpus {
        wanted: u32,
        offered: u32,
    },
    Memory {
        wanted: u64,
        offered: u64,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Property {
                name,
                wanted,
                offered,
            } if offered.is_empty() => {
                write!(f, "{name}={wanted} is not offered (no {name} at all)")
            }
            Mismatch::Property {
                name,
                wanted,
                offered,
            } => write!(
                f,
                "{name}={wanted} is not offered (offered: {})",
                offered.join(", ")
            ),
            Mismatch::Cpus { wanted, offered } => {
                write!(f, "{CPUS}={wanted} is more than the {offered} offered")
            }
            Mismatch::Memory { wanted, offered } => write!(
                f,
                "{MEMORY}={} is more than the {} offered",
                format_bytes(*wanted),
                format_bytes(*offered)
            ),
        }
    }
}

/// Fails fast when no executor in `executors` could ever run an action
/// with `wanted`, so the client gets an error instead of a queue that never
/// moves. FAILED_PRECONDITION, naming every requirement no executor meets,
/// e.g. `no executor offers OSFamily=windows (offered: linux)` or
/// `action asks for cpus=64, the largest executor has 8`. When each
/// requirement is met by some executor but none meets them all, the message
/// says so and shows where the closest executor falls short.
///
/// An empty set of executors is an error too; a scheduler that wants to queue
/// while workers are still registering should not call this yet.
pub fn ensure_satisfiable<'a, I>(executors: I, wanted: &Requirements) -> Result<()>
where
    I: IntoIterator<Item = &'a ExecutorProperties>,
{
    let executors: Vec<&ExecutorProperties> = executors.into_iter().collect();
    if executors.is_empty() {
        return Err(Error::failed_precondition(format!(
            "no executor is registered to run an action asking for {wanted}"
        )));
    }
    // The executor that fails the fewest requirements; `None` once one
    // satisfies everything.
    let mut closest: Option<(usize, Mismatch)> = None;
    for executor in &executors {
        let mut mismatches = executor.mismatches(wanted);
        let Some(first) = mismatches.next() else {
            return Ok(());
        };
        let count = 1 + mismatches.count();
        if closest.as_ref().is_none_or(|(best, _)| count < *best) {
            closest = Some((count, first));
        }
    }

    let mut problems = Vec::new();
    for (name, value) in wanted.properties() {
        let offered: BTreeSet<&str> = executors.iter().flat_map(|e| e.values(name)).collect();
        if offered.contains(value) {
            continue;
        }
        let offered = if offered.is_empty() {
            format!("no executor has {name} at all")
        } else {
            format!(
                "offered: {}",
                offered.into_iter().collect::<Vec<_>>().join(", ")
            )
        };
        problems.push(format!("no executor offers {name}={value} ({offered})"));
    }
    let largest = |get: fn(&Resources) -> u64| {
        executors
            .iter()
            .map(|e| get(&e.resources))
            .max()
            .unwrap_or(0)
    };
    let want = wanted.resources;
    let most_cpus = largest(|r| u64::from(r.cpus));
    if u64::from(want.cpus) > most_cpus {
        problems.push(format!(
            "action asks for {CPUS}={}, the largest executor has {most_cpus}",
            want.cpus
        ));
    }
    let most_memory = largest(|r| r.memory);
    if want.memory > most_memory {
        problems.push(format!(
            "action asks for {MEMORY}={}, the largest executor has {}",
            format_bytes(want.memory),
            format_bytes(most_memory)
        ));
    }
    if problems.is_empty() {
        let hint = closest
            .map(|(_, mismatch)| format!("; the closest executor fails on {mismatch}"))
            .unwrap_or_default();
        problems.push(format!(
            "no single executor offers all of {wanted} together{hint}"
        ));
    }
    Err(Error::failed_precondition(problems.join("; ")))
}

/// Tracks the CPUs and memory of one executor (or of a worker whose
/// executors share the machine) that running actions hold.
///
/// Cloning gives another handle on the same ledger.
#[derive(Clone, Debug)]
pub struct ResourceLedger {
    capacity: Resources,
    free: Arc<Mutex<Resources>>,
}

impl ResourceLedger {
    pub fn new(capacity: Resources) -> Self {
        ResourceLedger {
            capacity,
            free: Arc::new(Mutex::new(capacity)),
        }
    }

    /// A ledger holding the resources an executor offers.
    pub fn for_executor(executor: &ExecutorProperties) -> Self {
        Self::new(executor.resources())
    }

    pub fn capacity(&self) -> Resources {
        self.capacity
    }

    /// What is not reserved right now.
    pub fn available(&self) -> Resources {
        *lock(&self.free)
    }

    /// Reserves what `wanted` asks for, if it is free now; the reservation
    /// lasts until the returned value is dropped. `None` both when the
    /// resources are busy and when they exceed the capacity: telling those
    /// apart is [`ExecutorProperties::check`]'s job.
    pub fn try_reserve(&self, wanted: &Requirements) -> Option<Reservation> {
        let want = wanted.resources();
        let mut free = lock(&self.free);
        if !free.covers(&want) {
            return None;
        }
        free.cpus -= want.cpus;
        free.memory -= want.memory;
        Some(Reservation {
            free: Arc::clone(&self.free),
            held: want,
        })
    }
}

/// Resources held by a running action, given back on drop.
#[derive(Debug)]
pub struct Reservation {
    free: Arc<Mutex<Resources>>,
    held: Resources,
}

impl Reservation {
    pub fn resources(&self) -> Resources {
        self.held
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut free = lock(&self.free);
        // Saturating: the ledger only ever gets back what it handed out, but
        // a drop must not panic.
        free.cpus = free.cpus.saturating_add(self.held.cpus);
        free.memory = free.memory.saturating_add(self.held.memory);
    }
}

/// Locks the ledger even if a holder panicked: its two counters are updated
/// together under the lock, so they are never half-written.
fn lock(mutex: &Mutex<Resources>) -> MutexGuard<'_, Resources> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn iter_pairs(map: &BTreeMap<String, BTreeSet<String>>) -> impl Iterator<Item = (&str, &str)> {
    map.iter()
        .flat_map(|(name, values)| values.iter().map(move |v| (name.as_str(), v.as_str())))
}

fn parse_cpus(value: &str, what: &str) -> Result<u32> {
    let text = value.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::invalid_argument(format!(
            "{what} {CPUS}={value:?} is not a whole number of CPUs"
        )));
    }
    text.parse()
        .map_err(|_| Error::invalid_argument(format!("{what} {CPUS}={value:?} is out of range")))
}

fn parse_memory(value: &str, what: &str) -> Result<u64> {
    parse_byte_size(value).map_err(|e| {
        Error::invalid_argument(format!(
            "{what} {MEMORY}={value:?} is not a byte size: {}",
            e.message()
        ))
    })
}

/// Bytes in a short form that [`parse_byte_size`] reads back (`16G`).
fn format_bytes(bytes: u64) -> String {
    if bytes == 0 {
        return "0".into();
    }
    for (unit, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] {
        if bytes.trailing_zeros() >= shift {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn platform(pairs: &[(&str, &str)]) -> Platform {
        Platform {
            properties: pairs
                .iter()
                .map(|(name, value)| Property {
                    name: name.to_string(),
                    value: value.to_string(),
                })
                .collect(),
        }
    }

    fn wants(pairs: &[(&str, &str)]) -> Requirements {
        Requirements::from_platform(&platform(pairs)).unwrap()
    }

    fn offers(pairs: &[&str]) -> ExecutorProperties {
        ExecutorProperties::from_pairs(pairs).unwrap()
    }

    #[test]
    fn string_properties_match_exactly() {
        let linux = offers(&["OSFamily=linux", "ISA=x86-64"]);
        linux.check(&wants(&[("OSFamily", "linux")])).unwrap();
        linux
            .check(&wants(&[("ISA", "x86-64"), ("OSFamily", "linux")]))
            .unwrap();
        linux.check(&wants(&[])).unwrap();

        assert_eq!(
            linux.check(&wants(&[("OSFamily", "Linux")])),
            Err(Mismatch::Property {
                name: "OSFamily".into(),
                wanted: "Linux".into(),
                offered: vec!["linux".into()],
            })
        );
        let err = linux.check(&wants(&[("gpu", "nvidia")])).unwrap_err();
        assert_eq!(err.to_string(), "gpu=nvidia is not offered (no gpu at all)");
    }

    #[test]
    fn first_mismatch_is_reported() {
        let small = offers(&["OSFamily=linux", "cpus=2"]);
        let err = small
            .check(&wants(&[("OSFamily", "windows"), ("cpus", "4")]))
            .unwrap_err();
        assert!(matches!(err, Mismatch::Property { ref name, .. } if name == "OSFamily"));
        let err = small
            .check(&wants(&[("OSFamily", "linux"), ("cpus", "4")]))
            .unwrap_err();
        assert_eq!(
            err,
            Mismatch::Cpus {
                wanted: 4,
                offered: 2
            }
        );
    }

    #[test]
    fn multi_valued_offers_and_requirements() {
        let executor = offers(&["label=gpu", "label=fast", "OSFamily=linux"]);
        assert_eq!(
            executor.values("label").collect::<Vec<_>>(),
            ["fast", "gpu"]
        );
        executor.check(&wants(&[("label", "gpu")])).unwrap();
        executor.check(&wants(&[("label", "fast")])).unwrap();
        // Listed twice, both must be offered.
        executor
            .check(&wants(&[("label", "fast"), ("label", "gpu")]))
            .unwrap();
        let err = executor
            .check(&wants(&[("label", "gpu"), ("label", "tpu")]))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "label=tpu is not offered (offered: fast, gpu)"
        );
        // An executor with only one of the two does not qualify.
        assert!(!offers(&["label=gpu"]).satisfies(&wants(&[("label", "gpu"), ("label", "fast")])));
    }

    #[test]
    fn unsorted_and_duplicate_properties_are_accepted() {
        let sorted = wants(&[("ISA", "x86-64"), ("OSFamily", "linux")]);
        let unsorted = wants(&[
            ("OSFamily", "linux"),
            ("ISA", "x86-64"),
            ("OSFamily", "linux"),
        ]);
        assert_eq!(sorted, unsorted);
    }

    #[test]
    fn resources_are_at_least() {
        let executor = offers(&["cpus=8", "memory=16G"]);
        assert_eq!(
            executor.resources(),
            Resources {
                cpus: 8,
                memory: 16 << 30
            }
        );
        executor.check(&wants(&[("cpus", "8")])).unwrap();
        executor.check(&wants(&[("cpus", "1")])).unwrap();
        executor
            .check(&wants(&[("memory", "17179869184")]))
            .unwrap();
        executor.check(&wants(&[("memory", "512M")])).unwrap();
        assert_eq!(
            executor.check(&wants(&[("cpus", "9")])),
            Err(Mismatch::Cpus {
                wanted: 9,
                offered: 8
            })
        );
        let err = executor.check(&wants(&[("memory", "32G")])).unwrap_err();
        assert_eq!(err.to_string(), "memory=32G is more than the 16G offered");
    }

    #[test]
    fn resources_default_to_no_claim() {
        let nothing = wants(&[("OSFamily", "linux")]);
        assert_eq!(nothing.resources(), Resources::default());
        // An executor that declares no resources still takes such actions...
        offers(&["OSFamily=linux"]).check(&nothing).unwrap();
        // ...but not one that asks for a CPU.
        assert!(!offers(&["OSFamily=linux"]).satisfies(&wants(&[("cpus", "1")])));
    }

    #[test]
    fn a_resource_listed_twice_asks_for_the_larger() {
        let wanted = wants(&[
            ("cpus", "2"),
            ("cpus", "4"),
            ("memory", "1G"),
            ("memory", "1M"),
        ]);
        assert_eq!(
            wanted.resources(),
            Resources {
                cpus: 4,
                memory: 1 << 30
            }
        );
    }

    #[test]
    fn bad_numbers_are_invalid_argument() {
        for (name, value) in [
            ("cpus", "lots"),
            ("cpus", "1.5"),
            ("cpus", "-1"),
            ("cpus", ""),
            ("cpus", "99999999999"),
            ("memory", "much"),
            ("memory", "4X"),
            ("memory", "-5"),
        ] {
            let err = Requirements::from_platform(&platform(&[(name, value)])).unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{name}={value}");
            assert!(
                err.message().contains(&format!("{name}={value:?}")),
                "{err}"
            );

            let err = ExecutorProperties::from_pairs([format!("{name}={value}")]).unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{name}={value}");
            assert!(err.message().contains(name), "{err}");
        }
        let err = Requirements::from_platform(&platform(&[("", "x")])).unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
    }

    #[test]
    fn executor_flags_parse() {
        let executor =
            ExecutorProperties::from_pairs(["OSFamily=linux", "tag=a=b", "empty=", "memory=1.5k"])
                .unwrap();
        assert_eq!(executor.values("tag").collect::<Vec<_>>(), ["a=b"]);
        assert_eq!(executor.values("empty").collect::<Vec<_>>(), [""]);
        assert_eq!(executor.resources().memory, 1536);

        for bad in ["OSFamily", "=linux"] {
            let err = ExecutorProperties::from_pairs([bad]).unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{bad}");
        }
        // The same resource twice is fine only if it agrees.
        offers(&["cpus=4", "cpus=4"]);
        let err = ExecutorProperties::from_pairs(["cpus=4", "cpus=8"]).unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains("cpus"), "{err}");
    }

    #[test]
    fn executor_platform_round_trip() {
        let executor = offers(&[
            "label=b",
            "OSFamily=linux",
            "label=a",
            "cpus=4",
            "memory=2G",
        ]);
        let announced = executor.to_platform();
        let names: Vec<_> = announced
            .properties
            .iter()
            .map(|p| format!("{}={}", p.name, p.value))
            .collect();
        assert_eq!(
            names,
            [
                "OSFamily=linux",
                "cpus=4",
                "label=a",
                "label=b",
                "memory=2147483648"
            ]
        );
        assert_eq!(
            ExecutorProperties::from_platform(&announced).unwrap(),
            executor
        );
        assert_eq!(
            executor.to_string(),
            "OSFamily=linux, label=a, label=b, cpus=4, memory=2G"
        );
    }

    #[test]
    #[allow(deprecated)]
    fn action_platform_falls_back_to_command_platform() {
        let windows = platform(&[("OSFamily", "windows")]);
        let linux = platform(&[("OSFamily", "linux")]);
        let command = Command {
            platform: Some(windows.clone()),
            ..Default::default()
        };

        let modern = Action {
            platform: Some(linux.clone()),
            ..Default::default()
        };
        assert_eq!(required_platform(&modern, &command), &linux);

        let legacy = Action::default();
        assert_eq!(required_platform(&legacy, &command), &windows);

        let empty = Action {
            platform: Some(Platform::default()),
            ..Default::default()
        };
        assert_eq!(required_platform(&empty, &command), &windows);

        let bare = Command::default();
        assert!(required_platform(&legacy, &bare).properties.is_empty());

        let wanted = Requirements::for_action(&legacy, &command).unwrap();
        assert_eq!(wanted, wants(&[("OSFamily", "windows")]));
    }

    #[test]
    fn fail_fast_names_the_unmet_property() {
        let pool = [
            offers(&["OSFamily=linux", "cpus=8", "memory=16G"]),
            offers(&["OSFamily=linux", "cpus=4", "memory=32G"]),
        ];
        ensure_satisfiable(&pool, &wants(&[("OSFamily", "linux"), ("cpus", "8")])).unwrap();
        ensure_satisfiable(&pool, &wants(&[("memory", "32G")])).unwrap();

        let err = ensure_satisfiable(&pool, &wants(&[("OSFamily", "windows")])).unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
        assert_eq!(
            err.message(),
            "no executor offers OSFamily=windows (offered: linux)"
        );

        let err = ensure_satisfiable(&pool, &wants(&[("cpus", "64")])).unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
        assert_eq!(
            err.message(),
            "action asks for cpus=64, the largest executor has 8"
        );

        let err = ensure_satisfiable(&pool, &wants(&[("memory", "64G")])).unwrap_err();
        assert_eq!(
            err.message(),
            "action asks for memory=64G, the largest executor has 32G"
        );

        let err = ensure_satisfiable(&pool, &wants(&[("gpu", "nvidia")])).unwrap_err();
        assert_eq!(
            err.message(),
            "no executor offers gpu=nvidia (no executor has gpu at all)"
        );

        // Every unmet requirement is listed.
        let err = ensure_satisfiable(&pool, &wants(&[("OSFamily", "windows"), ("cpus", "64")]))
            .unwrap_err();
        assert!(err.message().contains("OSFamily=windows"), "{err}");
        assert!(err.message().contains("cpus=64"), "{err}");
    }

    #[test]
    fn fail_fast_when_no_single_executor_has_everything() {
        let pool = [
            offers(&["OSFamily=linux", "cpus=8"]),
            offers(&["OSFamily=windows", "cpus=2"]),
        ];
        let err = ensure_satisfiable(&pool, &wants(&[("OSFamily", "windows"), ("cpus", "8")]))
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
        assert!(
            err.message()
                .starts_with("no single executor offers all of OSFamily=windows, cpus=8 together"),
            "{err}"
        );
        assert!(err.message().contains("closest executor fails on"), "{err}");
    }

    #[test]
    fn fail_fast_with_no_executors() {
        let none: [ExecutorProperties; 0] = [];
        let err = ensure_satisfiable(&none, &wants(&[])).unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
        assert!(err.message().contains("no executor is registered"), "{err}");
    }

    #[test]
    fn reservations_exhaust_and_release() {
        let ledger = ResourceLedger::for_executor(&offers(&["cpus=4", "memory=8G"]));
        let two_cpus = wants(&[("cpus", "2"), ("memory", "1G")]);

        let first = ledger.try_reserve(&two_cpus).unwrap();
        let second = ledger.try_reserve(&two_cpus).unwrap();
        assert_eq!(
            ledger.available(),
            Resources {
                cpus: 0,
                memory: 6 << 30
            }
        );
        assert!(ledger.try_reserve(&two_cpus).is_none());
        // An action that claims nothing still fits.
        let free_rider = ledger.try_reserve(&wants(&[])).unwrap();
        assert_eq!(free_rider.resources(), Resources::default());

        drop(first);
        assert_eq!(ledger.available().cpus, 2);
        let third = ledger.try_reserve(&two_cpus).unwrap();
        assert!(ledger.try_reserve(&two_cpus).is_none());

        // Memory runs out on its own too.
        drop((second, third));
        assert!(ledger.try_reserve(&wants(&[("memory", "9G")])).is_none());
        let big = ledger.try_reserve(&wants(&[("memory", "8G")])).unwrap();
        assert!(ledger.try_reserve(&wants(&[("memory", "1")])).is_none());
        drop(big);
        assert_eq!(ledger.available(), ledger.capacity());
    }

    #[test]
    fn ledger_is_shared_across_threads() {
        let ledger = ResourceLedger::new(Resources { cpus: 3, memory: 0 });
        let one = wants(&[("cpus", "1")]);
        let held: Vec<Reservation> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| ledger.clone().try_reserve(&one)))
                .collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().ok().flatten())
                .collect()
        });
        assert_eq!(held.len(), 3);
        assert_eq!(ledger.available().cpus, 0);
        drop(held);
        assert_eq!(ledger.available().cpus, 3);
    }

    #[test]
    fn byte_sizes_print_in_a_form_that_parses_back() {
        for bytes in [0, 1, 1023, 1024, 1536, 16 << 30, 3 << 40, u64::MAX] {
            let text = format_bytes(bytes);
            assert_eq!(parse_byte_size(&text).unwrap(), bytes, "{text}");
        }
    }
}
