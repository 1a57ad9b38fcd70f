//! ActionCache calls, and an ActionResult to store.

use reapi_core::proto::remote_execution as re;
use tonic::Status;

use crate::clients::Ac;
use crate::digests::{sha256, PDigest};

pub async fn get_result(
    ac: &mut Ac,
    instance: &str,
    action: &PDigest,
) -> Result<re::ActionResult, Status> {
    get_result_with(
        ac,
        re::GetActionResultRequest {
            instance_name: instance.into(),
            action_digest: Some(action.clone()),
            digest_function: sha256(),
            ..Default::default()
        },
    )
    .await
}

pub async fn get_result_with(
    ac: &mut Ac,
    request: re::GetActionResultRequest,
) -> Result<re::ActionResult, Status> {
    Ok(ac.get_action_result(request).await?.into_inner())
}

pub async fn update_result(
    ac: &mut Ac,
    instance: &str,
    action: &PDigest,
    result: &re::ActionResult,
) -> Result<re::ActionResult, Status> {
    Ok(ac
        .update_action_result(re::UpdateActionResultRequest {
            instance_name: instance.into(),
            action_digest: Some(action.clone()),
            action_result: Some(result.clone()),
            results_cache_policy: None,
            digest_function: sha256(),
        })
        .await?
        .into_inner())
}

/// An ActionResult naming one output file and stdout/stderr.
pub fn simple_result(output: &PDigest, stdout: &PDigest, stderr: &PDigest) -> re::ActionResult {
    re::ActionResult {
        output_files: vec![re::OutputFile {
            path: "out/a".into(),
            digest: Some(output.clone()),
            ..Default::default()
        }],
        exit_code: 0,
        stdout_digest: Some(stdout.clone()),
        stderr_digest: Some(stderr.clone()),
        ..Default::default()
    }
}
