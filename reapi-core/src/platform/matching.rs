//! Matching an action's [`Requirements`] against what executors offer:
//! whether one executor could ever run it ([`ExecutorProperties::check`]),
//! the [`Mismatch`] that says why not, and the fail-fast check over all
//! executors ([`ensure_satisfiable`]).

use std::collections::BTreeSet;
use std::fmt;

use super::properties::iter_pairs;
use super::resources::{format_bytes, Resources, CPUS, MEMORY};
use super::{ExecutorProperties, Requirements};
use crate::error::{Error, Result};

impl ExecutorProperties {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::test_support::{offers, wants};
    use tonic::Code;

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
}
