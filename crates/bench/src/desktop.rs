//! A private desktop session for the engine, as the end-to-end tests build it: a D-Bus session
//! bus, gnome-keyring's Secret Service (the engine's keychain) and the dunst notification
//! daemon, all children of the bench on a socket in a throwaway directory. Plus an optional
//! `dbus-monitor` that reports every `Notify` call made on that bus.
//!
//! [`Desktop`] kills its children and removes its directory when dropped; every child also
//! gets `PR_SET_PDEATHSIG`. dunst needs an X display: run the bench under `xvfb-run -a`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use crate::BoxError;
use crate::sys::{self, CpuMask};

const NAMES_TIMEOUT: Duration = Duration::from_secs(15);

/// The dunst configuration of the end-to-end tests (every notification kept, none stacked),
/// except that each is on screen for only [`NOTIFICATION_SHOWN`]: drawing one costs dunst and
/// Xvfb tens of milliseconds of CPU, and the bench waits for the desktop to be idle again.
const DUNSTRC: &str = "[global]
    stack_duplicates = false
    history_length = 100000
    idle_threshold = 0
    sticky_history = yes
    notification_limit = 0
[urgency_low]
    timeout = 200ms
[urgency_normal]
    timeout = 200ms
[urgency_critical]
    timeout = 200ms
";

/// How long dunst shows a notification (see [`DUNSTRC`]).
pub const NOTIFICATION_SHOWN: Duration = Duration::from_millis(200);

pub struct Desktop {
    pub dir: PathBuf,
    pub bus: String,
    /// The notification daemon's pid.
    pub dunst: u32,
    children: Vec<Child>,
}

/// One `Notify` method call seen on the bus.
#[derive(Debug, Clone)]
pub struct Notified {
    /// When `dbus-monitor` received it (its `time=` header), in unix seconds.
    pub at: f64,
    /// The call's arguments as `dbus-monitor` prints them (app name, icon, summary, body, ...).
    pub text: String,
}

/// The running `dbus-monitor`; its reader thread sends every `Notify` call it prints.
pub struct Monitor {
    child: Child,
    pub calls: mpsc::UnboundedReceiver<Notified>,
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Desktop {
    pub fn start(label: &str) -> Result<Self, BoxError> {
        if std::env::var_os("DISPLAY").is_none() {
            return Err(
                "no X display for the notification daemon (dunst): run the bench under `xvfb-run -a`"
                    .into(),
            );
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!(
            "quotabell-bench-{}-{label}-desktop-{nanos}",
            std::process::id()
        ));
        let home = dir.join("home");
        std::fs::create_dir_all(home.join(".local/share"))?;
        // From here on the guard owns the directory and every child started.
        let mut me = Self {
            dir,
            bus: String::new(),
            dunst: 0,
            children: Vec::new(),
        };

        let mut cmd = Command::new("dbus-daemon");
        cmd.args(["--session", "--nofork", "--print-address=1"])
            .arg(format!(
                "--address=unix:path={}",
                me.dir.join("bus").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        sys::die_with_parent(&mut cmd, None);
        let mut daemon = cmd
            .spawn()
            .map_err(|e| format!("cannot start dbus-daemon: {e}"))?;
        let stdout = daemon.stdout.take();
        me.children.push(daemon);
        let mut line = String::new();
        if let Some(out) = stdout {
            BufReader::new(out).read_line(&mut line)?;
        }
        me.bus = line.trim().to_owned();
        if !me.bus.starts_with("unix:") {
            return Err(format!("dbus-daemon printed no address: {line:?}").into());
        }

        let mut cmd = me.command("gnome-keyring-daemon");
        cmd.args(["--foreground", "--unlock", "--components=secrets"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        sys::die_with_parent(&mut cmd, None);
        let mut keyring = cmd
            .spawn()
            .map_err(|e| format!("cannot start gnome-keyring-daemon: {e}"))?;
        let stdin = keyring.stdin.take();
        me.children.push(keyring);
        // The password must not be empty; closing stdin ends it.
        if let Some(mut stdin) = stdin {
            stdin.write_all(b"pw")?;
        }

        let rc = me.dir.join("dunstrc");
        std::fs::write(&rc, DUNSTRC)?;
        let mut cmd = me.command("dunst");
        cmd.arg("-config")
            .arg(&rc)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        sys::die_with_parent(&mut cmd, None);
        let dunst = cmd
            .spawn()
            .map_err(|e| format!("cannot start dunst: {e}"))?;
        me.dunst = dunst.id();
        me.children.push(dunst);

        for name in ["org.freedesktop.secrets", "org.freedesktop.Notifications"] {
            let start = Instant::now();
            while !me.has_owner(name) {
                if start.elapsed() > NAMES_TIMEOUT {
                    return Err(format!("nobody took {name} on the private bus").into());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(me)
    }

    /// A command that runs inside this session (its bus, its keyring home).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        self.apply_env(&mut c);
        c
    }

    fn apply_env(&self, c: &mut Command) {
        let home = self.dir.join("home");
        c.env("DBUS_SESSION_BUS_ADDRESS", &self.bus)
            .env("HOME", &home)
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("XDG_RUNTIME_DIR", &self.dir)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_STATE_HOME");
    }

    /// The same environment for a tokio command.
    pub fn tokio_command(&self, program: impl AsRef<std::ffi::OsStr>) -> tokio::process::Command {
        let mut c = Command::new(program);
        self.apply_env(&mut c);
        let mut c = tokio::process::Command::from(c);
        c.kill_on_drop(true);
        c
    }

    fn has_owner(&self, name: &str) -> bool {
        self.command("dbus-send")
            .args([
                "--session",
                "--print-reply",
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.NameHasOwner",
            ])
            .arg(format!("string:{name}"))
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("boolean true"))
            .unwrap_or(false)
    }

    /// Starts `dbus-monitor` for `Notify` calls and waits until it is listening. `mask` puts it
    /// on other CPUs than the bench's, so that it does not queue behind the daemons it watches.
    pub fn monitor(&self, mask: Option<CpuMask>) -> Result<Monitor, BoxError> {
        let mut cmd = self.command("dbus-monitor");
        cmd.args([
            "--session",
            "type='method_call',interface='org.freedesktop.Notifications',member='Notify'",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        sys::die_with_parent(&mut cmd, mask);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start dbus-monitor: {e}"))?;
        let stdout = child.stdout.take().ok_or("dbus-monitor has no stdout")?;
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || read_monitor(stdout, &tx, &ready_tx));
        let monitor = Monitor { child, calls: rx };
        // It prints the NameAcquired/NameLost signals of its own connection once it monitors.
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| "dbus-monitor did not start monitoring")?;
        Ok(monitor)
    }
}

impl Drop for Desktop {
    fn drop(&mut self) {
        for c in self.children.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Parses `dbus-monitor`'s text: a header line per message (`method call time=S.US ...
/// member=Notify`), then its arguments indented by three spaces. A `Notify` call ends with
/// its last argument, the `int32` expiry timeout.
fn read_monitor(
    stdout: std::process::ChildStdout,
    tx: &mpsc::UnboundedSender<Notified>,
    ready: &std::sync::mpsc::Sender<()>,
) {
    let mut current: Option<Notified> = None;
    let mut signalled = false;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if !signalled {
            let _ = ready.send(());
            signalled = true;
        }
        let header = ["method call ", "signal ", "method return ", "error "]
            .iter()
            .any(|p| line.starts_with(p));
        if header {
            if let Some(n) = current.take() {
                let _ = tx.send(n);
            }
            if line.starts_with("method call ") && line.contains("member=Notify") {
                current = header_time(&line).map(|at| Notified {
                    at,
                    text: String::new(),
                });
            }
            continue;
        }
        if let Some(n) = current.as_mut() {
            n.text.push_str(&line);
            n.text.push('\n');
            if line.starts_with("   int32 ")
                && let Some(n) = current.take()
            {
                let _ = tx.send(n);
            }
        }
    }
    if let Some(n) = current.take() {
        let _ = tx.send(n);
    }
}

fn header_time(line: &str) -> Option<f64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("time="))
        .and_then(|t| t.parse().ok())
}

/// Copies a directory tree of regular files (a stopped engine's profile).
pub fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn header_time() {
        let l = "method call time=1795443239.399895 sender=:1.3 -> destination=:1.1 serial=9 \
                 path=/org/freedesktop/Notifications; interface=org.freedesktop.Notifications; member=Notify";
        assert_eq!(super::header_time(l), Some(1_795_443_239.399_895));
    }
}
