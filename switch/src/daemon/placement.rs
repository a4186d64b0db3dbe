//! Where the datapath workers run.
//!
//! A worker is woken by the task that sends into one of its ports (a
//! container's `write` on a TAP, a packet on a veth). Those are *sync*
//! wake-ups, and the scheduler answers them by pulling the worker onto the
//! sender's CPU: the container and the switch then share one CPU while the
//! others idle. On two CPUs with iperf3's client on one and its server on
//! the other, the switch thread ends up beside the client, the client gets
//! a fraction of its CPU and TCP runs at 9 Gbit/s; bound to the server's
//! CPU, the same binary carries 15 (`benches/e2e.sh`, `PIN=1`).
//!
//! So the daemon places its workers itself, as OVS users pin PMD threads
//! with `pmd-cpu-mask`:
//! - [`CpuAffinity::Auto`] (the default): every [`INTERVAL`] a
//!   [`Placer`] reads how long each worker waited on a run queue and how
//!   busy every CPU was; a worker that lost ≥ [`WAIT_HIGH`] of its time to
//!   other tasks moves to the least busy CPU if that one is mostly idle
//!   ([`IDLE_CPU`]) or would still be [`MARGIN`] less busy with the
//!   worker's work added, and then stays at least [`HOLD`]. A busy worker
//!   ([`SETTLE_WORK`]) that needs no move is bound where it runs, so the
//!   scheduler stops migrating it. Idle workers are never moved, a worker's empty busy polls ([`IdlePoll`]) do not
//!   count as load, and the sampler costs two small `/proc` reads per
//!   worker per interval.
//! - [`CpuAffinity::Fixed`]: worker K on the K-th CPU of a list, for good.
//! - [`CpuAffinity::Scheduler`]: the kernel decides alone.
//!
//! The [`Placer`] is sans-IO: it takes readings and a time and returns
//! [`Move`]s; [`start`] is the thread that reads `/proc` and applies them.

use std::fmt;
use std::io;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, Sender};
use crossbeam_utils::CachePadded;

use crate::sys::sched::{self, CpuTimes, ThreadSched};

/// How often the placement thread samples.
pub const INTERVAL: Duration = Duration::from_millis(500);
/// Share of an interval a worker must have waited for its CPU to be moved.
pub const WAIT_HIGH: f64 = 0.05;
/// Share of an interval a worker must have worked (run, less its empty
/// polls) to be moved: an idle worker stays where it is, whatever its CPU
/// does.
pub const RUN_MIN: f64 = 0.10;
/// How much less busy (share of an interval) the target CPU must stay,
/// with the worker's work added, than the worker's own CPU is, so that a
/// move is worth a cold cache and two CPUs do not trade a worker back and
/// forth.
pub const MARGIN: f64 = 0.10;
/// Share of an interval an unbound worker must have worked to be bound
/// where it runs (see [`Placer::observe`]).
pub const SETTLE_WORK: f64 = 0.20;
/// A CPU at most this busy is mostly idle: a worker that waits elsewhere
/// may always move there.
pub const IDLE_CPU: f64 = 0.30;
/// How long a moved worker stays before it may move again.
pub const HOLD: Duration = Duration::from_secs(2);

/// How the daemon places its datapath workers on CPUs (`--cpu-affinity`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CpuAffinity {
    /// Move a worker that competes for its CPU to an idler one (`auto`).
    #[default]
    Auto,
    /// Leave placement to the kernel's scheduler (`none`).
    Scheduler,
    /// Worker K runs on the K-th CPU of the list (round robin), for good
    /// (`0,2-3`).
    Fixed(Vec<usize>),
}

/// A `--cpu-affinity` value that is neither `auto`, `none` nor a CPU list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not auto, none or a CPU list such as 0,2-3")]
pub struct BadCpuAffinity(String);

impl FromStr for CpuAffinity {
    type Err = BadCpuAffinity;

    fn from_str(s: &str) -> Result<CpuAffinity, BadCpuAffinity> {
        let bad = || BadCpuAffinity(s.to_owned());
        match s {
            "auto" => return Ok(CpuAffinity::Auto),
            "none" => return Ok(CpuAffinity::Scheduler),
            _ => {}
        }
        let mut cpus = Vec::new();
        for part in s.split(',') {
            let (first, last) = match part.split_once('-') {
                Some((a, b)) => (a.parse::<usize>().map_err(|_| bad())?, b.parse::<usize>().map_err(|_| bad())?),
                None => {
                    let cpu = part.parse::<usize>().map_err(|_| bad())?;
                    (cpu, cpu)
                }
            };
            if first > last || last >= 1024 {
                return Err(bad());
            }
            cpus.extend(first..=last);
        }
        cpus.sort_unstable();
        cpus.dedup();
        Ok(CpuAffinity::Fixed(cpus))
    }
}

impl fmt::Display for CpuAffinity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpuAffinity::Auto => f.write_str("auto"),
            CpuAffinity::Scheduler => f.write_str("none"),
            CpuAffinity::Fixed(cpus) => {
                let list: Vec<String> = cpus.iter().map(usize::to_string).collect();
                f.write_str(&list.join(","))
            }
        }
    }
}

/// One reading of the CPUs and the workers, at a time.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reading {
    /// When it was taken (any monotonic origin).
    pub at: Duration,
    /// Every CPU's cumulative times, indexed by CPU number.
    pub cpus: Vec<CpuTimes>,
    /// Every worker's cumulative accounting, by worker index (`None`: not
    /// readable this time).
    pub workers: Vec<Option<WorkerReading>>,
}

/// One worker's cumulative accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WorkerReading {
    /// What the scheduler says of its thread.
    pub sched: ThreadSched,
    /// Nanoseconds of its run time spent in polls that found nothing
    /// ([`IdlePoll`]).
    pub idle_poll_ns: u64,
}

/// A decision: bind worker `worker` to CPU `to` (`from == to`: a busy
/// worker settled where it runs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Move {
    /// The worker's index.
    pub worker: usize,
    /// The CPU it ran on.
    pub from: usize,
    /// The CPU it goes to.
    pub to: usize,
    /// Share of the interval it waited for `from`.
    pub waited: f64,
    /// How busy `from` and `to` were over the interval (shares).
    pub from_busy: f64,
    /// See `from_busy`.
    pub to_busy: f64,
}

/// The placement policy of [`CpuAffinity::Auto`]: readings in, moves out.
#[derive(Debug)]
pub struct Placer {
    allowed: Vec<usize>,
    /// Per worker: the CPU it is bound to, and until when it stays.
    bound: Vec<(Option<usize>, Duration)>,
    last: Option<Reading>,
}

impl Placer {
    /// A placer for `workers` workers over the `allowed` CPUs, none bound.
    pub fn new(allowed: Vec<usize>, workers: usize) -> Placer {
        Placer { allowed, bound: vec![(None, Duration::ZERO); workers], last: None }
    }

    /// The CPU worker `k` is bound to, if any.
    pub fn bound(&self, k: usize) -> Option<usize> {
        self.bound.get(k).and_then(|b| b.0)
    }

    /// Takes a reading and returns the workers to move since the previous
    /// one (none on the first reading); the moves are assumed applied.
    pub fn observe(&mut self, now: Reading) -> Vec<Move> {
        let Some(last) = self.last.replace(now) else { return Vec::new() };
        let now = self.last.as_ref().expect("just stored");
        let span = now.at.saturating_sub(last.at).as_nanos() as f64;
        if span <= 0.0 {
            return Vec::new();
        }
        // How busy each CPU was, and what our moves this round add to it.
        let mut busy: Vec<Option<f64>> = (0..now.cpus.len())
            .map(|c| {
                let (a, b) = (last.cpus.get(c)?, now.cpus.get(c)?);
                let total = b.total.checked_sub(a.total).filter(|&t| t > 0)?;
                Some(b.busy.saturating_sub(a.busy) as f64 / total as f64)
            })
            .collect();
        // What each worker ran, waited and polled in vain, on which CPU; its
        // empty polls are time nobody needed, so not load of that CPU.
        let mut seen = Vec::new();
        for (k, sample) in now.workers.iter().enumerate() {
            let (Some(b), Some(Some(a))) = (sample, last.workers.get(k)) else { continue };
            let share = |x: u64, y: u64| y.saturating_sub(x) as f64 / span;
            let run = share(a.sched.run_ns, b.sched.run_ns);
            let polled = share(a.idle_poll_ns, b.idle_poll_ns).min(run);
            let (bound, hold) = self.bound.get(k).copied().unwrap_or((None, Duration::ZERO));
            let cpu = bound.unwrap_or(b.sched.cpu);
            if let Some(Some(load)) = busy.get_mut(cpu) {
                *load = (*load - polled).max(0.0);
            }
            seen.push((k, share(a.sched.wait_ns, b.sched.wait_ns), run - polled, cpu, hold));
        }
        // Busy workers the scheduler still moves around, to settle below.
        let floating: Vec<(usize, f64, usize)> = seen
            .iter()
            .filter(|&&(k, _, work, _, _)| work >= SETTLE_WORK && self.bound(k).is_none())
            .map(|&(k, wait, _, cpu, _)| (k, wait, cpu))
            .collect();
        // The workers that competed for their CPU, the most delayed first.
        let mut waiting: Vec<(usize, f64, f64, usize)> = seen
            .into_iter()
            .filter(|&(_, wait, work, _, hold)| wait >= WAIT_HIGH && work >= RUN_MIN && now.at >= hold)
            .map(|(k, wait, work, cpu, _)| (k, wait, work, cpu))
            .collect();
        waiting.sort_by(|x, y| y.1.total_cmp(&x.1));
        let mut moves = Vec::new();
        for (worker, waited, work, from) in waiting {
            let Some(from_busy) = busy.get(from).copied().flatten() else { continue };
            let target = self
                .allowed
                .iter()
                .copied()
                .filter(|&c| c != from)
                .filter_map(|c| Some((c, busy.get(c).copied().flatten()?)))
                .min_by(|x, y| x.1.total_cmp(&y.1));
            let Some((to, to_busy)) = target else { continue };
            // Worth it when the worker's work fits there with room to
            // spare, or the CPU is mostly idle: a worker's run time beside
            // a busy sender overstates what it needs elsewhere (on its own
            // CPU it switched 15 Gbit/s with 45% of it, beside iperf3's
            // client 9 Gbit/s with 78%).
            if to_busy + work + MARGIN > from_busy && to_busy > IDLE_CPU {
                continue;
            }
            busy[to] = Some(to_busy + work);
            busy[from] = Some((from_busy - work).max(0.0));
            if let Some(slot) = self.bound.get_mut(worker) {
                *slot = (Some(to), now.at + HOLD);
            }
            moves.push(Move { worker, from, to, waited, from_busy, to_busy });
        }
        // A busy worker nobody moved is bound where it runs: a worker the
        // scheduler keeps migrating between the CPUs of its sender and its
        // receiver carried 13.4 Gbit/s of unpinned iperf3, bound to either
        // CPU 16 (the others then settle around it).
        for (worker, waited, cpu) in floating {
            if self.bound(worker).is_some() {
                continue;
            }
            let load = busy.get(cpu).copied().flatten().unwrap_or(0.0);
            // No hold: if it turns out to wait there, it may leave at once.
            if let Some(slot) = self.bound.get_mut(worker) {
                *slot = (Some(cpu), now.at);
            }
            moves.push(Move { worker, from: cpu, to: cpu, waited, from_busy: load, to_busy: load });
        }
        moves
    }
}

/// The time a worker spent in busy polls that found nothing (see vswitchd
/// `--busy-poll-us`), in nanoseconds, shared with the placement thread: a
/// polling worker's CPU time is not all demand. Padded to its own cache
/// lines: the worker writes it on every empty poll, and it must not share
/// a line with another worker's.
#[derive(Debug, Clone, Default)]
pub struct IdlePoll(Arc<CachePadded<AtomicU64>>);

impl IdlePoll {
    /// Adds one empty poll's duration.
    pub fn add(&self, spent: Duration) {
        self.0.fetch_add(spent.as_nanos() as u64, Ordering::Relaxed);
    }

    /// The total so far, in nanoseconds.
    pub fn total_ns(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Where each worker is bound, for `stats` (−1: unbound), shared between
/// the placement thread and the handle.
#[derive(Debug, Clone)]
pub struct Bindings(Arc<[AtomicI32]>);

impl Bindings {
    /// `workers` unbound workers.
    pub fn new(workers: usize) -> Bindings {
        Bindings((0..workers).map(|_| AtomicI32::new(-1)).collect())
    }

    /// The CPU worker `k` is bound to, if it is.
    pub fn cpu(&self, k: usize) -> Option<u32> {
        self.0.get(k).and_then(|c| u32::try_from(c.load(Ordering::Relaxed)).ok())
    }

    fn set(&self, k: usize, cpu: usize) {
        if let Some(slot) = self.0.get(k) {
            slot.store(i32::try_from(cpu).unwrap_or(-1), Ordering::Relaxed);
        }
    }
}

/// Why the workers could not be placed as asked.
#[derive(Debug, thiserror::Error)]
pub enum PlacementError {
    /// A CPU of a fixed list is not one this process may use.
    #[error("CPU {cpu} is not one this process may run on (allowed: {allowed:?})")]
    NotAllowed {
        /// The CPU asked for.
        cpu: usize,
        /// The process's affinity.
        allowed: Vec<usize>,
    },
    /// A system call failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// The running placement thread of [`CpuAffinity::Auto`]; dropping it
/// stops the thread.
#[derive(Debug)]
pub struct PlacementThread {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for PlacementThread {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Places the worker threads `workers` (worker K = thread ID `workers[K].0`,
/// with its empty-poll time) as `affinity`
/// says, recording bindings in `bindings`: binds them at once for a fixed
/// list, starts the placement thread for `auto` (when there are two CPUs
/// to choose from), does nothing for `none`.
pub fn start(
    affinity: &CpuAffinity,
    workers: Vec<(u32, IdlePoll)>,
    bindings: Bindings,
) -> Result<Option<PlacementThread>, PlacementError> {
    let tids: Vec<u32> = workers.iter().map(|w| w.0).collect();
    let allowed = sched::allowed_cpus()?;
    match affinity {
        CpuAffinity::Scheduler => Ok(None),
        CpuAffinity::Fixed(cpus) => {
            if let Some(&cpu) = cpus.iter().find(|c| !allowed.contains(c)) {
                return Err(PlacementError::NotAllowed { cpu, allowed });
            }
            for (k, &tid) in tids.iter().enumerate() {
                let cpu = cpus[k % cpus.len()];
                sched::set_thread_affinity(tid, &[cpu])?;
                bindings.set(k, cpu);
            }
            Ok(None)
        }
        CpuAffinity::Auto if allowed.len() < 2 => Ok(None),
        CpuAffinity::Auto => {
            let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
            let mut placer = Placer::new(allowed, tids.len());
            let origin = Instant::now();
            let thread =
                std::thread::Builder::new().name("placement".into()).stack_size(128 * 1024).spawn(move || {
                    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
                        let Ok(cpus) = sched::read_cpu_times() else { continue };
                        let readings = workers
                            .iter()
                            .map(|(tid, idle_poll)| {
                                let sched = sched::read_thread_sched(*tid).ok()?;
                                Some(WorkerReading { sched, idle_poll_ns: idle_poll.total_ns() })
                            })
                            .collect();
                        let reading = Reading { at: origin.elapsed(), cpus, workers: readings };
                        for m in placer.observe(reading) {
                            apply(&m, tids[m.worker], &bindings);
                        }
                    }
                })?;
            Ok(Some(PlacementThread { stop: Some(stop), thread: Some(thread) }))
        }
    }
}

fn apply(m: &Move, tid: u32, bindings: &Bindings) {
    match sched::set_thread_affinity(tid, &[m.to]) {
        Ok(()) if m.from == m.to => {
            bindings.set(m.worker, m.to);
            tracing::info!(
                worker = format!("vsw-dp-{}", m.worker),
                cpu = m.to,
                busy_pct = (m.from_busy * 100.0).round(),
                "bound a busy datapath worker to the CPU it runs on"
            );
        }
        Ok(()) => {
            bindings.set(m.worker, m.to);
            tracing::info!(
                worker = format!("vsw-dp-{}", m.worker),
                from = m.from,
                to = m.to,
                waited_pct = (m.waited * 100.0).round(),
                from_busy_pct = (m.from_busy * 100.0).round(),
                to_busy_pct = (m.to_busy * 100.0).round(),
                "moved a datapath worker that waited for its CPU to an idler one"
            );
        }
        Err(e) => tracing::warn!(worker = m.worker, to = m.to, error = %e, "cannot bind a datapath worker"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// A reading at `at_ms` with each CPU busy `busy_ms` in all since 0,
    /// and workers (run ms, wait ms, cpu) since 0, none polling.
    fn reading(at_ms: u64, busy_ms: &[u64], workers: &[(u64, u64, usize)]) -> Reading {
        let polling: Vec<(u64, u64, usize, u64)> =
            workers.iter().map(|&(run, wait, cpu)| (run, wait, cpu, 0)).collect();
        polled_reading(at_ms, busy_ms, &polling)
    }

    /// As [`reading`], each worker with the ms of its empty polls.
    fn polled_reading(at_ms: u64, busy_ms: &[u64], workers: &[(u64, u64, usize, u64)]) -> Reading {
        Reading {
            at: Duration::from_millis(at_ms),
            cpus: busy_ms.iter().map(|&busy| CpuTimes { busy, total: at_ms }).collect(),
            workers: workers
                .iter()
                .map(|&(run, wait, cpu, polled)| {
                    let sched = ThreadSched { run_ns: run * MS, wait_ns: wait * MS, cpu };
                    Some(WorkerReading { sched, idle_poll_ns: polled * MS })
                })
                .collect(),
        }
    }

    #[test]
    fn a_worker_sharing_a_full_cpu_moves_to_the_idle_one_and_stays() {
        let mut placer = Placer::new(vec![0, 1], 1);
        assert!(placer.observe(reading(0, &[0, 0], &[(0, 0, 0)])).is_empty(), "first reading: no interval yet");
        // CPU 0 99% busy, CPU 1 19%; the worker ran 78% and waited 20% on CPU 0.
        let moves = placer.observe(reading(500, &[495, 95], &[(390, 100, 0)]));
        assert_eq!(moves.len(), 1);
        assert_eq!((moves[0].worker, moves[0].from, moves[0].to), (0, 0, 1));
        assert!((moves[0].waited - 0.2).abs() < 1e-9);
        assert!((moves[0].from_busy - 0.99).abs() < 1e-9 && (moves[0].to_busy - 0.19).abs() < 1e-9);
        assert_eq!(placer.bound(0), Some(1));
        // Held for a while, whatever it sees.
        assert!(placer.observe(reading(1000, &[975, 395], &[(600, 300, 1)])).is_empty());
        // Later it waits a little on CPU 1 (60% busy), but CPU 0 (96%) is no better.
        assert!(placer.observe(reading(3000, &[2895, 1595], &[(1500, 640, 1)])).is_empty());
        assert_eq!(placer.bound(0), Some(1));
    }

    /// The CPUs of `moves` as (from, to).
    fn places(moves: &[Move]) -> Vec<(usize, usize)> {
        moves.iter().map(|m| (m.from, m.to)).collect()
    }

    #[test]
    fn idle_workers_stay_unbound_and_busy_ones_are_bound_where_they_run() {
        let mut placer = Placer::new(vec![0, 1], 1);
        placer.observe(reading(0, &[0, 0], &[(0, 0, 0)]));
        // Waited a lot but barely ran (a latency test): left alone.
        assert!(placer.observe(reading(500, &[495, 0], &[(20, 100, 0)])).is_empty());
        assert_eq!(placer.bound(0), None);
        // Ran a lot without waiting: bound to the CPU it runs on.
        assert_eq!(places(&placer.observe(reading(1000, &[990, 0], &[(420, 101, 0)]))), vec![(0, 0)]);
        assert_eq!(placer.bound(0), Some(0));
        assert!(placer.observe(reading(1500, &[1490, 0], &[(820, 102, 0)])).is_empty(), "bound: nothing more");
    }

    #[test]
    fn a_worker_bound_where_it_ran_may_leave_at_once_when_it_waits_there() {
        let mut placer = Placer::new(vec![0, 1], 1);
        placer.observe(reading(0, &[0, 0], &[(0, 0, 0)]));
        assert_eq!(places(&placer.observe(reading(500, &[250, 250], &[(200, 0, 0)]))), vec![(0, 0)]);
        // Next interval a sender pinned to CPU 0 starts: CPU 0 full, CPU 1 idle.
        assert_eq!(places(&placer.observe(reading(1000, &[750, 300], &[(600, 50, 0)]))), vec![(0, 1)]);
    }

    #[test]
    fn a_waiting_worker_stays_where_it_is_when_the_other_cpu_is_as_busy() {
        let mut placer = Placer::new(vec![0, 1], 1);
        placer.observe(reading(0, &[0, 0], &[(0, 0, 0)]));
        // Waited 25% on CPU 0 (95% busy), but CPU 1 is 90% busy: settled on CPU 0.
        assert_eq!(places(&placer.observe(reading(500, &[475, 450], &[(310, 125, 0)]))), vec![(0, 0)]);
    }

    #[test]
    fn two_waiting_workers_do_not_pile_onto_one_cpu() {
        let mut placer = Placer::new(vec![0, 1, 2], 2);
        placer.observe(reading(0, &[0, 0, 0], &[(0, 0, 0), (0, 0, 0)]));
        // Both workers on CPU 0 (100% busy); CPUs 1 and 2 idle.
        let moves = placer.observe(reading(500, &[500, 0, 0], &[(240, 150, 0), (240, 200, 0)]));
        let placed: Vec<(usize, usize)> = moves.iter().map(|m| (m.worker, m.to)).collect();
        assert_eq!(placed, vec![(1, 1), (0, 2)], "the more delayed worker moves first, the other to the next idle CPU");
    }

    #[test]
    fn cpus_outside_the_allowed_set_are_never_chosen() {
        let mut placer = Placer::new(vec![0, 2], 1);
        placer.observe(reading(0, &[0, 0, 0], &[(0, 0, 0)]));
        let moves = placer.observe(reading(500, &[500, 0, 100], &[(300, 200, 0)]));
        assert_eq!(moves.iter().map(|m| m.to).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn a_move_that_would_only_shift_the_overload_is_not_made() {
        // Two streams: the worker shares CPU 1 (90% busy) with the servers;
        // CPU 0 (the client's) is 60% busy. With its 55% of work added CPU 0
        // would be the overloaded one: it stays, bound where it is.
        let mut placer = Placer::new(vec![0, 1], 1);
        placer.observe(reading(0, &[0, 0], &[(0, 0, 1)]));
        assert_eq!(places(&placer.observe(reading(500, &[300, 450], &[(275, 90, 1)]))), vec![(1, 1)]);
    }

    #[test]
    fn empty_polls_are_not_load() {
        // The worker ran 90% of the time on CPU 1 and waited 20%, but 60% was
        // polling that found nothing: CPU 1 is really 40% busy, less than
        // CPU 0's 70%, so it stays (bound there).
        let mut placer = Placer::new(vec![0, 1], 1);
        placer.observe(polled_reading(0, &[0, 0], &[(0, 0, 1, 0)]));
        let moves = placer.observe(polled_reading(500, &[350, 500], &[(450, 100, 1, 300)]));
        assert_eq!(places(&moves), vec![(1, 1)]);
    }

    #[test]
    fn affinity_parses_auto_none_and_cpu_lists() {
        assert_eq!("auto".parse(), Ok(CpuAffinity::Auto));
        assert_eq!("none".parse(), Ok(CpuAffinity::Scheduler));
        assert_eq!("3,0-1,1".parse(), Ok(CpuAffinity::Fixed(vec![0, 1, 3])));
        for bad in ["", "x", "2-1", "0,", "1-2-3", "5000"] {
            assert!(bad.parse::<CpuAffinity>().is_err(), "{bad:?} must be refused");
        }
        assert_eq!(CpuAffinity::Fixed(vec![0, 2]).to_string(), "0,2");
    }
}
