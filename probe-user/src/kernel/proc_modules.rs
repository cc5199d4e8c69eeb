//! `/proc/modules`, the kernel's list of loaded modules.

use std::path::Path;

use crate::kernel::taint;

#[derive(Debug, thiserror::Error)]
pub enum ProcModulesError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {why}: {text:?}")]
    Malformed {
        path: String,
        line: usize,
        why: &'static str,
        text: String,
    },
}

/// One line: `name size refcount deps state address [(taints)]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedModule {
    pub name: String,
    /// Core allocation size (all of core, not only text).
    pub size: u64,
    pub state: String,
    /// Core text base; 0 when the reader lacks the privilege to see it.
    pub address: u64,
    pub taints: u64,
}

pub fn parse(text: &str, path: &str) -> Result<Vec<LoadedModule>, ProcModulesError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            parse_line(line).map_err(|why| ProcModulesError::Malformed {
                path: path.to_owned(),
                line: i + 1,
                why,
                text: line.to_owned(),
            })
        })
        .collect()
}

fn parse_line(line: &str) -> Result<LoadedModule, &'static str> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() < 6 {
        return Err("fewer than six fields");
    }
    let size = fields[1].parse().map_err(|_| "size is not a number")?;
    let address = u64::from_str_radix(fields[5].trim_start_matches("0x"), 16)
        .map_err(|_| "address is not hexadecimal")?;
    let taints = fields
        .get(6)
        .map(|t| taint::mask_from_letters(t.trim_matches(|c| c == '(' || c == ')')))
        .unwrap_or(0);
    Ok(LoadedModule {
        name: fields[0].to_owned(),
        size,
        state: fields[4].to_owned(),
        address,
        taints,
    })
}

pub fn read(path: &Path) -> Result<Vec<LoadedModule>, ProcModulesError> {
    let shown = path.display().to_string();
    let text = super::text_file::read(path).map_err(|source| ProcModulesError::Read {
        path: shown.clone(),
        source,
    })?;
    parse(&text, &shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_lines() {
        let text = "modscope_hello 16384 0 - Live 0xffffffffc0a5e000 (OE)\n\
                    virtio_net 69632 0 - Live 0xffffffffc0140000\n";
        let mods = parse(text, "/proc/modules").unwrap();
        assert_eq!(mods.len(), 2);
        assert_eq!(mods[0].name, "modscope_hello");
        assert_eq!(mods[0].address, 0xffff_ffff_c0a5_e000);
        assert_eq!(taint::letters(mods[0].taints), "OE");
        assert_eq!(mods[1].taints, 0);
        assert_eq!(mods[1].size, 69632);
    }

    #[test]
    fn unprivileged_view_has_zero_addresses() {
        let mods = parse("x 4096 0 - Live 0x0000000000000000", "m").unwrap();
        assert_eq!(mods[0].address, 0);
    }

    #[test]
    fn malformed_line_names_file_and_line() {
        let err = parse("ok 1 0 - Live 0x0\nbroken line\n", "/proc/modules").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/proc/modules line 2"), "{msg}");
        assert!(msg.contains("fewer than six fields"), "{msg}");
    }
}
