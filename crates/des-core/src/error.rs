//! The one error type of the core. Messages say what went wrong and where.

use std::io;

/// Every failure the core can report. `code()` gives the stable string the
/// binding and the CLI map to statuses and exit codes.
#[derive(Debug, thiserror::Error)]
pub enum DesError {
  /// The bytes are not a valid shard (or a payload inside it is damaged).
  #[error("corrupt shard: {0}")]
  Corrupt(String),
  /// A read ran past the end of the bytes it was given.
  #[error("corrupt shard: truncated {what} at byte {at}: need {need} bytes, have {have}")]
  Truncated {
    what: &'static str,
    at: u64,
    need: u64,
    have: u64,
  },
  /// A caller passed a value the operation cannot accept.
  #[error("bad argument: {0}")]
  BadArg(String),
  /// The uid is not in the shard.
  #[error("not found: uid {0:?} is not in this shard")]
  NotFound(String),
  /// The uid is already in the shard being written.
  #[error("duplicate uid {0:?}: it is already in this shard")]
  Duplicate(String),
  /// The tail given does not reach back to the start of the index.
  #[error(
    "tail too short: the index starts at byte {index_offset}, the tail starts at {tail_start}"
  )]
  NeedMore { index_offset: u64, tail_start: u64 },
  /// The shard file was replaced (an append renamed a new file over it)
  /// since its index was read: read the index again.
  #[error("shard {0} was replaced since its index was read")]
  Changed(String),
  /// A source file is not the size it was checked to be: it changed since.
  #[error("{0}")]
  SourceChanged(String),
  /// The operating system refused a file operation.
  #[error("{context}: {source}")]
  Io {
    context: String,
    #[source]
    source: io::Error,
  },
  /// Another error, about one file: the uid travels as data, so a caller
  /// can say where that file came from without reading the message.
  #[error("{source}")]
  ForUid {
    uid: String,
    #[source]
    source: Box<DesError>,
  },
}

impl DesError {
  /// Stable machine-readable code, e.g. `DES_CORRUPT`.
  pub fn code(&self) -> &'static str {
    match self {
      DesError::Corrupt(_) | DesError::Truncated { .. } => "DES_CORRUPT",
      DesError::BadArg(_) => "DES_BAD_ARG",
      DesError::NotFound(_) => "DES_NOT_FOUND",
      DesError::Duplicate(_) => "DES_DUPLICATE",
      DesError::NeedMore { .. } => "DES_NEED_MORE",
      DesError::Changed(_) => "DES_CHANGED",
      DesError::SourceChanged(_) => "DES_SOURCE_CHANGED",
      DesError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => "DES_NO_FILE",
      DesError::Io { .. } => "DES_IO",
      DesError::ForUid { source, .. } => source.code(),
    }
  }

  /// The uid the error is about, when it is about one file.
  pub fn uid(&self) -> Option<&str> {
    match self {
      DesError::NotFound(uid) | DesError::Duplicate(uid) | DesError::ForUid { uid, .. } => {
        Some(uid)
      }
      _ => None,
    }
  }

  /// This error, marked as being about `uid` (unless it already names one).
  pub fn for_uid(self, uid: &str) -> Self {
    if self.uid().is_some() {
      return self;
    }
    DesError::ForUid {
      uid: uid.to_string(),
      source: Box::new(self),
    }
  }

  /// Wraps an I/O error with what was being done.
  pub fn io(context: impl Into<String>, source: io::Error) -> Self {
    DesError::Io {
      context: context.into(),
      source,
    }
  }

  pub(crate) fn corrupt(msg: impl Into<String>) -> Self {
    DesError::Corrupt(msg.into())
  }
}

/// Result alias used throughout the core.
pub type Result<T> = std::result::Result<T, DesError>;
