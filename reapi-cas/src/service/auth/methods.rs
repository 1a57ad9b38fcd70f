//! What each gRPC method needs: a permission, and where the request says
//! which instance it is about. Methods not listed are refused when grants
//! are on, so a service added later is closed until someone decides.

use super::grants::Permission;

/// Where a request names its instance: always field 1 of the first request
/// message in REAPI and ByteStream, as a plain name or inside a resource
/// name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstanceIn {
    /// `instance_name` (field 1).
    InstanceName,
    /// A ByteStream read resource name (field 1).
    ReadResource,
    /// A ByteStream upload resource name (field 1).
    WriteResource,
    /// Not about one instance (operation names, cluster links).
    Nowhere,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Anyone, without credentials: health checks.
    Nothing,
    /// Any permission on the instance: Capabilities.
    AnyPermission(InstanceIn),
    Permission(Permission, InstanceIn),
}

/// What calling `path` (`/package.Service/Method`) needs; `None` for a
/// method this table does not know.
pub fn need(path: &str) -> Option<Need> {
    use InstanceIn::*;
    use Permission::*;
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    let need = match (service, method) {
        ("grpc.health.v1.Health", _) => Need::Nothing,
        ("build.bazel.remote.execution.v2.Capabilities", "GetCapabilities") => {
            Need::AnyPermission(InstanceName)
        }
        ("build.bazel.remote.execution.v2.ContentAddressableStorage", method) => match method {
            // Splitting stores chunks of a blob the caller may read.
            "FindMissingBlobs" | "BatchReadBlobs" | "GetTree" | "SplitBlob" | "GetChunkMapping" => {
                Need::Permission(Read, InstanceName)
            }
            "BatchUpdateBlobs" | "SpliceBlob" | "RegisterChunkMapping" => {
                Need::Permission(Write, InstanceName)
            }
            _ => return None,
        },
        ("build.bazel.remote.execution.v2.ActionCache", method) => match method {
            "GetActionResult" => Need::Permission(Read, InstanceName),
            "UpdateActionResult" => Need::Permission(Write, InstanceName),
            _ => return None,
        },
        ("google.bytestream.ByteStream", method) => match method {
            "Read" => Need::Permission(Read, ReadResource),
            "Write" | "QueryWriteStatus" => Need::Permission(Write, WriteResource),
            _ => return None,
        },
        ("build.bazel.remote.execution.v2.Execution", method) => match method {
            "Execute" => Need::Permission(Execute, InstanceName),
            // Operation names are unguessable and carry no instance.
            "WaitExecution" => Need::Permission(Execute, Nowhere),
            _ => return None,
        },
        ("google.longrunning.Operations", _) => Need::Permission(Execute, Nowhere),
        // Fetching stores only content the URI and checksum name, from
        // hosts the operator allowed: a read of the asset.
        ("build.bazel.remote.asset.v1.Fetch", "FetchBlob" | "FetchDirectory") => {
            Need::Permission(Read, InstanceName)
        }
        ("build.bazel.remote.asset.v1.Push", "PushBlob" | "PushDirectory") => {
            Need::Permission(Write, InstanceName)
        }
        ("reapi.cluster.v1.WorkerLink", _) | ("reapi.cluster.v1.SchedulerPeers", _) => {
            Need::Permission(Cluster, Nowhere)
        }
        _ => return None,
    };
    Some(need)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_method_has_a_need() {
        for (path, expected) in [
            (
                "/build.bazel.remote.execution.v2.ContentAddressableStorage/BatchUpdateBlobs",
                Need::Permission(Permission::Write, InstanceIn::InstanceName),
            ),
            (
                "/google.bytestream.ByteStream/Read",
                Need::Permission(Permission::Read, InstanceIn::ReadResource),
            ),
            (
                "/google.bytestream.ByteStream/QueryWriteStatus",
                Need::Permission(Permission::Write, InstanceIn::WriteResource),
            ),
            (
                "/reapi.cluster.v1.WorkerLink/Connect",
                Need::Permission(Permission::Cluster, InstanceIn::Nowhere),
            ),
            ("/grpc.health.v1.Health/Check", Need::Nothing),
            (
                "/build.bazel.remote.asset.v1.Fetch/FetchBlob",
                Need::Permission(Permission::Read, InstanceIn::InstanceName),
            ),
            (
                "/build.bazel.remote.asset.v1.Push/PushDirectory",
                Need::Permission(Permission::Write, InstanceIn::InstanceName),
            ),
        ] {
            assert_eq!(need(path), Some(expected), "{path}");
        }
    }

    #[test]
    fn unknown_methods_have_none() {
        for path in [
            "/build.bazel.remote.execution.v2.ContentAddressableStorage/Unknown",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/google.bytestream.ByteStream",
            "",
            "//",
        ] {
            assert_eq!(need(path), None, "{path}");
        }
    }
}
