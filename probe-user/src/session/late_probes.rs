//! Probes added during a session, for modules that load meanwhile and
//! whose imports were not known when the probes attached.

use super::error::Result;
use crate::kernel::kallsyms::KernelFunction;
use modscope_analysis::Imports;

use super::{attach_plan::UNTRACEABLE, probe_policy::LatePlanner};
use crate::kernel::kallsyms::NotAttached;
use crate::probe::ModuleProbe;

/// What a late module got: its imports, and the functions attached for it
/// with their addresses.
pub struct LateAddition {
    pub imports: Imports,
    pub attached: Vec<KernelFunction>,
}

#[derive(Default)]
pub struct LateProbes {
    pub planner: Option<LatePlanner>,
    /// Functions attached during the session, with their addresses.
    pub attached: Vec<KernelFunction>,
    pub not_attached: Vec<NotAttached>,
    pub capped: Vec<String>,
}

impl LateProbes {
    /// Plans and attaches the probes a module that just loaded needs:
    /// its imports, and the functions attached now. `None` when its file
    /// is not on the module path (or there is no planner).
    pub fn module_loaded(
        &mut self,
        name: &str,
        probe: &mut ModuleProbe,
    ) -> Result<Option<LateAddition>> {
        let Some(add) = self.planner.as_mut().and_then(|p| p.module_loaded(name)) else {
            return Ok(None);
        };
        let wanted: Vec<String> = add.functions.iter().map(|f| f.name.clone()).collect();
        let addresses: Vec<u64> = add.functions.iter().map(|f| f.address).collect();
        probe.place_columns(&addresses)?;
        let outcome = probe.attach_more(&wanted)?;
        let attached: Vec<KernelFunction> = add
            .functions
            .into_iter()
            .filter(|f| outcome.attached.contains(&f.name))
            .collect();
        self.attached.extend(attached.iter().cloned());
        self.not_attached.extend(
            add.refused
                .into_iter()
                .map(|f| NotAttached::new(f, UNTRACEABLE)),
        );
        self.not_attached.extend(outcome.refused);
        self.capped.extend(add.capped);
        Ok(Some(LateAddition {
            imports: add.imports,
            attached,
        }))
    }
}
