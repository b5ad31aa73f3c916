//! A private desktop session: a D-Bus session bus, gnome-keyring's Secret Service (the engine's
//! keychain) unlocked with a password, and the dunst notification daemon, all on a socket in a
//! throwaway directory. Each test or bench gets its own, so that parallel tests never see each
//! other's notifications or secrets. dunst needs an X display (Xvfb).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::process::Placement;
use crate::{Error, Result, wait_for};

/// dunst keeps every notification (none stacked, none dropped from the history), so that
/// `dunstctl history` is the whole record; `TIMEOUT` is how long each stays on screen.
const DUNSTRC: &str = "[global]
    stack_duplicates = false
    history_length = 100000
    idle_threshold = 0
    sticky_history = yes
    notification_limit = 0
[urgency_low]
    timeout = TIMEOUT
[urgency_normal]
    timeout = TIMEOUT
[urgency_critical]
    timeout = TIMEOUT
";

const NOTIFICATIONS: &str = "org.freedesktop.Notifications";
const SECRETS: &str = "org.freedesktop.secrets";

/// How to start a [`Desktop`].
#[derive(Clone)]
pub struct Session {
    /// How long dunst shows each notification. Short lets the history fill quickly and keeps
    /// drawing cheap (the bench waits for the desktop to be idle after each); long lets a test
    /// act on a notification still on screen.
    pub shown: Duration,
    /// Applied to every daemon of the session and every [`Desktop::command`].
    pub placement: Placement,
    /// Names the session's directory (`quotabell-<label>-…` in the temp directory).
    pub label: String,
    /// A wall clock of the test's for every [`Desktop::command`] (the daemons keep real time).
    pub clock: Option<crate::FakeClock>,
    /// Whether the bus starts services on demand (as a desktop's does); without it a service
    /// the test stops stays gone (dunst, say, is D-Bus activatable).
    pub bus_activation: bool,
}

impl Default for Session {
    fn default() -> Self {
        Self {
            shown: Duration::from_secs(1),
            placement: Placement::default(),
            label: "desktop".into(),
            clock: None,
            bus_activation: true,
        }
    }
}

/// A running private session; its daemons are killed and its directory removed when dropped.
pub struct Desktop {
    pub dir: tempfile::TempDir,
    /// The bus address, for `DBUS_SESSION_BUS_ADDRESS` and zbus connections.
    pub bus: String,
    placement: Placement,
    clock: Option<crate::FakeClock>,
    /// The notification daemon's pid (the bench reads its CPU time).
    dunst: u32,
    children: Vec<Child>,
}

impl Desktop {
    /// Starts the bus, then the keyring, then dunst, and waits until both own their names.
    pub fn launch(session: &Session) -> Result<Self> {
        if std::env::var_os("DISPLAY").is_none() {
            return Err(Error::Failed(
                "no X display for the notification daemon (dunst): run under `xvfb-run -a`".into(),
            ));
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("quotabell-{}-", session.label))
            .tempdir()
            .map_err(Error::io("a directory for the desktop session"))?;
        let home = dir.path().join("home");
        std::fs::create_dir_all(home.join(".local/share"))
            .map_err(Error::io("the session's home"))?;
        // From here on the guard owns the directory and every child started.
        let mut me = Self {
            dir,
            bus: String::new(),
            placement: session.placement,
            clock: session.clock.clone(),
            dunst: 0,
            children: Vec::new(),
        };

        let mut cmd = Command::new("dbus-daemon");
        if session.bus_activation {
            cmd.arg("--session");
        } else {
            let config = me.dir.path().join("bus.conf");
            std::fs::write(&config, BUS_WITHOUT_ACTIVATION)
                .map_err(Error::io("writing the bus configuration"))?;
            cmd.arg(format!("--config-file={}", config.display()));
        }
        cmd.args(["--nofork", "--print-address=1"])
            .arg(format!(
                "--address=unix:path={}",
                me.dir.path().join("bus").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        me.placement.apply(&mut cmd);
        let mut daemon = cmd.spawn().map_err(Error::io("starting dbus-daemon"))?;
        let stdout = daemon.stdout.take();
        me.children.push(daemon);
        let mut line = String::new();
        if let Some(out) = stdout {
            BufReader::new(out)
                .read_line(&mut line)
                .map_err(Error::io("reading dbus-daemon's address"))?;
        }
        me.bus = line.trim().to_owned();
        if !me.bus.starts_with("unix:") {
            return Err(Error::Failed(format!(
                "dbus-daemon printed no address: {line:?}"
            )));
        }

        let mut keyring = me
            .command("gnome-keyring-daemon")
            .args(["--foreground", "--unlock", "--components=secrets"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(Error::io("starting gnome-keyring-daemon"))?;
        let stdin = keyring.stdin.take();
        me.children.push(keyring);
        // The password must not be empty; closing stdin ends it.
        if let Some(mut stdin) = stdin {
            stdin
                .write_all(b"pw")
                .map_err(Error::io("unlocking the keyring"))?;
        }

        let rc = me.dir.path().join("dunstrc");
        std::fs::write(&rc, DUNSTRC.replace("TIMEOUT", &dunst_time(session.shown)))
            .map_err(Error::io("writing dunstrc"))?;
        // Generous: under a full parallel test run on 2 cores, daemons start slowly.
        wait_for(SECRETS, Duration::from_secs(60), || me.has_owner(SECRETS))?;
        me.start_dunst(&rc)?;
        Ok(me)
    }

    /// Starts dunst and waits until it owns org.freedesktop.Notifications. A dunst that exits
    /// or has not taken the name within 20 s is started again, up to three times: a CI run
    /// once saw two sessions started together whose dunst never took the name, so the daemon
    /// is given another chance and, if it still fails, its own words end the start.
    fn start_dunst(&mut self, rc: &Path) -> Result<()> {
        let log = self.dir.path().join("dunst.log");
        for attempt in 1..=3 {
            let stderr = std::fs::File::create(&log).map_err(Error::io("creating dunst.log"))?;
            let mut dunst = self
                .command("dunst")
                .arg("-config")
                .arg(rc)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .map_err(Error::io("starting dunst"))?;
            let start = Instant::now();
            let mut exited = None;
            while start.elapsed() < Duration::from_secs(20) {
                if self.has_owner(NOTIFICATIONS) {
                    self.dunst = dunst.id();
                    self.children.push(dunst);
                    return Ok(());
                }
                if let Ok(Some(status)) = dunst.try_wait() {
                    exited = Some(status);
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = dunst.kill();
            let _ = dunst.wait();
            eprintln!(
                "dunst attempt {attempt}: {} after {:?}; its log: {}",
                exited.map_or("no bus name".to_owned(), |s| format!("exited ({s})")),
                start.elapsed(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        Err(Error::Failed(format!(
            "dunst never took {NOTIFICATIONS}; its last log: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )))
    }

    /// A command that runs inside this session (its bus, its keyring home), placed as the
    /// session's daemons are.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        let home = self.dir.path().join("home");
        c.env("DBUS_SESSION_BUS_ADDRESS", &self.bus)
            .env("HOME", &home)
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("XDG_RUNTIME_DIR", self.dir.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_STATE_HOME");
        if let Some(clock) = &self.clock {
            clock.apply(&mut c);
        }
        self.placement.apply(&mut c);
        c
    }

    /// The notification daemon's pid.
    pub fn dunst(&self) -> u32 {
        self.dunst
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

    /// Every notification the daemon received so far: (summary, body), oldest first. An
    /// error when `dunstctl` cannot run: an empty list would pass a test that expects none.
    pub fn notifications(&self) -> Result<Vec<(String, String)>> {
        // Displayed ones move to the history when closed.
        let _ = self.command("dunstctl").arg("close-all").output();
        let out = self
            .command("dunstctl")
            .arg("history")
            .output()
            .map_err(Error::io("dunstctl history"))?;
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let mut list: Vec<(i64, String, String)> = v["data"][0]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|n| {
                        (
                            n["id"]["data"].as_i64().unwrap_or(0),
                            n["summary"]["data"].as_str().unwrap_or("").to_owned(),
                            n["body"]["data"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        list.sort();
        Ok(list.into_iter().map(|(_, s, b)| (s, b)).collect())
    }

    /// How many notifications mention `text` in their summary or body.
    pub fn count_mentions(&self, text: &str) -> Result<usize> {
        Ok(self
            .notifications()?
            .iter()
            .filter(|(s, b)| s.contains(text) || b.contains(text))
            .count())
    }

    /// What the keychain holds for `service`, read with libsecret's own tool (its stdout, then
    /// its stderr).
    pub fn secret(&self, service: &str) -> Result<String> {
        let out = self
            .command("secret-tool")
            .args(["search", "--all", "service", service])
            .output()
            .map_err(Error::io("secret-tool search"))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr))
    }
}

impl Drop for Desktop {
    fn drop(&mut self) {
        for c in self.children.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// dunst's notation: whole seconds as a plain number, anything finer in milliseconds.
fn dunst_time(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        d.as_secs().to_string()
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// A session bus with no service directories: nothing is started on demand.
const BUS_WITHOUT_ACTIVATION: &str = r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:tmpdir=/tmp</listen>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn dunst_time() {
        assert_eq!(super::dunst_time(Duration::from_secs(60)), "60");
        assert_eq!(super::dunst_time(Duration::from_millis(200)), "200ms");
    }
}
