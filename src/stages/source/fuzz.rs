//! Property tests of the raw and folder readers: random bytes as raw arrays, label files,
//! CSVs and image files (random, or a valid PNG/JPEG with bytes flipped) give a dataset or an
//! input error naming the file, never a panic, and an error message never carries raw control
//! bytes. CI runs 64 cases per property; `bench/fuzz.sh` runs many more.

use super::labels::{Header, parse_label_lines, parse_labels_csv};
use super::{FolderSource, RawSource, Resize, StageError};
use crate::stages::Stage;
use crate::testing::config;
use proptest::prelude::*;
use std::path::Path;

fn clean_input_error(e: &StageError) -> Result<(), TestCaseError> {
    prop_assert!(
        matches!(e, StageError::Input { .. } | StageError::Dataset(_)),
        "not an input error: {e:?}"
    );
    let text = e.to_string();
    prop_assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "raw control characters in {text:?}"
    );
    Ok(())
}

/// A small valid PNG or JPEG (RGB or grey), as the folder source meets them.
fn image_bytes(jpeg: bool, grey: bool, w: u32, h: u32) -> Vec<u8> {
    let img = if grey {
        image::DynamicImage::ImageLuma8(image::GrayImage::from_fn(w, h, |x, y| {
            image::Luma([(x * 31 + y * 17) as u8])
        }))
    } else {
        image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 40) as u8, (y * 40) as u8, 128])
        }))
    };
    let format = if jpeg {
        image::ImageFormat::Jpeg
    } else {
        image::ImageFormat::Png
    };
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), format)
        .expect("encoding a small image");
    out
}

/// A valid image with up to 8 bytes overwritten and maybe truncated, or random bytes.
fn image_file() -> impl Strategy<Value = Vec<u8>> {
    let valid = (any::<bool>(), any::<bool>(), 1..12u32, 1..12u32);
    let flips = proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8);
    prop_oneof![
        (valid, flips, any::<prop::sample::Index>(), any::<bool>()).prop_map(
            |((jpeg, grey, w, h), flips, cut, truncate)| {
                let mut b = image_bytes(jpeg, grey, w, h);
                for (at, v) in flips {
                    let i = at.index(b.len());
                    b[i] = v;
                }
                if truncate {
                    b.truncate(cut.index(b.len()));
                }
                b
            }
        ),
        proptest::collection::vec(any::<u8>(), 0..256),
    ]
}

/// CSV text from plausible and implausible cells.
fn csv_text() -> impl Strategy<Value = Vec<u8>> {
    let cell = prop_oneof![
        Just("0.png".to_string()),
        Just("1.jpg".to_string()),
        Just("missing.png".to_string()),
        Just("filename".to_string()),
        Just("label".to_string()),
        Just("1".to_string()),
        Just("-1".to_string()),
        Just("2".to_string()),
        Just("\"a,b\"".to_string()),
        Just("\u{feff}".to_string()),
        "\\PC{0,6}",
    ];
    let row = proptest::collection::vec(cell, 0..4).prop_map(|cells| cells.join(","));
    (
        proptest::collection::vec(row, 0..8),
        any::<bool>(),
        any::<u8>(),
    )
        .prop_map(|(rows, crlf, junk)| {
            let mut text = rows.join(if crlf { "\r\n" } else { "\n" }).into_bytes();
            if junk > 200 {
                text.push(junk);
            }
            text
        })
}

fn header() -> impl Strategy<Value = Header> {
    prop_oneof![
        Just(Header::Auto),
        Just(Header::Present),
        Just(Header::Absent)
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn raw_reader_never_panics(
        pixels in proptest::collection::vec(any::<u8>(), 0..600),
        labels in proptest::collection::vec(prop_oneof![Just(b'0'), Just(b'1'), Just(b'-'), Just(b'\n'), any::<u8>()], 0..64),
        h in 0..6u32, w in 0..6u32, c in prop_oneof![Just(1u32), Just(3), 0..5u32],
        with_labels in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.raw"), &pixels).unwrap();
        std::fs::write(dir.path().join("l.txt"), &labels).unwrap();
        let src = RawSource {
            images: "x.raw".into(),
            labels: with_labels.then(|| "l.txt".into()),
            height: h, width: w, channels: c,
        };
        if !Stage::check(&super::Source::Raw(src.clone())).is_empty() {
            return Ok(()); // validation refuses the shape first
        }
        match src.inspect(dir.path()) {
            Ok((count, l)) => {
                prop_assert!(count > 0);
                prop_assert_eq!(count * (h * w * c) as usize, pixels.len());
                if let Some((l, _)) = l {
                    prop_assert_eq!(l.len(), count);
                    prop_assert!(l.iter().all(|&v| v <= 1));
                }
            }
            Err(e) => clean_input_error(&e)?,
        }
    }

    #[test]
    fn label_lines_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        match parse_label_lines(Path::new("l.txt"), &bytes) {
            Ok(l) => prop_assert!(l.iter().all(|&v| v <= 1)),
            Err(e) => clean_input_error(&e)?,
        }
    }

    #[test]
    fn csv_parser_never_panics(text in csv_text(), header in header()) {
        match parse_labels_csv(Path::new("l.csv"), &text, header) {
            Ok(rows) => {
                prop_assert!(rows.windows(2).all(|w| w[0].line < w[1].line));
                prop_assert!(rows.iter().all(|r| !r.label.is_empty() && !r.name.is_empty()));
            }
            Err(e) => clean_input_error(&e)?,
        }
    }

    #[test]
    fn folder_reader_never_panics(
        files in proptest::collection::vec(image_file(), 1..5),
        csv in proptest::option::of(csv_text()),
        channels in prop_oneof![Just(1u32), Just(3)],
        side in 1..9u32,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let imgs = dir.path().join("imgs");
        std::fs::create_dir(&imgs).unwrap();
        for (i, bytes) in files.iter().enumerate() {
            let ext = if i % 2 == 0 { "png" } else { "jpg" };
            std::fs::write(imgs.join(format!("{i}.{ext}")), bytes).unwrap();
        }
        if let Some(text) = &csv {
            std::fs::write(dir.path().join("l.csv"), text).unwrap();
        }
        let src = FolderSource {
            dir: "imgs".into(),
            labels: csv.as_ref().map(|_| "l.csv".into()),
            header: Header::Auto,
            classes: None,
            height: side, width: side, channels,
            resize: Resize::Triangle,
        };
        let bar = indicatif::ProgressBar::hidden();
        if let Err(e) = src.external_files(dir.path()) {
            clean_input_error(&e)?;
        }
        match src.load(dir.path(), &bar).map(|l| l.dataset) {
            Ok(ds) => {
                prop_assert_eq!(ds.pixels.len(), ds.len() * (side * side * channels) as usize);
                prop_assert!(!ds.is_empty());
            }
            Err(e) => clean_input_error(&e)?,
        }
    }
}
