//! The one scheduler, whatever runs the stages ([`Backend`]: this machine's threads, Slurm).
//! It walks a [`Plan`] under the cache lock: a stage whose inputs are known is decided with
//! [`plan::decide`] on its real input digests, so a stage the plan said would run stays cached
//! when its upstream reran with byte-identical output (early cutoff); hits are recorded at once,
//! misses handed to the backend while it has room, and every outcome is recorded in the
//! [`Ledger`] and reported to the [`Observer`].
//!
//! The schedulers of a sweep's variants can run at once, sharing a job budget and the keys in
//! flight through [`Shared`] (see [`Sharing`]).

use super::backend::{Backend, Finished, Job, Traits};
use super::error::RunError;
use super::event::{Blocked, Event, HitNote, Observer};
use super::ledger::Ledger;
use super::shared::{Claim, KeyGuard, Permit, Shared};
use crate::cache::store::{KeyEntry, Lookup};
use crate::cache::{StageKey, Store};
use crate::plan::{self, Decision, Plan, StageState, World};
use crate::record::StageRecord;
use crate::remote::{Remote, RemoteError};
use crate::spec::{Pipeline, StageSpec};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

/// How one variant's scheduler takes part in a sweep run at once with the others.
pub struct Sharing<'s> {
    pub shared: &'s Shared,
}

/// What the scheduler works on.
pub struct Input<'a> {
    pub plan: &'a Plan,
    pub pipeline: &'a Pipeline,
    pub store: &'a Store,
    /// The shared remote cache: local misses it holds are pulled, what runs is uploaded.
    pub remote: Option<&'a Arc<Remote>>,
    pub forced: &'a BTreeSet<String>,
    pub sharing: Option<&'a Sharing<'a>>,
    pub observer: &'a dyn Observer,
}

/// What the scheduler leaves behind: a record per stage it reached, and the first failure.
pub struct Executed {
    pub records: BTreeMap<String, StageRecord>,
    pub failure: Option<RunError>,
}

/// What to do with a stage whose inputs are all known.
enum Next {
    Cached,
    Run(StageKey),
    /// An input was damaged and is scheduled for a rebuild; look again.
    Rebuild,
}

/// Whether a stage about to run may start.
enum Slot<'a> {
    /// Not in a sweep run at once: the backend's room is all.
    Alone,
    /// The key and a job slot are this scheduler's until the stage is committed.
    Shared(KeyGuard<'a>, Permit<'a>),
    /// Another variant ran the key meanwhile: decide again (now a cache hit).
    Again,
}

struct Scheduler<'a> {
    input: Input<'a>,
    traits: Traits,
    ledger: Ledger<'a>,
    running: BTreeSet<String>,
    /// Outputs whose files were checked against their manifests in this run.
    verified: BTreeSet<String>,
    failure: Option<RunError>,
}

/// Runs every stage of the plan that is not blocked on `backend`; returns once none is running.
pub fn execute<'a, W: World<Error = RunError>>(
    input: Input<'a>,
    world: &mut W,
    backend: &mut dyn Backend<'a>,
) -> Executed {
    let selected: Vec<&'a str> = input
        .plan
        .stages
        .iter()
        .filter(|s| !matches!(s.state, StageState::Blocked { .. }))
        .filter_map(|s| input.pipeline.stages.get_key_value(&s.id))
        .map(|(id, _)| id.as_str())
        .collect();
    input.observer.on(&Event::Scheduled { ids: &selected });
    let mut s = Scheduler {
        traits: backend.traits(),
        ledger: Ledger::new(selected, input.pipeline),
        input,
        running: BTreeSet::new(),
        verified: BTreeSet::new(),
        failure: None,
    };
    loop {
        s.start_ready(world, backend);
        if s.running.is_empty() {
            break;
        }
        match backend.poll() {
            Ok(done) => done.into_iter().for_each(|d| s.finished(d)),
            Err(e) => {
                s.failure.get_or_insert(e);
                break;
            }
        }
    }
    s.report_blocked();
    Executed {
        records: s.ledger.into_records(),
        failure: s.failure,
    }
}

impl<'a> Scheduler<'a> {
    fn say(&self, e: Event<'_>) {
        self.input.observer.on(&e);
    }

    fn spec(&self, id: &str) -> &'a StageSpec {
        &self.input.pipeline.stages[id]
    }

    /// Starts every ready stage (in plan order) while the backend has room.
    fn start_ready<W: World<Error = RunError>>(
        &mut self,
        world: &mut W,
        backend: &mut dyn Backend<'a>,
    ) {
        while self.failure.is_none() {
            let Some(id) = self.ledger.first_ready() else {
                break;
            };
            let forced = self.input.forced.contains(id);
            match self.next(world, id, forced) {
                Ok(Next::Cached | Next::Rebuild) => {}
                Ok(Next::Run(_)) if !backend.has_room(self.spec(id)) => break,
                Ok(Next::Run(key)) => {
                    let lease = match self.take_shared(&key, forced) {
                        Slot::Again => continue,
                        Slot::Alone => None,
                        Slot::Shared(guard, permit) => Some((guard, permit)),
                    };
                    self.submit(backend, id, key, forced, lease);
                }
                Err(e) => self.failure = Some(e),
            }
        }
    }

    /// In a shared run: the right to run `key` and a job slot, blocking while another variant
    /// runs it or every slot is taken.
    fn take_shared(&self, key: &StageKey, forced: bool) -> Slot<'a> {
        let Some(sharing) = self.input.sharing else {
            return Slot::Alone;
        };
        let hex = key.digest();
        let guard = match sharing.shared.claim(&hex) {
            Claim::WaitedFor => return Slot::Again,
            Claim::Mine(g) => g,
        };
        // Another variant may have committed it between our decision and the claim.
        if sharing.shared.ran(&hex) || (!forced && self.input.store.lookup(&hex).hit().is_some()) {
            return Slot::Again;
        }
        Slot::Shared(guard, sharing.shared.permit())
    }

    /// Decides a ready stage on its real input digests; records a hit at once.
    fn next<W: World<Error = RunError>>(
        &mut self,
        world: &mut W,
        id: &'a str,
        forced: bool,
    ) -> Result<Next, RunError> {
        let spec = self.spec(id);
        let inputs = self.ledger.inputs(spec);
        let mut decision = plan::decide(world, id, &inputs, forced)?;
        // A forced stage another variant already ran in this sweep is not run again.
        if let (Decision::Miss { key }, true, Some(s)) = (&decision, forced, self.input.sharing)
            && s.shared.ran(&key.digest())
        {
            decision = plan::decide(world, id, &inputs, false)?;
        }
        let key = match decision {
            Decision::Hit { key, digest } => {
                self.cached(spec, key, digest);
                return Ok(Next::Cached);
            }
            // A non-local job pulls its stage itself, on the node that needs it.
            Decision::Remote { key, .. } if self.traits.non_local => key,
            Decision::Remote { key, .. } => {
                if let Some(digest) = self.pull(id, &key) {
                    self.ledger.cached(self.input.store, spec, &key, digest);
                    return Ok(Next::Cached);
                }
                key
            }
            Decision::Miss { key } => {
                if !forced
                    && let Lookup::Damaged { error, .. } = self.input.store.lookup(&key.digest())
                {
                    self.say(Event::Damaged { id, error: &error });
                }
                key
            }
        };
        // Inputs are about to be read here: re-digest them, rebuild any that rotted. (A
        // non-local job checks its inputs itself.)
        if !self.traits.non_local
            && let Some((producer, e)) = self.first_damaged(spec)
        {
            self.say(Event::Damaged {
                id: &producer,
                error: &e,
            });
            if let Some(d) = self.ledger.rebuild(&producer) {
                self.input.store.remove_object(&d)?;
            }
            return Ok(Next::Rebuild);
        }
        Ok(Next::Run(key))
    }

    fn cached(&mut self, spec: &StageSpec, key: StageKey, digest: String) {
        let id = spec.id.as_str();
        let by_another = self
            .input
            .sharing
            .is_some_and(|s| s.shared.ran(&key.digest()));
        let note = match self.input.plan.get(id).map(|p| &p.state) {
            Some(StageState::WouldRun { .. }) if by_another => HitNote::RunByAnother,
            Some(StageState::WouldRun { .. }) => HitNote::InputsUnchanged,
            _ => HitNote::None,
        };
        self.say(Event::Cached {
            id,
            digest: &digest,
            note,
        });
        self.ledger.cached(self.input.store, spec, &key, digest);
    }

    /// Downloads the remote's output of `key` into the cache; `None` when it cannot be used
    /// (the remote reported why), and the stage runs here.
    fn pull(&self, id: &str, key: &StageKey) -> Option<String> {
        let remote = self.input.remote?;
        let entry = remote.lookup(&key.digest())?;
        match remote.pull(self.input.store, &entry) {
            Ok(p) => {
                self.say(Event::Pulled {
                    id,
                    digest: &p.digest,
                    bytes: p.bytes,
                    seconds: p.seconds,
                });
                Some(p.digest)
            }
            Err(e) => {
                remote.report(&e);
                remote.forget(&key.digest());
                if matches!(e, RemoteError::Damaged { .. }) {
                    self.say(Event::RemoteNotUsed { id });
                }
                None
            }
        }
    }

    /// The first input of `spec` whose object no longer matches its manifest.
    fn first_damaged(&mut self, spec: &StageSpec) -> Option<(String, crate::cache::StoreError)> {
        for producer in spec.inputs.values() {
            if self.verified.contains(producer) {
                continue;
            }
            match self.input.store.verify(self.ledger.digest(producer)) {
                Ok(()) => {
                    self.verified.insert(producer.clone());
                }
                Err(e) => return Some((producer.clone(), e)),
            }
        }
        None
    }

    /// Hands `id` to the backend; a stage that cannot be started has failed.
    fn submit(
        &mut self,
        backend: &mut dyn Backend<'a>,
        id: &'a str,
        key: StageKey,
        forced: bool,
        lease: Option<(KeyGuard<'a>, Permit<'a>)>,
    ) {
        let spec = self.spec(id);
        let store = self.input.store;
        let inputs: BTreeMap<String, PathBuf> = self
            .ledger
            .inputs(spec)
            .into_iter()
            .map(|(slot, d)| (slot, store.object_dir(&d)))
            .collect();
        self.ledger.take(id);
        tracing::info!(stage = %id, key = %key.digest(), "cache miss: running");
        let job = Job {
            spec,
            key: key.clone(),
            inputs,
            forced,
            lease,
        };
        match backend.submit(job) {
            Ok(how) => {
                self.running.insert(id.to_string());
                self.say(Event::Started {
                    id,
                    kind: spec.config.kind(),
                    how: &how,
                });
            }
            Err(e) => self.fail(spec, &key, 0.0, e),
        }
    }

    /// Records a job's end.
    fn finished(&mut self, done: Finished) {
        self.running.remove(&done.id);
        let spec = self.spec(&done.id);
        match done.result {
            Ok((digest, report)) => {
                self.say(Event::Ran {
                    id: &spec.id,
                    seconds: done.seconds,
                    job: done.job.as_deref(),
                    report: &report,
                    dir: &self.input.store.object_dir(&digest),
                });
                self.verified.insert(spec.id.clone());
                // A non-local job pushes its own output.
                if let Some(r) = self.input.remote.filter(|_| !self.traits.non_local) {
                    r.push_later(
                        &self.input.store.root,
                        KeyEntry {
                            digest: digest.clone(),
                            stage: spec.id.clone(),
                            key: done.key.clone(),
                        },
                    );
                }
                self.ledger
                    .ran(spec, &done.key, digest, done.seconds, report);
            }
            Err(e) => match e.pruned() {
                Some(p) => {
                    let report = self.ledger.pruned(spec, &done.key, done.seconds, p);
                    self.say(Event::Pruned {
                        id: &spec.id,
                        seconds: done.seconds,
                        report: &report,
                    });
                }
                None => self.fail(spec, &done.key, done.seconds, e),
            },
        }
    }

    fn fail(&mut self, spec: &StageSpec, key: &StageKey, seconds: f64, e: RunError) {
        self.say(Event::Failed {
            id: &spec.id,
            seconds,
        });
        self.ledger.failed(spec, key, seconds, e.to_string());
        self.failure.get_or_insert(e);
    }

    /// After a failure or a pruned stage: one event per stage that never started, saying why.
    fn report_blocked(&self) {
        let failed = self.ledger.failed_ids();
        let pruned = self.ledger.pruned_ids();
        for id in self.ledger.pending() {
            let upstream = failed.iter().find(|f| self.ledger.depends_on(id, f));
            let why = match (upstream, &self.failure) {
                (Some(f), _) => Blocked::UpstreamFailed(f),
                (None, Some(failure)) => Blocked::RunStopped(failure),
                (None, None) => match pruned.iter().find(|p| self.ledger.depends_on(id, p)) {
                    Some(p) => Blocked::UpstreamPruned(p),
                    None => continue,
                },
            };
            self.say(Event::Blocked { id, why });
        }
    }
}
