//! The scheduler's books: which stages are still to handle and which of them can start
//! ([`Ready`]), each handled stage's output digest, and its record for the run — kept once, for
//! every backend, so a stage's record is built in one place.

use super::ready::Ready;
use crate::cache::{StageKey, Store};
use crate::record::{Outcome, PRUNED_EPOCH, StageRecord, StageReport};
use crate::spec::{Pipeline, StageSpec};
use crate::stages::StageError;
use std::collections::BTreeMap;

pub(crate) struct Ledger<'a> {
    pipeline: &'a Pipeline,
    /// The stages to handle (in plan order) still pending, and which of them can start.
    pending: Ready<'a>,
    digests: BTreeMap<String, String>,
    records: BTreeMap<String, StageRecord>,
}

impl<'a> Ledger<'a> {
    /// `order`: the stages to handle, in plan order.
    pub(crate) fn new(order: Vec<&'a str>, pipeline: &'a Pipeline) -> Self {
        Self {
            pipeline,
            pending: Ready::new(order, &pipeline.stages),
            digests: BTreeMap::new(),
            records: BTreeMap::new(),
        }
    }

    /// The first pending stage (in plan order) whose inputs are all known.
    pub(crate) fn first_ready(&self) -> Option<&'a str> {
        self.pending.first()
    }

    /// The pending stages, in plan order.
    pub(crate) fn pending(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.pending.pending()
    }

    /// `spec`'s inputs: slot → output digest of the producing stage (all known).
    pub(crate) fn inputs(&self, spec: &StageSpec) -> BTreeMap<String, String> {
        spec.inputs
            .iter()
            .map(|(slot, p)| (slot.clone(), self.digests[p].clone()))
            .collect()
    }

    pub(crate) fn digest(&self, id: &str) -> &str {
        &self.digests[id]
    }

    /// `id` is being handled (running, or decided): no longer pending.
    pub(crate) fn take(&mut self, id: &str) {
        self.pending.take(id);
    }

    /// A stage whose output is in the cache (found, or just pulled), its report read back.
    pub(crate) fn cached(
        &mut self,
        store: &Store,
        spec: &StageSpec,
        key: &StageKey,
        digest: String,
    ) {
        let report = last_report(store, &digest);
        let r = record(
            spec,
            key,
            Some(digest.clone()),
            Outcome::Cached,
            0.0,
            report,
        );
        self.known(spec, r, digest);
    }

    pub(crate) fn ran(
        &mut self,
        spec: &StageSpec,
        key: &StageKey,
        digest: String,
        seconds: f64,
        report: StageReport,
    ) {
        let r = record(
            spec,
            key,
            Some(digest.clone()),
            Outcome::Ran,
            seconds,
            report,
        );
        self.known(spec, r, digest);
    }

    pub(crate) fn failed(&mut self, spec: &StageSpec, key: &StageKey, seconds: f64, error: String) {
        let mut r = record(
            spec,
            key,
            None,
            Outcome::Failed,
            seconds,
            StageReport::default(),
        );
        r.error = Some(error);
        self.take(&spec.id);
        self.records.insert(spec.id.clone(), r);
    }

    /// Stopped early by a search's pruner (`pruned`: its [`StageError::Pruned`]): recorded with
    /// the epoch it reached and its last validation numbers; its readers never start.
    pub(crate) fn pruned(
        &mut self,
        spec: &StageSpec,
        key: &StageKey,
        seconds: f64,
        pruned: &StageError,
    ) -> StageReport {
        let StageError::Pruned {
            epoch,
            epochs,
            val_loss,
            val_bacc,
        } = *pruned
        else {
            return StageReport::default();
        };
        let report = StageReport {
            summary: format!(
                "pruned after epoch {epoch} of {epochs}: val loss {val_loss:.4}, val balanced \
                 accuracy {val_bacc:.4}"
            ),
            ..StageReport::default()
        }
        .metric(PRUNED_EPOCH, f64::from(epoch))
        .metric("epochs", f64::from(epochs))
        .metric("val_loss", val_loss)
        .metric("val_bacc", val_bacc);
        let r = record(spec, key, None, Outcome::Pruned, seconds, report.clone());
        self.take(&spec.id);
        self.records.insert(spec.id.clone(), r);
        report
    }

    /// The stages a search's pruner stopped, in id order.
    pub(crate) fn pruned_ids(&self) -> Vec<&str> {
        self.records
            .iter()
            .filter(|(_, r)| r.outcome == Outcome::Pruned)
            .map(|(id, _)| id.as_str())
            .collect()
    }

    fn known(&mut self, spec: &StageSpec, r: StageRecord, digest: String) {
        let id = spec.id.as_str();
        self.pending.take(id);
        self.records.insert(id.to_string(), r);
        self.pending.known(id);
        self.digests.insert(id.to_string(), digest);
    }

    /// `producer`'s output turned out damaged: it is pending again, and so are its readers'
    /// inputs. Its digest, if it had one.
    pub(crate) fn rebuild(&mut self, producer: &str) -> Option<String> {
        let d = self.digests.remove(producer);
        if d.is_some() {
            self.pending.forgotten(producer);
        }
        self.pending.put_back(producer);
        d
    }

    /// The stages that failed, in id order.
    pub(crate) fn failed_ids(&self) -> Vec<&str> {
        self.records
            .iter()
            .filter(|(_, r)| r.outcome == Outcome::Failed)
            .map(|(id, _)| id.as_str())
            .collect()
    }

    /// Whether `id` reads `on`, directly or through other stages.
    pub(crate) fn depends_on(&self, id: &str, on: &str) -> bool {
        let mut stack = vec![id];
        let mut seen = std::collections::BTreeSet::new();
        while let Some(s) = stack.pop() {
            if s == on {
                return true;
            }
            if seen.insert(s) {
                stack.extend(self.pipeline.stages[s].inputs.values().map(String::as_str));
            }
        }
        false
    }

    pub(crate) fn into_records(self) -> BTreeMap<String, StageRecord> {
        self.records
    }
}

fn record(
    spec: &StageSpec,
    key: &StageKey,
    digest: Option<String>,
    outcome: Outcome,
    seconds: f64,
    report: StageReport,
) -> StageRecord {
    StageRecord {
        kind: spec.config.kind().to_string(),
        key: key.digest(),
        key_parts: key.clone(),
        digest,
        outcome,
        seconds,
        report,
        error: None,
    }
}

/// A stage's report, read back from its committed object (`report.json`), so the metrics of a
/// cached stage, or of one a cluster job ran, stay in every run record.
pub(crate) fn last_report(store: &Store, digest: &str) -> StageReport {
    crate::stages::artifacts::read_json(&store.object_dir(digest).join("report.json"))
        .unwrap_or_default()
}
