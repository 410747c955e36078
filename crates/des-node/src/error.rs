//! The one conversion from core errors to JS errors.

use des_core::DesError;

/// Encodes the stable code, and the uid an error is about, in the message so
/// they survive both sync throws and async rejections unchanged:
/// `[DES_CODE] message` or `[DES_CODE uid="<JSON string>"] message`.
/// `src/native.ts` decodes it once, into `err.code` and `err.uid`.
pub fn to_napi(err: DesError) -> napi::Error {
  let tag = match err.uid() {
    Some(uid) => format!("{} uid={}", err.code(), serde_json::Value::from(uid)),
    None => err.code().to_string(),
  };
  napi::Error::new(napi::Status::GenericFailure, format!("[{tag}] {err}"))
}

/// `?`-friendly alias.
pub trait IntoNapi<T> {
  fn napi(self) -> napi::Result<T>;
}

impl<T> IntoNapi<T> for Result<T, DesError> {
  fn napi(self) -> napi::Result<T> {
    self.map_err(to_napi)
  }
}

/// A bad argument that JS passed.
pub fn bad_arg(msg: impl Into<String>) -> napi::Error {
  to_napi(DesError::BadArg(msg.into()))
}
