//! `pipe report`: one self-contained HTML page, its numbers, and a real headless browser.

use super::*;

/// A tiny `compare`-like pipeline: cleaned synthetic faces, B1 and B2 for 2 epochs, both
/// evaluated on the test split.
const TINY_COMPARE: &str = "name: tiny_compare
stages:
  faces: {kind: source, format: synthetic, count: 240, height: 24, width: 24, exact_duplicates: 4, near_duplicates: 4, conflicting_duplicates: 2}
  hashes: {kind: hash, inputs: {data: faces}}
  groups: {kind: dedup, inputs: {hashes: hashes, data: faces}}
  clean: {kind: filter_conflicts, inputs: {groups: groups, data: faces}}
  split: {kind: split, inputs: {data: faces, selection: clean, groups: groups}}
  train_b1: {kind: train, model: b1, epochs: 2, batch_size: 32, test_every: 2, inputs: {data: faces, split: split}}
  train_b2: {kind: train, model: b2, epochs: 2, batch_size: 32, test_every: 2, inputs: {data: faces, split: split}}
  evaluate_b1: {kind: evaluate, inputs: {model: train_b1, data: faces, split: split}}
  evaluate_b2: {kind: evaluate, threshold: tune, inputs: {model: train_b2, data: faces, split: split}}
";

/// The text between `start` (inclusive) and the next `end` after it.
fn slice<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let i = text
        .find(start)
        .unwrap_or_else(|| panic!("`{start}` not in the page"));
    let j = text[i..].find(end).map_or(text.len(), |j| i + j);
    &text[i..j]
}

/// `data-NAME="VALUE"` values in `text`, in order.
fn attrs<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    let pat = format!("{name}=\"");
    text.match_indices(&pat)
        .map(|(i, _)| {
            let rest = &text[i + pat.len()..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect()
}

fn find_browser() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome", "chrome"]
        .iter()
        .flat_map(|b| std::env::split_paths(&path).map(move |d| d.join(b)))
        .find(|p| p.is_file())
}

/// Headless Chromium on `page`: the DOM after the page's script ran, and a screenshot.
fn browse(browser: &Path, page: &Path, shot: &Path) -> (String, String) {
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", page.display());
    let run = |extra: &[String]| {
        let out = Command::new(browser)
            .args([
                "--headless",
                "--disable-gpu",
                "--no-sandbox",
                "--hide-scrollbars",
                "--enable-logging=stderr",
                "--window-size=1400,3000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(&url)
            .output()
            .unwrap();
        assert!(out.status.success(), "{browser:?} failed: {out:?}");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (dom, log) = run(&["--dump-dom".into()]);
    run(&[format!("--screenshot={}", shot.display())]);
    (dom, log)
}

fn pixel_variance(png: &Path) -> f64 {
    let img = image::open(png).unwrap().to_luma8();
    let n = img.pixels().len() as f64;
    let mean = img.pixels().map(|p| f64::from(p.0[0])).sum::<f64>() / n;
    img.pixels()
        .map(|p| (f64::from(p.0[0]) - mean).powi(2))
        .sum::<f64>()
        / n
}

/// A script appended to a copy of the page by the browser test: it lists, in `data-overflow`,
/// every element that reaches past the body's box (outside a scrolling container), and in
/// `data-empty`, every section or `h3` with nothing after its heading.
const PROBE: &str = r##"<script>
(function () {
  var edge = document.body.getBoundingClientRect().right + 1;
  var name = function (e) { return e.tagName + (e.id ? "#" + e.id : "") + (e.className && e.className.baseVal === undefined ? "." + e.className : ""); };
  var scrolls = function (e) {
    for (var a = e.parentElement; a && a !== document.body; a = a.parentElement) {
      var o = getComputedStyle(a).overflowX;
      if (o === "auto" || o === "scroll" || o === "hidden") return true;
    }
    return false;
  };
  var over = [];
  document.body.querySelectorAll("*").forEach(function (e) {
    if (e.id === "tip" || e.tagName === "SCRIPT") return;
    var r = e.getBoundingClientRect();
    if (r.width > 0 && r.right > edge && !scrolls(e)) over.push(name(e) + " right " + Math.round(r.right));
  });
  if (document.documentElement.scrollWidth > document.documentElement.clientWidth) over.push("page scrolls sideways");
  var filled = function (e) { return e.textContent.trim() !== "" || e.querySelector("img,svg,table") !== null || /^(IMG|SVG|TABLE)$/i.test(e.tagName); };
  var empty = [];
  document.querySelectorAll("section").forEach(function (s) {
    var rest = Array.prototype.filter.call(s.children, function (c) { return c.tagName !== "H2"; });
    if (!rest.some(filled)) empty.push("section#" + s.id);
  });
  document.querySelectorAll("h3").forEach(function (h) {
    var n = h.nextElementSibling;
    if (!n || /^H[23]$/.test(n.tagName) || !filled(n)) empty.push("h3 " + h.textContent);
  });
  document.querySelectorAll("nav a").forEach(function (a) {
    if (!document.querySelector(a.getAttribute("href"))) empty.push("nav link " + a.getAttribute("href"));
  });
  document.body.dataset.overflow = over.join("; ");
  document.body.dataset.empty = empty.join("; ");
})();
</script>"##;

/// The tiny pipeline, run, and its report written to `r.html`.
fn reported_env() -> Env {
    let env = Env::new();
    env.write("c.yaml", TINY_COMPARE);
    env.ok(&["run", "c.yaml"]);
    let out = env.ok(&["report", "c.yaml", "-o", "r.html"]);
    assert!(out.contains("2 model(s), 2 evaluation(s)"), "{out}");
    env
}

#[test]
fn the_report_page_holds_every_model_and_its_numbers() {
    let env = reported_env();
    let html = std::fs::read_to_string(env.path("r.html")).unwrap();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the page must not reach the network"
    );
    let rec = latest_record(&env);
    let stages = rec["stages"].as_object().unwrap();
    // Every evaluation's recorded metrics, exactly, in its Table 1 row.
    for e in ["evaluate_b1", "evaluate_b2"] {
        let row = slice(&html, &format!("<tr data-stage=\"{e}\">"), "</tr>");
        let values = attrs(row, "data-v");
        let m = &stages[e]["report"]["metrics"];
        for (k, col) in [
            ("balanced_accuracy", 0),
            ("accuracy", 1),
            ("roc_auc", 2),
            ("threshold", 3),
        ] {
            assert_eq!(
                values[col].parse::<f64>().unwrap(),
                m[k].as_f64().unwrap(),
                "{e} {k}"
            );
        }
        let params = stages[&e.replace("evaluate", "train")]["report"]["metrics"]["params"]
            .as_f64()
            .unwrap();
        assert_eq!(values[4].parse::<f64>().unwrap(), params, "{e} parameters");
    }
    // The data-cleaning counts are the records'.
    let dedup = slice(&html, "<tr data-stage=\"groups\">", "</tr>");
    let copies = stages["groups"]["report"]["metrics"]["copies"]
        .as_f64()
        .unwrap();
    assert!(
        dedup.contains(&format!("data-k=\"copies\" data-v=\"{copies}\"")),
        "{dedup}"
    );
    assert!(html.contains("data:image/png;base64,"), "grids inlined");

    // A damaged object is left out with a warning and exit 1, never shown.
    let curve = find_files(&env.path("cache/objects"), "curve.csv");
    let b2 = curve
        .iter()
        .find(|p| {
            std::fs::read_to_string(p.with_file_name("stage.json"))
                .unwrap()
                .contains("\"b2\"")
        })
        .unwrap();
    std::fs::write(b2, "damaged").unwrap();
    let err = env.err(&["report", "c.yaml", "-o", "bad.html"], 1);
    assert!(err.contains("train_b2") && err.contains("damaged"), "{err}");
    let bad = std::fs::read_to_string(env.path("bad.html")).unwrap();
    assert!(!bad.contains("data-owner=\"train_b2\""));
}

/// The page in a real headless browser: its script runs without errors and draws every chart.
#[test]
#[ignore = "needs Chromium (.ci/run installs it; run with --include-ignored)"]
fn the_report_renders_in_a_headless_browser() {
    let browser = find_browser().expect("no chromium/chrome on PATH (apt-get install chromium)");
    let env = reported_env();
    let shot = env.path("shot.png");
    let (dom, log) = browse(&browser, &env.path("r.html"), &shot);
    assert!(
        dom.contains("data-ok=\"1\""),
        "the page's script did not finish: {log}"
    );
    assert!(!dom.contains("data-error="), "script error: {dom}");
    // `--enable-logging=stderr` prints every console message (errors included) as `:CONSOLE`;
    // the page logs nothing.
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:?}");
    let table = slice(&dom, "id=\"evaluations\"", "</table>");
    assert_eq!(table.matches("<tr data-stage=").count(), 2, "{table}");
    // Loss: train + val per model; balanced accuracy: train + val + test per model; ROC: one
    // per evaluation. Each training series has one point per epoch, test one.
    for (chart, series) in [("chart-loss", 4), ("chart-bacc", 6), ("chart-roc", 2)] {
        let svg = slice(&dom, &format!("id=\"{chart}\""), "</svg>");
        assert_eq!(
            svg.matches("<g class=\"series\"").count(),
            series,
            "{chart}"
        );
        if chart != "chart-roc" {
            let names = attrs(svg, "data-name");
            let points = attrs(svg, "data-points");
            for (n, p) in names.iter().zip(&points) {
                assert_eq!(*p, if *n == "test" { "1" } else { "2" }, "{chart} {n}");
            }
        }
    }
    assert!(pixel_variance(&shot) > 100.0, "the screenshot is blank");

    // At 1,400 px nothing reaches past the page's box (wide tables wrap or scroll inside
    // theirs), and every section and sub-heading shown has content.
    let page = std::fs::read_to_string(env.path("r.html")).unwrap();
    let probed = page.replace("</body>", &format!("{PROBE}</body>"));
    assert_ne!(probed, page);
    std::fs::write(env.path("probe.html"), probed).unwrap();
    let (dom, log) = browse(&browser, &env.path("probe.html"), &env.path("probe.png"));
    let overflow = attrs(&dom, "data-overflow");
    assert_eq!(
        overflow,
        [""],
        "elements overflow the page at 1,400 px: {log}"
    );
    let empty = attrs(&dom, "data-empty");
    assert_eq!(empty, [""], "empty sections");
    // The probe itself works: a table wider than the page is caught.
    let wide = page.replace(
        "</body>",
        &format!("<table><tr><td style=\"white-space:nowrap\">{}</td></tr></table><section id=\"hollow\"><h2>Hollow</h2></section>{PROBE}</body>", "x".repeat(400)),
    );
    std::fs::write(env.path("wide.html"), wide).unwrap();
    let (dom, _) = browse(&browser, &env.path("wide.html"), &env.path("wide.png"));
    assert!(attrs(&dom, "data-overflow")[0].contains("TABLE"), "{dom}");
    assert!(
        attrs(&dom, "data-empty")[0].contains("section#hollow"),
        "{dom}"
    );
    if let Some(keep) = std::env::var_os("PIPE_REPORT_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}

/// A no-op rerun: every stage is cached, and the graph names the run that made its output
/// (with that run's seconds), not "cached · 0.0 s"; a page without a predict stage has no
/// Predictions section; captions show ids as code, never literal backticks.
#[test]
fn a_noop_rerun_shows_the_run_that_made_each_output() {
    let env = reported_env();
    let first = latest_record(&env);
    let out = env.ok(&["run", "c.yaml"]);
    assert!(ran(&out).is_empty(), "{out}");
    env.ok(&["report", "c.yaml", "-o", "again.html"]);
    let html = std::fs::read_to_string(env.path("again.html")).unwrap();
    let dag = slice(&html, "<svg class=\"dag\"", "</svg>");
    let started = first["started"].as_str().unwrap();
    let made = attrs(dag, "data-made-by");
    assert_eq!(made.len(), 9, "{dag}");
    assert!(made.iter().all(|m| *m == started), "{made:?} vs {started}");
    let train = slice(dag, "data-id=\"train_b1\"", "</g>");
    let secs = first["stages"]["train_b1"]["seconds"].as_f64().unwrap();
    assert!(
        train.contains(&format!(
            "run {} {} · {secs:.1} s",
            &started[5..10],
            &started[11..19]
        )),
        "{train}"
    );
    assert!(!dag.contains("cached · 0.0 s"), "{dag}");

    assert!(
        !html.contains("id=\"predictions\""),
        "no predict stage, no section"
    );
    assert!(!html.contains("href=\"#predictions\""));
    for cap in html.split("<figcaption>").skip(1) {
        let cap = &cap[..cap.find("</figcaption>").unwrap()];
        assert!(!cap.contains('`'), "{cap}");
    }
    let conflicts = slice(&html, "<figure data-stage=\"clean\"", "</figure>");
    assert!(conflicts.contains("the difference image"), "{conflicts}");
    for t in ["provenance", "counts"] {
        assert!(
            html.contains(&format!("<div class=\"scroll\"><table class=\"{t}\">")),
            "{t} scrolls inside its box"
        );
    }
}

/// A sweep run with extra `--set`s: `compare` and the report say what every variant shared,
/// not only the swept values.
#[test]
fn a_sweeps_shared_overrides_are_shown_beside_its_swept_values() {
    let env = Env::new();
    env.write(
        "t.yaml",
        "name: t
stages:
  faces: {kind: source, format: synthetic, count: 160, height: 24, width: 24, exact_duplicates: 0, near_duplicates: 0, conflicting_duplicates: 0}
  split: {kind: split, inputs: {data: faces}}
  train: {kind: train, model: b1, epochs: 1, batch_size: 32, inputs: {data: faces, split: split}}
  evaluate: {kind: evaluate, inputs: {model: train, data: faces, split: split}}
",
    );
    env.ok(&[
        "run",
        "t.yaml",
        "--sweep",
        "stages.train.lr=0.01,0.001",
        "--set",
        "stages.faces.count=120",
        "--set",
        "stages.train.epochs=2",
    ]);
    let table = env.ok(&["compare", "t.yaml"]);
    assert!(
        table.contains("every variant ran with: stages.faces.count=120, stages.train.epochs=2"),
        "{table}"
    );
    env.ok(&["report", "t.yaml", "-o", "r.html"]);
    let html = std::fs::read_to_string(env.path("r.html")).unwrap();
    let line = slice(&html, "<p class=\"sweep\"", "</p>");
    assert!(
        line.contains("(2 variants)")
            && line
                .contains("<code>stages.faces.count=120</code> <code>stages.train.epochs=2</code>"),
        "{line}"
    );
}

#[test]
fn report_without_runs_is_bad_usage_and_hostile_names_are_escaped() {
    let env = Env::new();
    let yaml = "name: x\nstages:\n  faces: {kind: source, format: synthetic, count: 200, height: 24, width: 24}\n";
    env.write("p.yaml", yaml);
    let err = env.err(&["report", "p.yaml"], 2);
    assert!(err.contains("holds no cache"), "{err}");
    // A file name with markup: the page shows it, escaped.
    env.write(
        "<i>evil.yaml",
        "name: evil\nstages:\n  faces: {kind: source, format: synthetic, count: 60, height: 24, width: 24, exact_duplicates: 2, near_duplicates: 0, conflicting_duplicates: 0}\n",
    );
    env.ok(&["run", "<i>evil.yaml"]);
    let err = env.err(&["report", "p.yaml"], 2);
    assert!(err.contains("p.yaml has no run"), "{err}");
    let out = env.ok(&["report", "<i>evil.yaml", "p.yaml", "-o", "e.html"]);
    assert!(out.contains("1 pipeline(s), 0 model(s)"), "{out}");
    let html = std::fs::read_to_string(env.path("e.html")).unwrap();
    assert!(html.contains("&lt;i&gt;evil.yaml") && !html.contains("<i>evil"));
    assert!(html.contains("No trained model in these runs."));
}
