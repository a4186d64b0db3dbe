//! The apply journal: what a `stack_apply` (or a single `sandbox create`,
//! `sandbox rm`, `network connect` or `network disconnect`) is about to
//! make or destroy on the host (namespaces, TAP devices, AF_XDP veths),
//! written to the state directory before the first side effect and removed
//! once the change is committed or rolled back. A daemon killed in between
//! finds it at start and, before restoring, destroys every journaled device
//! and namespace that the saved state does not hold; the restore then
//! re-plumbs what the saved state holds and the host lacks. So a `kill -9`
//! mid-request leaves the old state or the new one, never a mix and nothing
//! leaked.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::daemon::plumbing;
use crate::model::{Endpoint, Model, Sandbox};
use crate::sys::netlink::{Netlink, NetlinkError};
use crate::sys::netns::{self, NetNs};
use crate::sys::tap::{Tap, TapMode, TapOptions};

/// The journal's file name in the state directory.
pub(crate) const JOURNAL_FILE: &str = "apply.journal";

/// One endpoint device a transaction creates or destroys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JournalTap {
    /// The sandbox's namespace.
    pub(crate) netns_path: PathBuf,
    /// Its name inside the sandbox (`eth0`).
    pub(crate) ifname: String,
    /// Its name before it was moved there (`vsw…`), which is also the
    /// endpoint's identity in the state.
    pub(crate) tap: String,
    /// An AF_XDP endpoint's veth pair, not a TAP: its host end keeps the
    /// name `tap` in the daemon's namespace, and deleting it deletes both.
    #[serde(default)]
    pub(crate) veth: bool,
}

impl JournalTap {
    pub(crate) fn of(endpoint: &Endpoint, sandbox: &Sandbox) -> Self {
        Self {
            netns_path: sandbox.netns_path.clone(),
            ifname: endpoint.ifname_in_sandbox.clone(),
            tap: endpoint.host_tap_name.clone(),
            veth: endpoint.port_type == ctl::proto::PortType::Afxdp,
        }
    }
}

/// What one transaction touches on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Journal {
    /// Sandboxes it creates (their namespaces and resolver files).
    pub(crate) sandboxes: Vec<Sandbox>,
    /// Endpoint devices it creates or destroys.
    pub(crate) taps: Vec<JournalTap>,
}

fn path(dir: &Path) -> PathBuf {
    dir.join(JOURNAL_FILE)
}

impl Journal {
    /// Whether there is nothing to record.
    pub(crate) fn is_empty(&self) -> bool {
        self.sandboxes.is_empty() && self.taps.is_empty()
    }

    /// Writes the journal durably (file and directory synced) before the
    /// transaction's first side effect. A directory that cannot be synced
    /// is logged, not refused, as [`crate::model::Store::save`] does: the
    /// file is there for any restart; only a power loss could lose it.
    pub(crate) fn write(&self, dir: &Path) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path(dir))?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
            tracing::error!(dir = %dir.display(), error = %e, "journal written, but its directory could not be synced");
        }
        Ok(())
    }

    /// Removes the journal once the transaction is over.
    pub(crate) fn remove(dir: &Path) {
        match fs::remove_file(path(dir)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::error!(error = %e, "cannot remove the apply journal"),
        }
    }

    /// Reads a journal left by a daemon that died mid-apply.
    fn read(dir: &Path) -> Option<Journal> {
        let bytes = match fs::read(path(dir)) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the apply journal");
                return None;
            }
        };
        match serde_json::from_slice(&bytes) {
            Ok(j) => Some(j),
            // A journal cut short by the crash: its transaction made nothing yet.
            Err(e) => {
                tracing::warn!(error = %e, "ignoring an unreadable apply journal");
                None
            }
        }
    }
}

/// At start, before the restore: undoes what an interrupted `stack_apply`
/// made on the host that `model` (the saved state) does not hold, and
/// removes the journal.
pub(crate) fn recover(dir: &Path, model: &Model) {
    let Some(journal) = Journal::read(dir) else { return };
    tracing::warn!(
        sandboxes = journal.sandboxes.len(),
        devices = journal.taps.len(),
        "an apply was interrupted: removing what the saved state does not hold"
    );
    for t in &journal.taps {
        if model.endpoint_by_tap(&t.tap).is_some() {
            continue;
        }
        if t.veth {
            match Netlink::open().and_then(|mut nl| nl.delete_link(&t.tap)) {
                Ok(()) => tracing::info!(device = %t.tap, "removed the veth pair of an unfinished change"),
                Err(NetlinkError::NoSuchLink(_)) => {}
                Err(e) => tracing::error!(device = %t.tap, error = %e, "cannot remove a veth of an unfinished change"),
            }
            continue;
        }
        // Still in this namespace (created, not yet moved)?
        destroy_named(&t.tap);
        // Moved into its sandbox: under either name. If the saved state has
        // another endpoint there under that name (one this apply replaced),
        // the restore plumbs it again.
        if let Ok(ns) = NetNs::open_path(&t.netns_path) {
            for name in [t.ifname.clone(), t.tap.clone()] {
                match netns::run_in(&ns, move || destroy_named(&name)) {
                    Ok(()) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot enter a sandbox to clean it"),
                }
            }
        }
    }
    for s in &journal.sandboxes {
        if model.sandbox(&s.name).is_ok() {
            continue;
        }
        if let Err(e) = plumbing::remove_sandbox_netns(s) {
            tracing::error!(sandbox = %s.name, error = %e, "cannot remove the namespace of an unfinished apply");
        }
    }
    Journal::remove(dir);
}

/// Deletes the persistent TAP called `name` in the current namespace, if
/// there is one (any other device of that name is left alone).
fn destroy_named(name: &str) {
    if let Ok(tap) = Tap::create(name, TapOptions { persist: true, mode: TapMode::AttachExisting }) {
        tracing::info!(device = name, "removing a device of an unfinished apply");
        plumbing::destroy_tap(tap);
    }
}
