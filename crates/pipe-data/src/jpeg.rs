//! JPEG decoding with libjpeg-turbo's decoder (through mozjpeg, built from C), the decoder
//! Pillow uses: pixels come out identical to Python's, so dHashes of real JPEGs agree with
//! `imagehash` bit for bit (the `image` crate's zune-jpeg differs by ±1 on ~1% of pixels,
//! which flipped ~2% of hashes). CMYK (and YCCK) JPEGs become RGB exactly as Pillow's
//! `Image.open(f).convert("RGB")` makes them.

use image::{DynamicImage, GrayImage, RgbImage};

/// Largest picture decoded, in pixels (8192 x 8192): a header claiming more is refused before
/// libjpeg allocates for it.
pub const MAX_PIXELS: u64 = 1 << 26;

/// True when the bytes start with a JPEG SOI marker.
pub fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xFF, 0xD8, 0xFF])
}

/// Pillow's CMYK → RGB (`cmyk2rgb` in `libImaging/Convert.c`), on values already inverted as
/// Pillow's `CMYK;I` raw mode does (Adobe's convention, which Pillow assumes for every CMYK
/// JPEG): each channel is `(255 - k) - (255 - k) * c / 255`, rounded like Pillow.
fn cmyk_to_rgb(px: &[[u8; 4]]) -> Vec<u8> {
    let muldiv255 = |a: u32, b: u32| {
        let t = a * b + 128;
        ((t >> 8) + t) >> 8
    };
    let mut out = Vec::with_capacity(px.len() * 3);
    for p in px {
        let [c, m, y, k] = p.map(|v| 255 - u32::from(v));
        let nk = 255 - k;
        for v in [c, m, y] {
            out.push(nk.saturating_sub(muldiv255(v, nk)) as u8);
        }
    }
    out
}

/// Decodes a JPEG into a grey image (grey JPEGs) or an RGB image (colour and CMYK ones).
pub fn decode(bytes: &[u8]) -> Result<DynamicImage, String> {
    // libjpeg only warns about a missing end-of-image marker and pads the picture; a truncated
    // file is an error here, as it is in Pillow.
    let tail = &bytes[bytes.len().saturating_sub(64)..];
    if !tail.windows(2).any(|w| w == [0xFF, 0xD9]) {
        return Err("truncated JPEG (no end-of-image marker)".into());
    }
    let result = std::panic::catch_unwind(|| -> std::io::Result<DynamicImage> {
        use mozjpeg::ColorSpace;
        let d = mozjpeg::Decompress::new_mem(bytes)?;
        let (w, h) = (d.width() as u32, d.height() as u32);
        if u64::from(w) * u64::from(h) > MAX_PIXELS {
            return Err(std::io::Error::other(format!(
                "{w}x{h} pixels, more than the maximum of {MAX_PIXELS}"
            )));
        }
        let bad = |what: &str| {
            std::io::Error::other(format!("{what}: pixel count does not match {w}x{h}"))
        };
        let space = d.color_space();
        if matches!(space, ColorSpace::JCS_CMYK | ColorSpace::JCS_YCCK) {
            let mut started = d.to_colorspace(ColorSpace::JCS_CMYK)?;
            let px: Vec<[u8; 4]> = started.read_scanlines()?;
            started.finish()?;
            RgbImage::from_raw(w, h, cmyk_to_rgb(&px))
                .map(DynamicImage::ImageRgb8)
                .ok_or_else(|| bad("cmyk"))
        } else if space == ColorSpace::JCS_GRAYSCALE {
            let mut started = d.grayscale()?;
            let px: Vec<u8> = started.read_scanlines()?;
            started.finish()?;
            GrayImage::from_raw(w, h, px)
                .map(DynamicImage::ImageLuma8)
                .ok_or_else(|| bad("grey"))
        } else {
            let mut started = d.rgb()?;
            let px: Vec<[u8; 3]> = started.read_scanlines()?;
            started.finish()?;
            RgbImage::from_raw(w, h, px.concat())
                .map(DynamicImage::ImageRgb8)
                .ok_or_else(|| bad("rgb"))
        }
    });
    match result {
        Ok(Ok(img)) => Ok(img),
        Ok(Err(e)) => Err(format!("cannot decode JPEG: {e}")),
        Err(panic) => Err(format!(
            "cannot decode JPEG: {}",
            panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("corrupt data")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(grey: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let img: DynamicImage = if grey {
            DynamicImage::ImageLuma8(GrayImage::from_fn(16, 8, |x, y| {
                image::Luma([(x * 13 + y * 7) as u8])
            }))
        } else {
            DynamicImage::ImageRgb8(RgbImage::from_fn(16, 8, |x, y| {
                image::Rgb([x as u8 * 9, y as u8 * 20, 99])
            }))
        };
        img.write_to(
            &mut std::io::Cursor::new(&mut out),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
        out
    }

    #[test]
    fn cmyk_jpegs_decode_as_pillow_converts_them() {
        // Written by Pillow (CMYK, quality 95); the expected bytes are Pillow's
        // `Image.open(...).convert("RGB")` of the same file.
        let jpg = include_bytes!("../tests/fixtures/cmyk.jpg");
        let want = include_bytes!("../tests/fixtures/cmyk.rgb");
        let img = decode(jpg).unwrap();
        assert_eq!((img.width(), img.height()), (16, 8));
        assert_eq!(img.into_rgb8().into_raw(), want.to_vec());
    }

    #[test]
    fn an_oversized_header_is_refused_before_decoding() {
        let mut bytes = jpeg(false);
        // SOF0: FF C0, length (2), precision (1), height (2), width (2).
        let sof = bytes.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        bytes[sof + 5..sof + 9].copy_from_slice(&[0x75, 0x30, 0x75, 0x30]);
        let e = decode(&bytes).unwrap_err();
        assert!(
            e.contains("30000x30000 pixels, more than the maximum"),
            "{e}"
        );
    }

    #[test]
    fn decodes_grey_and_colour_and_rejects_corrupt_files() {
        let g = decode(&jpeg(true)).unwrap();
        assert!(matches!(g, DynamicImage::ImageLuma8(_)));
        assert_eq!((g.width(), g.height()), (16, 8));
        let c = decode(&jpeg(false)).unwrap();
        assert!(matches!(c, DynamicImage::ImageRgb8(_)));
        let bytes = jpeg(false);
        assert!(
            decode(&bytes[..bytes.len() / 2])
                .unwrap_err()
                .contains("truncated")
        );
        let mut garbage = vec![0xFF, 0xD8, 0xFF, 0x00, 0x13, 0x37];
        garbage.extend([0xFF, 0xD9]);
        assert!(
            decode(&garbage)
                .unwrap_err()
                .starts_with("cannot decode JPEG")
        );
        assert!(is_jpeg(&bytes) && !is_jpeg(b"\x89PNG"));
    }
}
