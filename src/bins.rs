//! Finding the `vswitchd` and `vswitchctl` binaries the tests drive.
//!
//! Integration tests of the root package cannot use `CARGO_BIN_EXE_*` for
//! binaries of other workspace members, so they look next to the test
//! executable (`target/<profile>/deps/..`), where `cargo test --workspace`
//! puts them. When they are missing or older than their sources (e.g. after
//! `cargo test -p vswitch`), they are built once per test process into
//! `target/e2e-bins` (a separate target dir, so the build does not wait for
//! the lock of the `cargo test` that runs us). `VSWITCHD_BIN` and
//! `VSWITCHCTL_BIN` override both paths.

use std::path::{Path, PathBuf};
use std::process::Command;
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
    /// The binaries to test, building them first if needed. Panics with the
    /// build's output if they cannot be found or built.
    pub fn get() -> &'static Binaries {
        static BINS: OnceLock<Binaries> = OnceLock::new();
        BINS.get_or_init(|| locate().unwrap_or_else(|e| panic!("cannot find vswitchd/vswitchctl: {e}")))
    }
}

/// The workspace root (this package's manifest dir).
fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
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
    let beside = in_dir(&profile_dir);
    let newest_source = newest_mtime(&source_paths());
    if fresh(&beside, newest_source) {
        return Ok(beside);
    }
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let target = profile_dir.parent().ok_or("profile dir has no parent")?.join("e2e-bins");
    build(&target, release)?;
    let built = in_dir(&target.join(if release { "release" } else { "debug" }));
    if built.vswitchd.is_file() && built.vswitchctl.is_file() {
        Ok(built)
    } else {
        Err(format!("cargo build succeeded but {built:?} do not exist"))
    }
}

fn in_dir(dir: &Path) -> Binaries {
    Binaries { vswitchd: dir.join("vswitchd"), vswitchctl: dir.join("vswitchctl") }
}

/// True if both binaries exist and are newer than every source file.
fn fresh(b: &Binaries, newest_source: Option<SystemTime>) -> bool {
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (mtime(&b.vswitchd), mtime(&b.vswitchctl), newest_source) {
        (Some(d), Some(c), Some(src)) => d >= src && c >= src,
        (Some(_), Some(_), None) => true,
        _ => false,
    }
}

/// The files the binaries are built from.
fn source_paths() -> Vec<PathBuf> {
    let root = workspace_root();
    // The binaries' crates and every workspace crate they link.
    [
        "switch/src",
        "ctl/src",
        "dns/src",
        "vxlan/src",
        "crypto/src",
        "cluster/src",
        "switch/Cargo.toml",
        "ctl/Cargo.toml",
        "dns/Cargo.toml",
        "vxlan/Cargo.toml",
        "crypto/Cargo.toml",
        "cluster/Cargo.toml",
        "Cargo.lock",
    ]
    .iter()
    .map(|p| root.join(p))
    .collect()
}

/// Newest modification time of the files under `paths` (recursively).
fn newest_mtime(paths: &[PathBuf]) -> Option<SystemTime> {
    let mut newest = None;
    let mut stack: Vec<PathBuf> = paths.to_vec();
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::metadata(&p) else { continue };
        if meta.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.filter_map(|e| e.ok().map(|e| e.path())));
            }
        } else if let Ok(m) = meta.modified() {
            newest = newest.max(Some(m));
        }
    }
    newest
}

/// `cargo build -p switch -p ctl --bins` into `target_dir`.
fn build(target_dir: &Path, release: bool) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root())
        .args(["build", "-p", "switch", "-p", "ctl", "--bins"])
        .env("CARGO_TARGET_DIR", target_dir);
    if release {
        cmd.arg("--release");
    }
    eprintln!("vswitch test support: building the binaries: {cmd:?}");
    let out = cmd.output().map_err(|e| format!("cannot run cargo: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed:\n{}", String::from_utf8_lossy(&out.stderr)))
    }
}
