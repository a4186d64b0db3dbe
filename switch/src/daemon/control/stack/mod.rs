//! `stack_apply` and `stack_export`: a stack file applied as one
//! transaction. The model plans it on a copy (every check first, nothing
//! done yet); the side effects run in an order where removals free what
//! creations take, each recorded with its undo; any failure undoes them all
//! in reverse and the model stays as it was; success saves the new model
//! and only then finishes (default routes moved, services' backends,
//! resolver files). The [`journal`] makes a `kill -9` in between safe.

pub(crate) mod journal;

use std::collections::BTreeSet;
use std::path::Path;

use ctl::PortMapping;
use ctl::proto::{CtlError, ErrorKind};
use ctl::stack::{SourceMap, Stack, StackIssue, StackReport, render_issues};

use super::publish::{endpoint_publications, keys, service_publications};
use super::{Control, Reply, model_error, ok, plumb_error};
use crate::daemon::plumbing;
use crate::model::{
    Endpoint, Network, PARENT_OPTION, Sandbox, Service, StackDefaults, StackPlan, StackRefusal, Uplink,
};
pub(super) use journal::{Journal, JournalTap};

/// Test hook: `VSWITCH_TEST_PAUSE_APPLY=STAGE:PATH` stops every request
/// that reaches STAGE (a `stack_apply`'s `effects`: everything done on the
/// host, nothing saved, and `committed`: saved, not finished; a `network
/// connect`'s `connect` and a `sandbox create`'s `sandbox`: its devices or
/// namespace made, nothing saved), creates `PATH.reached`, and waits until
/// PATH exists, so a test can `kill -9` the daemon there.
const PAUSE_ENV: &str = "VSWITCH_TEST_PAUSE_APPLY";

/// One side effect done, and how to undo it.
enum Done {
    /// An endpoint was torn down: plumb it again with its ports.
    TornDown(Endpoint),
    /// Ports of a kept endpoint were closed: open them again.
    Closed(Endpoint, Vec<PortMapping>),
    /// A service's ports were closed: open them again.
    ServiceClosed(Service),
    /// A network was added to the datapath: remove it.
    Network(Network),
    /// A macvlan network's parent was attached as its uplink: detach it.
    Uplink(Uplink),
    /// A sandbox's namespace was created: remove it.
    Sandbox(Sandbox),
    /// An endpoint was plumbed and its ports opened: tear it down.
    Endpoint(Endpoint),
    /// Ports were opened: close them.
    Opened(Vec<PortMapping>),
}

/// A failed side effect: the keys of the file it is about (the first one
/// the file has is named), and the error.
type StepError = (Vec<String>, CtlError);

/// A [`StepError`] about one key.
fn at(key: String) -> impl FnOnce(CtlError) -> StepError {
    move |e| (vec![key], e)
}

impl Control {
    /// `stack_apply`.
    pub(super) fn stack_apply(&mut self, stack: &Stack, dry_run: bool, source: Option<&SourceMap>) -> Reply {
        let encrypted_overhead = crypto::OVERHEAD_OVER_VXLAN as u32;
        let defaults = StackDefaults {
            overlay_mtu: self.overlay_mtu(),
            encrypted_overlay_mtu: self.overlay_mtu().saturating_sub(encrypted_overhead),
            has_secret: self.has_secret,
        };
        let plan = self.model.plan_stack(stack, &defaults).map_err(|r| refusal_error(r, source))?;
        // A macvlan parent is checked as `port add` checks it (the VTEP's
        // interface, a default route's), dry run or not.
        for uplink in &plan.uplinks {
            self.check_uplink(uplink).map_err(|e| {
                let name = plan.next.network_by_id(&uplink.network_id).map_or("", |n| n.name.as_str());
                let key = format!("networks.{name}.options.{PARENT_OPTION}");
                CtlError::new(e.kind, StackIssue::new(key, e.message).render(source))
            })?;
        }
        let report = StackReport { dry_run, changed: plan.changes_anything(), objects: plan.objects.clone() };
        if dry_run || !report.changed {
            return ok(report);
        }
        self.refuse_cluster_stack(stack)?;
        self.execute(plan).map_err(|(keys, e)| {
            let known = keys.iter().find(|k| source.is_some_and(|s| s.keys.contains_key(k.as_str())));
            let key = known.or(keys.first()).cloned().unwrap_or_default();
            let message = StackIssue::new(key, e.message).render(source);
            CtlError::new(e.kind, format!("{message}\nnothing was applied"))
        })?;
        ok(report)
    }

    /// In cluster mode a stack that would change anything may not declare
    /// overlay networks, attach sandboxes to cluster networks, nor declare
    /// services on them. Their addresses, endpoint and service records go
    /// through the cluster store (`network create`, `network connect`,
    /// `service publish`, whose services on a cluster overlay default to
    /// `ingress` mode), and a store write cannot be part of the stack's
    /// all-or-nothing transaction: a later step's failure could not take it
    /// back from the other nodes. A stack service is always a `host` mode
    /// service, which a cluster network does not take silently.
    fn refuse_cluster_stack(&self, stack: &Stack) -> Result<(), CtlError> {
        if self.cluster.is_none() {
            return Ok(());
        }
        let is_cluster = |name: &str| self.model.network(name).is_ok_and(|n| n.cluster);
        let overlay = stack.networks.iter().find(|n| !n.external && n.driver == ctl::proto::Driver::Overlay);
        let attached = stack.sandboxes.iter().flat_map(|s| &s.networks).find(|a| is_cluster(&a.network));
        let culprit = overlay.map(|n| n.name.as_str()).or(attached.map(|a| a.network.as_str()));
        if let Some(name) = culprit {
            return Err(CtlError::new(
                ErrorKind::NotSupported,
                format!(
                    "network {name}: in cluster mode, create overlay networks and connect sandboxes to them with `network create` and `network connect` (stack apply does not go through the cluster store); nothing was applied"
                ),
            ));
        }
        match stack.services.iter().find(|s| is_cluster(&s.network)) {
            None => Ok(()),
            Some(service) => Err(CtlError::new(
                ErrorKind::NotSupported,
                format!(
                    "service {}: network {} is a cluster network: publish its services with `service publish` (ingress mode by default; stack apply does not go through the cluster store); nothing was applied",
                    service.name, service.network
                ),
            )),
        }
    }

    /// `stack_export`.
    pub(super) fn stack_export(&self) -> Reply {
        ok(self.model.export_stack())
    }

    /// Performs `plan`'s side effects and commits its model, or undoes
    /// them all.
    fn execute(&mut self, plan: StackPlan) -> Result<(), StepError> {
        let dir = self.store.dir().to_path_buf();
        let journal = self.journal(&plan);
        if !journal.is_empty() {
            journal
                .write(&dir)
                .map_err(|e| CtlError::internal(format!("cannot write the apply journal: {e}")))
                .map_err(at(String::new()))?;
        }
        let mut done = Vec::new();
        let outcome = self.effects(&plan, &mut done).and_then(|()| {
            pause_for_tests("effects");
            self.commit(plan.next.clone()).map_err(at(String::new()))
        });
        if let Err(e) = outcome {
            self.undo(done);
            Journal::remove(&dir);
            // Plumbing a new endpoint may have taken a default route over.
            for name in plan.touched_sandboxes.iter().chain(plan.removed.iter().map(|e| &e.sandbox)) {
                self.sync_default_routes(name);
            }
            return Err(e);
        }
        pause_for_tests("committed");
        self.finish(&plan);
        Journal::remove(&dir);
        Ok(())
    }

    /// What the transaction may leave on the host if the daemon dies.
    fn journal(&self, plan: &StackPlan) -> Journal {
        let mut journal = Journal { sandboxes: plan.sandboxes.clone(), taps: Vec::new() };
        for (model, endpoints) in [(&self.model, &plan.removed), (&plan.next, &plan.endpoints)] {
            for e in endpoints {
                if let Ok(sandbox) = model.sandbox(&e.sandbox) {
                    journal.taps.push(JournalTap::of(e, sandbox));
                }
            }
        }
        journal
    }

    /// The side effects, in order, each recorded in `done` as it succeeds.
    fn effects(&mut self, plan: &StackPlan, done: &mut Vec<Done>) -> Result<(), StepError> {
        let next = &plan.next;
        for e in &plan.removed {
            self.unpublish_logged(keys(&e.publish));
            self.teardown_endpoint(e);
            done.push(Done::TornDown(e.clone()));
        }
        for change in plan.ports.iter().filter(|c| !c.removed.is_empty()) {
            let Some(before) = self.model.endpoint(&change.endpoint_id) else { continue };
            let key = sandbox_key(before);
            self.datapath.unpublish(keys(&change.removed)).map_err(super::datapath_error).map_err(at(key))?;
            done.push(Done::Closed(before.clone(), change.removed.clone()));
        }
        for before in plan.services.iter().filter_map(|s| s.before.as_ref()) {
            let key = format!("services.{}", before.name);
            self.datapath.unpublish(keys(&before.publish)).map_err(super::datapath_error).map_err(at(key))?;
            done.push(Done::ServiceClosed(before.clone()));
        }
        for network in &plan.networks {
            if network.driver.is_switched() {
                let key = format!("networks.{}", network.name);
                self.add_network_to_datapath(network).map_err(super::datapath_error).map_err(at(key))?;
                done.push(Done::Network(network.clone()));
            }
        }
        for uplink in &plan.uplinks {
            let Some(network) = next.network_by_id(&uplink.network_id) else { continue };
            let key = format!("networks.{}.options.{PARENT_OPTION}", network.name);
            self.attach_uplink(uplink, network).map_err(at(key))?;
            done.push(Done::Uplink(uplink.clone()));
        }
        for sandbox in &plan.sandboxes {
            let key = format!("sandboxes.{}", sandbox.name);
            let adopted = (!sandbox.owns_netns).then_some(sandbox.netns_path.as_path());
            plumbing::create_sandbox_netns(sandbox, adopted).map_err(|e| {
                let kind = if adopted.is_some() { ErrorKind::InvalidArgument } else { ErrorKind::Internal };
                (
                    vec![format!("{key}.netns"), key.clone()],
                    CtlError::new(kind, format!("cannot set up the namespace: {e}")),
                )
            })?;
            done.push(Done::Sandbox(sandbox.clone()));
        }
        for endpoint in &plan.endpoints {
            let network = next.network_by_id(&endpoint.network_id).cloned();
            let key = format!("sandboxes.{}.networks.{}", endpoint.sandbox, network.as_ref().map_or("", |n| &n.name));
            self.plumb(next, endpoint, network.as_ref()).map_err(|(publishing, e)| {
                // Ports are the attachment's own, or the sandbox's.
                let keys = if publishing {
                    vec![format!("{key}.ports"), format!("sandboxes.{}.ports", endpoint.sandbox), key]
                } else {
                    vec![key]
                };
                (keys, e)
            })?;
            done.push(Done::Endpoint(endpoint.clone()));
        }
        for change in plan.ports.iter().filter(|c| !c.added.is_empty()) {
            let Some(after) = next.endpoint(&change.endpoint_id) else { continue };
            let key = format!("{}.ports", sandbox_key(after));
            self.publish_all(endpoint_publications(next, after, &change.added)).map_err(at(key))?;
            done.push(Done::Opened(change.added.clone()));
        }
        for service in &plan.services {
            let key = format!("services.{}.ports", service.after.name);
            self.publish_all(service_publications(next, &service.after)).map_err(at(key))?;
            done.push(Done::Opened(service.after.publish.clone()));
        }
        Ok(())
    }

    /// Plumbs a new endpoint into its sandbox and the datapath, with its
    /// ports; all or nothing. An error says whether opening the ports
    /// failed.
    fn plumb(
        &self,
        next: &crate::model::Model,
        endpoint: &Endpoint,
        network: Option<&Network>,
    ) -> Result<(), (bool, CtlError)> {
        let plumbed = network.ok_or_else(|| CtlError::internal("endpoint without network")).and_then(|network| {
            let sandbox = next.sandbox(&endpoint.sandbox).map_err(model_error)?;
            let ns = plumbing::open_sandbox_netns(sandbox).map_err(plumb_error)?;
            super::check_ifname_free(&ns, endpoint)?;
            let tap = plumbing::plumb_endpoint(&ns, endpoint, network).map_err(plumb_error)?;
            self.add_tap_to_datapath(tap, &ns, endpoint, network)
        });
        plumbed.map_err(|e| (false, e))?;
        if let Err(e) = self.publish_all(endpoint_publications(next, endpoint, &endpoint.publish)) {
            self.teardown_endpoint(endpoint);
            return Err((true, e));
        }
        Ok(())
    }

    /// Undoes `done` in reverse; failures are logged (the saved state is
    /// still the old one, which a restart restores).
    fn undo(&mut self, done: Vec<Done>) {
        for step in done.into_iter().rev() {
            match step {
                Done::Opened(ports) => self.unpublish_logged(keys(&ports)),
                Done::Endpoint(e) => {
                    self.unpublish_logged(keys(&e.publish));
                    self.teardown_endpoint(&e);
                }
                Done::Uplink(u) => self.detach_uplink(&u),
                Done::Sandbox(s) => {
                    if let Err(e) = plumbing::remove_sandbox_netns(&s) {
                        tracing::error!(sandbox = %s.name, error = %e, "rollback: cannot remove the namespace");
                    }
                }
                Done::Network(n) => {
                    if let Err(e) = self.datapath.remove_network(super::network_id(&n)) {
                        tracing::error!(network = %n.name, error = %e, "rollback: cannot remove the network");
                    }
                }
                Done::ServiceClosed(s) => {
                    if let Err(e) = self.publish_all(service_publications(&self.model, &s)) {
                        tracing::error!(service = %s.name, error = %e.message, "rollback: cannot reopen ports");
                    }
                }
                Done::Closed(e, ports) => {
                    if let Err(err) = self.publish_all(endpoint_publications(&self.model, &e, &ports)) {
                        tracing::error!(sandbox = %e.sandbox, error = %err.message, "rollback: cannot reopen ports");
                    }
                }
                Done::TornDown(e) => {
                    let restored = self.restore_endpoint(&e).and_then(|()| {
                        self.restore_static_entries(&e);
                        self.publish_all(endpoint_publications(&self.model, &e, &e.publish))
                    });
                    if let Err(err) = restored {
                        tracing::error!(sandbox = %e.sandbox, error = %err.message, "rollback: cannot restore endpoint");
                    }
                }
            }
        }
    }

    /// Puts the static FDB entries pointing at `endpoint`'s port back into
    /// the datapath (its port went away with them).
    fn restore_static_entries(&self, endpoint: &Endpoint) {
        let Ok(network) = self.network_of(endpoint) else { return };
        for entry in self.model.static_fdb().filter(|f| f.port_name == endpoint.host_tap_name) {
            let port = crate::daemon::datapath::endpoint_port(endpoint.port_index);
            if let Err(e) = self.datapath.add_static(super::network_id(network), entry.mac, port) {
                tracing::error!(mac = %entry.mac, error = %e, "rollback: cannot restore a static FDB entry");
            }
        }
    }

    /// After the commit: default routes that moved, services' backends,
    /// resolver files.
    fn finish(&self, plan: &StackPlan) {
        let services: BTreeSet<String> =
            plan.removed.iter().chain(&plan.endpoints).filter_map(|e| e.service.clone()).collect();
        self.republish_services(&services);
        let sandboxes: BTreeSet<&String> =
            plan.touched_sandboxes.iter().chain(plan.removed.iter().map(|e| &e.sandbox)).collect();
        let heirs = plan.new_default_routes.iter().map(|e| &e.sandbox);
        for name in sandboxes.iter().copied().chain(heirs).collect::<BTreeSet<&String>>() {
            self.write_sandbox_files(name);
            self.sync_default_routes(name);
        }
    }
}

/// `sandboxes.NAME` for an endpoint's sandbox.
fn sandbox_key(e: &Endpoint) -> String {
    format!("sandboxes.{}", e.sandbox)
}

/// The ctl error for a refused stack: every issue, one per line, each
/// naming the file's line and key when the client sent its source.
fn refusal_error(r: StackRefusal, source: Option<&SourceMap>) -> CtlError {
    let kind = match (&r.cause, r.conflict) {
        (Some(e), _) => model_error(e.as_ref().clone()).kind,
        (None, true) => ErrorKind::Conflict,
        (None, false) => ErrorKind::InvalidArgument,
    };
    CtlError::new(kind, render_issues(&r.issues, source))
}

/// See [`PAUSE_ENV`].
pub(super) fn pause_for_tests(stage: &str) {
    let Ok(setting) = std::env::var(PAUSE_ENV) else { return };
    let Some((at, path)) = setting.split_once(':') else { return };
    if at != stage {
        return;
    }
    let reached = format!("{path}.reached");
    if let Err(e) = std::fs::write(&reached, stage) {
        tracing::error!(path = reached, error = %e, "test pause: cannot write the marker");
        return;
    }
    tracing::warn!(stage, "test pause: waiting for {path}");
    while !Path::new(path).exists() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests;
