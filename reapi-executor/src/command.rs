//! Checks a `Command` before anything touches a disk and turns it into a
//! [`CommandSpec`]: arguments, environment, the normalised working directory
//! and each output with its place under the input root.
//!
//! Outputs come in two forms: `output_paths` (REAPI 2.1+, the type is found
//! on disk after the run) and the legacy `output_files` /
//! `output_directories` that REAPI 2.0 clients (Bazel before 6.3, Pants
//! 2.17) send. When `output_paths` is set the legacy fields are ignored, as
//! the spec says.

use reapi_core::input_tree::{normalize_working_directory, resolve_output_path};
use reapi_core::proto::remote_execution::command::OutputDirectoryFormat;
use reapi_core::proto::remote_execution::Command;
use reapi_core::{Error, ErrorExt, Result};

/// What the client asked for at an output path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputKind {
    /// From `output_paths`: whatever is there.
    Any,
    /// From the legacy `output_files`.
    File,
    /// From the legacy `output_directories`.
    Directory,
}

/// One requested output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputRequest {
    /// As the client wrote it (relative to the working directory); results
    /// name outputs by this.
    pub path: String,
    /// Where it lies relative to the input root, normalised (`""` for the
    /// root itself).
    pub root_relative: String,
    pub kind: OutputKind,
}

/// A checked `Command`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandSpec {
    pub arguments: Vec<String>,
    pub environment: Vec<(String, String)>,
    /// Relative to the input root, normalised; `""` for the root.
    pub working_directory: String,
    pub outputs: Vec<OutputRequest>,
    /// True when the outputs came from the legacy fields, which decides how
    /// output symlinks are reported.
    pub legacy_outputs: bool,
    /// How output directories are reported: `tree_digest` (TREE_ONLY, the
    /// default), `root_directory_digest` (DIRECTORY_ONLY), or both.
    pub wants_trees: bool,
    pub wants_directory_digests: bool,
}

impl CommandSpec {
    /// Checks `command`; every problem is INVALID_ARGUMENT naming the field.
    pub fn from_command(command: &Command) -> Result<CommandSpec> {
        let arguments = check_arguments(&command.arguments)?;
        let environment = check_environment(command)?;
        let working_directory = normalize_working_directory(&command.working_directory)?;

        #[allow(deprecated)]
        let (legacy_files, legacy_dirs) = (&command.output_files, &command.output_directories);
        let legacy_outputs = command.output_paths.is_empty();
        let requested: Vec<(&String, OutputKind)> = if legacy_outputs {
            legacy_files
                .iter()
                .map(|p| (p, OutputKind::File))
                .chain(legacy_dirs.iter().map(|p| (p, OutputKind::Directory)))
                .collect()
        } else {
            command
                .output_paths
                .iter()
                .map(|p| (p, OutputKind::Any))
                .collect()
        };
        let mut outputs = Vec::with_capacity(requested.len());
        for (path, kind) in requested {
            let root_relative = resolve_output_path(&working_directory, path)?;
            if root_relative.is_empty() && kind == OutputKind::File {
                return Err(Error::invalid_argument(format!(
                    "output file {path:?} names the input root, which is a directory"
                )));
            }
            outputs.push(OutputRequest {
                path: path.clone(),
                root_relative,
                kind,
            });
        }

        // An unknown format (a newer client) gets both forms.
        let format = OutputDirectoryFormat::try_from(command.output_directory_format);
        let wants_trees = !matches!(format, Ok(OutputDirectoryFormat::DirectoryOnly));
        let wants_directory_digests = !matches!(format, Ok(OutputDirectoryFormat::TreeOnly));
        Ok(CommandSpec {
            arguments,
            environment,
            working_directory,
            outputs,
            legacy_outputs,
            wants_trees,
            wants_directory_digests,
        })
    }
}

fn check_arguments(arguments: &[String]) -> Result<Vec<String>> {
    let Some(program) = arguments.first() else {
        return Err(Error::invalid_argument(
            "the command has no arguments: arguments[0] must name the program to run",
        ));
    };
    if program.is_empty() {
        return Err(Error::invalid_argument(
            "arguments[0] (the program to run) is empty",
        ));
    }
    if let Some(i) = arguments.iter().position(|a| a.contains('\0')) {
        return Err(Error::invalid_argument(format!(
            "arguments[{i}] contains a NUL byte"
        )));
    }
    Ok(arguments.to_vec())
}

fn check_environment(command: &Command) -> Result<Vec<(String, String)>> {
    command
        .environment_variables
        .iter()
        .map(|var| {
            let bad = |rule: &str| {
                Err(Error::invalid_argument(format!(
                    "environment variable {:?}: {rule}",
                    var.name
                )))
            };
            if var.name.is_empty() {
                return bad("the name is empty");
            }
            if var.name.contains('=') {
                return bad("the name contains '='");
            }
            if var.name.contains('\0') || var.value.contains('\0') {
                return bad("it contains a NUL byte");
            }
            Ok((var.name.clone(), var.value.clone()))
        })
        .collect::<Result<Vec<_>>>()
        .context("checking the command's environment")
}

#[cfg(test)]
mod tests {
    use super::*;
    use reapi_core::proto::remote_execution::command::EnvironmentVariable;
    use tonic::Code;

    fn command(args: &[&str]) -> Command {
        Command {
            arguments: args.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn arguments_are_required() {
        for args in [&[][..], &[""], &["a", "b\0"]] {
            let err = CommandSpec::from_command(&command(args)).unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{args:?}");
        }
        let spec = CommandSpec::from_command(&command(&["echo", "hi"])).unwrap();
        assert_eq!(spec.arguments, ["echo", "hi"]);
        assert!(spec.outputs.is_empty());
    }

    #[test]
    fn environment_is_kept_exactly() {
        let mut cmd = command(&["env"]);
        cmd.environment_variables = vec![
            EnvironmentVariable {
                name: "B".into(),
                value: "2".into(),
            },
            EnvironmentVariable {
                name: "A".into(),
                value: "".into(),
            },
        ];
        let spec = CommandSpec::from_command(&cmd).unwrap();
        assert_eq!(
            spec.environment,
            [("B".into(), "2".into()), ("A".into(), "".into())]
        );
        for name in ["", "A=B", "A\0"] {
            cmd.environment_variables = vec![EnvironmentVariable {
                name: name.into(),
                value: "x".into(),
            }];
            let err = CommandSpec::from_command(&cmd).unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{name:?}");
        }
    }

    #[test]
    #[allow(deprecated)]
    fn outputs_resolve_against_the_working_directory() {
        let mut cmd = command(&["true"]);
        cmd.working_directory = "./src/".into();
        cmd.output_files = vec!["a.o".into(), "../out/b.o".into()];
        cmd.output_directories = vec!["gen".into(), "".into()];
        let spec = CommandSpec::from_command(&cmd).unwrap();
        assert_eq!(spec.working_directory, "src");
        assert!(spec.legacy_outputs);
        let got: Vec<_> = spec
            .outputs
            .iter()
            .map(|o| (o.path.as_str(), o.root_relative.as_str(), o.kind))
            .collect();
        assert_eq!(
            got,
            [
                ("a.o", "src/a.o", OutputKind::File),
                ("../out/b.o", "out/b.o", OutputKind::File),
                ("gen", "src/gen", OutputKind::Directory),
                ("", "src", OutputKind::Directory),
            ]
        );

        // output_paths wins over the legacy fields.
        cmd.output_paths = vec!["x".into()];
        let spec = CommandSpec::from_command(&cmd).unwrap();
        assert!(!spec.legacy_outputs);
        assert_eq!(spec.outputs.len(), 1);
        assert_eq!(spec.outputs[0].kind, OutputKind::Any);
    }

    #[test]
    #[allow(deprecated)]
    fn escaping_outputs_are_refused() {
        for (wd, out) in [
            ("", "../x"),
            ("src", "../../x"),
            ("", "/etc/passwd"),
            ("a", "b//c"),
        ] {
            let mut cmd = command(&["true"]);
            cmd.working_directory = wd.into();
            cmd.output_paths = vec![out.into()];
            let err = CommandSpec::from_command(&cmd).unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{wd:?} {out:?}");
            let mut cmd = command(&["true"]);
            cmd.working_directory = wd.into();
            cmd.output_files = vec![out.into()];
            let err = CommandSpec::from_command(&cmd).unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{wd:?} {out:?}");
        }
        let mut cmd = command(&["true"]);
        cmd.working_directory = "..".into();
        assert_eq!(
            CommandSpec::from_command(&cmd).unwrap_err().code(),
            Code::InvalidArgument
        );
        cmd.working_directory = "".into();
        cmd.output_files = vec!["".into()];
        assert_eq!(
            CommandSpec::from_command(&cmd).unwrap_err().code(),
            Code::InvalidArgument
        );
    }
}
