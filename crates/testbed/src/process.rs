//! Processes from the outside: where a child runs and that it dies with its starter
//! ([`Placement`]), signals, and the process tree and argv from /proc. Tests use the tree to
//! find the app's window and WebKit processes; the bench to sum their memory.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// A CPU set as the kernel's affinity mask.
#[derive(Clone, Copy)]
pub struct CpuMask(libc::cpu_set_t);

impl CpuMask {
    /// The CPUs the calling thread may run on.
    pub fn current() -> std::io::Result<Self> {
        // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(Self(set))
        }
    }

    pub fn single(cpu: usize) -> Self {
        // SAFETY: CPU_SET writes one bit of a zeroed plain-data set.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            Self(set)
        }
    }

    pub fn cpus(&self) -> Vec<usize> {
        (0..libc::CPU_SETSIZE as usize)
            // SAFETY: reads one bit of the set, index within CPU_SETSIZE.
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &self.0) })
            .collect()
    }

    /// Applies the mask to the calling thread; threads it starts later inherit it.
    /// Async-signal-safe (one syscall), so usable between fork and exec.
    pub fn apply(&self) -> std::io::Result<()> {
        // SAFETY: passes a valid, fully initialised cpu_set_t.
        let rc =
            unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.0) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// How a child is started. The default (what the tests use) changes nothing. The bench wants
/// its children gone when it is killed outright (`die_with_parent`), and some of them on other
/// CPUs than its own pinned one (`mask`).
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that started the child ends, not the process:
/// start such children from a thread that outlives them. That is why the tests leave it off
/// (they restart engines from short-lived helper threads).
#[derive(Clone, Copy, Default)]
pub struct Placement {
    pub die_with_parent: bool,
    pub mask: Option<CpuMask>,
}

impl Placement {
    /// Applies the placement to `cmd`; a no-op for the default.
    pub fn apply(&self, cmd: &mut Command) {
        if !self.die_with_parent && self.mask.is_none() {
            return;
        }
        let Placement {
            die_with_parent,
            mask,
        } = *self;
        // SAFETY: the closure runs between fork and exec and makes only async-signal-safe
        // syscalls (prctl, sched_setaffinity); it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                if die_with_parent {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                }
                if let Some(mask) = &mask {
                    mask.apply()?;
                }
                Ok(())
            });
        }
    }
}

/// Sends `sig` to `pid`.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill has no memory effects; callers pass children they started and have not
    // reaped yet, so the pid cannot name another process.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Every live process below `pid` (parents before their children), from /proc.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(pp) = parent_of(p) {
                parents.push((p, pp));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for &(c, pp) in &parents {
            if pp == p && !out.contains(&c) {
                out.push(c);
                frontier.push(c);
            }
        }
    }
    out
}

/// `root`, if it is alive, and every live process below it, parents before children.
pub fn process_tree(root: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if alive(root) {
        out.push(root);
    }
    out.extend(descendants(root));
    out
}

/// The parent pid of a live process (field 4 of /proc/<pid>/stat; the name may hold spaces);
/// `None` for a zombie or a process that is gone.
pub fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut f = rest.split_whitespace();
    let state = f.next()?;
    if state == "Z" {
        return None;
    }
    f.next()?.parse().ok()
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    parent_of(pid).is_some()
}

/// A process's argv, from /proc (empty if it is gone).
pub fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Resident memory of a process, in KiB, from /proc/PID/status.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pub rss_kib: u64,
    /// The peak (VmHWM).
    pub hwm_kib: u64,
    pub threads: u64,
}

impl Memory {
    pub fn of(pid: u32) -> Option<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| number_field(&status, name);
        Some(Self {
            rss_kib: field("VmRSS:")?,
            hwm_kib: field("VmHWM:")?,
            threads: field("Threads:").unwrap_or(0),
        })
    }
}

/// The number after `name` in a /proc file of `Name:  value [kB]` lines (status, meminfo,
/// smaps_rollup): the first line that starts with `name`, its second word.
pub fn number_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}
