//! Verifying a whole shard in one sequential pass: header, every entry's
//! stored bytes (checksum, then decode), dead ranges, gaps and overlaps. The
//! same verifier serves a local file (read in chunks) and an object streamed
//! from S3 (its index parsed from a tail read first), so both check alike.
//! Damage is reported as problems, never as an error: a report lists all of it.

use crate::checksum::{crc32c, crc32c_append};
use crate::codec::{decompress, payload_ceiling};
use crate::entry::{Body, Entry};
use crate::error::{DesError, Result};
use crate::format::{parse_header, HEADER_SIZE};
use crate::index::ShardIndex;
use crate::lock::{wait_for_writer, writer_holds};
use crate::reader::{read_exact_at, read_frame};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

/// The part of a shard a problem was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
  Header,
  /// Data-section bytes that belong to no entry (gaps, retired ranges).
  Data,
  Index,
  Footer,
  /// One entry's stored bytes.
  Entry,
  /// A BigFile object beside the shard.
  BigFile,
}

impl Region {
  /// `"header"`, `"data"`, `"index"`, `"footer"`, `"entry"` or `"bigfile"`.
  pub fn name(self) -> &'static str {
    match self {
      Region::Header => "header",
      Region::Data => "data",
      Region::Index => "index",
      Region::Footer => "footer",
      Region::Entry => "entry",
      Region::BigFile => "bigfile",
    }
  }
}

/// One thing found wrong.
#[derive(Debug, Clone)]
pub struct Problem {
  pub uid: Option<String>,
  pub region: Region,
  /// Stable code, e.g. `DES_CORRUPT`.
  pub code: &'static str,
  pub message: String,
}

/// What a verification found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
  /// Entries in the index (0 when the index could not be read).
  pub entries: u64,
  /// Entries whose bytes checked out (BigFiles only where they were checked).
  pub ok: u64,
  /// Decoded bytes of the entries that checked out.
  pub bytes: u64,
  /// The shard carries a checksum block; without one, codec-none payloads
  /// and dead bytes cannot be checked.
  pub checksummed: bool,
  pub problems: Vec<Problem>,
}

impl VerifyReport {
  fn problem(&mut self, region: Region, uid: Option<&str>, err: DesError) {
    self.problems.push(Problem {
      uid: uid.map(str::to_string),
      region,
      code: err.code(),
      message: err.to_string(),
    });
  }
}

#[derive(Debug, Clone, Copy)]
enum SpanKind {
  /// Index position of an inline entry.
  Entry(usize),
  /// Position in the retired list.
  Retired(usize),
}

#[derive(Debug, Clone, Copy)]
struct Span {
  offset: u64,
  length: u64,
  kind: SpanKind,
}

impl Span {
  fn end(&self) -> u64 {
    self.offset + self.length
  }
}

/// A span being read: its running checksum, and for an entry its bytes so
/// far (to decode them) unless they are not held.
struct Open {
  span: Span,
  crc: u32,
  held: Held,
}

/// What a span being read keeps of its bytes.
enum Held {
  Bytes(Vec<u8>),
  /// A retired range: its checksum is all there is to check.
  Nothing,
  /// An entry over the payload ceiling.
  OverCeiling,
  /// An entry overlapping others whose bytes, held at once, would pass the
  /// ceiling (a crafted index of many entries over one range must not take
  /// memory in proportion); the overlap is reported as damage already.
  Overlapping,
}

/// Checks the bytes `[0, data_end)` of a shard as they stream past, against
/// an index parsed beforehand. Memory: the entries open at once (one,
/// unless entries overlap), each at most the payload ceiling, all of them
/// at most twice the ceiling.
pub struct StreamVerifier {
  index: Arc<ShardIndex>,
  spans: Vec<Span>,
  next_span: usize,
  open: Vec<Open>,
  pos: u64,
  header: Vec<u8>,
  /// Start of the current run of bytes no span covers.
  gap_start: Option<u64>,
  report: VerifyReport,
}

impl StreamVerifier {
  /// A verifier for the shard of `index`; feed it bytes from offset 0.
  pub fn new(index: Arc<ShardIndex>) -> StreamVerifier {
    let mut report = VerifyReport {
      entries: index.len() as u64,
      checksummed: index.has_checksums(),
      ..VerifyReport::default()
    };
    let mut spans = Vec::with_capacity(index.len() + index.retired().len());
    for i in 0..index.len() {
      if let Body::Inline { offset, length, .. } = index.entry(i).body {
        spans.push(Span {
          offset,
          length,
          kind: SpanKind::Entry(i),
        });
      }
    }
    for (j, r) in index.retired().iter().enumerate() {
      spans.push(Span {
        offset: r.offset,
        length: r.length,
        kind: SpanKind::Retired(j),
      });
    }
    if index.unfinished_append() > 0 {
      report.problem(
        Region::Footer,
        None,
        DesError::corrupt(format!(
          "{UNFINISHED_APPEND}: the {} bytes after its index at byte {} are not part of it (it reads as it was before; the next write to it cuts them off)",
          index.unfinished_append() + crate::format::FOOTER_SIZE,
          index.data_end() + index.index_size() + crate::format::FOOTER_SIZE
        )),
      );
    }
    spans.sort_by_key(|s| (s.offset, s.length));
    let mut reach = HEADER_SIZE;
    let mut reacher: Option<Span> = None;
    for s in &spans {
      if s.length > 0 && s.offset < reach {
        if let Some(prev) = reacher {
          let name = |sp: &Span| match sp.kind {
            SpanKind::Entry(i) => format!("entry {i} (uid {:?})", index.uid_at(i)),
            SpanKind::Retired(j) => format!("retired range {j}"),
          };
          report.problem(
            Region::Index,
            match s.kind {
              SpanKind::Entry(i) => Some(index.uid_at(i)),
              SpanKind::Retired(_) => None,
            },
            DesError::corrupt(format!(
              "{} at {}..{} overlaps {} at {}..{}",
              name(s),
              s.offset,
              s.end(),
              name(&prev),
              prev.offset,
              prev.end()
            )),
          );
        }
      }
      if s.end() > reach {
        reach = s.end();
        reacher = Some(*s);
      }
    }
    StreamVerifier {
      index,
      spans,
      next_span: 0,
      open: Vec::new(),
      pos: 0,
      header: Vec::with_capacity(HEADER_SIZE as usize),
      gap_start: None,
      report,
    }
  }

  /// Where the data section ends: feed exactly the bytes before it.
  pub fn data_end(&self) -> u64 {
    self.index.data_end()
  }

  /// Bytes fed so far.
  pub fn position(&self) -> u64 {
    self.pos
  }

  /// The index being verified against.
  pub fn index(&self) -> &Arc<ShardIndex> {
    &self.index
  }

  /// Takes the next bytes of the shard. Bytes past the data end are ignored
  /// (the index and footer were checked when the index was parsed).
  pub fn feed(&mut self, mut chunk: &[u8]) {
    let data_end = self.index.data_end();
    while !chunk.is_empty() && self.pos < data_end {
      if self.pos < HEADER_SIZE {
        let n = ((HEADER_SIZE - self.pos) as usize).min(chunk.len());
        self.header.extend_from_slice(&chunk[..n]);
        self.pos += n as u64;
        chunk = &chunk[n..];
        if self.pos == HEADER_SIZE {
          self.check_header();
        }
        continue;
      }
      self.open_spans_at_pos();
      let mut until = data_end;
      if let Some(next) = self.spans.get(self.next_span) {
        until = until.min(next.offset);
      }
      for o in &self.open {
        until = until.min(o.span.end());
      }
      let n = ((until - self.pos) as usize).min(chunk.len());
      let seg = &chunk[..n];
      if self.open.is_empty() {
        self.gap_start.get_or_insert(self.pos);
      } else {
        self.close_gap();
        for o in &mut self.open {
          o.crc = crc32c_append(o.crc, seg);
          if let Held::Bytes(bytes) = &mut o.held {
            bytes.extend_from_slice(seg);
          }
        }
      }
      self.pos += n as u64;
      chunk = &chunk[n..];
      self.close_spans_at_pos();
    }
  }

  /// Ends the pass: what never arrived is reported, and the report returned.
  pub fn finish(mut self) -> VerifyReport {
    let data_end = self.index.data_end();
    if self.pos < data_end {
      let at = self.pos;
      self.report.problem(
        Region::Data,
        None,
        DesError::corrupt(format!(
          "the shard ended at byte {at}, its index says the data section runs to {data_end}"
        )),
      );
      for o in std::mem::take(&mut self.open) {
        self.unread(o.span);
      }
      for i in self.next_span..self.spans.len() {
        let span = self.spans[i];
        self.unread(span);
      }
      return self.report;
    }
    // Empty entries sitting exactly at the data end.
    self.open_spans_at_pos();
    self.close_spans_at_pos();
    self.close_gap();
    self.report
  }

  fn check_header(&mut self) {
    let version = self.index.version();
    let result = parse_header(&self.header).and_then(|v| {
      if v == version {
        Ok(())
      } else {
        Err(DesError::corrupt(format!(
          "header says version {v}, the index is laid out as version {version}"
        )))
      }
    });
    if let Err(e) = result {
      self.report.problem(Region::Header, None, e);
    }
  }

  fn open_spans_at_pos(&mut self) {
    let ceiling = payload_ceiling();
    while let Some(span) = self.spans.get(self.next_span).copied() {
      if span.offset > self.pos {
        break;
      }
      self.next_span += 1;
      // Bytes the entries open now hold (more than one only where entries overlap).
      let holding: u64 = self
        .open
        .iter()
        .filter(|o| matches!(o.held, Held::Bytes(_)))
        .map(|o| o.span.length)
        .sum();
      let held = match span.kind {
        SpanKind::Retired(_) => Held::Nothing,
        SpanKind::Entry(_) if span.length > ceiling => Held::OverCeiling,
        SpanKind::Entry(_) if holding > 0 && holding + span.length > ceiling => Held::Overlapping,
        SpanKind::Entry(_) => Held::Bytes(Vec::with_capacity(span.length as usize)),
      };
      self.open.push(Open { span, crc: 0, held });
    }
  }

  fn close_spans_at_pos(&mut self) {
    let pos = self.pos;
    let mut i = 0;
    while i < self.open.len() {
      if self.open[i].span.end() == pos {
        let done = self.open.swap_remove(i);
        self.check_span(done);
      } else {
        i += 1;
      }
    }
  }

  fn close_gap(&mut self) {
    if let Some(start) = self.gap_start.take() {
      // Shards written with checksums leave no byte uncovered; older ones
      // (and the reference's) may hold dead bytes no one can check.
      if self.report.checksummed {
        let end = self.pos;
        self.report.problem(
          Region::Data,
          None,
          DesError::corrupt(format!(
            "bytes {start}..{end} of the data section belong to no entry"
          )),
        );
      }
    }
  }

  fn unread(&mut self, span: Span) {
    if let SpanKind::Entry(i) = span.kind {
      let uid = self.index.uid_at(i).to_string();
      self.report.problem(
        Region::Entry,
        Some(&uid),
        DesError::corrupt(format!(
          "uid {uid:?}: its bytes {}..{} were never read",
          span.offset,
          span.end()
        )),
      );
    }
  }

  fn check_span(&mut self, open: Open) {
    match open.span.kind {
      SpanKind::Retired(j) => {
        let want = self.index.retired()[j].crc;
        if open.crc != want {
          self.report.problem(
            Region::Data,
            None,
            DesError::corrupt(format!(
              "retired bytes {}..{} fail their checksum (CRC32C {:08x}, the index says {want:08x})",
              open.span.offset,
              open.span.end(),
              open.crc
            )),
          );
        }
      }
      SpanKind::Entry(i) => {
        let entry = self.index.entry(i);
        match check_entry(&entry, open.crc, open.held) {
          Ok(size) => {
            self.report.ok += 1;
            self.report.bytes += size;
          }
          Err(e) => self.report.problem(Region::Entry, Some(&entry.uid), e),
        }
      }
    }
  }
}

/// One inline entry: checksum first, then a full decode to its stated size.
fn check_entry(entry: &Entry, crc: u32, held: Held) -> Result<u64> {
  let Body::Inline {
    codec,
    size,
    crc: want,
    ..
  } = &entry.body
  else {
    return Ok(0);
  };
  if let Some(want) = want {
    if crc != *want {
      return Err(DesError::corrupt(format!(
        "payload of uid {:?}: stored bytes fail their checksum (CRC32C {crc:08x}, the index says {want:08x})",
        entry.uid
      )));
    }
  }
  let bytes = match held {
    Held::Bytes(bytes) => bytes,
    Held::Overlapping => {
      return Err(DesError::corrupt(format!(
        "payload of uid {:?}: not decoded: its bytes overlap other entries held at once past the payload ceiling",
        entry.uid
      )))
    }
    Held::OverCeiling | Held::Nothing => {
      return Err(DesError::corrupt(format!(
        "payload of uid {:?}: {} stored bytes is over the payload ceiling of {} bytes (DES_MAX_PAYLOAD_BYTES)",
        entry.uid,
        entry.stored_size(),
        payload_ceiling()
      )))
    }
  };
  decompress(*codec, &bytes, *size, &entry.uid)?;
  Ok(*size)
}

/// Checks a BigFile object against its entry (size, sha256), streaming it.
pub fn check_bigfile_file(path: &Path, entry: &Entry) -> Result<()> {
  let Body::BigFile { sha256, size } = &entry.body else {
    return Err(DesError::BadArg(format!(
      "uid {:?} is not a BigFile",
      entry.uid
    )));
  };
  let file = crate::bigfile::open_bigfile(path, entry, |e| {
    DesError::io(format!("BigFile {sha256} of uid {:?}", entry.uid), e)
  })?;
  // One byte past the indexed size at most: a file that does not end there is refused, never read whole.
  let mut file = file.take(size.saturating_add(1));
  let mut hasher = Sha256::new();
  let mut buf = vec![0u8; 1 << 20];
  let mut total = 0u64;
  loop {
    let n = file
      .read(&mut buf)
      .map_err(|e| DesError::io(format!("read BigFile {sha256}"), e))?;
    if n == 0 {
      break;
    }
    total += n as u64;
    hasher.update(&buf[..n]);
  }
  if total != *size {
    let is = if total > *size {
      format!("more than {size}")
    } else {
      total.to_string()
    };
    return Err(DesError::corrupt(format!(
      "BigFile {sha256} of uid {:?} is {is} bytes, the index says {size}",
      entry.uid
    )));
  }
  let actual: String = hasher
    .finalize()
    .iter()
    .map(|b| format!("{b:02x}"))
    .collect();
  if !actual.eq_ignore_ascii_case(sha256) {
    return Err(DesError::corrupt(format!(
      "BigFile of uid {:?} has sha256 {actual}, the index says {sha256}",
      entry.uid
    )));
  }
  Ok(())
}

/// How the problem of bytes past the index (an append not finished) begins.
const UNFINISHED_APPEND: &str = "an append to this shard was interrupted";

/// Verifies a local shard file and, with `bigfiles_prefix`, the BigFiles it
/// names (beside it, under that folder; `None` leaves them to the caller).
/// Damage anywhere is a problem in the report; only a file that cannot be
/// read at all is an error.
pub fn verify_file(path: &Path, bigfiles_prefix: Option<&str>) -> Result<VerifyReport> {
  let shown = path.display().to_string();
  let file = File::open(path).map_err(|e| DesError::io(format!("open {shown}"), e))?;
  let mut report = verify_open_file(path, &file, bigfiles_prefix)?;
  if report.problems.iter().any(|p| p.region == Region::Footer) && wait_for_writer(&file) {
    // What looked unfinished or torn may be an append under way: read the
    // shard again once its writer is done.
    report = verify_open_file(path, &file, bigfiles_prefix)?;
    if writer_holds(&file) {
      // Still at work after the wait (a large append, slow syncs): its bytes
      // past the index are not part of the shard yet, which reads as before.
      report
        .problems
        .retain(|p| !(p.region == Region::Footer && p.message.contains(UNFINISHED_APPEND)));
    }
  }
  Ok(report)
}

fn verify_open_file(
  path: &Path,
  file: &File,
  bigfiles_prefix: Option<&str>,
) -> Result<VerifyReport> {
  let shown = path.display().to_string();
  let size = file
    .metadata()
    .map_err(|e| DesError::io(format!("stat {shown}"), e))?
    .len();
  let mut report = VerifyReport::default();
  let io = |e| DesError::io(format!("read {shown}"), e);
  let frame = match read_frame(file, size, &shown) {
    Ok(frame) => frame,
    Err(e @ DesError::Corrupt(_)) => {
      report.problem(Region::Footer, None, e);
      return Ok(report);
    }
    Err(e) => return Err(e),
  };
  let header = frame.header;
  let (footer, section) = match frame.index {
    Ok(found) => found,
    Err(e) => {
      report.problem(Region::Footer, None, e);
      return Ok(report);
    }
  };
  // A damaged header is reported by the stream pass; the index layout is
  // then recognised from the index itself.
  let parsed = ShardIndex::parse_section(section, parse_header(&header).ok(), footer.index_offset);
  let index = match parsed {
    Ok(index) => Arc::new(index),
    Err(e) => {
      if let Err(h) = parse_header(&header) {
        report.problem(Region::Header, None, h);
      }
      report.problem(Region::Index, None, e);
      return Ok(report);
    }
  };
  let mut verifier = StreamVerifier::new(index.clone());
  let mut from_start = file;
  std::io::Seek::seek(&mut from_start, std::io::SeekFrom::Start(0)).map_err(io)?;
  let mut reader = std::io::BufReader::with_capacity(1 << 20, from_start).take(index.data_end());
  let mut buf = vec![0u8; 1 << 20];
  loop {
    let n = reader.read(&mut buf).map_err(io)?;
    if n == 0 {
      break;
    }
    verifier.feed(&buf[..n]);
  }
  let mut report = verifier.finish();
  let Some(prefix) = bigfiles_prefix else {
    return Ok(report);
  };
  let dir = path.parent().unwrap_or_else(|| Path::new("."));
  // Each object is read once, however many entries share it; one damaged
  // object is one problem.
  let mut checked: HashMap<(String, u64), bool> = HashMap::new();
  for i in 0..index.len() {
    let entry = index.entry(i);
    let Body::BigFile { sha256, size } = &entry.body else {
      continue;
    };
    let key = (sha256.to_ascii_lowercase(), *size);
    let ok = match checked.get(&key) {
      Some(ok) => *ok,
      None => {
        let result = check_bigfile_file(&dir.join(prefix).join(sha256), &entry);
        let ok = result.is_ok();
        if let Err(e) = result {
          report.problem(Region::BigFile, Some(&entry.uid), e);
        }
        checked.insert(key, ok);
        ok
      }
    };
    if ok {
      report.ok += 1;
      report.bytes += entry.size();
    }
  }
  Ok(report)
}

/// CRC32C of a byte range of a file (for carrying entries of a shard that has
/// no checksum block into one that has).
pub(crate) fn crc_of_range(file: &File, offset: u64, length: u64) -> std::io::Result<u32> {
  let mut crc = crc32c(&[]);
  let mut buf = vec![0u8; (length.min(1 << 20)) as usize];
  let mut at = offset;
  let end = offset + length;
  while at < end {
    let n = ((end - at) as usize).min(buf.len());
    read_exact_at(file, &mut buf[..n], at)?;
    crc = crc32c_append(crc, &buf[..n]);
    at += n as u64;
  }
  Ok(crc)
}
