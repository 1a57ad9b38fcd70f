//! The ActionCache service: GetActionResult (with inlined outputs when the
//! client asks) and UpdateActionResult.

use std::sync::Arc;

use reapi_core::proto::remote_execution as re;
use reapi_core::proto::remote_execution::action_cache_server::ActionCache as ActionCacheRpc;
use reapi_core::tree::action_result_direct_digests;
use reapi_core::{ActionCache, BlobStore, Digest, DigestFunction, Error, InstancePolicy, Result};
use tonic::{Request, Response, Status};

use super::inline::{inline_outputs, InlineRequest};

pub struct ActionCacheService {
    cache: Arc<dyn ActionCache>,
    store: Arc<dyn BlobStore>,
    instances: InstancePolicy,
}

impl ActionCacheService {
    pub fn new(
        cache: Arc<dyn ActionCache>,
        store: Arc<dyn BlobStore>,
        instances: InstancePolicy,
    ) -> Self {
        ActionCacheService {
            cache,
            store,
            instances,
        }
    }
}

#[tonic::async_trait]
impl ActionCacheRpc for ActionCacheService {
    async fn get_action_result(
        &self,
        request: Request<re::GetActionResultRequest>,
    ) -> Result<Response<re::ActionResult>, Status> {
        let req = request.into_inner();
        self.instances.check(&req.instance_name)?;
        let function = DigestFunction::from_proto(req.digest_function)?;
        let digest =
            Digest::from_proto_field(function, req.action_digest.as_ref(), "action_digest")?;
        let found = self.cache.get(&req.instance_name, &digest).await?;
        crate::metrics::action_cache_lookup(found.is_some());
        let mut result =
            found.ok_or_else(|| Error::not_found(format!("no action result for {digest}")))?;
        let inline = InlineRequest {
            stdout: req.inline_stdout,
            stderr: req.inline_stderr,
            output_files: &req.inline_output_files,
            function,
        };
        inline_outputs(self.store.as_ref(), &req.instance_name, inline, &mut result).await;
        Ok(Response::new(result))
    }

    async fn update_action_result(
        &self,
        request: Request<re::UpdateActionResultRequest>,
    ) -> Result<Response<re::ActionResult>, Status> {
        let req = request.into_inner();
        self.instances.check(&req.instance_name)?;
        let function = DigestFunction::from_proto(req.digest_function)?;
        let digest =
            Digest::from_proto_field(function, req.action_digest.as_ref(), "action_digest")?;
        let result = req
            .action_result
            .ok_or_else(|| Error::invalid_argument("action_result is missing"))?;
        action_result_direct_digests(function, &result).map_err(|e| e.context("action_result"))?;
        self.cache.put(&req.instance_name, &digest, &result).await?;
        Ok(Response::new(result))
    }
}
