//! A one-shot LZ4 *frame* decoder into an exactly sized buffer. Small
//! payloads are the common case; a streaming decoder sets up 64 KiB+ block
//! buffers per frame, which costs more than decoding a 1 KiB payload.
//! Handles what `lz4.frame` and other encoders write: linked or independent
//! blocks, optional content size, block and content checksums, several frames.

use lz4_flex::block::{decompress_into, decompress_into_with_dict};
use twox_hash::XxHash32;

const MAGIC: u32 = 0x184D_2204;
const SKIPPABLE_MASK: u32 = 0xFFFF_FFF0;
const SKIPPABLE_MAGIC: u32 = 0x184D_2A50;
/// Linked blocks may refer back this far into earlier output.
const WINDOW: usize = 64 * 1024;

fn u32_at(b: &[u8], at: usize) -> Result<u32, String> {
  b.get(at..at + 4)
    .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    .ok_or_else(|| format!("truncated at byte {at}"))
}

/// Decodes every frame of `input` into a buffer of exactly `size` bytes.
/// Output beyond `size` is an error, never an allocation.
pub(crate) fn decode_frames(input: &[u8], size: usize) -> Result<Vec<u8>, String> {
  let mut out = vec![0u8; size];
  let mut pos = 0usize;
  let mut at = 0usize;
  while at < input.len() {
    let magic = u32_at(input, at)?;
    if magic & SKIPPABLE_MASK == SKIPPABLE_MAGIC {
      let len = u32_at(input, at + 4)? as usize;
      at = at
        .checked_add(8 + len)
        .filter(|&end| end <= input.len())
        .ok_or("truncated skippable frame")?;
      continue;
    }
    if magic != MAGIC {
      return Err(format!("bad frame magic {magic:#010x} at byte {at}"));
    }
    at = decode_frame(input, at + 4, &mut out, &mut pos)?;
  }
  if pos != size {
    return Err(format!("decoded {pos} bytes, expected {size}"));
  }
  Ok(out)
}

fn decode_frame(
  input: &[u8],
  mut at: usize,
  out: &mut [u8],
  pos: &mut usize,
) -> Result<usize, String> {
  let descriptor_start = at;
  let flg = *input.get(at).ok_or("truncated frame descriptor")?;
  let bd = *input.get(at + 1).ok_or("truncated frame descriptor")?;
  at += 2;
  if flg >> 6 != 1 || flg & 0b10 != 0 || bd & 0b1000_1111 != 0 {
    return Err(format!("unsupported frame descriptor {flg:#04x} {bd:#04x}"));
  }
  let independent = flg & 0b10_0000 != 0;
  let block_checksums = flg & 0b1_0000 != 0;
  let has_content_size = flg & 0b1000 != 0;
  let content_checksum = flg & 0b100 != 0;
  let has_dict_id = flg & 0b1 != 0;
  let block_max = match (bd >> 4) & 0b111 {
    4 => 64 << 10,
    5 => 256 << 10,
    6 => 1 << 20,
    7 => 4 << 20,
    other => return Err(format!("unsupported block size code {other}")),
  };
  let frame_start = *pos;
  let mut content_size = None;
  if has_content_size {
    let lo = u32_at(input, at)? as u64;
    let hi = u32_at(input, at + 4)? as u64;
    content_size = Some(lo | hi << 32);
    at += 8;
  }
  if has_dict_id {
    return Err("frames with a dictionary id are not supported".to_string());
  }
  let header_checksum = *input.get(at).ok_or("truncated frame header checksum")?;
  let expected = (XxHash32::oneshot(0, &input[descriptor_start..at]) >> 8) as u8;
  if header_checksum != expected {
    return Err("frame header checksum mismatch".to_string());
  }
  at += 1;
  loop {
    let word = u32_at(input, at)?;
    at += 4;
    if word == 0 {
      break;
    }
    let stored_raw = word & 0x8000_0000 != 0;
    let len = (word & 0x7FFF_FFFF) as usize;
    if len > block_max {
      return Err(format!(
        "block of {len} bytes exceeds the frame's {block_max}"
      ));
    }
    let block = input
      .get(at..at + len)
      .ok_or_else(|| format!("truncated block at byte {at}"))?;
    at += len;
    if block_checksums {
      let sum = u32_at(input, at)?;
      at += 4;
      if sum != XxHash32::oneshot(0, block) {
        return Err("block checksum mismatch".to_string());
      }
    }
    let room = out.len() - *pos;
    let written = if stored_raw {
      if len > room {
        return Err("decoded data is longer than expected".to_string());
      }
      out[*pos..*pos + len].copy_from_slice(block);
      len
    } else {
      let (before, after) = out.split_at_mut(*pos);
      let dest = &mut after[..room.min(block_max)];
      let result = if independent || before.len() == frame_start {
        decompress_into(block, dest)
      } else {
        let dict_from = before.len().saturating_sub(WINDOW).max(frame_start);
        decompress_into_with_dict(block, dest, &before[dict_from..])
      };
      result.map_err(|e| format!("block at byte {}: {e}", at - len))?
    };
    *pos += written;
  }
  if content_checksum {
    let sum = u32_at(input, at)?;
    at += 4;
    if sum != XxHash32::oneshot(0, &out[frame_start..*pos]) {
      return Err("content checksum mismatch".to_string());
    }
  }
  if let Some(cs) = content_size {
    if cs != (*pos - frame_start) as u64 {
      return Err(format!(
        "frame says {cs} bytes, decoded {}",
        *pos - frame_start
      ));
    }
  }
  Ok(at)
}

#[cfg(test)]
mod tests {
  use super::decode_frames;
  use std::io::Write;

  fn encode(data: &[u8], info: lz4_flex::frame::FrameInfo) -> Vec<u8> {
    let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
  }

  #[test]
  fn decodes_what_the_streaming_encoder_writes_in_every_mode() {
    use lz4_flex::frame::{BlockMode, BlockSize, FrameInfo};
    let data: Vec<u8> = (0..300_000u32)
      .flat_map(|i| (i % 251).to_le_bytes())
      .collect();
    for mode in [BlockMode::Linked, BlockMode::Independent] {
      for checks in [false, true] {
        let info = FrameInfo::new()
          .block_mode(mode)
          .block_size(BlockSize::Max64KB)
          .content_checksum(checks)
          .block_checksums(checks)
          .content_size(if checks {
            Some(data.len() as u64)
          } else {
            None
          });
        let frame = encode(&data, info);
        assert_eq!(
          decode_frames(&frame, data.len()).unwrap(),
          data,
          "{mode:?} {checks}"
        );
        assert!(decode_frames(&frame, data.len() - 1).is_err());
        assert!(decode_frames(&frame, data.len() + 1).is_err());
        let mut damaged = frame.clone();
        let mid = damaged.len() / 2;
        damaged[mid] ^= 0x55;
        assert!(decode_frames(&damaged, data.len())
          .map(|d| d != data)
          .unwrap_or(true));
        assert!(decode_frames(&frame[..frame.len() - 3], data.len()).is_err());
      }
    }
  }

  #[test]
  fn an_empty_payload_and_concatenated_frames_decode() {
    let a = encode(b"", lz4_flex::frame::FrameInfo::new());
    assert_eq!(decode_frames(&a, 0).unwrap(), b"");
    let mut two = encode(b"hello ", lz4_flex::frame::FrameInfo::new());
    two.extend(encode(b"world", lz4_flex::frame::FrameInfo::new()));
    assert_eq!(decode_frames(&two, 11).unwrap(), b"hello world");
  }
}
