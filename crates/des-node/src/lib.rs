//! Node.js binding of `des-core`: conversion only. Every error crosses as
//! `"[DES_CODE] message"`; `src/native.ts` turns that back into `err.code`.

mod entry;
mod error;
mod manifest;
mod pack;
mod payload_cache;
mod prefetch;
mod reader;
mod routing;
mod verify;
mod writer;

pub use entry::*;
pub use manifest::*;
pub use pack::*;
pub use payload_cache::*;
pub use prefetch::*;
pub use reader::*;
pub use routing::*;
pub use verify::*;
pub use writer::*;
