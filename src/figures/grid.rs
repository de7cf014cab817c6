//! PNG image grids (the report's Figures 1-3 and 8): one row per entry, images upscaled by an
//! integer factor (nearest neighbour), 2-pixel white separators and border.

use crate::data::Shape;
use std::path::{Path, PathBuf};

/// White space between images, between rows and around the grid, in output pixels.
const SEP: u32 = 2;

/// One image of a grid: HWC `u8` pixels, 1 (grey) or 3 (RGB) channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridImage {
    pub pixels: Vec<u8>,
    pub shape: Shape,
}

impl GridImage {
    /// Wraps pixels of the given shape.
    pub fn new(pixels: Vec<u8>, shape: Shape) -> Self {
        Self { pixels, shape }
    }
}

/// Errors of [`save_grid`].
#[derive(Debug, thiserror::Error)]
pub enum GridError {
    #[error("{path}: cannot write PNG grid: {source}")]
    Image {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
    #[error("{path}: cannot create directory: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: grid image (row {row}, column {col}) is invalid: {message}")]
    BadImage {
        path: PathBuf,
        row: usize,
        col: usize,
        message: String,
    },
    #[error("{path}: grid has no images")]
    Empty { path: PathBuf },
    #[error("{path}: cannot draw the grid's captions: {source}")]
    Caption {
        path: PathBuf,
        #[source]
        source: super::plot::PlotError,
    },
    #[error("{path}: grid scale must be between 1 and 64, got {scale}")]
    BadScale { path: PathBuf, scale: u32 },
}

/// Writes `canvas` as a PNG at `path`, creating its folder.
fn save_png(path: &Path, canvas: &image::RgbImage) -> Result<(), GridError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| GridError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    canvas
        .save_with_format(path, image::ImageFormat::Png)
        .map_err(|source| GridError::Image {
            path: path.to_path_buf(),
            source,
        })
}

/// Saves `rows` as one RGB PNG: one row per entry, each image upscaled by `scale` (nearest),
/// 2-px white separators and border; rows are left-aligned and as tall as their tallest image.
pub fn save_grid(path: &Path, rows: &[Vec<GridImage>], scale: u32) -> Result<(), GridError> {
    let canvas = render_grid(path, rows, scale)?;
    save_png(path, &canvas)
}

/// Caption text size in pixels.
const CAPTION_PX: f32 = 13.0;

/// Like [`save_grid`], with `header` above the grid and `captions[i]` right of row `i`, so a
/// figure says what it shows without its page.
pub fn save_captioned_grid(
    path: &Path,
    rows: &[Vec<GridImage>],
    scale: u32,
    header: &str,
    captions: &[String],
) -> Result<(), GridError> {
    use super::plot::{draw_label, text_width};
    let grid = render_grid(path, rows, scale)?;
    let cap = |source| GridError::Caption {
        path: path.to_path_buf(),
        source,
    };
    let mut text_w = text_width(header, CAPTION_PX).map_err(cap)?;
    for c in captions {
        text_w = text_w.max(text_width(c, CAPTION_PX).map_err(cap)? + grid.width() + 8);
    }
    let header_h = CAPTION_PX as u32 + 8;
    let width = grid.width().max(text_w + 8);
    let mut canvas =
        image::RgbImage::from_pixel(width, grid.height() + header_h, image::Rgb([255; 3]));
    image::imageops::replace(&mut canvas, &grid, 0, i64::from(header_h));
    draw_label(&mut canvas, (4, 3), header, CAPTION_PX).map_err(cap)?;
    let mut y = header_h + SEP;
    for (row, c) in rows.iter().zip(captions) {
        let h = row
            .iter()
            .map(|i| i.shape.height * scale)
            .max()
            .unwrap_or(0);
        let top = (y + h / 2).saturating_sub(CAPTION_PX as u32 / 2);
        draw_label(
            &mut canvas,
            (grid.width() as i32 + 6, top as i32),
            c,
            CAPTION_PX,
        )
        .map_err(cap)?;
        y += h + SEP;
    }
    canvas
        .save_with_format(path, image::ImageFormat::Png)
        .map_err(|source| GridError::Image {
            path: path.to_path_buf(),
            source,
        })
}

fn render_grid(
    path: &Path,
    rows: &[Vec<GridImage>],
    scale: u32,
) -> Result<image::RgbImage, GridError> {
    if !(1..=64).contains(&scale) {
        return Err(GridError::BadScale {
            path: path.to_path_buf(),
            scale,
        });
    }
    for (r, row) in rows.iter().enumerate() {
        for (c, img) in row.iter().enumerate() {
            check_image(path, (r, c), img)?;
        }
    }
    if rows.iter().all(Vec::is_empty) {
        return Err(GridError::Empty {
            path: path.to_path_buf(),
        });
    }

    let row_w = |row: &Vec<GridImage>| -> u64 {
        row.iter()
            .map(|i| i.shape.width as u64 * scale as u64 + SEP as u64)
            .sum::<u64>()
    };
    let row_h = |row: &Vec<GridImage>| -> u64 {
        row.iter()
            .map(|i| i.shape.height as u64 * scale as u64)
            .max()
            .unwrap_or(0)
    };
    let width = SEP as u64 + rows.iter().map(row_w).max().unwrap_or(0);
    let height = SEP as u64 + rows.iter().map(|r| row_h(r) + SEP as u64).sum::<u64>();
    const LIMIT: u64 = 1 << 15;
    if width > LIMIT || height > LIMIT {
        return Err(GridError::BadImage {
            path: path.to_path_buf(),
            row: 0,
            col: 0,
            message: format!("grid would be {width} x {height} pixels (limit {LIMIT} per side)"),
        });
    }
    let mut canvas = image::RgbImage::from_pixel(width as u32, height as u32, image::Rgb([255; 3]));
    let mut y0 = SEP;
    for row in rows {
        let mut x0 = SEP;
        for img in row {
            blit(&mut canvas, img, scale, (x0, y0));
            x0 += img.shape.width * scale + SEP;
        }
        y0 += row_h(row) as u32 + SEP;
    }
    Ok(canvas)
}

/// Checks that image `(row, col)` of a grid has 1 or 3 channels, a size and its bytes.
fn check_image(path: &Path, (row, col): (usize, usize), img: &GridImage) -> Result<(), GridError> {
    let bad = |message: String| GridError::BadImage {
        path: path.to_path_buf(),
        row,
        col,
        message,
    };
    let s = img.shape;
    if s.channels != 1 && s.channels != 3 {
        return Err(bad(format!("{} channels (need 1 or 3)", s.channels)));
    }
    if s.height == 0 || s.width == 0 {
        return Err(bad(format!("empty shape {s}")));
    }
    if img.pixels.len() != s.image_len() {
        return Err(bad(format!(
            "{} bytes for shape {s} (expected {})",
            img.pixels.len(),
            s.image_len()
        )));
    }
    Ok(())
}

/// Draws `img` upscaled by `scale` (nearest) with its top-left corner at `(x0, y0)`.
fn blit(canvas: &mut image::RgbImage, img: &GridImage, scale: u32, (x0, y0): (u32, u32)) {
    let s = img.shape;
    let c = s.channels as usize;
    for y in 0..s.height * scale {
        for x in 0..s.width * scale {
            let i = ((y / scale) as usize * s.width as usize + (x / scale) as usize) * c;
            let px = if c == 1 {
                [img.pixels[i]; 3]
            } else {
                [img.pixels[i], img.pixels[i + 1], img.pixels[i + 2]]
            };
            canvas.put_pixel(x0 + x, y0 + y, image::Rgb(px));
        }
    }
}

/// One image of a [`save_labelled_grid`] with the lines of text under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labelled {
    pub image: GridImage,
    pub lines: Vec<String>,
}

/// Per-image caption text size and line height, in pixels.
const LABEL_PX: f32 = 11.0;
const LABEL_LINE: u32 = 13;
/// Widest an image's column grows for its caption; longer lines are cut with "…".
const LABEL_MAX_W: u32 = 150;
/// Space between the columns of a labelled grid.
const LABEL_GAP: u32 = 8;

/// Saves `rows` as one RGB PNG with `header` on top and each image's caption lines under it:
/// images upscaled by `scale`, each column as wide as its image or its caption (at most
/// 150 px, lines cut to fit), rows as tall as their tallest image and caption.
pub fn save_labelled_grid(
    path: &Path,
    header: &str,
    rows: &[Vec<Labelled>],
    scale: u32,
) -> Result<(), GridError> {
    use super::plot::{draw_label, text_width};
    if !(1..=64).contains(&scale) {
        return Err(GridError::BadScale {
            path: path.to_path_buf(),
            scale,
        });
    }
    for (r, row) in rows.iter().enumerate() {
        for (c, cell) in row.iter().enumerate() {
            check_image(path, (r, c), &cell.image)?;
        }
    }
    if rows.iter().all(Vec::is_empty) {
        return Err(GridError::Empty {
            path: path.to_path_buf(),
        });
    }
    let cap = |source| GridError::Caption {
        path: path.to_path_buf(),
        source,
    };
    let too_big = |message: String| GridError::BadImage {
        path: path.to_path_buf(),
        row: 0,
        col: 0,
        message,
    };
    if scale.saturating_mul(
        rows.iter()
            .flatten()
            .map(|c| c.image.shape.width.max(c.image.shape.height))
            .max()
            .unwrap_or(0),
    ) > 4096
    {
        return Err(too_big("an upscaled image would exceed 4096 pixels".into()));
    }
    // Column widths, and the lines as drawn (cut to their column).
    let mut layout = Vec::with_capacity(rows.len());
    for row in rows {
        let mut cells = Vec::with_capacity(row.len());
        for cell in row {
            let img_w = cell.image.shape.width * scale;
            let mut text_w = 0;
            for l in &cell.lines {
                text_w = text_w.max(text_width(l, LABEL_PX).map_err(cap)?);
            }
            let w = img_w.max(text_w.min(LABEL_MAX_W));
            let mut lines = Vec::with_capacity(cell.lines.len());
            for l in &cell.lines {
                lines.push(fit(l, w).map_err(cap)?);
            }
            cells.push((w, lines));
        }
        layout.push(cells);
    }
    let header_h = if header.is_empty() { 0 } else { LABEL_LINE + 8 };
    let row_h = |row: &[Labelled]| {
        row.iter()
            .map(|c| c.image.shape.height * scale + 4 + LABEL_LINE * c.lines.len() as u32)
            .max()
            .unwrap_or(0)
    };
    let mut width = text_width(header, CAPTION_PX).map_err(cap)? + 2 * SEP + 4;
    for cells in &layout {
        width = width.max(SEP + cells.iter().map(|(w, _)| w + LABEL_GAP).sum::<u32>());
    }
    let height = header_h + SEP + rows.iter().map(|r| row_h(r) + LABEL_GAP).sum::<u32>();
    const LIMIT: u32 = 1 << 15;
    if width > LIMIT || height > LIMIT {
        return Err(too_big(format!(
            "grid would be {width} x {height} pixels (limit {LIMIT} per side)"
        )));
    }
    let mut canvas = image::RgbImage::from_pixel(width, height, image::Rgb([255; 3]));
    if !header.is_empty() {
        draw_label(&mut canvas, (4, 3), header, CAPTION_PX).map_err(cap)?;
    }
    let mut y0 = header_h + SEP;
    for (row, cells) in rows.iter().zip(&layout) {
        let mut x0 = SEP;
        for (cell, (w, lines)) in row.iter().zip(cells) {
            blit(&mut canvas, &cell.image, scale, (x0, y0));
            let mut ty = y0 + cell.image.shape.height * scale + 3;
            for l in lines {
                draw_label(&mut canvas, (x0 as i32, ty as i32), l, LABEL_PX).map_err(cap)?;
                ty += LABEL_LINE;
            }
            x0 += w + LABEL_GAP;
        }
        y0 += row_h(row) + LABEL_GAP;
    }
    save_png(path, &canvas)
}

/// `text` cut to fit `width` pixels at the caption size, ending in "…" when cut.
fn fit(text: &str, width: u32) -> Result<String, super::plot::PlotError> {
    use super::plot::text_width;
    if text_width(text, LABEL_PX)? <= width {
        return Ok(text.to_string());
    }
    let mut chars: Vec<char> = text.chars().collect();
    while !chars.is_empty() {
        chars.pop();
        let cut: String = chars.iter().collect::<String>() + "…";
        if text_width(&cut, LABEL_PX)? <= width {
            return Ok(cut);
        }
    }
    Ok(String::new())
}

/// `|a - b|` per byte, stretched so the largest difference becomes 255 (all black when the
/// images are equal). `a` and `b` should both hold `shape.image_len()` bytes; bytes missing
/// from either are treated as no difference.
pub fn abs_difference(a: &[u8], b: &[u8], shape: Shape) -> GridImage {
    let mut diff = vec![0u8; shape.image_len()];
    for ((d, &x), &y) in diff.iter_mut().zip(a).zip(b) {
        *d = x.abs_diff(y);
    }
    let max = diff.iter().copied().max().unwrap_or(0);
    if max > 0 {
        for d in &mut diff {
            *d = ((*d as u32 * 255 + max as u32 / 2) / max as u32) as u8;
        }
    }
    GridImage::new(diff, shape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synthetic::{SyntheticConfig, draw_face};

    /// Renders synthetic faces into a grid at `path`: 16 RGB (two rows of 8), 8 greyscale and
    /// 4 at other sizes (28x28, 40x64, 84x84, 16x16).
    fn faces_grid(path: &Path) -> Result<(), GridError> {
        let rgb = SyntheticConfig::default();
        let grey = SyntheticConfig {
            channels: 1,
            ..SyntheticConfig::default()
        };
        let row = |cfg: &SyntheticConfig, from: usize| -> Vec<GridImage> {
            (from..from + 8)
                .map(|i| GridImage::new(draw_face(cfg, i).1, cfg.shape()))
                .collect()
        };
        let sizes: Vec<GridImage> = [(28, 28), (40, 64), (84, 84), (16, 16)]
            .iter()
            .enumerate()
            .map(|(i, &(height, width))| {
                let cfg = SyntheticConfig {
                    height,
                    width,
                    ..SyntheticConfig::default()
                };
                GridImage::new(draw_face(&cfg, 24 + i).1, cfg.shape())
            })
            .collect();
        let rows = [row(&rgb, 0), row(&rgb, 8), row(&grey, 16), sizes];
        save_grid(path, &rows, 3)
    }

    #[test]
    fn captions_go_above_and_beside_the_rows_and_keep_the_images() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.png");
        let red = GridImage::new([200, 10, 10].repeat(64), Shape::new(8, 8, 3));
        let rows = vec![vec![red.clone(), red.clone()], vec![red.clone(), red]];
        let caps = ["test #1 = train #2".to_string(), "row two".to_string()];
        save_captioned_grid(&path, &rows, 2, "left: test", &caps).unwrap();
        let img = image::open(&path).unwrap().into_rgb8();
        let header = CAPTION_PX as u32 + 8;
        // The plain grid is 2 + 2 * (16 + 2) = 38 px wide: captions start right of it.
        assert!(img.width() > 38 + 40, "{}", img.width());
        assert_eq!(img.get_pixel(2, header + 2).0, [200, 10, 10], "images kept");
        let dark = |x0: u32, x1: u32, y0: u32, y1: u32| {
            (x0..x1)
                .flat_map(|x| (y0..y1).map(move |y| (x, y)))
                .filter(|&(x, y)| img.get_pixel(x, y).0[0] < 100)
                .count()
        };
        assert!(dark(0, img.width(), 0, header) > 10, "header drawn");
        assert!(
            dark(40, img.width(), header, header + 18) > 10,
            "first caption drawn"
        );
        assert!(
            dark(40, img.width(), header + 18, img.height()) > 10,
            "second caption drawn"
        );
    }

    #[test]
    fn labelled_grids_caption_every_image_and_cut_long_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.png");
        let red = GridImage::new([200, 10, 10].repeat(64), Shape::new(8, 8, 3));
        let cell = |lines: &[&str]| Labelled {
            image: red.clone(),
            lines: lines.iter().map(|l| l.to_string()).collect(),
        };
        let long = "a_very_long_file_name_that_cannot_possibly_fit_under_one_image.jpg";
        let rows = vec![
            vec![
                cell(&["#3 label 0", "kept"]),
                cell(&["#9 label 1", "dropped"]),
            ],
            vec![cell(&[long]), cell(&[])],
        ];
        save_labelled_grid(&path, "conflicts", &rows, 2).unwrap();
        let img = image::open(&path).unwrap().into_rgb8();
        let header = LABEL_LINE + 8;
        assert_eq!(
            img.get_pixel(SEP, header + SEP).0,
            [200, 10, 10],
            "image kept"
        );
        // Columns widen for their captions (wider than the 16 px images), at most 150 px.
        assert!(img.width() > 2 * (16 + LABEL_GAP) + 40, "{}", img.width());
        assert!(
            img.width() <= SEP + 2 * (LABEL_MAX_W + LABEL_GAP),
            "{}",
            img.width()
        );
        let dark_below = |x0: u32, x1: u32, y0: u32, y1: u32| {
            (x0..x1)
                .flat_map(|x| (y0..y1).map(move |y| (x, y)))
                .filter(|&(x, y)| img.get_pixel(x, y).0[0] < 100)
                .count()
        };
        let under = header + SEP + 16;
        assert!(
            dark_below(SEP, SEP + 40, under, under + 26) > 10,
            "first caption"
        );
        assert_eq!(fit(long, 60).unwrap().chars().last(), Some('…'));
        assert_eq!(fit("#3", 60).unwrap(), "#3");
        let bad = Labelled {
            image: GridImage::new(vec![1, 2], Shape::new(2, 2, 1)),
            lines: vec![],
        };
        let err = save_labelled_grid(&path, "", &[vec![bad]], 2).unwrap_err();
        assert!(err.to_string().contains("row 0, column 0"), "{err}");
    }

    #[test]
    fn grid_round_trips_through_png() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/grid.png");
        let red = GridImage::new([200, 10, 10].repeat(6), Shape::new(2, 3, 3));
        let grey = GridImage::new(vec![7, 100, 250, 30], Shape::new(4, 1, 1));
        let rows = vec![vec![red.clone(), grey], vec![red]];
        save_grid(&path, &rows, 2).unwrap();
        let back = image::open(&path).unwrap().into_rgb8();
        // width: 2 + (3*2 + 2) + (1*2 + 2) = 14; height: 2 + (8 + 2) + (4 + 2) = 18
        assert_eq!(back.dimensions(), (14, 18));
        assert_eq!(back.get_pixel(0, 0).0, [255; 3]);
        assert_eq!(back.get_pixel(2, 2).0, [200, 10, 10]);
        assert_eq!(back.get_pixel(7, 5).0, [200, 10, 10]);
        assert_eq!(back.get_pixel(8, 2).0, [255; 3], "separator");
        // grey column at x = 10..12, its second pixel at y = 4..6
        assert_eq!(back.get_pixel(10, 4).0, [100; 3]);
        assert_eq!(back.get_pixel(11, 9).0, [30; 3]);
        // short first image: white below it in the tall row
        assert_eq!(back.get_pixel(3, 7).0, [255; 3]);
        // second row starts at y = 12
        assert_eq!(back.get_pixel(2, 12).0, [200, 10, 10]);
        assert_eq!(back.get_pixel(10, 12).0, [255; 3]);
    }

    #[test]
    fn invalid_grids_are_reported() {
        let p = Path::new("x.png");
        let bad = GridImage::new(vec![1, 2], Shape::new(2, 2, 1));
        let err = render_grid(p, &[vec![bad]], 1).unwrap_err().to_string();
        assert!(err.contains("2 bytes") && err.contains("row 0"), "{err}");
        assert!(matches!(
            render_grid(p, &[vec![]], 1),
            Err(GridError::Empty { .. })
        ));
        let ok = GridImage::new(vec![1; 4], Shape::new(2, 2, 1));
        assert!(matches!(
            render_grid(p, &[vec![ok]], 0),
            Err(GridError::BadScale { .. })
        ));
    }

    #[test]
    fn difference_is_stretched() {
        let s = Shape::new(1, 3, 1);
        let d = abs_difference(&[10, 20, 30], &[12, 20, 26], s);
        assert_eq!(d.pixels, vec![128, 0, 255]);
        assert_eq!(abs_difference(&[5, 5, 5], &[5, 5, 5], s).pixels, vec![0; 3]);
    }

    #[test]
    fn synthetic_faces_grid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("faces.png");
        faces_grid(&path).unwrap();
        let img = image::open(&path).unwrap();
        assert_eq!(
            (img.width(), img.height()),
            (2 + 8 * (56 * 3 + 2), 2 + 3 * (56 * 3 + 2) + 84 * 3 + 2)
        );
        // Set PIPE_FACES_PNG to keep a copy to look at.
        if let Some(out) = std::env::var_os("PIPE_FACES_PNG") {
            faces_grid(Path::new(&out)).unwrap();
        }
    }
}
