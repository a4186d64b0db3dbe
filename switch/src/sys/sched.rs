//! What the scheduler tells about CPUs and threads, and binding a thread to
//! CPUs: the input and the output of worker placement
//! (`daemon::placement`).
//!
//! The readers parse `/proc` text with pure functions ([`parse_cpu_times`],
//! [`parse_schedstat`], [`parse_last_cpu`]) so the formats are tested
//! without a kernel.

use std::io;

/// Cumulative time one CPU spent busy and in total since boot, in clock
/// ticks (`/proc/stat`). Only differences between two readings mean
/// anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTimes {
    /// user + nice + system + irq + softirq + steal.
    pub busy: u64,
    /// busy + idle + iowait.
    pub total: u64,
}

/// Cumulative scheduler accounting of one thread
/// (`/proc/self/task/TID/schedstat`, `stat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ThreadSched {
    /// Nanoseconds it ran on a CPU.
    pub run_ns: u64,
    /// Nanoseconds it was runnable but waited on a run queue: the time it
    /// lost to other tasks on its CPU.
    pub wait_ns: u64,
    /// The CPU it last ran on.
    pub cpu: usize,
}

/// The calling thread's kernel thread ID.
pub fn gettid() -> u32 {
    // SAFETY: gettid(2) takes no arguments and cannot fail.
    unsafe { libc::gettid() as u32 }
}

/// The CPUs this process may run on (its affinity mask at start: a
/// `taskset` or cgroup limit the operator set), in ascending order.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: sched_getaffinity writes at most size_of(cpu_set_t) bytes
    // into `set`, which lives for the call.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: CPU_ISSET only reads the set; `cpu` is below its capacity.
    Ok((0..max).filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) }).collect())
}

/// Lets thread `tid` (of this process) run only on `cpus`.
pub fn set_thread_affinity(tid: u32, cpus: &[usize]) -> io::Result<()> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
    for &cpu in cpus {
        if cpu >= max {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("CPU {cpu} is beyond {max}")));
        }
        // SAFETY: CPU_SET writes one bit inside the set; `cpu` < capacity.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: sched_setaffinity reads size_of(cpu_set_t) bytes from `set`,
    // which lives for the call; `tid` names a thread or the call fails.
    let rc = unsafe { libc::sched_setaffinity(tid as libc::pid_t, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Every CPU's times from `/proc/stat`, indexed by CPU number (a CPU that
/// is offline has no line and reads as zeros).
pub fn read_cpu_times() -> io::Result<Vec<CpuTimes>> {
    Ok(parse_cpu_times(&std::fs::read_to_string("/proc/stat")?))
}

/// The scheduler accounting of thread `tid` of this process.
pub fn read_thread_sched(tid: u32) -> io::Result<ThreadSched> {
    let schedstat = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))?;
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))?;
    let bad = |what| io::Error::new(io::ErrorKind::InvalidData, format!("unexpected {what} of thread {tid}"));
    let (run_ns, wait_ns) = parse_schedstat(&schedstat).ok_or_else(|| bad("schedstat"))?;
    let cpu = parse_last_cpu(&stat).ok_or_else(|| bad("stat"))?;
    Ok(ThreadSched { run_ns, wait_ns, cpu })
}

/// The `cpuN` lines of `/proc/stat` (`cpuN user nice system idle iowait irq
/// softirq steal ...`), indexed by N.
pub fn parse_cpu_times(text: &str) -> Vec<CpuTimes> {
    let mut cpus = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(n) = fields.next().and_then(|name| name.strip_prefix("cpu")).and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        let v: Vec<u64> = fields.take(8).map(|f| f.parse().unwrap_or(0)).collect();
        let at = |i: usize| v.get(i).copied().unwrap_or(0);
        let busy = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
        let times = CpuTimes { busy, total: busy + at(3) + at(4) };
        if cpus.len() <= n {
            cpus.resize(n + 1, CpuTimes::default());
        }
        cpus[n] = times;
    }
    cpus
}

/// Run and wait nanoseconds from a `schedstat` line (`run wait slices`).
pub fn parse_schedstat(text: &str) -> Option<(u64, u64)> {
    let mut fields = text.split_ascii_whitespace();
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

/// The `processor` field (39th) of a `stat` line: the CPU the thread last
/// ran on. The command name (field 2) may hold spaces and parentheses, so
/// fields are counted after its closing parenthesis.
pub fn parse_last_cpu(text: &str) -> Option<usize> {
    let after_name = &text[text.rfind(')')? + 1..];
    // Field 3 (state) is the first after the name; field 39 is 36 later.
    after_name.split_ascii_whitespace().nth(36)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lines_are_read_by_number_and_the_summary_line_is_skipped() {
        let text = "cpu  10 0 10 100 0 0 0 0 0 0\n\
                    cpu0 1 2 3 4 5 6 7 8 0 0\n\
                    cpu2 10 0 0 90 0 0 0 0 0 0\n\
                    intr 5 6\n";
        let cpus = parse_cpu_times(text);
        assert_eq!(cpus.len(), 3);
        assert_eq!(cpus[0], CpuTimes { busy: 1 + 2 + 3 + 6 + 7 + 8, total: 36 });
        assert_eq!(cpus[1], CpuTimes::default(), "an offline CPU reads as zeros");
        assert_eq!(cpus[2], CpuTimes { busy: 10, total: 100 });
    }

    #[test]
    fn schedstat_gives_run_and_wait() {
        assert_eq!(parse_schedstat("65898315 1096970 32\n"), Some((65_898_315, 1_096_970)));
        assert_eq!(parse_schedstat("garbage"), None);
    }

    #[test]
    fn the_last_cpu_is_found_after_a_name_with_spaces_and_parentheses() {
        let rest: Vec<String> = (3..=52).map(|i| if i == 39 { "1".to_string() } else { i.to_string() }).collect();
        let line = format!("1234 (vsw dp) (x)) {}\n", rest.join(" "));
        assert_eq!(parse_last_cpu(&line), Some(1));
        assert_eq!(parse_last_cpu("1234 (short) S 1 2"), None);
    }

    #[test]
    fn this_thread_can_be_read_and_bound_to_an_allowed_cpu() {
        let allowed = allowed_cpus().expect("affinity");
        assert!(!allowed.is_empty());
        let tid = gettid();
        let before = read_thread_sched(tid).expect("schedstat of this thread");
        let target = *allowed.last().unwrap();
        std::thread::spawn(move || {
            // Bound from another thread, as the placement thread does.
            set_thread_affinity(tid, &[target]).expect("bind");
        })
        .join()
        .unwrap();
        // Burn a little CPU so the scheduler moves it and accounts time.
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let after = read_thread_sched(tid).expect("schedstat of this thread");
        assert_eq!(after.cpu, target, "the thread runs where it was bound");
        assert!(after.run_ns > before.run_ns, "run time moves");
        set_thread_affinity(tid, &allowed).expect("unbind");
        assert!(set_thread_affinity(tid, &[100_000]).is_err(), "a CPU beyond the set is refused");
    }
}
