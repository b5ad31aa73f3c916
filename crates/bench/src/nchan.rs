//! nginx + nchan as a child process: a generated configuration in a throwaway directory, one
//! worker, an EventSource subscriber and a publisher on one channel, on 127.0.0.1 only.
//!
//! The Debian packages are `nginx` and `libnginx-mod-nchan` (see BENCHMARKS.md). nginx runs
//! in the foreground (`daemon off`) under the same `taskset -c K` as quotabell-server, so both
//! servers get the same core. [`Nginx`] stops the master (which stops its worker) when dropped,
//! kills what is left (a master killed outright leaves its worker running) and removes the
//! directory. The master also gets `PR_SET_PDEATHSIG`, so it dies with the bench.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use quotabell_testbed::process;

use crate::BoxError;
use crate::launcher::Launcher;
use crate::sys;

const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);
/// Where Debian's libnginx-mod-nchan installs the module.
pub const DEFAULT_MODULE: &str = "/usr/lib/nginx/modules/ngx_nchan_module.so";
/// The publisher and subscriber locations of the generated configuration.
pub const PUBLISH_PATH: &str = "/pub";
pub const SUBSCRIBE_PATH: &str = "/sub";

/// Which nginx and which module.
#[derive(Clone)]
pub struct Setup {
    pub nginx: PathBuf,
    pub module: PathBuf,
}

pub struct Nginx {
    child: Child,
    pub addr: SocketAddr,
    pub master: u32,
    pub worker: u32,
    dir: PathBuf,
}

impl Setup {
    /// Fails early, with the apt line, when nginx or the module is missing.
    pub fn check(&self) -> Result<(), BoxError> {
        let hint = "install them with `apt-get install --no-install-recommends nginx libnginx-mod-nchan`, or pass --nginx-bin / --nchan-module";
        if !self.module.is_file() {
            return Err(format!("nchan module {} not found; {hint}", self.module.display()).into());
        }
        let ok = Command::new(&self.nginx)
            .arg("-v")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err(format!("cannot run {} -v; {hint}", self.nginx.display()).into());
        }
        Ok(())
    }

    /// "nginx/1.22.1, libnginx-mod-nchan 1:1.3.6+dfsg-2" as far as it can be told.
    pub fn versions(&self) -> String {
        let nginx = Command::new(&self.nginx)
            .arg("-v")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
            .and_then(|v| v.strip_prefix("nginx version: ").map(str::to_owned))
            .unwrap_or_else(|| "nginx (version unknown)".into());
        let nchan = Command::new("dpkg-query")
            .args(["-W", "-f", "${Version}", "libnginx-mod-nchan"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| format!("libnginx-mod-nchan {}", String::from_utf8_lossy(&o.stdout)))
            .unwrap_or_else(|| format!("nchan module {}", self.module.display()));
        format!("{nginx}, {nchan}")
    }

    /// Starts nginx on a free loopback port, able to hold `streams` subscribers.
    pub fn start(&self, launcher: &Launcher, streams: usize) -> Result<Nginx, BoxError> {
        let (_, hard) = sys::nofile_limits()?;
        // The worker cannot raise its limit past the hard limit it inherits (that needs
        // CAP_SYS_RESOURCE, which root in this container lacks: asking for more logs an alert
        // and keeps the old limit), so it asks for the hard limit (capped where the kernel's
        // nr_open default would refuse it) and accepts a connection per descriptor but a few
        // (listen socket, logs, eventfd, the publisher).
        let nofile = hard.min(1 << 20);
        let connections = nofile.saturating_sub(32);
        if (connections as usize) < streams + 16 {
            return Err(format!(
                "the open-files limit ({nofile}) is too low for {streams} nchan subscribers"
            )
            .into());
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!(
            "quotabell-bench-{}-nchan-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir)?;
        // nginx binds the port itself: a port the kernel just handed out and that was closed
        // again is free unless something else grabs it in between, which startup would report.
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config(&dir, &self.module, addr, nofile, connections))?;
        let log = std::fs::File::create(dir.join("stderr.log"))?;

        let mut cmd = match launcher.cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string()).arg(&self.nginx);
                c
            }
            None => Command::new(&self.nginx),
        };
        // `-e` moves the log nginx opens before it reads the configuration; `-p` keeps every
        // relative path of the build (temp directories and such) inside the directory.
        cmd.arg("-p")
            .arg(path_with_slash(&dir))
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-g")
            .arg("daemon off;")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        Launcher::placement(
            launcher
                .cpu
                .is_none()
                .then_some(launcher.original_mask)
                .flatten(),
        )
        .apply(&mut cmd);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.nginx.display()))?;
        // From here on the guard owns the child: any early return stops it.
        let mut nginx = Nginx {
            master: child.id(),
            child,
            addr,
            worker: 0,
            dir,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = nginx.exited() {
                return Err(format!(
                    "nginx exited at startup ({status}):\n{}",
                    nginx.log_tail(20)
                )
                .into());
            }
            if nginx.worker == 0 {
                nginx.worker = worker_of(nginx.master).unwrap_or(0);
            }
            if nginx.worker != 0
                && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            {
                return Ok(nginx);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "nginx did not start listening on {addr} within {STARTUP_TIMEOUT:?}:\n{}",
                    nginx.log_tail(20)
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `-p` wants the prefix with a trailing slash: nginx glues relative paths straight onto it.
fn path_with_slash(dir: &Path) -> String {
    let mut s = dir.display().to_string();
    if !s.ends_with('/') {
        s.push('/');
    }
    s
}

/// The configuration: one worker, one channel, no access log.
fn config(dir: &Path, module: &Path, addr: SocketAddr, nofile: u64, connections: u64) -> String {
    let d = dir.display();
    format!(
        r#"# Generated by quotabell-bench (fanout-vs-nchan).
load_module {module};
worker_processes 1;
worker_rlimit_nofile {nofile};
pid {d}/nginx.pid;
error_log {d}/error.log warn;

events {{
    worker_connections {connections};
}}

http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;

    server {{
        listen {addr};

        location = {PUBLISH_PATH} {{
            nchan_publisher;
            nchan_channel_id bench;
            # The bench needs no history: one message kept, for long enough to outlast a run.
            nchan_message_buffer_length 1;
            nchan_message_timeout 10m;
        }}

        location = {SUBSCRIBE_PATH} {{
            nchan_subscriber eventsource;
            nchan_channel_id bench;
            # A new subscriber waits for the next message instead of getting the stored one,
            # like a Quotabell stream opened without a cursor.
            nchan_subscriber_first_message newest;
            # Subscribers stay until the bench closes them (0: no timeout, the default, kept
            # explicit because a timeout would drop subscribers between rounds).
            nchan_subscriber_timeout 0;
        }}
    }}
}}
"#,
        module = module.display(),
    )
}

/// The worker process of an nginx master.
fn worker_of(master: u32) -> Option<u32> {
    process::descendants(master)
        .into_iter()
        .find(|&p| p != master && is_worker(p))
}

/// Whether `pid` is an nginx worker, by the title nginx gives it.
fn is_worker(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| String::from_utf8_lossy(&c).contains("nginx: worker process"))
}

impl Nginx {
    /// The last `n` lines of nginx's error log and standard error.
    pub fn log_tail(&self, n: usize) -> String {
        let mut out = Vec::new();
        for name in ["error.log", "stderr.log"] {
            let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.extend(
                lines[lines.len().saturating_sub(n)..]
                    .iter()
                    .map(|l| format!("{name}: {l}")),
            );
        }
        out.join("\n")
    }

    /// `None` while the master runs; its exit status once it has stopped.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM is nginx's fast shutdown: the master stops the worker, then exits.
        process::signal(self.master, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.exited().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The worker is the master's child, not ours: end it only if it is still a worker (its
        // pid could have been reused once it ended).
        if self.worker != 0 && process::alive(self.worker) && is_worker(self.worker) {
            process::signal(self.worker, libc::SIGKILL);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_has_one_worker_and_both_locations() {
        let conf = config(
            Path::new("/tmp/x"),
            Path::new(DEFAULT_MODULE),
            SocketAddr::from(([127, 0, 0, 1], 8080)),
            20_000,
            19_968,
        );
        for line in [
            "load_module /usr/lib/nginx/modules/ngx_nchan_module.so;",
            "worker_processes 1;",
            "worker_rlimit_nofile 20000;",
            "worker_connections 19968;",
            "listen 127.0.0.1:8080;",
            "location = /pub {",
            "nchan_publisher;",
            "location = /sub {",
            "nchan_subscriber eventsource;",
        ] {
            assert!(conf.contains(line), "missing {line:?} in\n{conf}");
        }
        assert!(!conf.contains("{{"), "unexpanded braces in\n{conf}");
    }
}
