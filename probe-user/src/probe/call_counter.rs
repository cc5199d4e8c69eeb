//! The call counter (`probe-ebpf/src/call_counter.rs`): `count_call` on
//! every planned function, and the exact counts and first uses it keeps.

use std::collections::{BTreeMap, HashMap};

use aya::maps::{MapData, PerCpuHashMap};
use probe_common::{
    UnownedCallKey,
    count_table::copy_constant,
    names::{map, program},
};

use super::{
    AttachOutcome, ModuleProbe, PROBE_OBJECT, ProbeError, attach_each, attach_each_by,
    fentry::{self, FentryError},
    kprobe_multi::{self, MultiError},
    kprobe_pmu::{self, KprobePmu, PmuError},
    program_copy::{CopyError, CopyKind, CopyLink, Patch, ProgramCopy},
    sum_cpus,
    word_reads::WordReads,
};
use crate::kernel::lean_btf::ViewIds;

/// Where `count_call`'s attach types start (`CallAttach::parse`) when
/// `--attach` does not say: the setting for a whole script or service.
pub const ATTACH_ENV: &str = "MODSCOPE_ATTACH";

/// The fewest functions fentry leaves over that one kprobe_multi link
/// takes: the link's copy costs about what 40 kprobes cost to attach in a
/// TCG guest (4 s against 0.1 s each, `cargo xtask bench`).
const LINK_AFTER_FENTRY_MIN: usize = 32;

/// Calls (or first-use times) per (incarnation, function address).
pub type PerFunction = BTreeMap<(u64, u64), u64>;

/// How `count_call` attaches to a core-kernel function, cheapest first. A
/// function the first cannot take tries the next; a module's function
/// always gets a kprobe (the others pin the module while attached).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CallAttach {
    /// A program copy on the function's BPF trampoline.
    Fentry,
    /// One kprobe_multi link for them all (kernels with fprobe).
    KprobeMulti,
    /// A kprobe each.
    Kprobe,
}

impl CallAttach {
    pub const ALL: [Self; 3] = [Self::Fentry, Self::KprobeMulti, Self::Kprobe];

    /// The name the trace header, the TUI, `--attach` and `ATTACH_ENV` use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Fentry => "fentry",
            Self::KprobeMulti => "kprobe_multi",
            Self::Kprobe => "kprobe",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// `ATTACH_ENV`'s choice; kprobe_multi when it is not set. fentry has
    /// the cheapest hot path but is asked for: detaching it waits two
    /// RCU-tasks grace periods per function, one after another (the
    /// kernel's `ftrace_shutdown` for each trampoline), so a session on 64
    /// functions takes seconds longer to start and stop than with kprobes.
    pub fn from_env() -> Result<Self, ProbeError> {
        match std::env::var(ATTACH_ENV) {
            Err(_) => Ok(Self::KprobeMulti),
            Ok(name) => Self::parse(&name).ok_or(ProbeError::AttachType(name)),
        }
    }
}

impl ModuleProbe {
    /// Loads `count_call` and attaches it to each of `functions` the
    /// cheapest way the kernel allows, starting at `start`: fentry where the
    /// function has a BTF id in `btf.functions`, then one kprobe_multi link
    /// (for what fentry left over, only when that is at least
    /// `LINK_AFTER_FENTRY_MIN` functions), then a kprobe each; then the
    /// init pair on `do_init_module`. `addresses` holds each function's.
    /// The copies read through `btf.view` where the kernel takes it.
    pub fn attach_calls(
        &mut self,
        functions: &[String],
        addresses: &BTreeMap<String, u64>,
        btf: &AttachIds,
        start: CallAttach,
    ) -> Result<AttachOutcome, ProbeError> {
        self.loaded_kprobe(program::COUNT_CALL)?;
        let (mut core, others) = kprobe_multi::split_core(functions, addresses, &self.call_config);
        let mut outcome = AttachOutcome::default();
        let reads = WordReads::new(btf.view);
        if start <= CallAttach::Fentry && !core.is_empty() {
            let (attached, left, read) = self.attach_fentry(&core, addresses, btf, reads);
            if !attached.is_empty() {
                self.attached.push(format!(
                    "fentry/count_call x{}{}",
                    attached.len(),
                    read.label()
                ));
            }
            outcome.attached = attached;
            core = left;
        }
        // Left over by fentry (variadic functions, no BTF), a handful costs
        // less as kprobes than the link's own program load.
        let worth_a_link = start == CallAttach::KprobeMulti || core.len() >= LINK_AFTER_FENTRY_MIN;
        if start <= CallAttach::KprobeMulti && worth_a_link && !core.is_empty() {
            match self.attach_in_one_link(&core, reads.on_kprobes()) {
                Ok((link, read)) => {
                    self.attached.push(format!(
                        "kprobe_multi/count_call x{}{}",
                        core.len(),
                        read.label()
                    ));
                    self.multi = Some(link);
                    outcome.attached.append(&mut core);
                }
                Err(why) => log::debug!("count_call: no kprobe_multi link ({why})"),
            }
        }
        self.each = EachCopy::load(self, reads.on_kprobes());
        let singles: Vec<String> = core.into_iter().chain(others).collect();
        if !singles.is_empty() {
            let each = self.attach_more(&singles)?;
            let read = self.each.as_ref().map_or("", |e| e.reads.label());
            self.attached
                .push(format!("kprobe/count_call x{}{read}", each.attached.len()));
            outcome.attached.extend(each.attached);
            outcome.refused.extend(each.refused);
        }
        self.attach_init_done()?;
        Ok(outcome)
    }

    /// `count_call_fentry` on each of `functions`' trampolines, reading the
    /// frame the `reads` way, or through the helper when no copy of the
    /// view's program loads: those attached, those left for another attach
    /// type, and the way they read.
    fn attach_fentry(
        &mut self,
        functions: &[String],
        addresses: &BTreeMap<String, u64>,
        btf: &AttachIds,
        reads: WordReads,
    ) -> (Vec<String>, Vec<String>, WordReads) {
        let (attached, left) = self.attach_fentry_reading(functions, addresses, btf, reads);
        if !attached.is_empty() || reads == WordReads::Helper {
            return (attached, left, reads);
        }
        log::debug!("count_call: no fentry copy read through a view; through the helper");
        let (attached, left) =
            self.attach_fentry_reading(functions, addresses, btf, WordReads::Helper);
        (attached, left, WordReads::Helper)
    }

    /// `reads`' fentry program on each of `functions`' trampolines, each
    /// copy told its function's address and column (`fentry_constants`):
    /// those attached, and those left for another attach type (no BTF id,
    /// or refused). Three refusals before any success end the attempt: the
    /// kernel refuses the program, not a function.
    fn attach_fentry_reading(
        &mut self,
        functions: &[String],
        addresses: &BTreeMap<String, u64>,
        btf: &AttachIds,
        reads: WordReads,
    ) -> (Vec<String>, Vec<String>) {
        const REFUSALS_BEFORE_GIVING_UP: usize = 3;
        let copy = match self.count_call_copy(reads.fentry_program()) {
            Ok(copy) => copy,
            Err(why) => {
                log::debug!("count_call: no fentry ({why})");
                return (Vec::new(), functions.to_vec());
            }
        };
        let (mut attached, mut left) = (Vec::new(), Vec::new());
        let mut refusals = 0;
        for (i, function) in functions.iter().enumerate() {
            let Some(&func_ip) = addresses.get(function) else {
                left.push(function.clone());
                continue;
            };
            let mut patches = fentry_constants(func_ip, self.book.column(func_ip)).to_vec();
            patches.extend(reads.patches());
            match fentry::attach(&copy, function, &btf.functions, &patches) {
                Ok(link) => {
                    self.fentry.push(link);
                    attached.push(function.clone());
                }
                Err(FentryError::NoBtf(_)) => left.push(function.clone()),
                Err(why) => {
                    log::debug!("count_call: no fentry on {function} ({why})");
                    left.push(function.clone());
                    refusals += 1;
                    if attached.is_empty() && refusals == REFUSALS_BEFORE_GIVING_UP {
                        left.extend_from_slice(&functions[i + 1..]);
                        break;
                    }
                }
            }
        }
        (attached, left)
    }

    /// `program` relocated against the maps of the loaded `count_call`.
    fn count_call_copy(&mut self, program: &str) -> Result<ProgramCopy, CallCopy> {
        let loaded = self.kprobe_program(program::COUNT_CALL)?;
        let info = loaded.info().map_err(|source| ProbeError::ProgramLoad {
            program: program::COUNT_CALL,
            source,
        })?;
        Ok(ProgramCopy::relocate(PROBE_OBJECT, program, &info)?)
    }

    /// A copy of `count_call` attached to all of `functions` in one
    /// kprobe_multi link, reading the `reads` way, or through the helper
    /// when the kernel refuses that copy; refused as a whole by a kernel
    /// without fprobe, or when any function cannot take it.
    fn attach_in_one_link(
        &mut self,
        functions: &[String],
        reads: WordReads,
    ) -> Result<(CopyLink, WordReads), CallCopy> {
        let loaded = self
            .count_call_copy(reads.kprobe_program())
            .and_then(|copy| Ok(copy.load(CopyKind::KprobeMulti, &reads.patches())?));
        let (prog, read) = match loaded {
            Ok(prog) => (prog, reads),
            Err(why) if reads != WordReads::Helper => {
                log::debug!("count_call: no kprobe_multi copy read through a view ({why})");
                let copy = self.count_call_copy(program::COUNT_CALL)?;
                (copy.load(CopyKind::KprobeMulti, &[])?, WordReads::Helper)
            }
            Err(why) => return Err(why),
        };
        let link = kprobe_multi::attach(std::os::fd::AsFd::as_fd(&prog), functions)?;
        Ok((CopyLink::new(link, prog), read))
    }

    /// Attaches the (loaded) call counter to more functions, a kprobe each:
    /// the view's copy where one loaded (`EachCopy`), aya's program
    /// otherwise. Their columns in the count table come first
    /// (`place_columns`).
    pub fn attach_more(&mut self, functions: &[String]) -> Result<AttachOutcome, ProbeError> {
        if let Some(each) = &self.each {
            let mut link_refused = false;
            let (outcome, links) = attach_each_by(functions, |f| {
                each.attach(f)
                    .inspect_err(|e| link_refused |= matches!(e, PmuError::Link { .. }))
            });
            if !outcome.attached.is_empty() || !link_refused {
                self.links.keep_pmu(links);
                return Ok(outcome);
            }
            // Kprobes opened but not one took the copy: the kernel refuses
            // the program, not the functions. aya's takes these and all
            // later ones.
            log::debug!("count_call: no kprobe took the view's copy; aya's program from now on");
            self.each = None;
        }
        let prog = self.kprobe_program(program::COUNT_CALL)?;
        let (outcome, links) = attach_each(prog, functions);
        self.links.keep(links);
        Ok(outcome)
    }

    /// How `count_call` attached to the planned core-kernel functions:
    /// the cheapest type any of them got.
    pub fn call_attach_type(&self) -> CallAttach {
        if !self.fentry.is_empty() {
            CallAttach::Fentry
        } else if self.multi.is_some() {
            CallAttach::KprobeMulti
        } else {
            CallAttach::Kprobe
        }
    }

    /// Calls from module memory no incarnation owns, per (return address,
    /// function), summed over CPUs.
    pub fn unowned_calls(&self) -> Result<BTreeMap<UnownedCallKey, u64>, ProbeError> {
        let calls: PerCpuHashMap<&MapData, UnownedCallKey, u64> = self.map(map::UNOWNED_CALLS)?;
        // An LRU map: an entry evicted between its key and its value is
        // skipped, not an error.
        Ok(calls
            .iter()
            .filter_map(Result::ok)
            .map(|(key, values)| (key, sum_cpus(&values)))
            .collect())
    }
}

/// The copy of `count_call` that reads through a view, loaded once for a
/// kprobe each (aya's own program reads through the helper): attached on
/// the kernel's kprobe PMU, since aya attaches only what it loaded.
pub struct EachCopy {
    prog: std::os::fd::OwnedFd,
    pmu: KprobePmu,
    reads: WordReads,
}

impl EachCopy {
    /// The copy reading the `reads` way (after `WordReads::on_kprobes`); none
    /// for the helper's way, or when the kernel refuses it (then aya's
    /// program takes the kprobes).
    fn load(probe: &mut ModuleProbe, reads: WordReads) -> Option<Self> {
        if reads == WordReads::Helper {
            return None;
        }
        let loaded = probe
            .count_call_copy(reads.kprobe_program())
            .and_then(|copy| Ok(copy.load(CopyKind::Kprobe, &reads.patches())?))
            .and_then(|prog| Ok((prog, KprobePmu::of_kernel()?)));
        match loaded {
            Ok((prog, pmu)) => Some(Self { prog, pmu, reads }),
            Err(why) => {
                log::debug!("count_call: a kprobe each through the helper ({why})");
                None
            }
        }
    }

    fn attach(&self, function: &str) -> Result<kprobe_pmu::PmuKprobe, PmuError> {
        self.pmu
            .attach(std::os::fd::AsFd::as_fd(&self.prog), function)
    }

    /// The program, for its statistics.
    pub fn program(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.prog)
    }
}

/// What `count_call_fentry`'s copy for the function at `func_ip` is told:
/// that address, which its trampoline also passes, and its column.
fn fentry_constants(func_ip: u64, column: Option<u32>) -> [Patch; 2] {
    [
        Patch::Constant {
            marker: copy_constant::FUNC_IP,
            value: func_ip,
        },
        Patch::Constant {
            marker: copy_constant::COLUMN,
            value: column.map_or(copy_constant::NO_COLUMN, u64::from),
        },
    ]
}

/// What a session's attach takes from the running kernel's BTF: the
/// functions' ids for fentry, and the view's for reads without the helper.
#[derive(Debug, Default)]
pub struct AttachIds {
    pub functions: HashMap<String, u32>,
    pub view: Option<ViewIds>,
}

/// Why a copy of `count_call` was not loaded or attached.
#[derive(Debug, thiserror::Error)]
enum CallCopy {
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error(transparent)]
    Copy(#[from] CopyError),
    #[error("the kernel refused a kprobe_multi link: {0}")]
    Refused(#[from] MultiError),
    #[error(transparent)]
    Pmu(#[from] PmuError),
}

#[cfg(test)]
mod tests {
    use super::CallAttach;

    #[test]
    fn attach_types_parse_by_the_names_they_print() {
        for attach in CallAttach::ALL {
            assert_eq!(CallAttach::parse(attach.name()), Some(attach));
        }
        assert_eq!(CallAttach::parse("kprobe-multi"), None);
        assert!(CallAttach::Fentry < CallAttach::KprobeMulti);
        assert!(CallAttach::KprobeMulti < CallAttach::Kprobe);
    }
}
