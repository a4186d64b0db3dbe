//! `apply -f FILE` and `export`: stack files.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use ctl::proto::Request;
use ctl::stack::{Stack, StackReport, StackStatus};

use crate::Ctx;

/// `apply` arguments.
#[derive(Debug, Args)]
pub(crate) struct ApplyArgs {
    /// The stack file (YAML); `-` reads standard input.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub(crate) file: PathBuf,
    /// Check and print the plan; change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

/// `apply -f FILE [--dry-run]`: parses and checks the file here, then sends
/// it to the daemon, which checks it against its state and applies it all
/// or nothing.
pub(crate) fn apply(ctx: &mut Ctx, args: &ApplyArgs) -> Result<()> {
    let (name, text) = if args.file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("cannot read the stack from standard input")?;
        ("<stdin>".to_owned(), text)
    } else {
        let text = std::fs::read_to_string(&args.file)
            .with_context(|| format!("cannot read stack file {}", args.file.display()))?;
        (args.file.display().to_string(), text)
    };
    let (stack, source) = ctl::stack::yaml::parse(&name, &text)?;
    let req = Request::StackApply { stack, dry_run: args.dry_run, source: Some(source) };
    ctx.show(&req, |w, report: StackReport| print_report(w, &report))
}

/// One line per object (with its changes, or what a created one gets),
/// then a summary (`unchanged` when nothing changed).
fn print_report(w: &mut dyn Write, report: &StackReport) -> std::io::Result<()> {
    let mut counts = [0usize; 3];
    for o in &report.objects {
        let status = match (o.status, report.dry_run) {
            (StackStatus::Created, false) => "created",
            (StackStatus::Created, true) => "would be created",
            (StackStatus::Changed, false) => "changed",
            (StackStatus::Changed, true) => "would change",
            (StackStatus::Unchanged, _) => "unchanged",
        };
        counts[o.status as usize] += 1;
        // A changed object's changes; a created one's subnets or addresses.
        let notes = if o.changes.is_empty() { &o.details } else { &o.changes };
        if notes.is_empty() {
            writeln!(w, "{} {}: {status}", o.kind, o.name)?;
        } else {
            writeln!(w, "{} {}: {status} ({})", o.kind, o.name, notes.join("; "))?;
        }
    }
    let [created, changed, unchanged] = counts;
    match (report.changed, report.dry_run) {
        (false, _) => writeln!(w, "unchanged"),
        (true, false) => writeln!(w, "applied: {created} created, {changed} changed, {unchanged} unchanged"),
        (true, true) => {
            writeln!(w, "dry run: {created} to create, {changed} to change, {unchanged} unchanged; nothing was applied")
        }
    }
}

/// `export`: the daemon's networks, sandboxes and services as a stack file
/// (`--json`: the stack as the protocol carries it).
pub(crate) fn export(ctx: &mut Ctx) -> Result<()> {
    ctx.show(&Request::StackExport, |w, stack: Stack| {
        let text = ctl::stack::yaml::to_yaml(&stack).map_err(std::io::Error::other)?;
        w.write_all(text.as_bytes())
    })
}
