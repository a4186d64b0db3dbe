//! Test support: a control plane over a real (unprivileged) datapath thread
//! and a scratch state directory, removed on drop.

use super::Control;

/// A control plane with its own state directory (see the module docs).
pub(super) struct Scratch {
    /// The state directory.
    pub(super) dir: std::path::PathBuf,
    control: Option<Control>,
}

impl Scratch {
    /// A fresh control plane in a directory named after `tag`.
    pub(super) fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("vsw-control-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (store, model) = crate::model::Store::open(&dir).unwrap();
        let datapath =
            crate::daemon::datapath::DatapathHandle::spawn(None, None, Vec::new(), Default::default()).unwrap();
        let control = Control::restore(store, model, datapath, None, false, Vec::new()).unwrap();
        Scratch { dir, control: Some(control) }
    }

    /// The control plane.
    pub(super) fn c(&mut self) -> &mut Control {
        self.control.as_mut().unwrap()
    }

    /// The saved state file's bytes.
    pub(super) fn state(&self) -> Vec<u8> {
        std::fs::read(self.dir.join("state.json")).unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        drop(self.control.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
