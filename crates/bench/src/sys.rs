//! The OS facts the bench measures with: file limits, machine description, CPU time and
//! memory from /proc. Starting and placing children, the process tree and resident memory are
//! the test bed's (`quotabell_testbed::process`).

use std::process::{Command, Stdio};

use quotabell_testbed::process;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns (before, after, hard).
pub fn raise_nofile() -> std::io::Result<(u64, u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let before = lim.rlim_cur;
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok((before, lim.rlim_cur, lim.rlim_max))
    }
}

/// The soft and hard `RLIMIT_NOFILE` of this process.
pub fn nofile_limits() -> std::io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed by pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((lim.rlim_cur, lim.rlim_max))
}

pub fn taskset_available() -> bool {
    Command::new("taskset")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// "N CPUs online, MODEL, Linux RELEASE".
pub fn machine() -> String {
    // SAFETY: sysconf has no memory effects.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| process::number_field(&s, "MemTotal:"))
        .map(|kb| format!(", {:.1} GiB RAM", kb as f64 / 1024.0 / 1024.0))
        .unwrap_or_default();
    format!("{online} CPUs online ({model}){mem}, Linux {kernel}")
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// CPU seconds used so far by all live threads of `pid`, in nanosecond resolution from
/// /proc/PID/task/*/schedstat; falls back to the tick counts of /proc/PID/stat.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let from_schedstat = || -> Option<f64> {
        let mut ns: u64 = 0;
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
            let path = task.ok()?.path().join("schedstat");
            // A thread may end between the listing and the read: skip it.
            if let Ok(text) = std::fs::read_to_string(path) {
                ns += text.split_whitespace().next()?.parse::<u64>().ok()?;
            }
        }
        Some(ns as f64 / 1e9)
    };
    from_schedstat().or_else(|| stat_cpu_seconds(pid))
}

/// User + system CPU seconds of `pid` from /proc/PID/stat (clock-tick resolution), including
/// threads that have ended.
pub fn stat_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised name start at field 3 (state); utime and stime are 14, 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| (utime + stime) as f64 / hz as f64)
}

/// CPU seconds used so far by this process (all threads).
pub fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the plain-data struct passed by pointer.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut ru) != 0 {
            return 0.0;
        }
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(ru.ru_utime) + tv(ru.ru_stime)
    }
}

/// CPU seconds the whole machine has been busy (all CPUs, from /proc/stat).
fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let busy = v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)? + v.get(7)?;
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| busy as f64 / hz as f64)
}

/// Measures how busy the machine was with work other than the bench and its server, so that
/// a run disturbed by other jobs (a build next door) says so.
pub struct LoadProbe {
    start: std::time::Instant,
    busy: Option<f64>,
    server: Option<f64>,
    own: f64,
    /// The server's processes (nginx has a master and a worker).
    pids: Vec<u32>,
}

impl LoadProbe {
    pub fn start(server_pids: &[u32]) -> Self {
        Self {
            start: std::time::Instant::now(),
            busy: machine_busy_seconds(),
            server: cpu_seconds_of(server_pids),
            own: own_cpu_seconds(),
            pids: server_pids.to_vec(),
        }
    }

    /// Other processes' CPU use since `start`, in cores (1.0 = one core fully busy).
    pub fn other_cores(&self) -> Option<f64> {
        let wall = self.start.elapsed().as_secs_f64();
        let busy = machine_busy_seconds()? - self.busy?;
        let server = cpu_seconds_of(&self.pids)? - self.server?;
        let own = own_cpu_seconds() - self.own;
        (wall > 0.0).then(|| ((busy - server - own) / wall).max(0.0))
    }
}

/// [`cpu_seconds`] summed over several processes; `None` if any cannot be read.
pub fn cpu_seconds_of(pids: &[u32]) -> Option<f64> {
    pids.iter().map(|&p| cpu_seconds(p)).sum()
}

/// The name (`comm`) of thread `tid` of `pid`.
pub fn thread_name(pid: u32, tid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Voluntary and involuntary context switches of every thread of `pid`, by thread id.
pub fn context_switches(pid: u32) -> Option<std::collections::HashMap<u32, (u64, u64)>> {
    let mut out = std::collections::HashMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let task = task.ok()?;
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<u32>().ok())
        else {
            continue;
        };
        // A thread may end between the listing and the read: skip it.
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        let field = |name: &str| process::number_field(&status, name);
        if let (Some(v), Some(n)) = (
            field("voluntary_ctxt_switches:"),
            field("nonvoluntary_ctxt_switches:"),
        ) {
            out.insert(tid, (v, n));
        }
    }
    Some(out)
}

/// Context switches of a process's threads over a window, by thread name: read once a second
/// (reading /proc wakes nobody), so a thread that ends during the window counts with its last
/// reading and a periodic timer shows up under its thread's name.
pub struct ThreadSwitches {
    pid: u32,
    start: std::collections::HashMap<u32, (u64, u64)>,
    latest: std::collections::HashMap<u32, (u64, u64)>,
    names: std::collections::HashMap<u32, String>,
}

/// What [`ThreadSwitches`] counted.
#[derive(Debug, Clone, Default)]
pub struct Switches {
    pub voluntary: u64,
    pub involuntary: u64,
    pub threads_seen: usize,
    /// Context switches by thread name, most first.
    pub by_thread: Vec<(String, u64)>,
}

impl Switches {
    pub fn total(&self) -> u64 {
        self.voluntary + self.involuntary
    }

    /// "quotabell 40, tokio-runtime-w 2".
    pub fn by_thread_text(&self) -> String {
        let parts: Vec<String> = self
            .by_thread
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }
}

impl ThreadSwitches {
    pub fn start(pid: u32) -> Option<Self> {
        let start = context_switches(pid)?;
        let mut s = Self {
            pid,
            latest: start.clone(),
            start,
            names: std::collections::HashMap::new(),
        };
        s.name_new_threads();
        Some(s)
    }

    fn name_new_threads(&mut self) {
        for tid in self.latest.keys() {
            if !self.names.contains_key(tid)
                && let Some(name) = thread_name(self.pid, *tid)
            {
                self.names.insert(*tid, name);
            }
        }
    }

    /// One reading; call about once a second.
    pub fn sample(&mut self) {
        if let Some(now) = context_switches(self.pid) {
            self.latest.extend(now);
            self.name_new_threads();
        }
    }

    /// The counts since `start`, with a last reading.
    pub fn finish(mut self) -> Switches {
        self.sample();
        let mut out = Switches {
            threads_seen: self.latest.len(),
            ..Switches::default()
        };
        let mut by_name: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
        for (tid, (v, n)) in &self.latest {
            let (v0, n0) = self.start.get(tid).copied().unwrap_or((0, 0));
            out.voluntary += v.saturating_sub(v0);
            out.involuntary += n.saturating_sub(n0);
            let name = self.names.get(tid).cloned().unwrap_or_else(|| "?".into());
            *by_name.entry(name).or_default() += v.saturating_sub(v0) + n.saturating_sub(n0);
        }
        out.by_thread = by_name.into_iter().filter(|(_, n)| *n > 0).collect();
        out.by_thread
            .sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out
    }
}

/// CPU seconds of every process in this process group (the bench, its children, and whatever
/// runs it in the same job, such as `xvfb-run` and its Xvfb), including children they reaped.
/// A child that ends between two readings moves from its own line to its parent's `cutime`, so
/// differences stay right.
fn group_cpu_seconds() -> Option<f64> {
    // SAFETY: getpgrp has no memory effects.
    let pgrp = unsafe { libc::getpgrp() };
    let mut ticks: u64 = 0;
    for entry in std::fs::read_dir("/proc").ok()? {
        let Ok(entry) = entry else { continue };
        if !entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.get(2).and_then(|g| g.parse::<i32>().ok()) != Some(pgrp) {
            continue;
        }
        // utime, stime, cutime, cstime
        for i in 11..=14 {
            ticks += f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks as f64 / hz as f64)
}

/// Like [`LoadProbe`], for benchmarks with many children (engine, D-Bus, keyring, dunst,
/// server): everything in the bench's process group counts as the bench's own work.
pub struct GroupLoadProbe {
    start: std::time::Instant,
    busy: Option<f64>,
    group: Option<f64>,
}

impl GroupLoadProbe {
    pub fn start() -> Self {
        Self {
            start: std::time::Instant::now(),
            busy: machine_busy_seconds(),
            group: group_cpu_seconds(),
        }
    }

    /// Other processes' CPU use since `start`, in cores.
    pub fn other_cores(&self) -> Option<f64> {
        let wall = self.start.elapsed().as_secs_f64();
        let busy = machine_busy_seconds()? - self.busy?;
        let group = group_cpu_seconds()? - self.group?;
        (wall > 0.0).then(|| ((busy - group) / wall).max(0.0))
    }
}

/// The file name of a process's executable (`comm` when it cannot be read).
pub fn exe_name(pid: u32) -> String {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .or_else(|| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .ok()
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_default()
}

/// A process's memory from /proc/PID/smaps_rollup, in KiB.
#[derive(Debug, Clone, Default)]
pub struct Rollup {
    pub rss: u64,
    pub pss: u64,
    pub pss_anon: u64,
    pub pss_file: u64,
    pub pss_shmem: u64,
}

impl Rollup {
    pub fn of(pid: u32) -> Option<Self> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
        let field = |name: &str| process::number_field(&text, name);
        Some(Self {
            rss: field("Rss:")?,
            pss: field("Pss:")?,
            pss_anon: field("Pss_Anon:").unwrap_or(0),
            pss_file: field("Pss_File:").unwrap_or(0),
            pss_shmem: field("Pss_Shmem:").unwrap_or(0),
        })
    }
}

/// PSS in KiB by mapping (the file's path, or `[heap]`, `[anon]`, ...) from /proc/PID/smaps.
pub fn pss_by_mapping(pid: u32) -> std::collections::HashMap<String, u64> {
    let mut out = std::collections::HashMap::new();
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) else {
        return out;
    };
    let mut current = String::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        if first.contains('-') && !first.ends_with(':') {
            // "start-end perms offset dev inode [path]": the path may contain spaces.
            let path: Vec<&str> = words.skip(4).collect();
            current = if path.is_empty() {
                "[anon]".into()
            } else {
                path.join(" ")
            };
        } else if first == "Pss:"
            && let Some(kib) = words.next().and_then(|v| v.parse::<u64>().ok())
        {
            *out.entry(current.clone()).or_insert(0) += kib;
        }
    }
    out
}

/// Whether `pid`'s environment holds `needle` (as root, any process's can be read).
pub fn environ_contains(pid: u32, needle: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|env| {
            env.split(|&b| b == 0)
                .any(|kv| String::from_utf8_lossy(kv).contains(needle))
        })
        .unwrap_or(false)
}

/// Every live process whose executable name contains `part`.
pub fn processes_named(part: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| process::alive(p) && exe_name(p).contains(part))
        .collect()
}

/// Page cache in KiB (`Cached:` of /proc/meminfo).
pub fn page_cache_kib() -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| process::number_field(&s, "Cached:"))
}

/// `sync; echo 3 > /proc/sys/vm/drop_caches` (needs root): the page cache, dentries and
/// inodes are dropped, so the next start reads every file from disk again.
pub fn drop_caches() -> std::io::Result<()> {
    // SAFETY: sync has no memory effects.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", "3\n")
}
