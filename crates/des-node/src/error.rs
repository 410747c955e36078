//! The one conversion from core errors to JS errors.

use des_core::DesError;

/// Encodes the stable code in the message so it survives both sync throws and
/// async rejections unchanged.
pub fn to_napi(err: DesError) -> napi::Error {
  napi::Error::new(
    napi::Status::GenericFailure,
    format!("[{}] {err}", err.code()),
  )
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
