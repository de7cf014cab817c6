//! JPEG decoding with libjpeg-turbo's decoder (through mozjpeg, built from C), the decoder
//! Pillow uses: pixels come out identical to Python's, so dHashes of real JPEGs agree with
//! `imagehash` bit for bit (the `image` crate's zune-jpeg differs by ±1 on ~1% of pixels,
//! which flipped ~2% of hashes).

use image::{DynamicImage, GrayImage, RgbImage};

/// True when the bytes start with a JPEG SOI marker.
pub fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xFF, 0xD8, 0xFF])
}

/// Decodes a JPEG into a grey image (grey JPEGs) or an RGB image (colour ones).
pub fn decode(bytes: &[u8]) -> Result<DynamicImage, String> {
    // libjpeg only warns about a missing end-of-image marker and pads the picture; a truncated
    // file is an error here, as it is in Pillow.
    let tail = &bytes[bytes.len().saturating_sub(64)..];
    if !tail.windows(2).any(|w| w == [0xFF, 0xD9]) {
        return Err("truncated JPEG (no end-of-image marker)".into());
    }
    let result = std::panic::catch_unwind(|| -> std::io::Result<DynamicImage> {
        let d = mozjpeg::Decompress::new_mem(bytes)?;
        let grey = d.color_space() == mozjpeg::ColorSpace::JCS_GRAYSCALE;
        let (w, h) = (d.width() as u32, d.height() as u32);
        let bad = |what: &str| {
            std::io::Error::other(format!("{what}: pixel count does not match {w}x{h}"))
        };
        if grey {
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
