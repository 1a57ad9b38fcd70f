//! What a client says about an Execute request in its `RequestMetadata`
//! header: the build it belongs to (for fairness between builds), and the
//! action's mnemonic and target (for people reading the status page).
//! Every field is optional: a client that sends nothing, or something that
//! does not decode, gets empty labels, never an error.

use prost::Message;
use reapi_core::proto::remote_execution::RequestMetadata;
use tonic::metadata::MetadataMap;

/// The header REAPI clients put their `RequestMetadata` in.
pub const REQUEST_METADATA_HEADER: &str = "build.bazel.remote.execution.v2.requestmetadata-bin";

/// The longest label kept, in bytes: a queued operation holds its labels,
/// and a client decides how long they are.
const MAX_LABEL_BYTES: usize = 256;

/// The labels of one Execute request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestLabels {
    /// `tool_invocation_id`: the build.
    pub build: String,
    /// `action_mnemonic`, e.g. `CppCompile`.
    pub mnemonic: Box<str>,
    /// `target_id`, e.g. `//src:lib`.
    pub target: Box<str>,
}

impl RequestLabels {
    pub fn from_metadata(metadata: &MetadataMap) -> RequestLabels {
        let Some(decoded) = metadata
            .get_bin(REQUEST_METADATA_HEADER)
            .and_then(|value| value.to_bytes().ok())
            .and_then(|bytes| RequestMetadata::decode(bytes).ok())
        else {
            return RequestLabels::default();
        };
        RequestLabels {
            build: decoded.tool_invocation_id,
            mnemonic: bounded(decoded.action_mnemonic),
            target: bounded(decoded.target_id),
        }
    }
}

/// `text` cut to at most [`MAX_LABEL_BYTES`], on a character boundary.
fn bounded(mut text: String) -> Box<str> {
    if text.len() > MAX_LABEL_BYTES {
        let mut end = MAX_LABEL_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text.into_boxed_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataValue;

    fn with_header(bytes: Vec<u8>) -> MetadataMap {
        let mut map = MetadataMap::new();
        map.insert_bin(REQUEST_METADATA_HEADER, MetadataValue::from_bytes(&bytes));
        map
    }

    #[test]
    fn labels_come_from_the_request_metadata() {
        let metadata = RequestMetadata {
            tool_invocation_id: "build-1".into(),
            action_mnemonic: "CppCompile".into(),
            target_id: "//src:lib".into(),
            ..Default::default()
        };
        let labels = RequestLabels::from_metadata(&with_header(metadata.encode_to_vec()));
        assert_eq!(labels.build, "build-1");
        assert_eq!(&*labels.mnemonic, "CppCompile");
        assert_eq!(&*labels.target, "//src:lib");
    }

    #[test]
    fn missing_or_garbled_metadata_gives_empty_labels() {
        assert_eq!(
            RequestLabels::from_metadata(&MetadataMap::new()),
            RequestLabels::default()
        );
        assert_eq!(
            RequestLabels::from_metadata(&with_header(vec![0xff, 0xff, 0xff])),
            RequestLabels::default()
        );
    }

    #[test]
    fn long_labels_are_cut_on_a_character_boundary() {
        let metadata = RequestMetadata {
            target_id: "é".repeat(MAX_LABEL_BYTES),
            ..Default::default()
        };
        let labels = RequestLabels::from_metadata(&with_header(metadata.encode_to_vec()));
        assert!(labels.target.len() <= MAX_LABEL_BYTES);
        assert_eq!(labels.target.len(), MAX_LABEL_BYTES);
        assert!(labels.target.chars().all(|c| c == 'é'));
    }
}
