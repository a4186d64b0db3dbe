//! Finding the `vswitchd` and `vswitchctl` binaries the tests drive.
//!
//! Integration tests of the root package cannot use `CARGO_BIN_EXE_*` for
//! binaries of other workspace members, so they look next to the test
//! executable (`target/<profile>/deps/..`), where `cargo build --workspace
//! --bins` and `cargo test --workspace` put them. `VSWITCHD_BIN` and
//! `VSWITCHCTL_BIN` override both paths.
//!
//! A binary older than one of the files it was built from is refused with
//! the command that rebuilds it, never rebuilt behind the test's back: a
//! build started from inside a test (into a separate target dir, as the
//! lock of the `cargo test` running us is held) made the first test of a
//! run take up to 699 s on a loaded machine, the tests of other processes
//! wait for its lock, and it looked like a slow datapath. "The files it was
//! built from" are the ones cargo lists in the binary's dep-info
//! (`target/<profile>/vswitchd.d`): a test-only module (`#[cfg(test)]`) is
//! not one of them, so editing a unit test does not make a binary stale.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::SystemTime;

/// Paths of the two binaries under test.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// The daemon.
    pub vswitchd: PathBuf,
    /// The admin tool.
    pub vswitchctl: PathBuf,
}

impl Binaries {
    /// The binaries to test. Panics, saying how to build them, if they are
    /// missing or older than their sources.
    pub fn get() -> &'static Binaries {
        static BINS: OnceLock<Binaries> = OnceLock::new();
        BINS.get_or_init(|| locate().unwrap_or_else(|e| panic!("{e}")))
    }
}

fn locate() -> Result<Binaries, String> {
    if let (Some(d), Some(c)) = (std::env::var_os("VSWITCHD_BIN"), std::env::var_os("VSWITCHCTL_BIN")) {
        return Ok(Binaries { vswitchd: d.into(), vswitchctl: c.into() });
    }
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    // target/<profile>/deps/<test> -> target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(|deps| if deps.ends_with("deps") { deps.parent() } else { Some(deps) })
        .ok_or("test executable has no parent directory")?
        .to_path_buf();
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let build = if release { "cargo build --workspace --bins --release" } else { "cargo build --workspace --bins" };
    let bins = Binaries { vswitchd: profile_dir.join("vswitchd"), vswitchctl: profile_dir.join("vswitchctl") };
    for binary in [&bins.vswitchd, &bins.vswitchctl] {
        if let Some(why) = stale(binary) {
            return Err(format!(
                "{why}: run `{build}` before the end-to-end tests (scripts/test does), or point VSWITCHD_BIN and \
                 VSWITCHCTL_BIN at binaries to test"
            ));
        }
    }
    Ok(bins)
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Why `binary` cannot be tested as it is (missing, or older than one of
/// the files its dep-info lists); `None` when it is up to date.
fn stale(binary: &Path) -> Option<String> {
    let Some(built) = mtime(binary) else {
        return Some(format!("{} does not exist", binary.display()));
    };
    // Without dep-info (a binary not built by cargo) there is nothing to
    // compare with: it is taken as it is.
    let deps = std::fs::read_to_string(binary.with_extension("d")).ok()?;
    let newer = dep_info_inputs(&deps).into_iter().find(|input| mtime(input).is_none_or(|m| m > built))?;
    Some(format!("{} is older than {} (or that file is gone)", binary.display(), newer.display()))
}

/// The input files of a Makefile-style dep-info file as cargo writes it
/// (`target: input input ...`, spaces in paths escaped with `\`).
fn dep_info_inputs(text: &str) -> Vec<PathBuf> {
    let Some(line) = text.lines().next() else { return Vec::new() };
    // The target's own path is followed by ": ".
    let Some((_, inputs)) = line.split_once(": ") else { return Vec::new() };
    let mut paths = Vec::new();
    let mut current = String::new();
    let mut chars = inputs.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.extend(chars.next()),
            ' ' => {
                if !current.is_empty() {
                    paths.push(PathBuf::from(std::mem::take(&mut current)));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        paths.push(PathBuf::from(current));
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dep_info_lists_the_inputs_with_escaped_spaces() {
        let text = "/t/debug/vswitchd: /src/a.rs /src/my\\ dir/b.rs  /src/c.rs\n";
        let inputs = dep_info_inputs(text);
        assert_eq!(inputs, [PathBuf::from("/src/a.rs"), PathBuf::from("/src/my dir/b.rs"), PathBuf::from("/src/c.rs")]);
        assert!(dep_info_inputs("").is_empty());
    }

    #[test]
    fn a_binary_older_than_an_input_is_stale_and_a_missing_one_too() {
        let dir = std::env::temp_dir().join(format!("vswitch-bins-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (binary, input) = (dir.join("tool"), dir.join("main.rs"));
        std::fs::write(&input, "fn main() {}").unwrap();
        std::fs::write(&binary, "binary").unwrap();
        std::fs::write(dir.join("tool.d"), format!("{}: {}\n", binary.display(), input.display())).unwrap();
        let later = SystemTime::now() + std::time::Duration::from_secs(60);
        std::fs::File::options().write(true).open(&binary).unwrap().set_modified(later).unwrap();
        assert_eq!(stale(&binary), None, "built after its input");
        let even_later = later + std::time::Duration::from_secs(60);
        std::fs::File::options().write(true).open(&input).unwrap().set_modified(even_later).unwrap();
        assert!(stale(&binary).is_some_and(|why| why.contains("main.rs")), "its input changed since");
        assert!(stale(&dir.join("missing")).is_some_and(|why| why.contains("does not exist")));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
