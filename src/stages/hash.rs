//! `hash`: one perceptual (dHash) or exact (blake3) hash per image.

use super::artifacts::{HashAlgorithm, Hashes, HashesMeta};
use super::{ArtifactKind, Problem, Slot, Stage, StageContext, StageError, StageReport, io_err};
use crate::data::dhash;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::io::Write;

fn d8() -> u32 {
    8
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Hash {
    #[serde(default)]
    pub algorithm: HashAlgorithm,
    /// dHash side: `hash_size * hash_size` bits (8 → 64 bits, the report's choice).
    #[serde(default = "d8")]
    pub hash_size: u32,
}

impl Stage for Hash {
    const KIND: &'static str = "hash";
    const VERSION: u32 = 1;
    const OUTPUT: ArtifactKind = ArtifactKind::Hashes;
    const INPUTS: &'static [Slot] = &[super::required_slot("data", ArtifactKind::Dataset)];

    fn check(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if !(2..=32).contains(&self.hash_size) {
            p.push(Problem::new(
                "hash_size",
                format!("hash_size must be between 2 and 32, got {}", self.hash_size),
            ));
        }
        p
    }

    fn run(&self, ctx: &StageContext) -> Result<StageReport, StageError> {
        let ds = ctx.dataset("data")?;
        let (rows, width) = match self.algorithm {
            HashAlgorithm::Dhash => {
                if ds.shape.width < self.hash_size + 1 || ds.shape.height < self.hash_size {
                    return Err(StageError::Invalid(format!(
                        "images of {} are smaller than the {}x{} dHash grid",
                        ds.shape,
                        self.hash_size + 1,
                        self.hash_size
                    )));
                }
                (
                    dhash::dhash_all(&ds, self.hash_size),
                    dhash::dhash_bytes(self.hash_size),
                )
            }
            HashAlgorithm::Exact => {
                let rows: Vec<u8> = (0..ds.len())
                    .into_par_iter()
                    .flat_map_iter(|i| *blake3::hash(ds.image(i)).as_bytes())
                    .collect();
                (rows, 32)
            }
        };
        let hashes = Hashes {
            meta: HashesMeta {
                algorithm: self.algorithm,
                hash_size: self.hash_size,
                width,
                count: ds.len(),
            },
            rows,
        };
        hashes.write(ctx.out)?;
        // A CSV people can diff against Python's imagehash.
        let csv = ctx.out.join("hashes.csv");
        let mut w = std::io::BufWriter::new(std::fs::File::create(&csv).map_err(io_err(&csv))?);
        writeln!(w, "index,name,hash").map_err(io_err(&csv))?;
        for i in 0..ds.len() {
            writeln!(w, "{i},{},{}", ds.names[i], dhash::to_hex(hashes.row(i)))
                .map_err(io_err(&csv))?;
        }
        w.flush().map_err(io_err(&csv))?;
        Ok(StageReport {
            summary: format!(
                "{} {:?} hashes of {} bits",
                ds.len(),
                self.algorithm,
                width * 8
            ),
            figures: vec!["hashes.csv".into()],
            ..Default::default()
        }
        .metric("images", ds.len() as f64))
    }
}
