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
        Scratch::with_vtep(tag, None).unwrap()
    }

    /// A fresh control plane whose datapath has the VTEP `vtep` (real
    /// sockets: on a loopback address no privilege is needed), or why it
    /// could not start (the VTEP's sockets could not be opened).
    pub(super) fn with_vtep(tag: &str, vtep: Option<crate::daemon::tunnel::VtepConfig>) -> Result<Scratch, String> {
        let dir = std::env::temp_dir().join(format!("vsw-control-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut scratch = Scratch { dir, control: None };
        scratch.start(vtep)?;
        Ok(scratch)
    }

    /// Stops the control plane and starts another on the same state
    /// directory, as a restarted daemon does.
    pub(super) fn restart(&mut self, vtep: Option<crate::daemon::tunnel::VtepConfig>) -> Result<(), String> {
        drop(self.control.take());
        self.start(vtep)
    }

    fn start(&mut self, vtep: Option<crate::daemon::tunnel::VtepConfig>) -> Result<(), String> {
        let (store, model) = crate::model::Store::open(&self.dir).unwrap();
        let datapath = crate::daemon::datapath::DatapathHandle::spawn(vtep, None, Vec::new(), Default::default())
            .map_err(|e| format!("cannot start the datapath: {e}"))?;
        let control = Control::restore(store, model, datapath, vtep, false, Vec::new()).map_err(|e| e.to_string())?;
        self.control = Some(control);
        Ok(())
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

/// A `network create` request for an IPv4 network of `driver` on `subnet`,
/// everything else at its default but `attachable` and `options`.
pub(super) fn network_create(
    name: &str,
    driver: ctl::proto::Driver,
    subnet: &str,
    attachable: bool,
    options: &[(&str, &str)],
) -> ctl::proto::Request {
    ctl::proto::Request::NetworkCreate(ctl::proto::CreateNetwork {
        subnet: Some(subnet.parse().expect("a test subnet")),
        attachable,
        options: options.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        ..ctl::proto::CreateNetwork::new(name, driver)
    })
}
