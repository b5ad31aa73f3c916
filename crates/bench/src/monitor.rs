//! `dbus-monitor` on a private session bus, reporting every `Notify` call made there with the
//! time the bus delivered it: the far end of the `notify-latency` measurement.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

use quotabell_testbed::Desktop;
use quotabell_testbed::process::Placement;
use tokio::sync::mpsc;

use crate::BoxError;

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

/// Starts `dbus-monitor` for `Notify` calls and waits until it is listening. `placement` puts
/// it on other CPUs than the bench's, so that it does not queue behind the daemons it watches.
pub fn start(desktop: &Desktop, placement: Placement) -> Result<Monitor, BoxError> {
    let mut cmd = desktop.command("dbus-monitor");
    cmd.args([
        "--session",
        "type='method_call',interface='org.freedesktop.Notifications',member='Notify'",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    placement.apply(&mut cmd);
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

#[cfg(test)]
mod tests {
    #[test]
    fn header_time() {
        let l = "method call time=1795443239.399895 sender=:1.3 -> destination=:1.1 serial=9 \
                 path=/org/freedesktop/Notifications; interface=org.freedesktop.Notifications; member=Notify";
        assert_eq!(super::header_time(l), Some(1_795_443_239.399_895));
    }
}
