//! `vswitchctl events [--follow]`: the daemon's recent events, or its
//! events as they happen until Ctrl-C, one line (or JSON object, or
//! `--format` template) each.

use std::io::{self, Write};

use anyhow::{Context, Result};
use ctl::proto::{Event, EventsFollow, EventsSummary, Request, StreamLine};
use serde_json::Value;

use crate::format::Format;
use crate::{Ctx, render};

/// How events print.
pub(crate) enum Shape {
    /// One human line each.
    Human,
    /// `--json`: one line of JSON each, and the summary as JSON.
    Json,
    /// `--format`: each event through the format (the summary as a human
    /// line).
    Format(Box<Format>),
}

impl Shape {
    /// Whether events print as JSON lines (`--json`, `--format json`): the
    /// summary then is JSON too.
    fn is_json(&self) -> bool {
        matches!(self, Shape::Json) || matches!(self, Shape::Format(f) if matches!(**f, Format::JsonLines))
    }
}

/// `events`: the history, oldest first.
pub(crate) fn history(ctx: &mut Ctx, shape: &Shape) -> Result<()> {
    let value = ctx.call(&Request::Events { follow: false })?;
    let Value::Array(events) = value else { anyhow::bail!("unexpected reply from vswitchd: not a list of events") };
    // A template that fails on one event prints none, as a list's would.
    if let Shape::Format(format) = shape {
        return format.write(&mut ctx.out, &events, &Value::Null);
    }
    for event in &events {
        print_event(&mut ctx.out, shape, event)?;
    }
    Ok(())
}

/// `events --follow`: prints events until the daemon ends the stream or
/// Ctrl-C (SIGINT) or SIGTERM stops it; then the summary on stderr. A
/// second signal exits at once.
pub(crate) fn follow(ctx: &mut Ctx, shape: &Shape) -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let client = super::opened(&mut ctx.client, &ctx.cli_socket, ctx.timeout)?;
    let (first, mut stream) = client.stream(&Request::Events { follow: true })?;
    let opened: EventsFollow =
        serde_json::from_value(first).map_err(|e| anyhow::anyhow!("unexpected reply from vswitchd: {e}"))?;
    let stopper = stream.stopper()?;
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).context("cannot handle Ctrl-C")?;
    let signal_handle = signals.handle();
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        let mut caught = signals.forever();
        if caught.next().is_some() {
            // The daemon answers with the stream's summary and closes.
            let _ = stopper.stop();
        }
        if caught.next().is_some() {
            std::process::exit(130);
        }
    })?;
    eprintln!("following events from #{} (Ctrl-C to stop)", opened.next_seq);
    let result = (|| -> Result<()> {
        while let Some(line) = stream.next_line()? {
            match line {
                StreamLine::Item(event) => print_event(&mut ctx.out, shape, &event)?,
                StreamLine::End(summary) => print_summary(shape.is_json(), summary)?,
                // next_line turns an error line into an error.
                StreamLine::Err(e) => anyhow::bail!("{}", e.message),
            }
        }
        Ok(())
    })();
    signal_handle.close();
    result
}

/// One event: the human line (raw JSON for a kind this client does not
/// know, from a newer daemon), JSON on one line, or through `--format`.
fn print_event(out: &mut dyn Write, shape: &Shape, value: &Value) -> Result<()> {
    match shape {
        Shape::Format(format) => return format.write(out, std::slice::from_ref(value), &Value::Null),
        Shape::Human => {
            if let Ok(event) = serde_json::from_value::<Event>(value.clone()) {
                render::event(out, &event)?;
                return Ok(());
            }
        }
        Shape::Json => {}
    }
    serde_json::to_writer(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

/// The stream's summary, on stderr (stdout carries only events).
fn print_summary(json: bool, summary: Value) -> Result<()> {
    let mut err = io::stderr().lock();
    if json {
        writeln!(err, "{summary}")?;
        return Ok(());
    }
    let s: EventsSummary =
        serde_json::from_value(summary).map_err(|e| anyhow::anyhow!("unexpected summary from vswitchd: {e}"))?;
    match s.lost {
        0 => writeln!(err, "{} events shown, none lost", s.delivered)?,
        lost => writeln!(err, "{} events shown, {lost} lost: this client read too slowly", s.delivered)?,
    }
    Ok(())
}
