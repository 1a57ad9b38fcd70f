//! The Capabilities service: which API versions, digest functions and limits
//! this server offers.

use reapi_core::proto::remote_execution as re;
use reapi_core::proto::remote_execution::capabilities_server::Capabilities;
use reapi_core::proto::semver::SemVer;
use reapi_core::{DigestFunction, InstancePolicy};
use tonic::{Request, Response, Status};

use super::MAX_BATCH_TOTAL_SIZE;

/// What the execution side offers, when there is one.
#[derive(Clone, Debug, Default)]
pub struct ExecutionSupport {
    /// Lowest and highest `ExecutionPolicy.priority` accepted.
    pub priority_range: (i32, i32),
}

pub struct CapabilitiesService {
    instances: InstancePolicy,
    execution: Option<ExecutionSupport>,
    /// `max_cas_blob_size_bytes`; `None`: 0, no limit.
    max_blob_size: Option<u64>,
}

impl CapabilitiesService {
    pub fn new(instances: InstancePolicy, execution: Option<ExecutionSupport>) -> Self {
        CapabilitiesService {
            instances,
            execution,
            max_blob_size: None,
        }
    }

    /// Advertises `max` as `max_cas_blob_size_bytes`.
    pub fn with_max_blob_size(mut self, max: Option<u64>) -> Self {
        self.max_blob_size = max;
        self
    }

    pub fn capabilities(&self) -> re::ServerCapabilities {
        let sha256 = re::digest_function::Value::Sha256 as i32;
        let served: Vec<i32> = DigestFunction::ALL
            .iter()
            .map(|f| f.proto_value())
            .collect();
        let version = |minor| SemVer {
            major: 2,
            minor,
            patch: 0,
            prerelease: String::new(),
        };
        re::ServerCapabilities {
            cache_capabilities: Some(re::CacheCapabilities {
                digest_functions: served.clone(),
                action_cache_update_capabilities: Some(re::ActionCacheUpdateCapabilities {
                    update_enabled: true,
                }),
                max_batch_total_size_bytes: MAX_BATCH_TOTAL_SIZE as i64,
                symlink_absolute_path_strategy: re::symlink_absolute_path_strategy::Value::Allowed
                    as i32,
                supported_compressors: vec![re::compressor::Value::Zstd as i32],
                supported_batch_update_compressors: vec![re::compressor::Value::Zstd as i32],
                max_cas_blob_size_bytes: self
                    .max_blob_size
                    .map_or(0, |max| i64::try_from(max).unwrap_or(i64::MAX)),
                split_blob_support: true,
                splice_blob_support: true,
                fast_cdc_2020_params: Some(re::FastCdc2020Params {
                    avg_chunk_size_bytes: u64::from(crate::chunking::AVERAGE_CHUNK),
                    seed: crate::chunking::SEED,
                }),
                ..Default::default()
            }),
            execution_capabilities: self
                .execution
                .as_ref()
                .map(|exec| re::ExecutionCapabilities {
                    // The legacy singular field: clients before REAPI 2.3
                    // know one function and compare it with theirs; newer
                    // ones read the list.
                    digest_function: sha256,
                    digest_functions: served,
                    exec_enabled: true,
                    execution_priority_capabilities: Some(re::PriorityCapabilities {
                        priorities: vec![re::priority_capabilities::PriorityRange {
                            min_priority: exec.priority_range.0,
                            max_priority: exec.priority_range.1,
                        }],
                    }),
                    supported_node_properties: vec![],
                }),
            // Bazel 4.x speaks 2.0 only and refuses a range that starts above it.
            deprecated_api_version: Some(version(0)),
            low_api_version: Some(version(0)),
            high_api_version: Some(version(12)),
        }
    }
}

#[tonic::async_trait]
impl Capabilities for CapabilitiesService {
    async fn get_capabilities(
        &self,
        request: Request<re::GetCapabilitiesRequest>,
    ) -> Result<Response<re::ServerCapabilities>, Status> {
        self.instances.check(&request.get_ref().instance_name)?;
        Ok(Response::new(self.capabilities()))
    }
}
