//! zstd for `compressed-blobs/zstd/` ByteStream resources and compressed
//! batch entries. Blobs are stored uncompressed (ADR 0015): a client's
//! upload is decompressed as it arrives, into the same verified write as an
//! uncompressed one, and a compressed read compresses what the store
//! streams.
//!
//! What a client sends cannot make the server hold more than it declared:
//! decompression stops with INVALID_ARGUMENT as soon as the output passes
//! the digest's size, each step produces at most [`OUT_CHUNK`] bytes, and
//! frames asking for a window over 2^[`WINDOW_LOG_MAX`] bytes are refused,
//! so a decompression bomb costs a bounded buffer, not memory or disk.

use bytes::Bytes;
use reapi_core::{Error, Result};
use zstd::stream::raw::{Decoder, Encoder, InBuffer, Operation, OutBuffer};

/// Largest window accepted in a client's frames: 16 MiB, what zstd's
/// levels up to 19 use; only long-distance (`--long`) or ultra levels ask
/// for more.
pub const WINDOW_LOG_MAX: u32 = 24;

/// Compression level of what the server compresses: zstd's fastest
/// standard level, since it runs on every compressed read.
pub const LEVEL: i32 = 1;

/// Output produced per decompression step.
pub const OUT_CHUNK: usize = 256 * 1024;

/// Largest declared size of a compressed batch entry: a batch entry is
/// decompressed whole in memory.
pub const MAX_BATCH_DECOMPRESSED: u64 = 16 << 20;

fn corrupt(e: impl std::fmt::Display) -> Error {
    Error::invalid_argument(format!("the zstd stream cannot be decompressed: {e}"))
}

/// Decompresses a client's zstd stream, held to its declared size.
pub struct ZstdDecoder {
    inner: Decoder<'static>,
    declared: u64,
    produced: u64,
    /// Whether the input so far ends at the end of a frame.
    at_frame_end: bool,
}

impl ZstdDecoder {
    /// A decoder for a blob of `declared` bytes.
    pub fn new(declared: u64) -> Result<ZstdDecoder> {
        let mut inner =
            Decoder::new().map_err(|e| Error::internal(format!("creating a zstd decoder: {e}")))?;
        inner
            .set_parameter(zstd::stream::raw::DParameter::WindowLogMax(WINDOW_LOG_MAX))
            .map_err(|e| Error::internal(format!("configuring a zstd decoder: {e}")))?;
        Ok(ZstdDecoder {
            inner,
            declared,
            produced: 0,
            at_frame_end: true,
        })
    }

    /// Decompresses `input`, returning what it produced.
    pub fn decode(&mut self, input: &[u8]) -> Result<Vec<Bytes>> {
        let mut source = InBuffer::around(input);
        let mut pieces = Vec::new();
        loop {
            let mut buffer = vec![0u8; OUT_CHUNK];
            let mut output = OutBuffer::around(&mut buffer);
            let consumed_before = source.pos();
            let hint = self.inner.run(&mut source, &mut output).map_err(corrupt)?;
            let written = output.pos();
            // A call that moved nothing says nothing of the frame: after a
            // frame's end it would report the next frame's header as due.
            if written > 0 || source.pos() > consumed_before {
                self.at_frame_end = hint == 0;
            }
            self.produced += written as u64;
            if self.produced > self.declared {
                return Err(Error::invalid_argument(format!(
                    "the zstd stream decompresses to more than the {} bytes its digest declares",
                    self.declared
                )));
            }
            if written > 0 {
                buffer.truncate(written);
                pieces.push(Bytes::from(buffer));
            }
            // Done once the input is used up and the output had room to
            // spare: the decoder holds nothing more to flush.
            if source.pos() == input.len() && written < OUT_CHUNK {
                return Ok(pieces);
            }
        }
    }

    /// Checks that the stream ended at a frame's end.
    pub fn finish(&self) -> Result<()> {
        if self.at_frame_end {
            Ok(())
        } else {
            Err(Error::invalid_argument(
                "the zstd stream ends in the middle of a frame",
            ))
        }
    }

    pub fn produced(&self) -> u64 {
        self.produced
    }
}

/// Compresses a stream for a compressed read.
pub struct ZstdEncoder {
    inner: Encoder<'static>,
}

impl ZstdEncoder {
    pub fn new() -> Result<ZstdEncoder> {
        let inner = Encoder::new(LEVEL)
            .map_err(|e| Error::internal(format!("creating a zstd encoder: {e}")))?;
        Ok(ZstdEncoder { inner })
    }

    /// Compresses `input`; the output may be empty while zstd buffers.
    pub fn encode(&mut self, input: &[u8]) -> Result<Bytes> {
        let mut compressed = Vec::with_capacity(zstd::zstd_safe::compress_bound(input.len()));
        let mut source = InBuffer::around(input);
        while source.pos() < input.len() {
            let filled = compressed.len();
            let mut output = OutBuffer::around_pos(&mut compressed, filled);
            self.inner
                .run(&mut source, &mut output)
                .map_err(|e| Error::internal(format!("zstd compression: {e}")))?;
            // Make room when the output filled up.
            if compressed.len() == compressed.capacity() {
                compressed.reserve(OUT_CHUNK);
            }
        }
        Ok(Bytes::from(compressed))
    }

    /// Ends the frame and returns what was left.
    pub fn finish(&mut self) -> Result<Bytes> {
        let mut compressed: Vec<u8> = Vec::with_capacity(OUT_CHUNK);
        loop {
            let filled = compressed.len();
            let mut output = OutBuffer::around_pos(&mut compressed, filled);
            let remaining = self
                .inner
                .finish(&mut output, true)
                .map_err(|e| Error::internal(format!("zstd compression: {e}")))?;
            if remaining == 0 {
                return Ok(Bytes::from(compressed));
            }
            compressed.reserve(OUT_CHUNK);
        }
    }
}

/// A whole batch entry decompressed, held to its declared size.
pub fn decompress_entry(data: &[u8], declared: u64) -> Result<Bytes> {
    if declared > MAX_BATCH_DECOMPRESSED {
        return Err(Error::invalid_argument(format!(
            "a compressed batch entry may declare at most {MAX_BATCH_DECOMPRESSED} bytes \
             ({declared} declared): send it through ByteStream"
        )));
    }
    let mut decoder = ZstdDecoder::new(declared)?;
    let pieces = decoder.decode(data)?;
    decoder.finish()?;
    let mut whole = Vec::with_capacity(decoder.produced() as usize);
    for piece in pieces {
        whole.extend_from_slice(&piece);
    }
    Ok(Bytes::from(whole))
}

/// A whole blob compressed, for a batch read.
pub fn compress_entry(data: &[u8]) -> Result<Bytes> {
    zstd::bulk::compress(data, LEVEL)
        .map(Bytes::from)
        .map_err(|e| Error::internal(format!("zstd compression: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compressible(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i / 7 % 251) as u8).collect()
    }

    fn encode_all(data: &[u8], piece: usize) -> Vec<u8> {
        let mut encoder = ZstdEncoder::new().unwrap();
        let mut out = Vec::new();
        for chunk in data.chunks(piece) {
            out.extend_from_slice(&encoder.encode(chunk).unwrap());
        }
        out.extend_from_slice(&encoder.finish().unwrap());
        out
    }

    fn decode_all(compressed: &[u8], declared: u64, piece: usize) -> Result<Vec<u8>> {
        let mut decoder = ZstdDecoder::new(declared)?;
        let mut out = Vec::new();
        for chunk in compressed.chunks(piece) {
            for bytes in decoder.decode(chunk)? {
                out.extend_from_slice(&bytes);
            }
        }
        decoder.finish()?;
        Ok(out)
    }

    #[test]
    fn streams_round_trip_in_any_piece_size() {
        let data = compressible(3 << 20);
        let compressed = encode_all(&data, 1 << 20);
        assert!(compressed.len() < data.len() / 10, "{}", compressed.len());
        for piece in [1, 4096, 1 << 20] {
            let piece = piece.max(compressed.len() / 2000);
            assert_eq!(
                decode_all(&compressed, data.len() as u64, piece).unwrap(),
                data
            );
        }
        // zstd's own tool output decodes too, frames concatenated.
        let mut two = zstd::bulk::compress(&data[..1000], 19).unwrap();
        two.extend(zstd::bulk::compress(&data[1000..2000], 3).unwrap());
        assert_eq!(decode_all(&two, 2000, 100).unwrap(), data[..2000]);
    }

    #[test]
    fn a_bomb_stops_at_the_declared_size() {
        // 1 GiB of zeros in a few KiB.
        let mut encoder = ZstdEncoder::new().unwrap();
        let zeros = vec![0u8; 1 << 20];
        let mut bomb = Vec::new();
        for _ in 0..1024 {
            bomb.extend_from_slice(&encoder.encode(&zeros).unwrap());
        }
        bomb.extend_from_slice(&encoder.finish().unwrap());
        assert!(bomb.len() < 200_000, "{}", bomb.len());
        let mut decoder = ZstdDecoder::new(10 << 20).unwrap();
        let err = decoder.decode(&bomb).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message().contains("more than the 10485760 bytes"),
            "{err}"
        );
        assert!(decoder.produced() <= (10 << 20) + OUT_CHUNK as u64);
    }

    #[test]
    fn corrupt_truncated_and_wide_window_streams_are_invalid_arguments() {
        let data = compressible(100_000);
        let compressed = zstd::bulk::compress(&data, 3).unwrap();
        let truncated = &compressed[..compressed.len() - 10];
        let err = decode_all(truncated, 100_000, 1000).unwrap_err();
        assert!(err.message().contains("middle of a frame"), "{err}");
        let err = decode_all(b"definitely not zstd", 100, 100).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        // A frame asking for a 128 MiB window.
        let mut wide = zstd::stream::raw::Encoder::new(3).unwrap();
        wide.set_parameter(zstd::stream::raw::CParameter::WindowLog(27))
            .unwrap();
        let mut out = vec![0u8; 1 << 20];
        let mut output = OutBuffer::around(&mut out);
        let mut input = InBuffer::around(&data);
        wide.run(&mut input, &mut output).unwrap();
        wide.finish(&mut output, true).unwrap();
        let written = output.pos();
        let err = decode_all(&out[..written], 100_000, 1 << 20).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    }

    #[test]
    fn batch_entries_are_bounded_and_round_trip() {
        let data = compressible(200_000);
        let compressed = compress_entry(&data).unwrap();
        assert_eq!(decompress_entry(&compressed, 200_000).unwrap(), data);
        let err = decompress_entry(&compressed, MAX_BATCH_DECOMPRESSED + 1).unwrap_err();
        assert!(err.message().contains("ByteStream"), "{err}");
        let err = decompress_entry(&compressed, 100).unwrap_err();
        assert!(err.message().contains("more than the 100 bytes"), "{err}");
    }
}
