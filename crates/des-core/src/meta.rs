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
  let depth = nesting(bytes);
  if depth > MAX_META_DEPTH {
    return Err(DesError::corrupt(format!(
      "{}: meta is nested {depth} levels deep, more than the {MAX_META_DEPTH} this reader accepts",
      where_()
    )));
  }
  Ok(())
}

/// Deepest meta nesting a reader accepts. Our writers nest at most 128 levels
/// (serde_json's limit); the original's reader (Python's `json.loads`) reads
/// about 1,500. Deeper meta cannot be turned back into JSON text by
/// JavaScript (`des ls --json`: "Maximum call stack size exceeded" from about
/// 4,000), so it is damage, refused with the index, as the original refuses it.
pub const MAX_META_DEPTH: usize = 2000;

/// How deeply the objects and arrays of valid JSON text nest.
fn nesting(json: &[u8]) -> usize {
  let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
  for &b in json {
    if in_string {
      match b {
        _ if escaped => escaped = false,
        b'\\' => escaped = true,
        b'"' => in_string = false,
        _ => {}
      }
      continue;
    }
    match b {
      b'"' => in_string = true,
      b'{' | b'[' => {
        depth += 1;
        deepest = deepest.max(depth);
      }
      b'}' | b']' => depth = depth.saturating_sub(1),
      _ => {}
    }
  }
  deepest
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

#[cfg(test)]
mod tests {
  use super::*;

  fn nested(depth: usize) -> Vec<u8> {
    format!(
      "{{\"a\":{}{}}}",
      "[".repeat(depth - 1),
      "]".repeat(depth - 1)
    )
    .into_bytes()
  }

  #[test]
  fn meta_nested_deeper_than_a_reader_can_print_is_refused() {
    let here = || "index entry 0".to_string();
    assert!(check_stored(&nested(MAX_META_DEPTH), &here).is_ok());
    let err = check_stored(&nested(MAX_META_DEPTH + 1), &here).unwrap_err();
    assert_eq!(err.code(), "DES_CORRUPT");
    assert!(err.to_string().contains("nested 2001 levels"), "{err}");
    let err = check_stored(&nested(1_000_000), &here).unwrap_err();
    assert_eq!(err.code(), "DES_CORRUPT");
    // Brackets inside strings (escaped quotes too) are text, not nesting.
    let text = format!("{{\"a\":\"\\\"{}\"}}", "[".repeat(5000));
    assert!(check_stored(text.as_bytes(), &here).is_ok());
  }
}
