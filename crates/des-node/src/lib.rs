//! Node.js binding of `des-core`: conversion only. Every error crosses as
//! `"[DES_CODE] message"`; `src/native.ts` turns that back into `err.code`.

mod error;
mod reader;
mod routing;
mod writer;

pub use reader::*;
pub use routing::*;
pub use writer::*;
