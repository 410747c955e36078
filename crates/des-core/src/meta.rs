//! Entry meta: a JSON object, stored compact and ASCII-escaped as the reference writes it.

use crate::error::{DesError, Result};
use serde::de::IgnoredAny;

/// Checks stored meta bytes: empty, or a JSON object. Returns the text.
pub(crate) fn check_stored(bytes: &[u8], where_: &dyn Fn() -> String) -> Result<()> {
  if bytes.is_empty() {
    return Ok(());
  }
  let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
  if first != Some(&b'{') {
    return Err(DesError::corrupt(format!(
      "{}: meta is not a JSON object",
      where_()
    )));
  }
  serde_json::from_slice::<IgnoredAny>(bytes)
    .map_err(|e| DesError::corrupt(format!("{}: meta is not valid JSON: {e}", where_())))?;
  Ok(())
}

/// Turns caller-supplied meta JSON into the stored form: compact, keys in the
/// given order, non-ASCII escaped as `\uXXXX`, and `{}` stored as zero bytes.
pub fn canonical_meta(json: &str) -> Result<String> {
  if json.trim().is_empty() {
    return Ok(String::new());
  }
  let value: serde_json::Value = serde_json::from_str(json)
    .map_err(|e| DesError::BadArg(format!("meta is not valid JSON: {e}")))?;
  let object = value
    .as_object()
    .ok_or_else(|| DesError::BadArg("meta must be a JSON object".to_string()))?;
  if object.is_empty() {
    return Ok(String::new());
  }
  let compact = serde_json::to_string(&value)
    .map_err(|e| DesError::BadArg(format!("meta cannot be encoded: {e}")))?;
  Ok(ascii_escape(&compact))
}

/// Escapes every non-ASCII char of compact JSON text as `\uXXXX` (surrogate
/// pairs above the BMP), which is what Python's `json.dumps(ensure_ascii=True)` does.
/// Non-ASCII chars only occur inside strings, so escaping them in place is safe.
fn ascii_escape(json: &str) -> String {
  let mut out = String::with_capacity(json.len());
  let mut units = [0u16; 2];
  for ch in json.chars() {
    if ch.is_ascii() {
      out.push(ch);
    } else {
      for unit in ch.encode_utf16(&mut units) {
        out.push_str(&format!("\\u{unit:04x}"));
      }
    }
  }
  out
}
