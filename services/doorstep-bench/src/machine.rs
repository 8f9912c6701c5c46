//! What the benchmark ran on, and how busy the CPUs were while it ran. Read from `/proc`, so on
//! other systems these figures are simply absent.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

/// Linux reports CPU time in clock ticks; `USER_HZ` is 100 on every mainstream architecture.
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub memory_gib: Option<f64>,
    /// The filesystem holding the data directories, e.g. `ext4 on /dev/vda (mounted at /)`.
    pub data_filesystem: Option<String>,
}

impl Machine {
    /// This machine, with the filesystem of `data_dir` when the data is local files.
    pub fn describe(data_dir: Option<&Path>) -> Self {
        Self {
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            memory_gib: memory_gib(),
            data_filesystem: data_dir.and_then(filesystem_of),
        }
    }
}

fn memory_gib() -> Option<f64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: f64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib / (1024.0 * 1024.0))
}

/// The mount with the longest mount point that contains `path`.
pub fn filesystem_of(path: &Path) -> Option<String> {
    let path = path.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let device = fields.next()?;
            let mount_point = fields.next()?;
            let filesystem_type = fields.next()?;
            path.starts_with(mount_point)
                .then_some((mount_point, device, filesystem_type))
        })
        .max_by_key(|(mount_point, _, _)| mount_point.len())
        .map(|(mount_point, device, filesystem_type)| {
            format!("{filesystem_type} on {device} (mounted at {mount_point})")
        })
}

/// CPU time used while a phase ran: by this process (server and clients both live here) and by
/// the whole machine (which shows other work competing for the two cores).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CpuUsage {
    /// This process's user plus system CPU time over the phase, in seconds (10 ms resolution).
    pub process_cpu_seconds: f64,
    /// This process's CPU time over wall time, in percent of one core (200 = two cores busy).
    pub process_percent_of_one_core: f64,
    /// Every CPU's busy time over the machine's capacity, in percent.
    pub machine_busy_percent: f64,
    /// Time CPUs sat idle waiting for I/O, in percent of the machine's capacity.
    pub machine_iowait_percent: f64,
}

/// A reading taken when a phase starts; [`CpuSnapshot::usage_since`] ends it.
#[derive(Debug, Clone, Copy)]
pub struct CpuSnapshot {
    at: Instant,
    process_ticks: Option<u64>,
    machine: Option<MachineTicks>,
}

#[derive(Debug, Clone, Copy)]
struct MachineTicks {
    total: u64,
    idle: u64,
    iowait: u64,
}

impl CpuSnapshot {
    pub fn now() -> Self {
        Self {
            at: Instant::now(),
            process_ticks: process_ticks(),
            machine: machine_ticks(),
        }
    }

    pub fn usage_since(start: &Self) -> Option<CpuUsage> {
        let end = Self::now();
        let wall_seconds = end.at.duration_since(start.at).as_secs_f64();
        let process = end.process_ticks?.checked_sub(start.process_ticks?)?;
        let (machine_start, machine_end) = (start.machine?, end.machine?);
        let total = machine_end.total.checked_sub(machine_start.total)?;
        let idle = machine_end.idle.checked_sub(machine_start.idle)?;
        let iowait = machine_end.iowait.checked_sub(machine_start.iowait)?;
        if wall_seconds <= 0.0 || total == 0 {
            return None;
        }
        let total = total as f64;
        let process_cpu_seconds = process as f64 / TICKS_PER_SECOND;
        Some(CpuUsage {
            process_cpu_seconds,
            process_percent_of_one_core: 100.0 * process_cpu_seconds / wall_seconds,
            machine_busy_percent: 100.0 * (total - idle as f64 - iowait as f64) / total,
            machine_iowait_percent: 100.0 * iowait as f64 / total,
        })
    }
}

/// User plus system time of this process, from `/proc/self/stat` (fields 14 and 15).
fn process_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; every field after its closing parenthesis is
    // numeric, and field 3 is the first of them.
    let after_name = stat.rsplit_once(')')?.1;
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

/// The machine-wide line of `/proc/stat`: user nice system idle iowait irq softirq steal …
fn machine_ticks() -> Option<MachineTicks> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    Some(MachineTicks {
        total: values.iter().sum(),
        idle: *values.get(3)?,
        iowait: *values.get(4)?,
    })
}
