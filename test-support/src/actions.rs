//! What the tests run: Commands ([`command`], [`shell`]) and whole actions
//! ([`ActionSpec`], [`sh`]) built into every message and blob a client
//! uploads ([`Built`]).

use std::time::Duration;

use prost::Message;
use reapi_core::proto::remote_execution as re;

use reapi_core::DigestFunction;

use crate::digests::PDigest;
use crate::trees::{Tree, TreeSpec};

/// The PATH given to every command built here (commands get exactly the
/// environment the client sets, nothing more).
pub const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// A Command running `args` with `env`.
pub fn command(args: &[&str], env: &[(&str, &str)]) -> re::Command {
    re::Command {
        arguments: args.iter().map(|a| a.to_string()).collect(),
        environment_variables: env
            .iter()
            .map(|(name, value)| re::command::EnvironmentVariable {
                name: name.to_string(),
                value: value.to_string(),
            })
            .collect(),
        ..Default::default()
    }
}

/// The Command `/bin/sh -c script`, with [`PATH`] set so the script finds
/// the usual tools.
pub fn shell(script: &str) -> re::Command {
    command(&["/bin/sh", "-c", script], &[("PATH", PATH)])
}

/// `command` asking for `pairs` in the deprecated `Command.platform`, which
/// executors read when the Action has no platform (as for older clients):
/// the way to ask for properties in jobs run without an Action of their own.
pub fn with_command_platform(mut command: re::Command, pairs: &[(&str, &str)]) -> re::Command {
    #[allow(deprecated)]
    {
        command.platform = Some(re::Platform {
            properties: pairs
                .iter()
                .map(|(name, value)| re::platform::Property {
                    name: name.to_string(),
                    value: value.to_string(),
                })
                .collect(),
        });
    }
    command
}

/// An action to build: a command, its input files and what it outputs.
#[derive(Clone, Debug, Default)]
pub struct ActionSpec {
    pub arguments: Vec<String>,
    pub environment: Vec<(String, String)>,
    /// Input files by path below the input root, with their contents.
    pub inputs: Vec<(String, Vec<u8>)>,
    /// Paths of `inputs` that are executable.
    pub executables: Vec<String>,
    /// Legacy (REAPI 2.0) output files.
    pub output_files: Vec<String>,
    /// Legacy (REAPI 2.0) output directories.
    pub output_directories: Vec<String>,
    /// REAPI 2.1 output paths.
    pub output_paths: Vec<String>,
    pub working_directory: String,
    pub timeout: Option<Duration>,
    pub do_not_cache: bool,
    /// `Action.platform` properties.
    pub platform: Vec<(String, String)>,
    /// Deprecated `Command.platform` properties.
    pub command_platform: Vec<(String, String)>,
    pub salt: Vec<u8>,
    /// What every digest of the action is made with.
    pub digest_function: DigestFunction,
}

/// The action `/bin/sh -c script` with [`PATH`] set; extra `args` become
/// `$1`, `$2`... (see [`sh_args`]).
pub fn sh(script: &str) -> ActionSpec {
    sh_args(script, &[])
}

pub fn sh_args(script: &str, args: &[&str]) -> ActionSpec {
    let mut arguments = vec![
        "/bin/sh".to_string(),
        "-c".into(),
        script.into(),
        "sh".into(),
    ];
    arguments.extend(args.iter().map(|a| a.to_string()));
    ActionSpec {
        arguments,
        environment: vec![("PATH".into(), PATH.into())],
        ..Default::default()
    }
}

impl ActionSpec {
    pub fn input(mut self, path: &str, contents: &[u8]) -> Self {
        self.inputs.push((path.into(), contents.to_vec()));
        self
    }

    pub fn executable_input(mut self, path: &str, contents: &[u8]) -> Self {
        self.inputs.push((path.into(), contents.to_vec()));
        self.executables.push(path.into());
        self
    }

    pub fn output_file(mut self, path: &str) -> Self {
        self.output_files.push(path.into());
        self
    }

    pub fn output_path(mut self, path: &str) -> Self {
        self.output_paths.push(path.into());
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    pub fn do_not_cache(mut self) -> Self {
        self.do_not_cache = true;
        self
    }

    pub fn digest_function(mut self, function: DigestFunction) -> Self {
        self.digest_function = function;
        self
    }

    pub fn platform(mut self, name: &str, value: &str) -> Self {
        self.platform.push((name.into(), value.into()));
        self
    }

    pub fn command(&self) -> re::Command {
        #[allow(deprecated)]
        re::Command {
            arguments: self.arguments.clone(),
            environment_variables: self
                .environment
                .iter()
                .map(|(name, value)| re::command::EnvironmentVariable {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
            output_files: self.output_files.clone(),
            output_directories: self.output_directories.clone(),
            output_paths: self.output_paths.clone(),
            platform: platform(&self.command_platform),
            working_directory: self.working_directory.clone(),
            ..Default::default()
        }
    }

    /// The Action, given the digests of its Command and input root.
    pub fn action(&self, command: &PDigest, input_root: &PDigest) -> re::Action {
        re::Action {
            command_digest: Some(command.clone()),
            input_root_digest: Some(input_root.clone()),
            timeout: self.timeout.map(reapi_core::proto::time::to_proto_duration),
            do_not_cache: self.do_not_cache,
            salt: self.salt.clone(),
            platform: platform(&self.platform),
        }
    }

    /// The input tree of [`ActionSpec::inputs`].
    pub fn input_tree(&self) -> Tree {
        TreeSpec::from_files(&self.inputs, &self.executables).tree_with(self.digest_function)
    }

    /// Every message and blob of the action.
    pub fn build(&self) -> Built {
        let command = self.command();
        let tree = self.input_tree();
        let function = self.digest_function;
        let command_digest = function.digest_of_message(&command).to_proto();
        let action = self.action(&command_digest, &tree.root);
        let action_digest = function.digest_of_message(&action).to_proto();
        let mut blobs = tree.blobs.clone();
        blobs.push(command.encode_to_vec());
        blobs.push(action.encode_to_vec());
        Built {
            action,
            action_digest,
            command,
            command_digest,
            tree,
            blobs,
        }
    }
}

/// A Platform of `properties`, sorted as the protocol requires; `None`
/// when there are none.
fn platform(properties: &[(String, String)]) -> Option<re::Platform> {
    if properties.is_empty() {
        return None;
    }
    let mut properties: Vec<re::platform::Property> = properties
        .iter()
        .map(|(name, value)| re::platform::Property {
            name: name.clone(),
            value: value.clone(),
        })
        .collect();
    properties.sort_by(|a, b| (&a.name, &a.value).cmp(&(&b.name, &b.value)));
    Some(re::Platform { properties })
}

/// An action with everything it references.
#[derive(Clone, Debug)]
pub struct Built {
    pub action: re::Action,
    pub action_digest: PDigest,
    pub command: re::Command,
    pub command_digest: PDigest,
    pub tree: Tree,
    /// Every blob: files, directories, the Command and the Action.
    pub blobs: Vec<Vec<u8>>,
}
