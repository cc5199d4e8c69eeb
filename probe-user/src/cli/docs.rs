//! What the binary says about itself, for shells and packages: completions
//! (`modscope completions SHELL`) and man pages (`modscope manpages DIR`,
//! hidden: `cargo xtask dist` runs it), both made from the one clap
//! definition, so they never disagree with `--help`.

use std::{io::Write as _, path::Path};

use anyhow::Context as _;

/// Prints `shell`'s completion script for `cmd`.
pub fn completions(mut cmd: clap::Command, shell: clap_complete::Shell) -> anyhow::Result<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "modscope", &mut script);
    std::io::stdout()
        .lock()
        .write_all(&script)
        .context("writing to standard output")?;
    Ok(0)
}

/// Writes `modscope.1` and `modscope-SUBCOMMAND.1` for each visible
/// subcommand into `dir`.
pub fn manpages(cmd: clap::Command, dir: &Path) -> anyhow::Result<u8> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = cmd.version(env!("CARGO_PKG_VERSION"));
    // Adds `help`, which the main page lists among the subcommands.
    cmd.build();
    write_page(cmd.clone(), &dir.join("modscope.1"))?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("modscope-{}", sub.get_name());
        let page = sub
            .clone()
            .name(name.clone())
            .bin_name(format!("modscope {}", sub.get_name()))
            .version(env!("CARGO_PKG_VERSION"));
        write_page(page, &dir.join(format!("{name}.1")))?;
    }
    Ok(0)
}

fn write_page(cmd: clap::Command, path: &Path) -> anyhow::Result<()> {
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd)
        .section("1")
        .manual("modscope")
        .render(&mut page)
        .with_context(|| format!("rendering {}", path.display()))?;
    std::fs::write(path, page).with_context(|| format!("writing {}", path.display()))
}
