//! `pipe report`: one self-contained HTML page (inline CSS, JS, SVG charts and base64 PNGs; no
//! network) for the latest runs of some pipelines. Split by responsibility: [`model`] extracts
//! the page's numbers from run records and verified cache objects, [`svg`] draws charts from
//! them, [`dag`] lays out the graph, [`page`] assembles and escapes everything.

pub mod command;
pub mod dag;
pub mod model;
pub mod page;
pub mod svg;

use std::path::PathBuf;

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Text for HTML element content and attribute values (everything from YAML or records goes
/// through here).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Writes the page to `path` (through a temporary file, so a reader never sees half a page).
pub fn write(path: &std::path::Path, report: &model::Report) -> Result<usize, ReportError> {
    let html = page::render(report);
    let tmp = path.with_extension("html.tmp");
    let err = |source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(&tmp, html.as_bytes()).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(e)
    })?;
    Ok(html.len())
}

#[cfg(test)]
mod tests {
    #[test]
    fn escape_neutralises_markup() {
        assert_eq!(
            super::escape(r#"<script>"a" & 'b'</script>"#),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
    }
}
