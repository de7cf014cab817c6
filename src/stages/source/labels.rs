//! Label files: the raw format's one-label-per-line text and the folder format's
//! `filename,label` CSV, whose labels may be any strings ([`index_labels`] turns them into
//! class indices and a vocabulary).
//!
//! Every row is either used or an error naming its line: no row is ever dropped silently. A
//! CSV's first row is a header only when `header: true`, or, with `header: auto` (the default),
//! when its cells are known column names. Text must be UTF-8 (a bad byte names its line); a
//! leading byte-order mark is ignored; echoed cells are escaped and truncated.

use super::{StageError, check_regular, keyed};
use crate::data::dataset::{MAX_CLASSES, MAX_IMAGES};
use crate::quote::{quote, quote_bytes};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::path::Path;

/// Largest label file read (ten million labels take about 30 MB).
pub const MAX_LABEL_FILE_BYTES: u64 = 1 << 30;

/// Names the first CSV column may have in a header row (compared without case).
pub const FILENAME_COLUMNS: &[&str] = &["filename", "file", "file_name", "image", "path", "name"];
/// Names the second CSV column may have in a header row (compared without case).
pub const LABEL_COLUMNS: &[&str] = &["label", "labels", "class", "target", "y"];

/// Whether a labels CSV starts with a header row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Header {
    /// A header only if the first row's cells are known column names (`filename,label`).
    #[default]
    Auto,
    /// `header: true`: the first row is a header, whatever it holds.
    Present,
    /// `header: false`: the first row is data.
    Absent,
}

impl Header {
    pub fn is_auto(&self) -> bool {
        *self == Header::Auto
    }
}

impl Serialize for Header {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Header::Auto => s.serialize_str("auto"),
            Header::Present => s.serialize_bool(true),
            Header::Absent => s.serialize_bool(false),
        }
    }
}

impl<'de> Deserialize<'de> for Header {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Header;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("true, false or `auto`")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Header, E> {
                Ok(if v { Header::Present } else { Header::Absent })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Header, E> {
                match v {
                    "auto" => Ok(Header::Auto),
                    _ => Err(E::unknown_variant(v, &["auto", "true", "false"])),
                }
            }
        }
        d.deserialize_any(V)
    }
}

fn input_err(path: &Path, message: String) -> StageError {
    StageError::Input {
        path: path.to_path_buf(),
        message,
    }
}

/// The bytes of a label file: a regular file of at most [`MAX_LABEL_FILE_BYTES`], without a
/// leading UTF-8 byte-order mark; with the digest of the whole file as read (for the check
/// against the key, see [`super::keyed`]).
fn read_text_file(path: &Path) -> Result<(Vec<u8>, String), StageError> {
    let len = check_regular(path, MAX_LABEL_FILE_BYTES)?;
    let mut bytes =
        std::fs::read(path).map_err(|e| input_err(path, format!("cannot read: {e}")))?;
    if bytes.len() as u64 != len {
        return Err(keyed::changed(path));
    }
    let digest = keyed::digest(&bytes);
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        bytes.drain(..3);
    }
    Ok((bytes, digest))
}

/// Parses one label: `0`, `1` or `-1` (mapped to 0).
pub fn parse_label(text: &str) -> Option<u8> {
    match text.trim() {
        "0" | "-1" | "0.0" | "-1.0" => Some(0),
        "1" | "+1" | "1.0" => Some(1),
        _ => None,
    }
}

fn bad_label(line: usize, text: &str) -> String {
    format!(
        "line {line}: unknown label `{}` (expected 0/1 or -1/1)",
        quote(text.trim())
    )
}

/// Labels (0/1), with the digest of their file as read.
pub type DigestedLabels = (Vec<u8>, String);

/// The raw format's labels: one per non-blank line; with the file's digest as read.
pub fn read_label_lines(path: &Path) -> Result<DigestedLabels, StageError> {
    let (bytes, digest) = read_text_file(path)?;
    Ok((parse_label_lines(path, &bytes)?, digest))
}

pub fn parse_label_lines(path: &Path, bytes: &[u8]) -> Result<Vec<u8>, StageError> {
    let mut labels = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = std::str::from_utf8(raw).map_err(|_| {
            input_err(
                path,
                format!("line {}: not valid UTF-8: `{}`", i + 1, quote_bytes(raw)),
            )
        })?;
        if line.trim().is_empty() {
            continue;
        }
        labels.push(parse_label(line).ok_or_else(|| input_err(path, bad_label(i + 1, line)))?);
    }
    Ok(labels)
}

/// One data row of a labels CSV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvRow {
    pub name: String,
    /// The label as written (trimmed).
    pub label: String,
    /// 1-based line of the row in the CSV.
    pub line: usize,
}

/// Rows of a `filename,label` CSV, in file order; with the file's digest as read.
pub fn read_labels_csv(path: &Path, header: Header) -> Result<(Vec<CsvRow>, String), StageError> {
    let (bytes, digest) = read_text_file(path)?;
    Ok((parse_labels_csv(path, &bytes, header)?, digest))
}

fn is_header(cells: &[&[u8]]) -> bool {
    let known = |cell: &[u8], names: &[&str]| {
        std::str::from_utf8(cell)
            .is_ok_and(|c| names.iter().any(|n| n.eq_ignore_ascii_case(c.trim())))
    };
    cells.len() == 2 && known(cells[0], FILENAME_COLUMNS) && known(cells[1], LABEL_COLUMNS)
}

/// 1-based line numbers of increasing byte offsets, counted incrementally (csv's own line
/// count ignores blank lines).
struct Lines<'a> {
    bytes: &'a [u8],
    offset: usize,
    line: usize,
}

impl Lines<'_> {
    fn at(&mut self, offset: u64) -> usize {
        let mut end = (offset as usize).min(self.bytes.len());
        // csv skips blank lines after a record's recorded start: step over them.
        while end < self.bytes.len() && matches!(self.bytes[end], b'\n' | b'\r') {
            end += 1;
        }
        if end < self.offset {
            self.offset = 0;
            self.line = 1;
        }
        self.line += self.bytes[self.offset..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        self.offset = end;
        self.line
    }
}

/// A CSV cell as trimmed UTF-8, or an error naming its line.
fn cell_text<'a>(path: &Path, line: usize, cell: &'a [u8]) -> Result<&'a str, StageError> {
    std::str::from_utf8(cell).map(str::trim).map_err(|_| {
        input_err(
            path,
            format!("line {line}: not valid UTF-8: `{}`", quote_bytes(cell)),
        )
    })
}

pub fn parse_labels_csv(
    path: &Path,
    bytes: &[u8],
    header: Header,
) -> Result<Vec<CsvRow>, StageError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut rows: Vec<CsvRow> = Vec::new();
    // Name → index in `rows`, to report a file listed twice.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut first = true;
    let mut lines = Lines {
        bytes,
        offset: 0,
        line: 1,
    };
    for record in reader.byte_records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| lines.at(p.byte()));
            input_err(path, format!("line {line}: not a valid CSV row: {e}"))
        })?;
        let line = record.position().map_or(0, |p| lines.at(p.byte()));
        let cells: Vec<&[u8]> = record.iter().collect();
        if cells.iter().all(|c| c.trim_ascii().is_empty()) {
            continue;
        }
        let is_first = std::mem::replace(&mut first, false);
        if is_first
            && match header {
                Header::Present => true,
                Header::Absent => false,
                Header::Auto => is_header(&cells),
            }
        {
            continue;
        }
        if cells.len() != 2 {
            let shown: Vec<String> = cells.iter().map(|c| quote_bytes(c)).collect();
            return Err(input_err(
                path,
                format!(
                    "line {line}: expected 2 columns `filename,label`, got {}: `{}`",
                    cells.len(),
                    quote(&shown.join(","))
                ),
            ));
        }
        let name = cell_text(path, line, cells[0])?;
        let label_text = cell_text(path, line, cells[1])?;
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(input_err(
                path,
                format!(
                    "line {line}: file name `{}` is empty or holds control characters",
                    quote(name)
                ),
            ));
        }
        if label_text.is_empty() || label_text.chars().any(char::is_control) {
            let mut message = format!(
                "line {line}: label `{}` is empty or holds control characters",
                quote(label_text)
            );
            if is_first && header == Header::Auto {
                message.push_str("; a header row must be `filename,label` (or set `header: true`)");
            }
            return Err(input_err(path, message));
        }
        let label = label_text.to_string();
        if let Some(&prev) = seen.get(name) {
            let p = &rows[prev];
            let what = if p.label == label {
                "listed twice".to_string()
            } else {
                format!(
                    "listed twice with different labels ({} and {label})",
                    p.label
                )
            };
            return Err(input_err(
                path,
                format!(
                    "line {line}: `{}` is {what}; first at line {}",
                    quote(name),
                    p.line
                ),
            ));
        }
        if rows.len() == MAX_IMAGES {
            return Err(input_err(
                path,
                format!("line {line}: more than the maximum of {MAX_IMAGES} images"),
            ));
        }
        seen.insert(name.to_string(), rows.len());
        rows.push(CsvRow {
            name: name.to_string(),
            label,
            line,
        });
    }
    Ok(rows)
}

/// Class indices of the CSV rows' labels, and the vocabulary they index.
///
/// With `classes`, the vocabulary is that list in its order, and a label outside it is an
/// error naming its line. Without it, labels that are all `0/1` or `-1/1` stay binary with no
/// vocabulary (so such datasets keep their bytes); any other labels become the sorted distinct
/// strings (numerically when all are integers: `2` before `10`).
pub fn index_labels(
    path: &Path,
    rows: &[CsvRow],
    classes: Option<&[String]>,
) -> Result<(Vec<u8>, Option<Vec<String>>), StageError> {
    if classes.is_none() {
        let binary: Option<Vec<u8>> = rows.iter().map(|r| parse_label(&r.label)).collect();
        if let Some(labels) = binary {
            return Ok((labels, None));
        }
    }
    let vocabulary: Vec<String> = match classes {
        Some(c) => c.to_vec(),
        None => {
            let mut v: Vec<String> = rows
                .iter()
                .map(|r| r.label.clone())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            if v.iter().all(|l| l.parse::<i64>().is_ok()) {
                v.sort_by_key(|l| l.parse::<i64>().unwrap_or_default());
            }
            v
        }
    };
    if vocabulary.len() > MAX_CLASSES {
        return Err(input_err(
            path,
            format!(
                "{} distinct labels, more than the maximum of {MAX_CLASSES} classes",
                vocabulary.len()
            ),
        ));
    }
    let index: BTreeMap<&str, u8> = vocabulary
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i as u8))
        .collect();
    let labels = rows
        .iter()
        .map(|r| {
            index.get(r.label.as_str()).copied().ok_or_else(|| {
                input_err(
                    path,
                    format!(
                        "line {}: label `{}` is not one of `classes`",
                        r.line,
                        quote(&r.label)
                    ),
                )
            })
        })
        .collect::<Result<Vec<u8>, _>>()?;
    Ok((labels, Some(vocabulary)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(text: &[u8], header: Header) -> Result<Vec<(String, u8, usize)>, String> {
        let path = Path::new("l.csv");
        let rows = parse_labels_csv(path, text, header).map_err(|e| e.to_string())?;
        let (labels, _) = index_labels(path, &rows, None).map_err(|e| e.to_string())?;
        Ok(rows
            .into_iter()
            .zip(labels)
            .map(|(r, l)| (r.name, l, r.line))
            .collect())
    }

    #[test]
    fn header_detection_is_explicit_and_never_drops_a_row() {
        let rows = |r: &[(&str, u8, usize)]| -> Rows {
            r.iter().map(|(n, l, i)| (n.to_string(), *l, *i)).collect()
        };
        // (text, header, expected rows or error substring)
        type Rows = Vec<(String, u8, usize)>;
        let cases: &[(&[u8], Header, Result<Rows, &str>)] = &[
            (
                b"filename,label\na.png,1\n",
                Header::Auto,
                Ok(rows(&[("a.png", 1, 2)])),
            ),
            (
                b"File , Label\na.png,0\n",
                Header::Auto,
                Ok(rows(&[("a.png", 0, 2)])),
            ),
            (
                b"a.png,1\nb.png,-1\n",
                Header::Auto,
                Ok(rows(&[("a.png", 1, 1), ("b.png", 0, 2)])),
            ),
            (
                b"\xEF\xBB\xBFfilename,label\na.png,1\n",
                Header::Auto,
                Ok(rows(&[("a.png", 1, 2)])),
            ),
            (b"\na.png,1\n\n", Header::Auto, Ok(rows(&[("a.png", 1, 2)]))),
            (
                b"x,y\na.png,1\n",
                Header::Present,
                Ok(rows(&[("a.png", 1, 2)])),
            ),
            (
                b"\"a,b.png\",1\n",
                Header::Auto,
                Ok(rows(&[("a,b.png", 1, 1)])),
            ),
            // The campaign's silent drops: a bad first label, an extra column.
            (
                b"a.png,\nb.png,1\n",
                Header::Auto,
                Err("line 1: label `` is empty"),
            ),
            (
                b"a.png,1,x\nb.png,1\n",
                Header::Auto,
                Err("line 1: expected 2 columns"),
            ),
            (
                b"filename,label\na.png,1\n",
                Header::Absent,
                // `header: false`: the row is data, and `label` a class name.
                Ok(rows(&[("filename", 1, 1), ("a.png", 0, 2)])),
            ),
            (
                b"a.png,1\nb.png\n",
                Header::Auto,
                Err("line 2: expected 2 columns `filename,label`, got 1"),
            ),
            (
                b"a.png,1\nb\xff.png,0\n",
                Header::Auto,
                Err("line 2: not valid UTF-8: `b\\xFF.png`"),
            ),
            (
                b"a.png,1\nb.png,\x00\x01\n",
                Header::Auto,
                Err("line 2: label `\\0\\u{1}` is empty or holds control characters"),
            ),
            (
                b"a.png,1\na.png,0\n",
                Header::Auto,
                Err(
                    "line 2: `a.png` is listed twice with different labels (1 and 0); first at line 1",
                ),
            ),
            (
                b"a.png,1\n\na.png,1\n",
                Header::Auto,
                Err("line 3: `a.png` is listed twice; first at line 1"),
            ),
            (b"\"a\nb\",1\n", Header::Auto, Err("control characters")),
        ];
        for (i, (text, header, want)) in cases.iter().enumerate() {
            match (csv(text, *header), want) {
                (Ok(got), Ok(want)) => assert_eq!(&got, want, "case {i}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "case {i}: {got}"),
                (got, want) => panic!("case {i}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn string_labels_become_a_sorted_vocabulary() {
        let path = Path::new("l.csv");
        let rows = parse_labels_csv(path, b"a,dog\nb,cat\nc,dog\nd,fox\n", Header::Auto).unwrap();
        let (labels, vocab) = index_labels(path, &rows, None).unwrap();
        assert_eq!(labels, [1, 0, 1, 2]);
        assert_eq!(vocab.unwrap(), ["cat", "dog", "fox"]);
        let rows = parse_labels_csv(path, b"a,10\nb,2\nc,0\n", Header::Auto).unwrap();
        let (labels, vocab) = index_labels(path, &rows, None).unwrap();
        assert_eq!(
            (labels, vocab.unwrap()),
            (
                vec![2, 1, 0],
                vec!["0".into(), "2".into(), "10".to_string()]
            )
        );
        let fixed = ["fox".to_string(), "cat".into()];
        let rows = parse_labels_csv(path, b"a,cat\nb,dog\n", Header::Auto).unwrap();
        let e = index_labels(path, &rows, Some(&fixed))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 2: label `dog` is not one of `classes`"),
            "{e}"
        );
        let rows = parse_labels_csv(path, b"a,1\nb,-1\n", Header::Auto).unwrap();
        assert_eq!(index_labels(path, &rows, None).unwrap(), (vec![1, 0], None));
    }

    #[test]
    fn a_garbage_label_line_is_escaped_and_truncated() {
        let mut text = b"1\n0\n".to_vec();
        text.extend(std::iter::repeat_n(0u8, 100_000));
        let e = parse_label_lines(Path::new("l.txt"), &text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3: unknown label `\\0\\0"), "{}", quote(&e));
        assert!(!e.contains('\0') && e.len() < 600, "{}", e.len());
        let e = parse_label_lines(Path::new("l.txt"), b"1\n\xff\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2: not valid UTF-8"), "{e}");
        assert_eq!(
            parse_label_lines(Path::new("l.txt"), b"1\r\n-1\n\n").unwrap(),
            [1, 0]
        );
    }

    #[test]
    fn header_serialises_as_written() {
        let v = |h: Header| serde_json::to_value(h).unwrap();
        assert_eq!(v(Header::Auto), "auto");
        assert_eq!(v(Header::Present), true);
        let h: Header = serde_json::from_value(serde_json::json!(false)).unwrap();
        assert_eq!(h, Header::Absent);
        assert!(serde_json::from_value::<Header>(serde_json::json!("yes")).is_err());
    }
}
