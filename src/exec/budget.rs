//! The local executor's resource budget (issue 11): besides `-j`, a stage starts only when the
//! CPUs and GPUs it declares (`resources:`) are free, so `-j 4` never puts 4 eight-CPU stages on
//! an eight-CPU machine, and two GPU stages never share the one GPU unless `pipe.toml` allows
//! it (`[executor] local_gpus`). A request larger than the machine is cut to the machine: such
//! a stage runs alone instead of never.

use crate::spec::StageSpec;
use crate::spec::resources::Resources;

/// What the machine offers and what stages ask by default.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// `pipe.toml`'s `[resources]`.
    pub defaults: Resources,
    /// GPU stages at once; `None` is 1.
    pub gpus: Option<u32>,
    /// The machine's CPUs; `None` asks the OS ([`std::thread::available_parallelism`]).
    pub cpus: Option<u32>,
}

/// One stage's share of the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Need {
    pub cpus: u32,
    pub gpus: u32,
}

#[derive(Debug, Clone)]
pub struct Budget {
    defaults: Resources,
    total: Need,
    free: Need,
}

impl Budget {
    pub fn new(limits: &Limits) -> Self {
        let cpus = limits
            .cpus
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
        let total = Need {
            cpus: cpus.max(1),
            gpus: limits.gpus.unwrap_or(1),
        };
        Self {
            defaults: limits.defaults.clone(),
            total,
            free: total,
        }
    }

    /// What `spec` takes while it runs: its declared CPUs and GPUs (a stage whose `device` is
    /// a GPU takes one when it declares none), cut to the machine.
    pub fn need(&self, spec: &StageSpec) -> Need {
        let r = spec.resources.or(&self.defaults);
        let gpus = gpus(&r, on_gpu(spec));
        Need {
            cpus: r.cpus().min(self.total.cpus),
            gpus: gpus.min(self.total.gpus.max(1)),
        }
    }

    /// Whether `need` fits in what is free now (always, when nothing runs).
    pub fn fits(&self, need: Need) -> bool {
        let nothing_runs = self.free == self.total;
        nothing_runs || (need.cpus <= self.free.cpus && need.gpus <= self.free.gpus)
    }

    pub fn take(&mut self, need: Need) {
        self.free.cpus = self.free.cpus.saturating_sub(need.cpus);
        self.free.gpus = self.free.gpus.saturating_sub(need.gpus);
    }

    pub fn give(&mut self, need: Need) {
        self.free.cpus = (self.free.cpus + need.cpus).min(self.total.cpus);
        self.free.gpus = (self.free.gpus + need.gpus).min(self.total.gpus);
    }
}

/// The GPUs a stage takes: what it declares (`gpus: 0` included), else one when its `device`
/// is a GPU (`gpu_device`).
pub fn gpus(r: &Resources, gpu_device: bool) -> u32 {
    r.gpus.unwrap_or(u32::from(gpu_device))
}

/// Whether the stage's `device` field names a GPU backend.
pub fn on_gpu(spec: &StageSpec) -> bool {
    spec.config.uses_device()
        && spec
            .config
            .canonical()
            .get("device")
            .and_then(|d| d.as_str())
            .is_some_and(|d| d != "cpu")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(cpus: u32, gpus: u32) -> Budget {
        Budget::new(&Limits {
            defaults: Resources::default(),
            gpus: Some(gpus),
            cpus: Some(cpus),
        })
    }

    #[test]
    fn cpus_are_never_oversubscribed() {
        let mut b = budget(8, 1);
        let big = Need { cpus: 6, gpus: 0 };
        assert!(b.fits(big));
        b.take(big);
        assert!(!b.fits(big), "6 + 6 CPUs on an 8-CPU machine");
        assert!(b.fits(Need { cpus: 2, gpus: 0 }));
        b.give(big);
        assert!(b.fits(big));
    }

    #[test]
    fn two_gpu_stages_do_not_share_one_gpu_unless_allowed() {
        let gpu = Need { cpus: 1, gpus: 1 };
        let mut one = budget(8, 1);
        one.take(gpu);
        assert!(!one.fits(gpu));
        let mut two = budget(8, 2);
        two.take(gpu);
        assert!(two.fits(gpu));
    }

    #[test]
    fn a_request_larger_than_the_machine_runs_alone() {
        let mut b = budget(2, 1);
        let huge = Need { cpus: 64, gpus: 0 };
        assert!(b.fits(huge), "nothing runs: it starts");
        b.take(Need { cpus: 1, gpus: 0 });
        assert!(!b.fits(huge));
    }

    #[test]
    fn declared_resources_and_defaults_make_the_need() {
        let p = crate::spec::load(
            std::path::Path::new("pipelines/quickstart.yaml"),
            &["stages.train_b3.resources={cpus: 64}"
                .parse::<crate::spec::Override>()
                .unwrap()],
        );
        let Ok(p) = p else { panic!("{p:?}") };
        let b = Budget::new(&Limits {
            defaults: Resources {
                cpus: Some(2),
                ..Resources::default()
            },
            gpus: None,
            cpus: Some(8),
        });
        for (id, spec) in &p.stages {
            let need = b.need(spec);
            let want = if id == "train_b3" { 8 } else { 2 };
            assert_eq!(need.cpus, want, "{id}");
            assert_eq!(need.gpus, 0, "{id} runs on the CPU");
        }
    }
}
