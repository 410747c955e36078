//! A small bounds-checked reader over a byte slice: every read says what it
//! was reading and where, and nothing is allocated before the length is checked.

use crate::error::{DesError, Result};

pub(crate) struct Cursor<'a> {
  buf: &'a [u8],
  pos: usize,
  /// Absolute position of `buf[0]` in the shard, so errors name file offsets.
  base: u64,
}

impl<'a> Cursor<'a> {
  pub(crate) fn new(buf: &'a [u8], base: u64) -> Self {
    Cursor { buf, pos: 0, base }
  }

  pub(crate) fn pos(&self) -> usize {
    self.pos
  }

  pub(crate) fn remaining(&self) -> usize {
    self.buf.len() - self.pos
  }

  pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
    if n > self.remaining() {
      return Err(DesError::Truncated {
        what,
        at: self.base + self.pos as u64,
        need: n as u64,
        have: self.remaining() as u64,
      });
    }
    let out = &self.buf[self.pos..self.pos + n];
    self.pos += n;
    Ok(out)
  }

  pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8> {
    Ok(self.take(1, what)?[0])
  }

  pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16> {
    let b = self.take(2, what)?;
    Ok(u16::from_le_bytes([b[0], b[1]]))
  }

  pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32> {
    let b = self.take(4, what)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
  }

  pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64> {
    let b = self.take(8, what)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Ok(u64::from_le_bytes(a))
  }
}
