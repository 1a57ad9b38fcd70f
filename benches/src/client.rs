//! gRPC channels to the target, several of them so one HTTP/2 connection (and
//! the one task driving it) does not become the client's bottleneck.

use std::time::Duration;

use reapi_core::proto::bytestream::byte_stream_client::ByteStreamClient;
use reapi_core::proto::longrunning::operations_client::OperationsClient;
use reapi_core::proto::remote_execution::action_cache_client::ActionCacheClient;
use reapi_core::proto::remote_execution::capabilities_client::CapabilitiesClient;
use reapi_core::proto::remote_execution::content_addressable_storage_client::ContentAddressableStorageClient;
use reapi_core::proto::remote_execution::execution_client::ExecutionClient;
use tonic::transport::{Channel, Endpoint};

/// Largest message the client decodes (batch reads of 4 MiB and more).
const MAX_MESSAGE: usize = 256 << 20;

/// How to reach the target.
#[derive(Clone, Debug)]
pub struct Target {
    /// `http://host:port`, from `grpc://host:port`.
    pub uri: String,
    pub instance: String,
    /// HTTP/2 stream window the client advertises (its receive side).
    pub stream_window: u32,
    pub connection_window: u32,
}

impl Target {
    /// Accepts `grpc://host:port`, `http://host:port` or `host:port`. TLS
    /// (`grpcs://`) is not built in.
    pub fn parse(target: &str, instance: &str) -> Result<Target, String> {
        let rest = if let Some(rest) = target.strip_prefix("grpc://") {
            rest
        } else if let Some(rest) = target.strip_prefix("http://") {
            rest
        } else if target.starts_with("grpcs://") || target.starts_with("https://") {
            return Err(format!(
                "{target}: TLS targets are not supported by reapi-bench"
            ));
        } else {
            target
        };
        if rest.is_empty() || rest.contains('/') {
            return Err(format!("{target}: expected grpc://HOST:PORT"));
        }
        Ok(Target {
            uri: format!("http://{rest}"),
            instance: instance.to_owned(),
            stream_window: 16 << 20,
            connection_window: 64 << 20,
        })
    }
}

/// A fixed set of connected channels; worker `i` uses channel `i % n`.
#[derive(Clone)]
pub struct Clients {
    pub target: Target,
    channels: Vec<Channel>,
}

impl Clients {
    pub async fn connect(target: &Target, channels: usize) -> Result<Clients, String> {
        let mut connected = Vec::with_capacity(channels.max(1));
        for _ in 0..channels.max(1) {
            let endpoint = Endpoint::from_shared(target.uri.clone())
                .map_err(|e| format!("{}: {e}", target.uri))?
                .connect_timeout(Duration::from_secs(10))
                .tcp_nodelay(true)
                .initial_stream_window_size(target.stream_window)
                .initial_connection_window_size(target.connection_window)
                .http2_keep_alive_interval(Duration::from_secs(30));
            let channel = endpoint
                .connect()
                .await
                .map_err(|e| format!("connecting to {}: {e}", target.uri))?;
            connected.push(channel);
        }
        Ok(Clients {
            target: target.clone(),
            channels: connected,
        })
    }

    pub fn instance(&self) -> &str {
        &self.target.instance
    }

    pub fn len(&self) -> usize {
        self.channels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    pub fn channel(&self, worker: usize) -> Channel {
        self.channels[worker % self.channels.len()].clone()
    }

    pub fn cas(&self, worker: usize) -> ContentAddressableStorageClient<Channel> {
        ContentAddressableStorageClient::new(self.channel(worker))
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    pub fn bytestream(&self, worker: usize) -> ByteStreamClient<Channel> {
        ByteStreamClient::new(self.channel(worker))
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    pub fn action_cache(&self, worker: usize) -> ActionCacheClient<Channel> {
        ActionCacheClient::new(self.channel(worker))
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    pub fn execution(&self, worker: usize) -> ExecutionClient<Channel> {
        ExecutionClient::new(self.channel(worker))
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    pub fn operations(&self, worker: usize) -> OperationsClient<Channel> {
        OperationsClient::new(self.channel(worker))
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    pub fn capabilities(&self, worker: usize) -> CapabilitiesClient<Channel> {
        CapabilitiesClient::new(self.channel(worker))
    }
}

/// Channels for `concurrency` requests in flight: one per `per_channel`.
pub fn channels_for(concurrency: usize, per_channel: usize) -> usize {
    concurrency.div_ceil(per_channel.max(1)).clamp(1, 64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = Target::parse("grpc://127.0.0.1:8980", "main").unwrap();
        assert_eq!(t.uri, "http://127.0.0.1:8980");
        assert_eq!(t.instance, "main");
        assert!(Target::parse("grpcs://x:1", "").is_err());
        assert!(Target::parse("grpc://", "").is_err());
        assert_eq!(channels_for(64, 8), 8);
        assert_eq!(channels_for(1, 8), 1);
    }
}
