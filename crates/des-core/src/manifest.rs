//! Finding the entries of a packer's manifest (SPEC §9) in its bytes, fed in
//! chunks of any size: the elements of a top-level JSON array (each with the
//! line it starts on) or the non-blank lines of JSON lines. The format is
//! told by the first byte that is not white space (`[` or `{`).
//!
//! Only where each entry starts and ends is found here (strings, escapes,
//! nesting): the caller parses the entries (in one `JSON.parse` per chunk)
//! and says why one that is not JSON is refused. Every refusal names the
//! line, and the entry in an array.

/// An entry longer than this is refused (a string that never closes would
/// otherwise swallow the file).
pub const MAX_ENTRY_BYTES: usize = 16 * 1024 * 1024;

const NL: u8 = b'\n';
const BOM: [u8; 3] = [0xef, 0xbb, 0xbf];

fn is_space(b: u8) -> bool {
  matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

fn syntax(what: String) -> ScanError {
  ScanError::Refused(format!("manifest is not valid JSON: {what}"))
}

fn not_a_manifest() -> ScanError {
  ScanError::Refused("manifest must be a JSON array of objects (or JSON lines)".to_string())
}

/// A byte as `JSON.stringify(String.fromCharCode(b))` shows it.
fn shown(b: u8) -> String {
  match b {
    b'"' => "\"\\\"\"".to_string(),
    b'\\' => "\"\\\\\"".to_string(),
    0x08 => "\"\\b\"".to_string(),
    0x0c => "\"\\f\"".to_string(),
    b'\n' => "\"\\n\"".to_string(),
    b'\r' => "\"\\r\"".to_string(),
    b'\t' => "\"\\t\"".to_string(),
    0..=0x1f => format!("\"\\u{b:04x}\""),
    _ => format!("\"{}\"", char::from(b)),
  }
}

/// Why the manifest is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanError {
  /// With the message to show.
  Refused(String),
  /// This entry (what was read of it) cannot be JSON: the caller's JSON
  /// parser says why, as `manifest is not valid JSON: line L (entry N): why`.
  BadEntry {
    text: Vec<u8>,
    line: u32,
    entry: u32,
  },
}

/// Where one entry is: `buf[start..end]` of the bytes given to `feed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
  pub start: usize,
  pub end: usize,
  /// The line it starts on (1-based).
  pub line: u32,
  /// Its number in the array (1-based); in JSON lines, 0.
  pub entry: u32,
}

/// What one `feed` (or `end`) found, in order.
#[derive(Debug)]
pub struct Found {
  pub spans: Vec<Span>,
  /// Every span is an element of the array that is an object (its first
  /// byte `{`): the caller may parse them as one array.
  pub all_objects: bool,
  /// Where the entry (or line) still open at the end begins: the caller
  /// gives `buf[keep_from..]` again at the front of the next `feed`.
  pub keep_from: Option<usize>,
  /// The first problem, after the entries before it.
  pub error: Option<ScanError>,
}

impl Default for Found {
  fn default() -> Self {
    Found {
      spans: Vec::new(),
      all_objects: true,
      keep_from: None,
      error: None,
    }
  }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
  Start,
  Array,
  Lines,
  Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
  First,
  Value,
  Comma,
}

/// The scanner's state between chunks.
#[derive(Debug)]
pub struct ManifestScanner {
  mode: Mode,
  line: u32,
  /// Entries seen so far (the number of the current one).
  entry: u32,
  /// Bytes of a UTF-8 byte order mark matched at the very start (None: none there).
  bom_at: Option<usize>,
  expect: Expect,
  in_entry: bool,
  /// The entry is a bare scalar (number, true, ...): it ends at white space, `,` or `]`.
  bare: bool,
  in_string: bool,
  escaped: bool,
  /// Closing brackets still expected inside the current entry.
  closers: Vec<u8>,
  entry_line: u32,
  /// The current entry starts with `{`.
  entry_is_object: bool,
}

impl Default for ManifestScanner {
  fn default() -> Self {
    ManifestScanner {
      mode: Mode::Start,
      line: 1,
      entry: 0,
      bom_at: Some(0),
      expect: Expect::First,
      in_entry: false,
      bare: false,
      in_string: false,
      escaped: false,
      closers: Vec::new(),
      entry_line: 0,
      entry_is_object: false,
    }
  }
}

impl ManifestScanner {
  pub fn new() -> ManifestScanner {
    ManifestScanner::default()
  }

  /// Scans `buf[from..]`, where `buf[..from]` are the bytes kept from the
  /// last call (`keep_from` on: the open entry or line) and the rest is the
  /// next chunk. Stops at the first problem.
  pub fn feed(&mut self, buf: &[u8], from: usize) -> Found {
    let mut found = Found::default();
    if let Err(e) = self.scan(buf, from.min(buf.len()), &mut found) {
      found.error = Some(e);
      found.keep_from = None;
    }
    found
  }

  /// The input has ended; `buf` is what was kept (the open entry or line):
  /// finds the last line, or refuses an array that is not closed.
  pub fn end(&mut self, buf: &[u8]) -> Found {
    let mut found = Found::default();
    if let Err(e) = self.finish(buf, &mut found) {
      found.error = Some(e);
    }
    found
  }

  fn finish(&mut self, buf: &[u8], found: &mut Found) -> Result<(), ScanError> {
    match self.mode {
      Mode::Start => Err(ScanError::Refused("manifest is empty".to_string())),
      Mode::Lines => self.line_done(buf, 0, buf.len(), true, found),
      Mode::Done => Ok(()),
      Mode::Array => {
        if self.in_entry && self.bare {
          self.entry_done(0, buf.len(), true, found)?;
        } else if self.in_entry {
          return Err(self.bad_entry(buf, 0, buf.len(), true));
        }
        Err(syntax(format!(
          "line {}: the manifest ends before its array is closed (after entry {})",
          self.line, self.entry
        )))
      }
    }
  }

  fn scan(&mut self, buf: &[u8], from: usize, found: &mut Found) -> Result<(), ScanError> {
    // Bytes kept from the last call are the open line (or entry) of a mode already known.
    let carried = self.mode != Mode::Start && from > 0;
    let mut from = from;
    if self.mode == Mode::Start {
      from = self.start(buf, from)?;
    }
    match self.mode {
      Mode::Array => self.scan_array(buf, from, found),
      Mode::Lines => self.scan_lines(buf, from, carried, found),
      Mode::Done => self.scan_after(buf, from),
      Mode::Start => Ok(()),
    }
  }

  fn start(&mut self, buf: &[u8], from: usize) -> Result<usize, ScanError> {
    for (i, &b) in buf.iter().enumerate().skip(from) {
      if let Some(k) = self.bom_at {
        if k < 3 && b == BOM[k] {
          self.bom_at = Some(k + 1);
          continue;
        }
        if k == 1 || k == 2 {
          return Err(not_a_manifest());
        }
      }
      self.bom_at = None;
      if b == NL {
        self.line += 1;
      } else if !is_space(b) {
        return match b {
          b'[' => {
            self.mode = Mode::Array;
            Ok(i + 1)
          }
          b'{' => {
            self.mode = Mode::Lines;
            Ok(i)
          }
          _ => Err(not_a_manifest()),
        };
      }
    }
    Ok(buf.len())
  }

  /// An entry (or line) that began in an earlier chunk may not grow past MAX_ENTRY_BYTES.
  fn check_length(&self, start: usize, end: usize, carried: bool) -> Result<(), ScanError> {
    if !carried || end - start <= MAX_ENTRY_BYTES {
      return Ok(());
    }
    let what = if self.mode == Mode::Lines {
      format!("line {}", self.line)
    } else {
      format!("line {} (entry {})", self.entry_line, self.entry)
    };
    // Not called invalid JSON: the entry may well be valid, only too long to read.
    Err(ScanError::Refused(format!(
      "manifest {what}: an entry longer than {MAX_ENTRY_BYTES} bytes, the most one entry may have"
    )))
  }

  fn scan_lines(
    &mut self,
    buf: &[u8],
    from: usize,
    carried: bool,
    found: &mut Found,
  ) -> Result<(), ScanError> {
    let mut carried = carried;
    let mut start = if carried { 0 } else { from };
    let mut search = from;
    loop {
      let Some(at) = buf[search..].iter().position(|&b| b == NL) else {
        self.check_length(start, buf.len(), true)?;
        found.keep_from = Some(start);
        return Ok(());
      };
      let nl = search + at;
      self.line_done(buf, start, nl, carried, found)?;
      self.line += 1;
      start = nl + 1;
      search = start;
      carried = false;
    }
  }

  fn line_done(
    &mut self,
    buf: &[u8],
    start: usize,
    end: usize,
    carried: bool,
    found: &mut Found,
  ) -> Result<(), ScanError> {
    self.check_length(start, end, carried)?;
    // A line of JSON white space is skipped here; one of other white space the caller skips.
    if buf[start..end].iter().all(|&b| is_space(b)) {
      return Ok(());
    }
    self.entry += 1;
    found.all_objects = false;
    found.spans.push(Span {
      start,
      end,
      line: self.line,
      entry: 0,
    });
    Ok(())
  }

  fn entry_done(
    &mut self,
    start: usize,
    end: usize,
    carried: bool,
    found: &mut Found,
  ) -> Result<(), ScanError> {
    self.check_length(start, end, carried)?;
    self.in_entry = false;
    found.all_objects &= self.entry_is_object;
    found.spans.push(Span {
      start,
      end,
      line: self.entry_line,
      entry: self.entry,
    });
    Ok(())
  }

  /// The entry so far cannot be JSON (a stray bracket, a raw newline in a string).
  fn bad_entry(&self, buf: &[u8], start: usize, end: usize, carried: bool) -> ScanError {
    if let Err(e) = self.check_length(start, end, carried) {
      return e;
    }
    ScanError::BadEntry {
      text: buf[start..end].to_vec(),
      line: self.entry_line,
      entry: self.entry,
    }
  }

  fn scan_array(&mut self, buf: &[u8], from: usize, found: &mut Found) -> Result<(), ScanError> {
    // An entry open at the start began in an earlier chunk: its kept bytes come first.
    let mut entry_start = 0usize;
    let mut carried = self.in_entry;
    let n = buf.len();
    let mut i = from;
    while i < n {
      let b = buf[i];
      if self.in_string {
        if self.escaped {
          self.escaped = false;
        } else if b == b'\\' {
          self.escaped = true;
        } else if b == b'"' {
          self.in_string = false;
          if self.closers.is_empty() {
            // A string entry: it ends with its quote.
            self.entry_done(entry_start, i + 1, carried, found)?;
            self.expect = Expect::Comma;
          }
        } else if b == NL {
          // Any other control byte in a string is the JSON parser's to refuse.
          return Err(self.bad_entry(buf, entry_start, i + 1, carried));
        }
        i += 1;
        continue;
      }
      if b == NL {
        self.line += 1;
      }
      if self.in_entry {
        if !self.bare {
          match b {
            b'"' => self.in_string = true,
            b'{' => self.closers.push(b'}'),
            b'[' => self.closers.push(b']'),
            b'}' | b']' => {
              if self.closers.pop() != Some(b) {
                return Err(self.bad_entry(buf, entry_start, i + 1, carried));
              }
              if self.closers.is_empty() {
                self.entry_done(entry_start, i + 1, carried, found)?;
                self.expect = Expect::Comma;
              }
            }
            _ => {}
          }
          i += 1;
          continue;
        }
        if !is_space(b) && b != b',' && b != b']' {
          i += 1;
          continue;
        }
        self.entry_done(entry_start, i, carried, found)?;
        self.expect = Expect::Comma;
        // This byte ends the bare entry and is read again below as a separator.
      }
      if is_space(b) {
        i += 1;
        continue;
      }
      if self.expect == Expect::Comma {
        match b {
          b',' => self.expect = Expect::Value,
          b']' => {
            self.mode = Mode::Done;
            return self.scan_after(buf, i + 1);
          }
          _ => {
            return Err(syntax(format!(
              "line {}: expected \",\" or \"]\" after entry {}, found {}",
              self.line,
              self.entry,
              shown(b)
            )))
          }
        }
        i += 1;
        continue;
      }
      if b == b']' {
        if self.expect == Expect::First {
          self.mode = Mode::Done;
          return self.scan_after(buf, i + 1);
        }
        return Err(syntax(format!(
          "line {}: an entry is expected after \",\" (entry {}), found \"]\"",
          self.line, self.entry
        )));
      }
      // An entry starts here.
      self.entry += 1;
      self.entry_line = self.line;
      self.in_entry = true;
      entry_start = i;
      carried = false;
      self.bare = false;
      self.entry_is_object = b == b'{';
      match b {
        b'"' => self.in_string = true,
        b'{' => self.closers.push(b'}'),
        b'[' => self.closers.push(b']'),
        b'}' | b',' => return Err(self.bad_entry(buf, i, i + 1, false)),
        _ => self.bare = true,
      }
      i += 1;
    }
    if self.in_entry {
      self.check_length(entry_start, n, true)?;
      found.keep_from = Some(entry_start);
    }
    Ok(())
  }

  fn scan_after(&mut self, buf: &[u8], from: usize) -> Result<(), ScanError> {
    for &b in &buf[from.min(buf.len())..] {
      if b == NL {
        self.line += 1;
      } else if !is_space(b) {
        return Err(syntax(format!(
          "line {}: text after the closing \"]\" of the array",
          self.line
        )));
      }
    }
    Ok(())
  }
}
