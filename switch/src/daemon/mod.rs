//! The vswitchd daemon: the datapath thread, the control plane that applies
//! ctl requests to the network model, and the ctl socket server.

mod batch;
pub mod capture;
pub mod control;
pub mod datapath;
pub mod dns_forward;
pub mod events;
pub mod hostports;
pub mod placement;
pub mod plumbing;
pub mod server;
pub mod tunnel;
