//! `vswitchd`: the vswitch daemon. Owns the packet path between containers
//! and takes control requests on a Unix socket. Runs in the foreground;
//! logs to stderr (`RUST_LOG` selects the level, default `info`).

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use switch::daemon::control::Control;
use switch::daemon::datapath::DatapathHandle;
use switch::daemon::server;
use switch::model::Store;

/// The vswitch daemon: a userspace virtual switch for containers.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Path of the control socket.
    #[arg(long, env = "VSWITCH_CTL_SOCKET", default_value = ctl::client::DEFAULT_CTL_SOCKET)]
    ctl_socket: PathBuf,
    /// Directory holding the persistent state.
    #[arg(long, env = "VSWITCH_STATE_DIR", default_value = "/var/lib/vswitch")]
    state_dir: PathBuf,
    /// Group (name or gid) allowed to use the control socket, besides root.
    #[arg(long)]
    ctl_group: Option<String>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();

    server::check_not_running(&args.ctl_socket)?;
    let group = args.ctl_group.as_deref().map(server::lookup_group).transpose()?;
    let (store, model) =
        Store::open(&args.state_dir).with_context(|| format!("cannot open state dir {}", args.state_dir.display()))?;
    let datapath = DatapathHandle::spawn().context("cannot start the datapath thread")?;
    let control = Control::restore(store, model, datapath).context("cannot restore state into the datapath")?;
    let listener = server::bind(&args.ctl_socket, group)?;
    tracing::info!(socket = %args.ctl_socket.display(), state = %args.state_dir.display(), "vswitchd ready");
    server::serve(listener, control);
    Ok(())
}
