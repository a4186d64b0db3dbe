//! Stack files in the model: [`Model::plan_stack`] applies a desired
//! [`Stack`] to a copy of the model and says what that took (the new model
//! and the side effects the daemon must perform, all or nothing);
//! [`Model::export_stack`] describes the model as a stack.
//!
//! What `apply` does with what it finds:
//! - objects not in the file are left alone (as `docker stack deploy`
//!   leaves unrelated networks), except a listed sandbox's connections:
//!   a sandbox in the file is connected to exactly the networks it lists;
//! - an object that exists and matches the file is unchanged; unset
//!   optional keys (subnet, gateway, MTU, VNI, address, MAC) match anything;
//! - a network that exists with different settings is refused: networks
//!   are not changed in place (its endpoints would have to go);
//! - a sandbox's DNS settings, an endpoint's aliases and published ports
//!   change in place; an endpoint whose address, MAC or service differs is
//!   recreated (disconnected and connected again), as compose recreates a
//!   container; a sandbox whose namespace differs is refused;
//! - a service whose network or ports differ is recreated.

mod export;
mod plan;

#[cfg(test)]
mod tests;

pub use plan::{PortChange, ServiceChange, StackDefaults, StackPlan, StackRefusal};
