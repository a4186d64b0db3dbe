//! The committed seed corpus of one fuzz target (`fuzz/corpus/<target>/`), as every crate's
//! `tests/fuzz_corpus.rs` checks it: read a seed by name, check that the directory holds
//! exactly the seeds its generator writes (no stale or missing file, same bytes), and write
//! them again when `VSWITCH_REGENERATE_SEEDS` is set. Each test includes this file by path
//! (`#[path = "../../fuzz/harness/corpus.rs"] mod corpus;`), as it includes its target's
//! harness, so one copy serves every crate.

// Each including test uses the part it needs (a corpus without a generator only reads).
#![allow(dead_code)]

use std::path::PathBuf;

/// The environment variable that makes [`Corpus::regenerate`] write the seeds.
pub(crate) const REGENERATE: &str = "VSWITCH_REGENERATE_SEEDS";

/// The seed directory of one fuzz target.
pub(crate) struct Corpus {
    dir: PathBuf,
}

impl Corpus {
    /// The corpus of `target`, seen from the crate whose manifest directory is `manifest_dir`
    /// (pass `env!("CARGO_MANIFEST_DIR")`; every crate sits next to `fuzz/`).
    pub(crate) fn new(manifest_dir: &str, target: &str) -> Self {
        Self { dir: PathBuf::from(manifest_dir).join("../fuzz/corpus").join(target) }
    }

    /// The bytes of seed `name`; panics naming the file when it cannot be read.
    pub(crate) fn read(&self, name: &str) -> Vec<u8> {
        let path = self.dir.join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Asserts that the directory holds exactly the files `names`, in any order.
    pub(crate) fn assert_names<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let mut on_disk: Vec<String> =
            std::fs::read_dir(&self.dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        on_disk.sort();
        let mut want: Vec<String> = names.into_iter().map(str::to_owned).collect();
        want.sort();
        assert_eq!(on_disk, want, "{}: the seed files differ from the named seeds", self.dir.display());
    }

    /// Asserts that the directory holds exactly `seeds`: the same names, each with the same
    /// bytes as its generator makes.
    pub(crate) fn assert_holds_exactly(&self, seeds: &[(&str, Vec<u8>)]) {
        self.assert_names(seeds.iter().map(|(name, _)| *name));
        for (name, bytes) in seeds {
            assert_eq!(&self.read(name), bytes, "{name} differs from its generator: regenerate the seeds");
        }
    }

    /// Writes `seeds` (creating the directory) when [`REGENERATE`] is set; does nothing
    /// otherwise, so that an `--ignored` run without it leaves the corpus alone.
    pub(crate) fn regenerate<'a>(&self, seeds: impl FnOnce() -> Vec<(&'a str, Vec<u8>)>) {
        if std::env::var_os(REGENERATE).is_none() {
            return;
        }
        std::fs::create_dir_all(&self.dir).unwrap();
        for (name, bytes) in seeds() {
            std::fs::write(self.dir.join(name), bytes).unwrap();
        }
    }
}
