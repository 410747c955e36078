//! The manifest scanner: the same entries, lines and refusals however the
//! bytes are cut into chunks (the caller keeps the open entry's bytes and
//! gives them again at the front of the next chunk, as `src/pack/manifest.ts`).

use des_core::{ManifestScanner, ScanError, MAX_ENTRY_BYTES};

/// An entry's text, line and number (0 in JSON lines).
type Entry = (String, u32, u32);

/// Scans `bytes` in chunks of `size`: the entries found until the first refusal, and that refusal.
fn scan(bytes: &[u8], size: usize) -> (Vec<Entry>, Option<ScanError>) {
  let mut scanner = ManifestScanner::new();
  let mut kept: Vec<u8> = Vec::new();
  let mut out = Vec::new();
  let take = |buf: &[u8], found: des_core::Found, out: &mut Vec<Entry>| {
    for s in &found.spans {
      out.push((
        String::from_utf8_lossy(&buf[s.start..s.end]).into_owned(),
        s.line,
        s.entry,
      ));
    }
    found
  };
  for chunk in bytes.chunks(size.max(1)) {
    let mut buf = std::mem::take(&mut kept);
    let from = buf.len();
    buf.extend_from_slice(chunk);
    let found = take(&buf, scanner.feed(&buf, from), &mut out);
    if let Some(e) = found.error {
      return (out, Some(e));
    }
    kept = found
      .keep_from
      .map(|k| buf[k..].to_vec())
      .unwrap_or_default();
  }
  let found = take(&kept, scanner.end(&kept), &mut out);
  (out, found.error)
}

fn every_cut(bytes: &[u8]) -> Vec<usize> {
  vec![1, 2, 3, 5, 7, 16, 64, bytes.len().max(1)]
}

fn refused(e: &Option<ScanError>) -> String {
  match e {
    Some(ScanError::Refused(m)) => m.clone(),
    other => panic!("expected a refusal, got {other:?}"),
  }
}

#[test]
fn an_array_gives_each_entry_with_its_line_and_number_however_it_is_cut() {
  let a = r#"{"uid": "a]},\"[{", "meta": {"note": "he said \"hi\" ] }", "path": "C:\\dir\\", "list": [1, [2, {"x": "}"}]]}}"#;
  let b = r#"{"uid": 7}"#;
  let c = "{\"uid\": \"zażółć-😀\", \"meta\": {\"s\": \"\\u0001\\n\\t\"}}";
  let text = format!("\u{feff}[\r\n  {a},\r\n  {b},\r\n  {c},\r\n  12\r\n\r\n]\r\n");
  for size in every_cut(text.as_bytes()) {
    let (entries, err) = scan(text.as_bytes(), size);
    assert_eq!(err, None, "chunks of {size}");
    let want: Vec<Entry> = vec![
      (a.into(), 2, 1),
      (b.into(), 3, 2),
      (c.into(), 4, 3),
      ("12".into(), 5, 4),
    ];
    assert_eq!(entries, want, "chunks of {size}");
  }
  // One line, as JSON.stringify writes it.
  let one = format!("[{a},{b}]");
  assert_eq!(
    scan(one.as_bytes(), 4).0,
    vec![(a.to_string(), 1, 1), (b.to_string(), 1, 2)]
  );
  assert_eq!(scan(b"[ ]\n", 1), (vec![], None));
}

#[test]
fn json_lines_give_each_non_blank_line_with_its_number() {
  let text = "{\"uid\": \"a\"}\r\n\n   \n{\"uid\": \"b\", \"s\": \"x\\\\\"}\n{\"uid\": \"c\"}";
  for size in every_cut(text.as_bytes()) {
    let (entries, err) = scan(text.as_bytes(), size);
    assert_eq!(err, None);
    assert_eq!(
      entries,
      vec![
        ("{\"uid\": \"a\"}\r".to_string(), 1, 0),
        ("{\"uid\": \"b\", \"s\": \"x\\\\\"}".to_string(), 4, 0),
        ("{\"uid\": \"c\"}".to_string(), 5, 0)
      ],
      "chunks of {size}"
    );
  }
}

#[test]
fn a_malformed_array_is_refused_at_the_line_where_it_goes_wrong() {
  let a = r#"{"uid": "a"}"#;
  let b = r#"{"uid": "b"}"#;
  let cases: Vec<(String, &str)> = vec![
    (format!("[\n{a}\n"), "manifest is not valid JSON: line 3: the manifest ends before its array is closed (after entry 1)"),
    (format!("[\n{a}\n]\n{{\"x\": 1}}"), "manifest is not valid JSON: line 4: text after the closing \"]\" of the array"),
    (format!("[\n{a}\n{b}]"), "manifest is not valid JSON: line 3: expected \",\" or \"]\" after entry 1, found \"{\""),
    (format!("[\n{a}\u{1}]"), "manifest is not valid JSON: line 2: expected \",\" or \"]\" after entry 1, found \"\\u0001\""),
    (format!("[\n{a},\n]"), "manifest is not valid JSON: line 3: an entry is expected after \",\" (entry 1), found \"]\""),
    ("\n \r\n ".to_string(), "manifest is empty"),
    ("\"uid\"".to_string(), "manifest must be a JSON array of objects (or JSON lines)"),
    ("\u{feff}\u{feff}[]".to_string(), "manifest must be a JSON array of objects (or JSON lines)"),
  ];
  for (text, message) in cases {
    for size in every_cut(text.as_bytes()) {
      let (entries, err) = scan(text.as_bytes(), size);
      assert_eq!(refused(&err), message, "{text:?} in chunks of {size}");
      // The entries before the problem are found first.
      assert!(entries.iter().all(|(t, _, _)| t == a), "{text:?}");
    }
  }
}

#[test]
fn an_entry_that_cannot_be_json_is_given_back_for_the_json_parser_to_say_why() {
  let a = r#"{"uid": "a"}"#;
  let cases: Vec<(String, &str, u32, u32)> = vec![
    (format!("[\n{a},\n,{a}]"), ",", 3, 2),
    (
      format!("[\n{a},\n{{\"uid\": \"x\ny\"}}]"),
      "{\"uid\": \"x\n",
      3,
      2,
    ),
    (
      format!("[\n{a},\n {{\"uid\": [1}}\n]"),
      "{\"uid\": [1}",
      3,
      2,
    ),
    (
      format!("[\n{a},\n{{\"uid\": \"abc"),
      "{\"uid\": \"abc",
      3,
      2,
    ),
  ];
  for (text, want, line, entry) in cases {
    for size in every_cut(text.as_bytes()) {
      let (entries, err) = scan(text.as_bytes(), size);
      assert_eq!(entries, vec![(a.to_string(), 2, 1)], "{text:?}");
      match err {
        Some(ScanError::BadEntry {
          text: got,
          line: l,
          entry: e,
        }) => {
          assert_eq!(
            (String::from_utf8_lossy(&got).as_ref(), l, e),
            (want, line, entry),
            "{text:?} in chunks of {size}"
          )
        }
        other => panic!("{text:?}: {other:?}"),
      }
    }
  }
  // A bare scalar is an entry like any other (the caller refuses what is not an object).
  let (entries, err) = scan(format!("[\n{a}, tru\n]").as_bytes(), 3);
  assert_eq!(err, None);
  assert_eq!(
    entries,
    vec![(a.to_string(), 2, 1), ("tru".to_string(), 2, 2)]
  );
}

#[test]
fn an_entry_or_line_past_the_limit_is_refused_once_it_spans_chunks() {
  let long = format!("[{{\"uid\": \"{}\"}}]", "x".repeat(MAX_ENTRY_BYTES));
  let (_, err) = scan(long.as_bytes(), 1 << 20);
  assert_eq!(
    refused(&err),
    format!(
      "manifest line 1 (entry 1): an entry longer than {MAX_ENTRY_BYTES} bytes, the most one entry may have"
    )
  );
  let line = format!(
    "{{\"uid\": \"a\"}}\n{{\"uid\": \"{}\"}}\n",
    "x".repeat(MAX_ENTRY_BYTES)
  );
  let (entries, err) = scan(line.as_bytes(), 1 << 20);
  assert_eq!(entries.len(), 1);
  assert_eq!(
    refused(&err),
    format!(
      "manifest line 2: an entry longer than {MAX_ENTRY_BYTES} bytes, the most one entry may have"
    )
  );
  // A string that never closes stops at the limit, not at the end of the file.
  let open = format!("[{{\"uid\": \"{}", "x".repeat(3 * MAX_ENTRY_BYTES));
  let (_, err) = scan(open.as_bytes(), 1 << 20);
  assert!(
    refused(&err).ends_with("an entry longer than 16777216 bytes, the most one entry may have")
  );
}

#[test]
fn all_objects_says_whether_every_entry_found_is_an_object_of_an_array() {
  let mut scanner = ManifestScanner::new();
  let f = scanner.feed(br#"[{"a": 1}, {"b": [2]}"#, 0);
  assert_eq!((f.spans.len(), f.all_objects), (2, true));
  let f = scanner.feed(br#", "text", {"c": 3}, 4"#, 0);
  assert_eq!((f.spans.len(), f.all_objects), (2, false));
  let f = scanner.end(b"4");
  assert!(!f.all_objects);
  let mut lines = ManifestScanner::new();
  let f = lines.feed(b"{\"a\": 1}\n{\"b\": 2}\n", 0);
  assert_eq!((f.spans.len(), f.all_objects), (2, false));
}
