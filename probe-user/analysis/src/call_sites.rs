//! How a module's code reaches its imports: through a call, or through a
//! tail call, a jump whose callee returns straight to the module's own
//! caller. A kprobe on the callee then sees a return address in the
//! kernel, not in the module, so the call is credited to the caller: such
//! an import is never "unused" however its counter reads.
//!
//! Read from the relocations against undefined symbols in code sections:
//! on x86-64 a `jmp rel32` (`e9`) or `jcc rel32` (`0f 8x`) before the
//! relocated operand, where a call has `e8`; on arm64 `R_AARCH64_JUMP26`
//! (`b`), where a call is `R_AARCH64_CALL26` (`bl`).

use std::collections::BTreeSet;

use object::{
    Object as _, ObjectSection as _, ObjectSymbol as _, RelocationFlags, RelocationTarget,
    SectionKind, elf,
};

use super::ko_file::KoError;

/// The imports some code of `image` (an uncompressed module) reaches by a tail call.
pub fn tail_called_imports(image: &[u8]) -> Result<BTreeSet<String>, KoError> {
    let file = object::File::parse(image).map_err(|e| KoError::Elf(e.to_string()))?;
    let arch = file.architecture();
    let mut out = BTreeSet::new();
    for section in file.sections().filter(|s| s.kind() == SectionKind::Text) {
        let code = section
            .data()
            .map_err(|e| KoError::Elf(format!("code section: {e}")))?;
        for (offset, reloc) in section.relocations() {
            let (RelocationTarget::Symbol(index), RelocationFlags::Elf { r_type }) =
                (reloc.target(), reloc.flags())
            else {
                continue;
            };
            let Ok(symbol) = file.symbol_by_index(index) else {
                continue;
            };
            if !symbol.is_undefined() {
                continue;
            }
            let at = usize::try_from(offset).unwrap_or(usize::MAX);
            let jump = match arch {
                object::Architecture::X86_64 => x86_jump_before(code, at, r_type),
                object::Architecture::Aarch64 => r_type == elf::R_AARCH64_JUMP26,
                _ => false,
            };
            if jump && let Ok(name) = symbol.name() {
                out.insert(name.to_owned());
            }
        }
    }
    Ok(out)
}

/// Whether the rel32 operand at `at` belongs to a `jmp` or `jcc`.
fn x86_jump_before(code: &[u8], at: usize, r_type: u32) -> bool {
    if !matches!(r_type, elf::R_X86_64_PLT32 | elf::R_X86_64_PC32) {
        return false;
    }
    let byte = |back: usize| at.checked_sub(back).and_then(|i| code.get(i)).copied();
    byte(1) == Some(0xe9) || (byte(2) == Some(0x0f) && byte(1).is_some_and(|b| b & 0xf0 == 0x80))
}

#[cfg(test)]
mod tests {
    use object::{
        Architecture, BinaryFormat, Endianness,
        write::{Object, Relocation, StandardSection},
    };

    use super::*;

    /// A module's code with one relocated site per (code bytes, import, r_type).
    fn object_with(arch: Architecture, sites: &[(&[u8], &str, u32)]) -> Vec<u8> {
        let mut obj = Object::new(BinaryFormat::Elf, arch, Endianness::Little);
        let text = obj.section_id(StandardSection::Text);
        for (code, import, r_type) in sites {
            let symbol = obj.add_symbol(crate::fixtures::import(import));
            let start = obj.append_section_data(text, code, 1);
            // The operand follows the opcode: the last four bytes (x86), or
            // the whole instruction (arm64).
            let operand = if arch == Architecture::X86_64 {
                code.len() - 4
            } else {
                0
            };
            obj.add_relocation(
                text,
                Relocation {
                    offset: start + operand as u64,
                    symbol,
                    addend: -4,
                    flags: RelocationFlags::Elf { r_type: *r_type },
                },
            )
            .unwrap();
        }
        obj.write().unwrap()
    }

    #[test]
    fn x86_jumps_to_imports_are_tail_calls_and_calls_are_not() {
        let image = object_with(
            Architecture::X86_64,
            &[
                (&[0xe8, 0, 0, 0, 0], "kmalloc", elf::R_X86_64_PLT32),
                (&[0xe9, 0, 0, 0, 0], "proc_remove", elf::R_X86_64_PLT32),
                (&[0x0f, 0x85, 0, 0, 0, 0], "kfree", elf::R_X86_64_PC32),
                // A RIP-relative load of an import's address is no jump.
                (
                    &[0x48, 0x8b, 0x05, 0, 0, 0, 0],
                    "jiffies",
                    elf::R_X86_64_PC32,
                ),
            ],
        );
        let tail: Vec<String> = tail_called_imports(&image).unwrap().into_iter().collect();
        assert_eq!(tail, ["kfree", "proc_remove"]);
    }

    #[test]
    fn arm64_b_is_a_tail_call_and_bl_is_not() {
        let image = object_with(
            Architecture::Aarch64,
            &[
                (&[0, 0, 0, 0x94], "kmalloc", elf::R_AARCH64_CALL26),
                (&[0, 0, 0, 0x14], "proc_remove", elf::R_AARCH64_JUMP26),
            ],
        );
        let tail: Vec<String> = tail_called_imports(&image).unwrap().into_iter().collect();
        assert_eq!(tail, ["proc_remove"]);
    }
}
