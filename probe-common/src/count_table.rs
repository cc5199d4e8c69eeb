//! The count table: calls per (module row, function column) in a per-CPU
//! array, so the hot path counts a call with array lookups and no hash map.
//!
//! - A module's row is fixed by its incarnation (`CountTableConfig::row`):
//!   modules loaded before the session have user space's small ids, which
//!   are their rows; a load the probes see gets `user_rows + incarnation %
//!   probe_rows`. `ROWS[row]` says which incarnation owns the row; the load
//!   path claims a free row (0) with a compare-and-swap, and user space
//!   frees it once the unloaded incarnation's totals are read and its cells
//!   zeroed.
//! - A function's column is found in `COLUMNS`, a small open-addressed
//!   table keyed by the function's address: its bucket is the address
//!   times a constant, shifted (`CountTableConfig::bucket`), then at most
//!   [`COLUMN_PROBES`] neighbours. User space fills it before it attaches
//!   the function.
//!
//! A call whose module has no row (its row is taken) or whose function has
//! no column is counted in the `CALLS` hash map instead: the table is the
//! fast path, never a limit on what is counted.

/// Values the loader writes into each fentry copy of the call counter
/// (one copy per traced function, `probe-user`'s `program_copy`): the
/// 64-bit immediates that hold these markers become the function's
/// address and its column, so that copy neither asks for the address nor
/// searches `COLUMNS`.
pub mod copy_constant {
    /// The traced function's address.
    pub const FUNC_IP: u64 = 0x4d53_4649_5000_0001;
    /// Its column, or [`NO_COLUMN`].
    pub const COLUMN: u64 = 0x4d53_434f_4c00_0002;
    /// A function without a column: its calls go to the hash map.
    pub const NO_COLUMN: u64 = u32::MAX as u64;
}

/// Buckets `COLUMNS` looks at for one function, from its own on.
pub const COLUMN_PROBES: u32 = 4;

/// Fibonacci hashing's multiplier (2^64 / the golden ratio, odd).
const SPREAD: u64 = 0x9e37_79b9_7f4a_7c15;

/// One `COLUMNS` bucket: a function's address and its column; an empty
/// bucket has address 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FunctionColumn {
    pub func_ip: u64,
    pub column: u32,
    pub _pad: u32,
}

/// The table's shape, written by the loader.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CountTableConfig {
    /// Rows `[0, user_rows)` belong to user space's ids (modules loaded
    /// before the session); the rest to loads the probes see.
    pub user_rows: u32,
    /// All rows: `ROWS` has this many entries.
    pub rows: u32,
    /// Columns per row: `COUNTS` has `rows * columns` cells.
    pub columns: u32,
    /// log2 of `COLUMNS`' buckets (at most 16).
    pub bucket_bits: u32,
}

impl CountTableConfig {
    /// No table: every call goes to the hash map.
    pub const UNSET: Self = Self {
        user_rows: 0,
        rows: 0,
        columns: 0,
        bucket_bits: 0,
    };

    /// The only row `incarnation` can own, if the table has one for it.
    #[inline(always)]
    pub fn row(&self, incarnation: u64) -> Option<u32> {
        if incarnation == 0 {
            return None;
        }
        if incarnation < u64::from(self.user_rows) {
            return Some(incarnation as u32);
        }
        let probe_rows = self.rows.checked_sub(self.user_rows)?;
        if probe_rows == 0 || incarnation < u64::from(self.rows) {
            return None;
        }
        Some(self.user_rows + (incarnation % u64::from(probe_rows)) as u32)
    }

    /// `COUNTS`' index of (row, column).
    #[inline(always)]
    pub fn cell(&self, row: u32, column: u32) -> Option<u32> {
        if row >= self.rows || column >= self.columns {
            return None;
        }
        Some(row * self.columns + column)
    }

    /// `COLUMNS`' buckets.
    #[inline(always)]
    pub fn buckets(&self) -> u32 {
        1 << (self.bucket_bits & 15)
    }

    /// The `probe`th bucket (0-based) a function's column may be in.
    #[inline(always)]
    pub fn bucket(&self, func_ip: u64, probe: u32) -> u32 {
        let bits = self.bucket_bits & 15;
        if bits == 0 {
            return 0;
        }
        let home = (func_ip.wrapping_mul(SPREAD) >> (64 - bits)) as u32;
        (home + probe) & (self.buckets() - 1)
    }
}

const _: () = assert!(core::mem::size_of::<FunctionColumn>() == 16);
const _: () = assert!(core::mem::size_of::<CountTableConfig>() == 16);

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;

    const TABLE: CountTableConfig = CountTableConfig {
        user_rows: 256,
        rows: 1024,
        columns: 128,
        bucket_bits: 10,
    };

    #[test]
    fn user_ids_are_their_rows_and_loads_share_the_rest() {
        assert_eq!(TABLE.row(0), None, "0 is no incarnation");
        assert_eq!(TABLE.row(1), Some(1));
        assert_eq!(TABLE.row(255), Some(255));
        assert_eq!(
            TABLE.row(256),
            None,
            "past user space's rows, too small for a load time"
        );
        assert_eq!(
            TABLE.row(5_000_000_000),
            Some(256 + (5_000_000_000u64 % 768) as u32)
        );
        for incarnation in [1_000_000_007u64, 9_999_999_999_999, u64::MAX] {
            let row = TABLE.row(incarnation).unwrap();
            assert!((256..1024).contains(&row), "{incarnation} -> {row}");
        }
        assert_eq!(CountTableConfig::UNSET.row(5_000_000_000), None);
    }

    #[test]
    fn cells_stay_inside_the_array() {
        assert_eq!(TABLE.cell(0, 0), Some(0));
        assert_eq!(TABLE.cell(3, 5), Some(3 * 128 + 5));
        assert_eq!(TABLE.cell(1023, 127), Some(1024 * 128 - 1));
        assert_eq!(TABLE.cell(1024, 0), None);
        assert_eq!(TABLE.cell(0, 128), None);
    }

    #[test]
    fn buckets_wrap_and_spread_aligned_addresses() {
        let mut homes = std::collections::BTreeSet::new();
        for i in 0..64u64 {
            let b = TABLE.bucket(0xffff_ffff_8100_0000 + i * 16, 0);
            assert!(b < 1024);
            homes.insert(b);
        }
        assert!(
            homes.len() > 56,
            "16-byte-aligned functions collide: {}",
            homes.len()
        );
        let last = TABLE.buckets() - 1;
        let f = (0..u64::MAX)
            .step_by(4099)
            .find(|&f| TABLE.bucket(f, 0) == last)
            .unwrap();
        assert_eq!(TABLE.bucket(f, 1), 0);
    }
}
