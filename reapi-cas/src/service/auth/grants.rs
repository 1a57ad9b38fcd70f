//! The grants file (`--auth_grants`, TOML): which credential may do what on
//! which instances. A credential is a bearer token (kept as its SHA-256, so
//! the file need not be a secret), a client certificate verified by the
//! port's `--tls_client_ca` (named by one of its DNS or URI subjectAltNames),
//! or nothing at all (`anyone`, e.g. a public read-only cache).
//!
//! ```toml
//! [[grant]]
//! name = "ci"                       # in logs; tokens never are
//! token_sha256 = "9f86d081884c7d65…"   # or: token = "the token itself"
//! instances = ["", "release"]       # "*": every instance
//! permissions = ["read", "write", "execute"]
//!
//! [[grant]]
//! name = "workers"
//! client_certificate = "worker.build.example.com"
//! instances = ["*"]
//! permissions = ["cluster"]
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;

use reapi_core::{Error, Result};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

/// What a request does, checked against the grants of its credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Reading the CAS and the action cache.
    Read,
    /// Writing the CAS and the action cache.
    Write,
    /// Execute, WaitExecution and the Operations service.
    Execute,
    /// The cluster's own services: registering as a worker, scheduler
    /// peering. Not tied to an instance.
    Cluster,
}

impl Permission {
    const ALL: [Permission; 4] = [
        Permission::Read,
        Permission::Write,
        Permission::Execute,
        Permission::Cluster,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Execute => "execute",
            Permission::Cluster => "cluster",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One grant, as checked.
#[derive(Debug)]
struct Grant {
    name: String,
    permissions: u8,
    /// `None`: every instance.
    instances: Option<HashSet<String>>,
}

impl Grant {
    fn allows(&self, permission: Permission, instance: Option<&str>) -> bool {
        if self.permissions & permission.bit() == 0 {
            return false;
        }
        match (&self.instances, instance) {
            (None, _) => true,
            // A request not about one instance (WaitExecution by name):
            // any instance granted will do.
            (Some(_), None) => true,
            (Some(names), Some(instance)) => names.contains(instance),
        }
    }
}

/// What a request presented.
#[derive(Debug, Default)]
pub struct Credentials<'a> {
    /// The token of an `authorization: Bearer …` header.
    pub bearer_token: Option<&'a str>,
    /// DNS and URI subjectAltNames of a client certificate that the TLS
    /// handshake verified; empty without one.
    pub certificate_names: Vec<String>,
}

/// The grants a request's credentials carry.
#[derive(Debug)]
pub struct Principal<'g> {
    grants: Vec<&'g Grant>,
    /// Whether it presented any credential (a refusal then asks it to
    /// authenticate rather than saying it may not).
    anonymous: bool,
}

impl Principal<'_> {
    pub fn allows(&self, permission: Permission, instance: Option<&str>) -> bool {
        self.grants.iter().any(|g| g.allows(permission, instance))
    }

    pub fn is_anonymous(&self) -> bool {
        self.anonymous
    }

    /// The names of its grants, for logs.
    pub fn names(&self) -> String {
        let names: Vec<&str> = self.grants.iter().map(|g| g.name.as_str()).collect();
        if names.is_empty() {
            "(no grant)".into()
        } else {
            names.join(",")
        }
    }
}

/// Why a request's credentials were not accepted at all.
#[derive(Debug, PartialEq, Eq)]
pub enum Unauthenticated {
    /// Nothing presented, and nothing is granted to anyone.
    NoCredentials,
    /// A bearer token that no grant has.
    UnknownToken,
}

impl fmt::Display for Unauthenticated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unauthenticated::NoCredentials => {
                "this server needs credentials: a bearer token (authorization header) or a \
                 client certificate"
            }
            Unauthenticated::UnknownToken => "the bearer token is not recognised",
        })
    }
}

/// All grants of a grants file, indexed by credential.
#[derive(Debug, Default)]
pub struct Grants {
    grants: Vec<Grant>,
    by_token_sha256: HashMap<[u8; 32], Vec<usize>>,
    by_certificate_name: HashMap<String, Vec<usize>>,
    anyone: Vec<usize>,
}

impl Grants {
    pub fn load(path: &Path) -> Result<Grants> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        Grants::parse(&text)
            .map_err(|e| Error::invalid_argument(format!("{}: {}", path.display(), e.message())))
    }

    pub fn parse(text: &str) -> Result<Grants> {
        let file: GrantsFile =
            toml::from_str(text).map_err(|e| Error::invalid_argument(e.to_string()))?;
        let mut grants = Grants::default();
        for (index, entry) in file.grant.into_iter().enumerate() {
            let which = match &entry.name {
                Some(name) => format!("grant {name:?}"),
                None => format!("grant #{}", index + 1),
            };
            grants
                .add(index, entry)
                .map_err(|e| Error::invalid_argument(format!("{which}: {e}")))?;
        }
        Ok(grants)
    }

    fn add(&mut self, index: usize, entry: GrantEntry) -> std::result::Result<(), String> {
        let mut permissions = 0;
        for name in &entry.permissions {
            let permission = Permission::ALL
                .into_iter()
                .find(|p| p.as_str() == name)
                .ok_or_else(|| {
                    format!("unknown permission {name:?} (read, write, execute or cluster)")
                })?;
            permissions |= permission.bit();
        }
        if permissions == 0 {
            return Err("no permissions".into());
        }
        if entry.instances.is_empty() {
            return Err("no instances (\"*\" grants every instance)".into());
        }
        let instances = if entry.instances.iter().any(|i| i == "*") {
            None
        } else {
            Some(entry.instances.into_iter().collect())
        };
        let position = self.grants.len();
        let credentials = [
            entry.token.is_some(),
            entry.token_sha256.is_some(),
            entry.client_certificate.is_some(),
            entry.anyone,
        ];
        if credentials.iter().filter(|given| **given).count() != 1 {
            return Err(
                "needs exactly one of token, token_sha256, client_certificate, anyone = true"
                    .into(),
            );
        }
        if let Some(token) = entry.token {
            if token.is_empty() {
                return Err("empty token".into());
            }
            self.by_token_sha256
                .entry(sha256(&token))
                .or_default()
                .push(position);
        } else if let Some(hex_digest) = entry.token_sha256 {
            let mut digest = [0u8; 32];
            hex::decode_to_slice(hex_digest.trim(), &mut digest)
                .map_err(|_| "token_sha256 is not 64 hex digits")?;
            self.by_token_sha256
                .entry(digest)
                .or_default()
                .push(position);
        } else if let Some(name) = entry.client_certificate {
            if name.is_empty() {
                return Err("empty client_certificate name".into());
            }
            self.by_certificate_name
                .entry(name)
                .or_default()
                .push(position);
        } else {
            self.anyone.push(position);
        }
        self.grants.push(Grant {
            name: entry.name.unwrap_or_else(|| format!("#{}", index + 1)),
            permissions,
            instances,
        });
        Ok(())
    }

    /// The grants `credentials` carry. A token is compared by its SHA-256,
    /// so lookups take the same time whatever its likeness to a real one.
    pub fn identify(
        &self,
        credentials: &Credentials<'_>,
    ) -> std::result::Result<Principal<'_>, Unauthenticated> {
        let mut indexes: Vec<usize> = self.anyone.clone();
        let mut presented = false;
        if let Some(token) = credentials.bearer_token {
            presented = true;
            match self.by_token_sha256.get(&sha256(token)) {
                Some(found) => indexes.extend(found),
                None => return Err(Unauthenticated::UnknownToken),
            }
        }
        if !credentials.certificate_names.is_empty() {
            presented = true;
            for name in &credentials.certificate_names {
                if let Some(found) = self.by_certificate_name.get(name) {
                    indexes.extend(found);
                }
            }
        }
        if !presented && self.anyone.is_empty() {
            return Err(Unauthenticated::NoCredentials);
        }
        indexes.sort_unstable();
        indexes.dedup();
        Ok(Principal {
            grants: indexes.into_iter().map(|i| &self.grants[i]).collect(),
            anonymous: !presented,
        })
    }
}

fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantsFile {
    #[serde(default)]
    grant: Vec<GrantEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantEntry {
    name: Option<String>,
    token: Option<String>,
    token_sha256: Option<String>,
    client_certificate: Option<String>,
    #[serde(default)]
    anyone: bool,
    #[serde(default)]
    instances: Vec<String>,
    #[serde(default)]
    permissions: Vec<String>,
}

#[cfg(test)]
#[path = "grants_tests.rs"]
mod tests;
