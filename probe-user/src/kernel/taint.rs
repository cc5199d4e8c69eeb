//! The kernel's taint flags, as letters. The order and letters follow
//! `taint_flags[]` in kernel/panic.c; `mod->taints` uses the same bits.

/// (bit, letter) in the kernel's print order.
const TAINT_LETTERS: [(u32, char); 19] = [
    (0, 'P'),  // PROPRIETARY_MODULE
    (1, 'F'),  // FORCED_MODULE
    (2, 'S'),  // CPU_OUT_OF_SPEC
    (3, 'R'),  // FORCED_RMMOD
    (4, 'M'),  // MACHINE_CHECK
    (5, 'B'),  // BAD_PAGE
    (6, 'U'),  // USER
    (7, 'D'),  // DIE
    (8, 'A'),  // OVERRIDDEN_ACPI_TABLE
    (9, 'W'),  // WARN
    (10, 'C'), // CRAP (staging)
    (11, 'I'), // FIRMWARE_WORKAROUND
    (12, 'O'), // OOT_MODULE
    (13, 'E'), // UNSIGNED_MODULE
    (14, 'L'), // SOFTLOCKUP
    (15, 'K'), // LIVEPATCH
    (16, 'X'), // AUX
    (17, 'T'), // RANDSTRUCT
    (18, 'N'), // TEST
];

/// Letters for every set bit, in the kernel's order. Bits the table does
/// not know (a newer kernel) are shown as `?` rather than dropped.
pub fn letters(mask: u64) -> String {
    let mut out: String = TAINT_LETTERS
        .iter()
        .filter(|(bit, _)| mask & (1 << bit) != 0)
        .map(|&(_, c)| c)
        .collect();
    let known: u64 = TAINT_LETTERS.iter().map(|(bit, _)| 1u64 << bit).sum();
    if mask & !known != 0 {
        out.push('?');
    }
    out
}

/// The inverse of [`letters`], for what `/proc/modules` and
/// `/sys/module/*/taint` print. Unknown letters are ignored.
pub fn mask_from_letters(s: &str) -> u64 {
    s.chars()
        .filter_map(|c| TAINT_LETTERS.iter().find(|(_, l)| *l == c))
        .fold(0, |mask, (bit, _)| mask | (1 << bit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_tree_unsigned_module() {
        assert_eq!(letters((1 << 12) | (1 << 13)), "OE");
    }

    #[test]
    fn forced_proprietary_prints_in_kernel_order() {
        assert_eq!(letters((1 << 13) | (1 << 1) | 1), "PFE");
    }

    #[test]
    fn unknown_bits_are_visible() {
        assert_eq!(letters(1 << 40), "?");
    }

    #[test]
    fn letters_round_trip() {
        for mask in [0u64, 1, 0b11, 0x7ffff, (1 << 12) | (1 << 13)] {
            assert_eq!(mask_from_letters(&letters(mask)), mask);
        }
    }
}
