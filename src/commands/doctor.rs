//! `pipe doctor`: the backends compiled into this binary, whether each can start here (and why
//! not), and what `--device auto` picks, so a user can tell in one command why a run is on CPU.

use super::exit::EXIT_OK;
use crate::ml::device::DeviceChoice;
use crate::ml::probe::{self, Availability};

pub(super) fn doctor() -> i32 {
    outln!("backends:");
    for device in DeviceChoice::ALL {
        outln!(
            "  {:<7} {}",
            device.as_str(),
            describe(device, &probe::availability(device))
        );
    }
    let pick = probe::auto();
    outln!(
        "--device auto → {} ({})",
        pick.device,
        pick.reasons.join("; ")
    );
    EXIT_OK
}

fn describe(device: DeviceChoice, a: &Availability) -> String {
    match a {
        Availability::NotCompiled => {
            format!("not compiled: rebuild with --features {}", device.feature())
        }
        Availability::Missing(why) => format!("compiled in; cannot start here: {why}"),
        Availability::Ready(note) => format!("compiled in; can start here ({note})"),
    }
}
