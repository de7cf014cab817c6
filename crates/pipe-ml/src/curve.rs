//! The per-epoch learning curve of a training run, stored as CSV.
//!
//! Columns, in order: `epoch,lr,train_loss,train_acc,train_bacc,val_loss,val_acc,val_bacc,
//! test_bacc`. `lr` is written as `{:.6e}`, every other float as `{:.6}`, and a missing
//! `test_bacc` as an empty cell, so equal rows give equal bytes. The curve is part of a model's
//! digested output, so it holds no wall-clock time: a retrained or resumed model with identical
//! weights has an identical curve (epoch timings go to the run record instead).

use serde::{Deserialize, Serialize};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The CSV header line (without newline).
pub const HEADER: &str =
    "epoch,lr,train_loss,train_acc,train_bacc,val_loss,val_acc,val_bacc,test_bacc";
const COLUMNS: usize = 9;

/// One epoch of training: learning rate, train/validation metrics, optional test balanced
/// accuracy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CurveRow {
    pub epoch: u32,
    pub lr: f64,
    pub train_loss: f64,
    pub train_acc: f64,
    pub train_bacc: f64,
    pub val_loss: f64,
    pub val_acc: f64,
    pub val_bacc: f64,
    pub test_bacc: Option<f64>,
}

/// Why a curve CSV could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CurveError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: expected header `{HEADER}`, found `{found}`")]
    Header { path: PathBuf, found: String },
    #[error("{path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

fn format_row(r: &CurveRow) -> String {
    let test = r.test_bacc.map(|v| format!("{v:.6}")).unwrap_or_default();
    format!(
        "{},{:.6e},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{}",
        r.epoch,
        r.lr,
        r.train_loss,
        r.train_acc,
        r.train_bacc,
        r.val_loss,
        r.val_acc,
        r.val_bacc,
        test
    )
}

/// Writes `rows` as CSV (header first) to `path`, replacing any existing file.
pub fn write_csv(path: &Path, rows: &[CurveRow]) -> std::io::Result<()> {
    let mut w = BufWriter::new(std::fs::File::create(path)?);
    writeln!(w, "{HEADER}")?;
    for r in rows {
        writeln!(w, "{}", format_row(r))?;
    }
    w.flush()
}

/// Reads a CSV written by [`write_csv`]. Blank lines are ignored.
pub fn read_csv(path: &Path) -> Result<Vec<CurveRow>, CurveError> {
    let text = std::fs::read_to_string(path).map_err(|source| CurveError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut lines = text.lines().enumerate();
    let header = lines.next().map(|(_, l)| l.trim_end()).unwrap_or("");
    if header != HEADER {
        return Err(CurveError::Header {
            path: path.to_path_buf(),
            found: header.to_owned(),
        });
    }
    let mut rows = Vec::new();
    for (i, line) in lines {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        let err = |message: String| CurveError::Parse {
            path: path.to_path_buf(),
            line: i + 1,
            message,
        };
        let cells: Vec<&str> = line.split(',').collect();
        if cells.len() != COLUMNS {
            return Err(err(format!(
                "expected {COLUMNS} cells, found {}",
                cells.len()
            )));
        }
        let num = |k: usize| -> Result<f64, CurveError> {
            cells[k].trim().parse::<f64>().map_err(|e| {
                err(format!(
                    "column {}: `{}`: {e}",
                    HEADER.split(',').nth(k).unwrap_or("?"),
                    cells[k]
                ))
            })
        };
        let epoch = cells[0]
            .trim()
            .parse::<u32>()
            .map_err(|e| err(format!("column epoch: `{}`: {e}", cells[0])))?;
        let test_bacc = if cells[8].trim().is_empty() {
            None
        } else {
            Some(num(8)?)
        };
        rows.push(CurveRow {
            epoch,
            lr: num(1)?,
            train_loss: num(2)?,
            train_acc: num(3)?,
            train_bacc: num(4)?,
            val_loss: num(5)?,
            val_acc: num(6)?,
            val_bacc: num(7)?,
            test_bacc,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(epoch: u32, test: Option<f64>) -> CurveRow {
        CurveRow {
            epoch,
            lr: 1e-4,
            train_loss: 0.431234,
            train_acc: 0.5,
            train_bacc: 0.5,
            val_loss: 0.6,
            val_acc: 0.75,
            val_bacc: 0.625,
            test_bacc: test,
        }
    }

    #[test]
    fn round_trips_and_bytes_are_fixed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("curve.csv");
        let rows = vec![row(1, None), row(2, Some(0.8125))];
        write_csv(&p, &rows).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(
            text,
            format!(
                "{HEADER}\n\
                 1,1.000000e-4,0.431234,0.500000,0.500000,0.600000,0.750000,0.625000,\n\
                 2,1.000000e-4,0.431234,0.500000,0.500000,0.600000,0.750000,0.625000,0.812500\n"
            )
        );
        assert_eq!(read_csv(&p).unwrap(), rows);
    }

    #[test]
    fn bad_files_are_reported_with_location() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.csv");
        std::fs::write(&p, "epoch,lr\n").unwrap();
        assert!(matches!(read_csv(&p), Err(CurveError::Header { .. })));
        std::fs::write(&p, format!("{HEADER}\n1,x,0,0,0,0,0,0,\n")).unwrap();
        let e = read_csv(&p).unwrap_err().to_string();
        assert!(e.contains(":2:") && e.contains("column lr"), "{e}");
        std::fs::write(&p, format!("{HEADER}\n1,2\n")).unwrap();
        assert!(read_csv(&p).unwrap_err().to_string().contains("9 cells"));
        assert!(matches!(
            read_csv(&dir.path().join("missing.csv")),
            Err(CurveError::Io { .. })
        ));
    }
}
