//! `pipe report`'s page: one self-contained HTML page (inline CSS, JS, SVG charts and base64
//! PNGs; no network) for the latest runs of some pipelines. Split by responsibility: [`model`]
//! extracts the page's numbers from run records and verified cache objects, [`svg`] draws
//! charts from them, [`dag`] lays out the graph, [`page`] assembles and escapes everything.
//! It returns the page; the command layer decides where it goes.

pub mod dag;
pub mod model;
pub mod page;
pub mod svg;

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
