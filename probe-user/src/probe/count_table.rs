//! The count table (`probe_common::count_table`) from user space: its
//! shape, each function's column, the rows of modules loaded before the
//! session, and the totals of unloaded incarnations, whose cells are read
//! one last time, zeroed and given back (`CountBook`, pure) so that churn
//! neither grows the kernel's maps nor leaks counts into a row's next owner.

use std::collections::{BTreeMap, BTreeSet};

use aya::maps::{Array, HashMap, MapData, MapError, PerCpuArray, PerCpuHashMap, PerCpuValues};
use probe_common::{
    CallKey, CountTableConfig, FunctionColumn, count_table::COLUMN_PROBES, names::map,
};

use super::{ModuleProbe, PerFunction, ProbeError, read_entries, sum_cpus};

/// Rows for loads the probes see: a new load shares a row with a live one
/// (and is counted in the hash map) about once per this many live loads.
const PROBE_ROWS: u32 = 256;

/// Columns beyond the planned functions, for those attached later.
const SPARE_COLUMNS: u32 = 64;

/// At most this many columns: 4,096 rows of 1,024 would be 32 MiB per CPU.
const MAX_COLUMNS: u32 = 1024;

/// The table's shape for `present` modules already loaded (user space's
/// ids 1..=present) and `functions` planned functions.
pub fn shape(present: usize, functions: usize) -> CountTableConfig {
    // Ids are counted again when the modules are seeded: room for loads
    // that come in between.
    let user_rows = u32::try_from(present)
        .unwrap_or(u32::MAX)
        .saturating_add(33);
    let columns = u32::try_from(functions)
        .unwrap_or(u32::MAX)
        .saturating_add(SPARE_COLUMNS)
        .min(MAX_COLUMNS);
    // At least four buckets per column, so probes stay short.
    let bucket_bits = (columns * 4).next_power_of_two().trailing_zeros();
    CountTableConfig {
        user_rows,
        rows: user_rows.saturating_add(PROBE_ROWS),
        columns,
        bucket_bits,
    }
}

/// The pure bookkeeping: columns handed out, rows owned, totals kept.
#[derive(Debug)]
pub struct CountBook {
    config: CountTableConfig,
    /// Function address -> column.
    columns: BTreeMap<u64, u32>,
    /// The buckets as the kernel's `COLUMNS` holds them.
    buckets: Vec<FunctionColumn>,
    /// Incarnation -> the row it owns.
    rows: BTreeMap<u64, u32>,
    /// Unloaded incarnations whose cells are read once more, then freed.
    unloaded: BTreeSet<u64>,
    /// Their final totals and first-use times, no longer in the kernel.
    pub retired_calls: PerFunction,
    pub retired_first_uses: PerFunction,
}

impl CountBook {
    pub fn new(config: CountTableConfig) -> Self {
        Self {
            config,
            columns: BTreeMap::new(),
            buckets: vec![FunctionColumn::default(); config.buckets() as usize],
            rows: BTreeMap::new(),
            unloaded: BTreeSet::new(),
            retired_calls: PerFunction::new(),
            retired_first_uses: PerFunction::new(),
        }
    }

    pub fn config(&self) -> CountTableConfig {
        self.config
    }

    /// Gives `func_ip` a column: the bucket to write and what goes there,
    /// or `None` when it has one already, the columns are used up, or its
    /// buckets are full (its calls go to the hash map).
    pub fn place(&mut self, func_ip: u64) -> Option<(u32, FunctionColumn)> {
        let column = u32::try_from(self.columns.len()).ok()?;
        if func_ip == 0 || self.columns.contains_key(&func_ip) || column >= self.config.columns {
            return None;
        }
        let bucket = (0..COLUMN_PROBES)
            .map(|probe| self.config.bucket(func_ip, probe))
            .find(|&b| self.buckets[b as usize].func_ip == 0)?;
        let entry = FunctionColumn {
            func_ip,
            column,
            _pad: 0,
        };
        self.buckets[bucket as usize] = entry;
        self.columns.insert(func_ip, column);
        Some((bucket, entry))
    }

    /// The column `func_ip` was given, if any.
    pub fn column(&self, func_ip: u64) -> Option<u32> {
        self.columns.get(&func_ip).copied()
    }

    /// The row a module loaded before the session takes, by its id.
    pub fn user_row(&self, id: u64) -> Option<u32> {
        (id < u64::from(self.config.user_rows))
            .then(|| self.config.row(id))
            .flatten()
    }

    /// Records that `incarnation` owns `row` (its claim succeeded).
    pub fn owns(&mut self, incarnation: u64, row: u32) {
        self.rows.insert(incarnation, row);
    }

    /// The cell of a (module, function) pair, when both have a place.
    pub fn cell(&self, incarnation: u64, func_ip: u64) -> Option<u32> {
        let row = *self.rows.get(&incarnation)?;
        self.config.cell(row, self.column(func_ip)?)
    }

    /// The module unloaded: its totals are final after the next read.
    pub fn unloaded(&mut self, incarnation: u64) {
        self.unloaded.insert(incarnation);
    }

    /// Unloaded incarnations still in the kernel's maps.
    pub fn to_retire(&self) -> Vec<u64> {
        self.unloaded.iter().copied().collect()
    }

    /// Keeps an unloaded incarnation's final totals and first uses (from
    /// `calls` and `first_uses`, as just read); returns its row, whose
    /// cells are to be zeroed and given back.
    pub fn retire(
        &mut self,
        incarnation: u64,
        calls: &PerFunction,
        first_uses: &PerFunction,
    ) -> Option<u32> {
        self.unloaded.remove(&incarnation);
        self.retired_calls
            .extend(of_incarnation(calls, incarnation));
        self.retired_first_uses
            .extend(of_incarnation(first_uses, incarnation));
        self.rows.remove(&incarnation)
    }

    /// The columns in use (a row's cells past them were never written).
    pub fn columns_used(&self) -> u32 {
        u32::try_from(self.columns.len()).unwrap_or(u32::MAX)
    }
}

/// Reading the table and giving rows back, through aya.
impl ModuleProbe {
    /// Gives each function a column in the kernel's table before it is
    /// attached; a function without one is counted in the hash map.
    pub fn place_columns(&mut self, functions: &[u64]) -> Result<(), ProbeError> {
        let placed: Vec<_> = functions
            .iter()
            .filter_map(|&f| self.book.place(f))
            .collect();
        let mut table: Array<&mut MapData, FunctionColumn> = self.map_mut(map::COLUMNS)?;
        for (bucket, entry) in placed {
            table.set(bucket, entry, 0).map_err(err(map::COLUMNS))?;
        }
        Ok(())
    }

    /// Gives a module seeded from /proc/modules its row (the probes never
    /// claim user space's rows).
    pub(super) fn claim_user_row(&mut self, id: u64) -> Result<(), ProbeError> {
        let Some(row) = self.book.user_row(id) else {
            return Ok(());
        };
        let mut rows: Array<&mut MapData, u64> = self.map_mut(map::ROWS)?;
        rows.set(row, id, 0).map_err(err(map::ROWS))?;
        self.book.owns(id, row);
        Ok(())
    }

    /// A load the probes saw: whether it won its row.
    pub fn module_loaded(&mut self, incarnation: u64) -> Result<(), ProbeError> {
        let Some(row) = self.book.config().row(incarnation) else {
            return Ok(());
        };
        let rows: Array<&MapData, u64> = self.map(map::ROWS)?;
        if rows.get(&row, 0).map_err(err(map::ROWS))? == incarnation {
            self.book.owns(incarnation, row);
        }
        Ok(())
    }

    /// An unload: the incarnation's counts are read once more, then its
    /// entries leave the kernel's maps.
    pub fn module_freed(&mut self, incarnation: u64) {
        self.book.unloaded(incarnation);
    }

    /// Whether unloaded incarnations wait for their last read.
    pub fn retiring(&self) -> bool {
        !self.book.to_retire().is_empty()
    }

    /// Calls per (incarnation, function address), summed over CPUs: the
    /// table's cells, the hash map's entries and unloaded incarnations'
    /// kept totals. Incarnations unloaded since the last read are retired.
    pub fn call_counts(&mut self) -> Result<PerFunction, ProbeError> {
        let seen = self.seen()?;
        let mut counts = self.hashed_counts()?;
        let cells: PerCpuArray<&MapData, u64> = self.map(map::COUNTS)?;
        for &(incarnation, func_ip) in seen.keys() {
            if let Some(cell) = self.book.cell(incarnation, func_ip) {
                let values = cells.get(&cell, 0).map_err(err(map::COUNTS))?;
                *counts.entry((incarnation, func_ip)).or_default() += sum_cpus(&values);
            }
        }
        for incarnation in self.book.to_retire() {
            self.retire(incarnation, &counts, &seen)?;
        }
        for (key, total) in &self.book.retired_calls {
            counts.entry(*key).or_insert(*total);
        }
        Ok(counts)
    }

    /// Boot-clock time of each (incarnation, function)'s first call.
    pub fn first_uses(&self) -> Result<PerFunction, ProbeError> {
        let mut out = self.seen()?;
        out.extend(self.book.retired_first_uses.iter().map(|(k, v)| (*k, *v)));
        Ok(out)
    }

    fn seen(&self) -> Result<PerFunction, ProbeError> {
        let seen: HashMap<&MapData, CallKey, u64> = self.map(map::SEEN)?;
        read_entries(map::SEEN, seen.iter(), |key, ts| {
            ((key.incarnation, key.func_ip), ts)
        })
    }

    fn hashed_counts(&self) -> Result<PerFunction, ProbeError> {
        let calls: PerCpuHashMap<&MapData, CallKey, u64> = self.map(map::CALLS)?;
        read_entries(map::CALLS, calls.iter(), |key, values| {
            ((key.incarnation, key.func_ip), sum_cpus(&values))
        })
    }

    /// Keeps an unloaded incarnation's totals, removes its keys from the
    /// hash maps, zeroes its row's cells and frees the row.
    fn retire(
        &mut self,
        incarnation: u64,
        counts: &PerFunction,
        seen: &PerFunction,
    ) -> Result<(), ProbeError> {
        let row = self.book.retire(incarnation, counts, seen);
        // Each key once: most are in both maps.
        let keys: BTreeSet<(u64, u64)> = of_incarnation(counts, incarnation)
            .chain(of_incarnation(seen, incarnation))
            .map(|(key, _)| key)
            .collect();
        let keys: Vec<CallKey> = keys
            .into_iter()
            .map(|(incarnation, func_ip)| CallKey {
                incarnation,
                func_ip,
            })
            .collect();
        let mut calls: PerCpuHashMap<&mut MapData, CallKey, u64> = self.map_mut(map::CALLS)?;
        for key in &keys {
            let _ = calls.remove(key);
        }
        let mut first: HashMap<&mut MapData, CallKey, u64> = self.map_mut(map::SEEN)?;
        for key in &keys {
            let _ = first.remove(key);
        }
        let Some(row) = row else { return Ok(()) };
        let (config, used) = (self.book.config(), self.book.columns_used());
        let mut cells: PerCpuArray<&mut MapData, u64> = self.map_mut(map::COUNTS)?;
        for column in 0..used {
            if let Some(cell) = config.cell(row, column) {
                cells
                    .set(cell, zeroed_cell()?, 0)
                    .map_err(err(map::COUNTS))?;
            }
        }
        // Zeroed first: a new owner starts from nothing.
        let mut rows: Array<&mut MapData, u64> = self.map_mut(map::ROWS)?;
        rows.set(row, 0, 0).map_err(err(map::ROWS))
    }
}

/// The entries of one incarnation, which lead every key.
fn of_incarnation(
    map: &PerFunction,
    incarnation: u64,
) -> impl Iterator<Item = ((u64, u64), u64)> + '_ {
    map.range((incarnation, 0)..=(incarnation, u64::MAX))
        .map(|(k, v)| (*k, *v))
}

/// A cell's value with every CPU's count 0.
fn zeroed_cell() -> Result<PerCpuValues<u64>, ProbeError> {
    let io = |e| err(map::COUNTS)(MapError::IoError(e));
    let cpus = aya::util::nr_cpus().map_err(|(_, e)| io(e))?;
    PerCpuValues::try_from(vec![0u64; cpus]).map_err(io)
}

fn err(map: &'static str) -> impl Fn(MapError) -> ProbeError {
    move |source| ProbeError::Map { map, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shape_has_room_for_present_modules_loads_and_late_functions() {
        let t = shape(120, 64);
        assert_eq!(t.user_rows, 153);
        assert_eq!(t.rows, 153 + PROBE_ROWS);
        assert_eq!(t.columns, 128);
        assert_eq!(t.buckets(), 512);
        assert_eq!(shape(0, 5_000).columns, MAX_COLUMNS);
        assert!(shape(0, 5_000).bucket_bits <= 15);
    }

    #[test]
    fn functions_get_one_column_each_until_the_columns_run_out() {
        let mut book = CountBook::new(CountTableConfig {
            user_rows: 10,
            rows: 20,
            columns: 3,
            bucket_bits: 4,
        });
        let (bucket, entry) = book.place(0xffff_ffff_8100_0000).unwrap();
        assert_eq!(entry.column, 0);
        assert_eq!(bucket, book.config().bucket(0xffff_ffff_8100_0000, 0));
        assert_eq!(book.place(0xffff_ffff_8100_0000), None, "placed once");
        assert_eq!(book.place(0), None, "no function at 0");
        assert_eq!(book.place(0xffff_ffff_8100_0010).unwrap().1.column, 1);
        assert_eq!(book.place(0xffff_ffff_8100_0020).unwrap().1.column, 2);
        assert_eq!(book.place(0xffff_ffff_8100_0030), None, "columns used up");
        assert_eq!(book.columns_used(), 3);
    }

    #[test]
    fn a_function_whose_buckets_are_full_has_no_column() {
        let config = CountTableConfig {
            user_rows: 1,
            rows: 2,
            columns: 100,
            bucket_bits: 2,
        };
        let mut book = CountBook::new(config);
        // Four buckets, four probes: the fifth function finds none free.
        let placed = (1..=5u64)
            .map(|i| book.place(i * 0x1000).is_some())
            .collect::<Vec<_>>();
        assert_eq!(placed, [true, true, true, true, false]);
        for i in 1..=4u64 {
            let col = book.columns[&(i * 0x1000)];
            let found = (0..COLUMN_PROBES)
                .map(|p| book.buckets[config.bucket(i * 0x1000, p) as usize])
                .find(|b| b.func_ip == i * 0x1000);
            assert_eq!(
                found.map(|b| b.column),
                Some(col),
                "the probe's walk finds it"
            );
        }
    }

    #[test]
    fn cells_need_both_a_row_and_a_column() {
        let mut book = CountBook::new(shape(4, 2));
        book.place(0xa000);
        assert_eq!(book.user_row(3), Some(3));
        assert_eq!(book.user_row(500), None, "past user space's rows");
        assert_eq!(book.cell(3, 0xa000), None, "no row yet");
        book.owns(3, 3);
        assert_eq!(book.cell(3, 0xa000), book.config().cell(3, 0));
        assert_eq!(book.cell(3, 0xb000), None, "no column");
    }

    #[test]
    fn an_unloaded_incarnation_keeps_its_totals_and_gives_its_row_back() {
        let mut book = CountBook::new(shape(4, 2));
        book.owns(7_000_000_000, 40);
        book.owns(3, 3);
        book.unloaded(7_000_000_000);
        assert_eq!(book.to_retire(), vec![7_000_000_000]);
        let calls = PerFunction::from([
            ((3, 0xa000), 5),
            ((7_000_000_000, 0xa000), 11),
            ((7_000_000_000, 0xb000), 2),
        ]);
        let first = PerFunction::from([((7_000_000_000, 0xa000), 99), ((3, 0xa000), 1)]);
        assert_eq!(book.retire(7_000_000_000, &calls, &first), Some(40));
        assert!(book.to_retire().is_empty());
        assert_eq!(
            book.retired_calls,
            PerFunction::from([((7_000_000_000, 0xa000), 11), ((7_000_000_000, 0xb000), 2)])
        );
        assert_eq!(
            book.retired_first_uses,
            PerFunction::from([((7_000_000_000, 0xa000), 99)])
        );
        assert_eq!(book.cell(7_000_000_000, 0xa000), None, "its row is gone");
        assert_eq!(book.retire(3, &calls, &first), Some(3));
    }
}
