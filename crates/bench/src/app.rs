//! The desktop app (`quotabell-app`) in a private desktop session (D-Bus, gnome-keyring, dunst,
//! on the `xvfb-run` display), against the real backend with one user and a handful of builds.
//! The bench plays the panel: it owns `org.kde.StatusNotifierWatcher` before the app starts
//! (the test bed's `TrayWatcher`, the same the end-to-end tests read the tray with).
//!
//! - `app-start`: from spawning `quotabell-app --hidden` until its tray item registers with the
//!   watcher (appindicator's `RegisterStatusNotifierItem` call), signed in and signed out; and
//!   until the tray icon stops changing (the engine's state drawn: the time of the last
//!   `NewIcon` signal, when none follows for 2 s). The page cache is warm (the same binary
//!   started over and over); with `--cold-rounds N`, N more signed-in rounds each after
//!   `sync; echo 3 > /proc/sys/vm/drop_caches`.
//! - `app-memory`: PSS and RSS summed over the app's whole process tree (the tray process,
//!   the window process, WebKit's web and network processes, anything else below), from
//!   /proc/PID/smaps_rollup, after `--idle-secs` in each of three states of one app run:
//!   (a) started with `--hidden` as at login; (b) the window opened from the tray menu's
//!   "Open Quotabell" (a dbusmenu click); (c) the window closed by a WM_DELETE_WINDOW client
//!   message to its X window, what a window manager sends on the close button. Also timed:
//!   the click → window process started → X window mapped → first call of the web view
//!   arriving at the tray process.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quotabell_testbed::process;
use quotabell_testbed::{Desktop, ItemRef, Profile, TrayWatcher, X};

use crate::cache::{Cache, poll};
use crate::launcher::Launcher;
use crate::report::{Fmt, Section, figure_row, ms, verdict_below};
use crate::stats::Spread;
use crate::sys::{self, GroupLoadProbe, Rollup, Switches, ThreadSwitches};
use crate::{BoxError, Common, posts};

/// Desktop app targets: start to tray, and memory with the window never opened, open, closed.
const APP_TRAY_TARGET_MS: f64 = 400.0;
const APP_HIDDEN_PSS_TARGET_MB: f64 = 90.0;
const APP_OPEN_PSS_TARGET_MB: f64 = 250.0;
const APP_CLOSED_PSS_TARGET_MB: f64 = 100.0;
const APP_TRAY_WAKEUPS_TARGET: f64 = 0.1;

/// The options of `app-start`, `app-memory` and `app`.
#[derive(clap::Args, Clone)]
#[group(id = "app-options")]
pub struct Args {
    /// `app-start`: signed-in starts after `sync; echo 3 > /proc/sys/vm/drop_caches` (root).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub cold_rounds: u32,
    /// `app-memory`: app runs, each through the three states (idle `--idle-secs` in each).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub memory_reps: u32,
    /// `app-memory`: seconds idle in each state.
    #[arg(long, default_value_t = 60.0, value_parser = crate::seconds_in(1.0, 3600.0, false))]
    pub idle_secs: f64,
    /// Skip the unmeasured warm-up starts, so the first app measured is the first GTK 3
    /// process on the X server (it probes GLX and loads Mesa; see app.rs).
    #[arg(long)]
    pub no_warm_up: bool,
    /// Accounts signed in to the measured profile, each a user of its own with the same builds.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=20))]
    pub app_accounts: u16,
    /// `app-memory`: measure the tray-only state alone (memory and wake-ups), never opening
    /// the window; for long idle windows.
    #[arg(long)]
    pub tray_only: bool,
}

impl Args {
    pub fn config(
        &self,
        common: &Common,
        engine_bin: PathBuf,
        app_bin: PathBuf,
        start: bool,
        memory: bool,
    ) -> Config {
        Config {
            start_rounds: common.rounds(20),
            cold_rounds: self.cold_rounds as usize,
            memory_reps: self.memory_reps as usize,
            idle_secs: self.idle_secs,
            app_bin,
            engine_bin,
            start,
            memory,
            warm_up: !self.no_warm_up,
            accounts: self.app_accounts as usize,
            tray_only: self.tray_only,
        }
    }
}

/// Picks one state's process tree out of an `app-memory` run.
type StateOf = fn(&MemoryRep) -> Option<&Tree>;

const EMAIL: &str = "app@bench.invalid";
/// Builds posted before the app starts, so that its window shows data.
const BUILDS: u64 = 12;
const REGISTER_TIMEOUT: Duration = Duration::from_secs(30);
/// The tray icon counts as settled when no `NewIcon` followed the last one for this long.
const ICON_QUIET: Duration = Duration::from_secs(2);
const ICON_TIMEOUT: Duration = Duration::from_secs(20);
const WINDOW_TIMEOUT: Duration = Duration::from_secs(60);
const OPEN: &str = "Open Quotabell";
const QUIT: &str = "Quit Quotabell";
/// The tray process's log lines the bench times (src-tauri/src/window_host.rs).
const LOG_WINDOW_STARTED: &str = "window process started";
const LOG_WINDOW_CALL: &str = "call from the window process";
/// What the app logs in `app-memory`: the default, plus the tray process's debug line for each
/// call of the window.
const MEMORY_RUST_LOG: &str = "info,quotabell=info,quotabell_app::window_host=debug";

pub struct Config {
    pub start_rounds: usize,
    pub cold_rounds: usize,
    pub memory_reps: usize,
    pub idle_secs: f64,
    pub app_bin: PathBuf,
    pub engine_bin: PathBuf,
    pub start: bool,
    pub memory: bool,
    /// Start each profile once, unmeasured, before measuring (see `run`).
    pub warm_up: bool,
    pub accounts: usize,
    pub tray_only: bool,
}

pub struct StartRound {
    /// Spawn → `RegisterStatusNotifierItem` arrived at the watcher.
    pub tray_ms: f64,
    /// Spawn → the last `NewIcon` of the first burst (the engine's state drawn).
    pub settled_ms: Option<f64>,
}

pub struct StartSeries {
    pub label: String,
    pub rounds: Vec<StartRound>,
    pub other_load: Option<f64>,
    /// Page cache before and after each drop (cold rounds only), KiB.
    pub cache_drops: Vec<(u64, u64)>,
}

impl StartSeries {
    pub fn tray(&self) -> Option<Spread> {
        Spread::of(&self.rounds.iter().map(|r| r.tray_ms).collect::<Vec<_>>())
    }
    pub fn settled(&self) -> Option<Spread> {
        Spread::of(
            &self
                .rounds
                .iter()
                .filter_map(|r| r.settled_ms)
                .collect::<Vec<_>>(),
        )
    }
    /// p10 and p90 of the registration times (nearest rank).
    pub fn tray_p10_p90(&self) -> Option<(f64, f64)> {
        let mut v: Vec<f64> = self.rounds.iter().map(|r| r.tray_ms).collect();
        crate::stats::sort(&mut v);
        Some((
            crate::stats::percentile(&v, 10.0)?,
            crate::stats::percentile(&v, 90.0)?,
        ))
    }
}

/// One process of the app's tree.
#[derive(Debug, Clone)]
pub struct ProcMem {
    pub pid: u32,
    pub role: String,
    pub mem: Rollup,
}

/// The app's process tree at one moment.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    pub procs: Vec<ProcMem>,
    /// PSS by mapping summed over the tree, KiB, largest first.
    pub top: Vec<(String, u64)>,
}

impl Tree {
    fn measure(root: u32) -> Self {
        let mut procs = Vec::new();
        let mut by_map: std::collections::HashMap<String, u64> = Default::default();
        let app_exe = sys::exe_name(root);
        for pid in process::process_tree(root) {
            let Some(mem) = Rollup::of(pid) else { continue };
            let exe = sys::exe_name(pid);
            let role = if pid == root {
                "tray process".to_owned()
            } else if exe == app_exe {
                "window process".to_owned()
            } else {
                exe
            };
            for (k, v) in sys::pss_by_mapping(pid) {
                *by_map.entry(k).or_insert(0) += v;
            }
            procs.push(ProcMem { pid, role, mem });
        }
        let mut top: Vec<(String, u64)> = by_map.into_iter().collect();
        top.sort_by_key(|e| std::cmp::Reverse(e.1));
        Self { procs, top }
    }

    pub fn pss_kib(&self) -> u64 {
        self.procs.iter().map(|p| p.mem.pss).sum()
    }
    pub fn rss_kib(&self) -> u64 {
        self.procs.iter().map(|p| p.mem.rss).sum()
    }
    /// PSS of the processes whose role contains `part`, KiB.
    pub fn pss_of(&self, part: &str) -> u64 {
        self.procs
            .iter()
            .filter(|p| p.role.contains(part))
            .map(|p| p.mem.pss)
            .sum()
    }
    pub fn webkit(&self) -> Vec<&ProcMem> {
        self.procs
            .iter()
            .filter(|p| p.role.contains("WebKit"))
            .collect()
    }

    fn print(&self, label: &str) {
        println!(
            "  {label}: {} processes, PSS {:.1} MB, RSS {:.1} MB",
            self.procs.len(),
            mb(self.pss_kib()),
            mb(self.rss_kib())
        );
        for p in &self.procs {
            println!(
                "    pid {:>7} {:<22} PSS {:>6.1} MB (anon {:.1}, file {:.1}, shmem {:.1}), RSS {:>6.1} MB",
                p.pid,
                p.role,
                mb(p.mem.pss),
                mb(p.mem.pss_anon),
                mb(p.mem.pss_file),
                mb(p.mem.pss_shmem),
                mb(p.mem.rss)
            );
        }
        let shown: Vec<String> = self
            .top
            .iter()
            .take(12)
            .map(|(k, v)| format!("{} {:.1}", short_path(k), mb(*v)))
            .collect();
        println!("    largest mappings (PSS MB): {}", shown.join("; "));
    }
}

fn short_path(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// KiB → MB (10^6 bytes), the unit of the targets.
pub fn mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

#[derive(Debug, Clone, Default)]
pub struct OpenTimes {
    /// Click → the tray process logs that the window process started.
    pub spawn_ms: Option<f64>,
    /// Click → the window process's X window is mapped.
    pub mapped_ms: Option<f64>,
    /// Click → the web view's first call arrives at the tray process (page loaded, script run).
    pub first_call_ms: Option<f64>,
}

pub struct MemoryRep {
    pub hidden: Tree,
    /// The tray process's context switches while idle in state (a), over `tray_secs`.
    pub tray_switches: Switches,
    pub tray_secs: f64,
    /// States (b) and (c); `None` with `--tray-only`.
    pub window: Option<WindowRep>,
    /// Other processes' CPU use during each idle period, in cores.
    pub load: Vec<Option<f64>>,
}

impl MemoryRep {
    pub fn tray_wakeups_per_sec(&self) -> f64 {
        self.tray_switches.total() as f64 / self.tray_secs
    }
}

pub struct WindowRep {
    pub open: Tree,
    pub closed: Tree,
    pub open_times: OpenTimes,
    /// WM_DELETE_WINDOW sent → the window process has exited.
    pub close_ms: Option<f64>,
    /// WebKit processes of this session still alive after the close (anywhere, also orphans).
    pub webkit_left: Vec<String>,
}

pub struct Report {
    pub start: Vec<StartSeries>,
    pub memory: Vec<MemoryRep>,
    pub idle_secs: f64,
    pub accounts: usize,
}

impl Report {
    /// Its lines and rows of the desktop app summary.
    pub fn summarize(&self, out: &mut Section) {
        let a = self;
        let msf: &Fmt = &ms;
        let mbf: &Fmt = &|v| format!("{v:.1} MB");
        for s in &a.start {
            let label = format!("app-start ({}, {} starts)", s.label, s.rounds.len());
            out.load(&label, s.other_load);
            let mut tray = figure_row(
                &label,
                "spawn `--hidden` → tray item registered",
                s.tray(),
                msf,
                "< 400 ms",
            );
            tray[5] = verdict_below(s.tray().map(|t| t.median), APP_TRAY_TARGET_MS);
            out.row(tray);
            if let Some((p10, p90)) = s.tray_p10_p90() {
                out.row([
                    label.clone(),
                    "spawn → tray item registered, p10 / p90".into(),
                    format!("{} / {}", ms(p10), ms(p90)),
                    "–".into(),
                    "–".into(),
                    "–".into(),
                ]);
            }
            out.figure(
                &label,
                "spawn → tray icon settled on the engine's state (last NewIcon)",
                s.settled(),
                msf,
                "–",
            );
            for (before, after) in &s.cache_drops {
                out.note(format!(
                    "{label}: page cache {:.0} MB before the drop, {:.0} MB after",
                    mb(*before),
                    mb(*after)
                ));
            }
        }
        if !a.memory.is_empty() {
            let accounts = match a.accounts {
                1 => String::new(),
                n => format!(", {n} accounts signed in"),
            };
            let label = format!(
                "app-memory ({} runs, {:.0} s idle per state{accounts})",
                a.memory.len(),
                a.idle_secs
            );
            let load = a
                .memory
                .iter()
                .flat_map(|m| m.load.iter().flatten().copied())
                .reduce(f64::max);
            out.load(&format!("{label}, busiest idle period"), load);
            let states: [(&str, StateOf, f64); 3] = [
                (
                    "(a) tray only, window never opened",
                    |m| Some(&m.hidden),
                    APP_HIDDEN_PSS_TARGET_MB,
                ),
                (
                    "(b) window open",
                    |m| m.window.as_ref().map(|w| &w.open),
                    APP_OPEN_PSS_TARGET_MB,
                ),
                (
                    "(c) window closed",
                    |m| m.window.as_ref().map(|w| &w.closed),
                    APP_CLOSED_PSS_TARGET_MB,
                ),
            ];
            for (state, tree, target) in states {
                let pss = a.memory_spread(|m| tree(m).map(|t| mb(t.pss_kib())));
                if pss.is_none() {
                    continue;
                }
                let mut r = figure_row(
                    &label,
                    &format!("{state}: PSS of all processes"),
                    pss,
                    mbf,
                    &format!("< {target:.0} MB"),
                );
                r[5] = verdict_below(pss.map(|p| p.median), target);
                out.row(r);
                out.figure(
                    &label,
                    &format!("{state}: RSS of all processes (shared pages counted per process)"),
                    a.memory_spread(|m| tree(m).map(|t| mb(t.rss_kib()))),
                    mbf,
                    "–",
                );
                for role in [
                    "tray process",
                    "window process",
                    "WebKitWebProcess",
                    "WebKitNetworkProcess",
                ] {
                    let v = a.memory_spread(|m| {
                        let t = tree(m)?;
                        t.procs
                            .iter()
                            .any(|p| p.role == role)
                            .then(|| mb(t.pss_of(role)))
                    });
                    if v.is_some() {
                        out.figure(&label, &format!("{state}: PSS of the {role}"), v, mbf, "–");
                    }
                }
                let procs = a.memory_spread(|m| tree(m).map(|t| t.procs.len() as f64));
                out.figure(
                    &label,
                    &format!("{state}: processes"),
                    procs,
                    &|v| format!("{v:.0}"),
                    "–",
                );
                if state.starts_with("(a)") {
                    let mut w = figure_row(
                        &label,
                        &format!(
                            "{state}: tray process wake-ups (context switches, all threads) per second"
                        ),
                        a.memory_spread(|m| Some(m.tray_wakeups_per_sec())),
                        &|v| format!("{v:.3}/s"),
                        "≤ 0.1/s",
                    );
                    w[5] = verdict_below(
                        a.memory_spread(|m| Some(m.tray_wakeups_per_sec()))
                            .map(|s| s.median + 1e-9),
                        APP_TRAY_WAKEUPS_TARGET,
                    );
                    out.row(w);
                    for (i, m) in a.memory.iter().enumerate() {
                        out.note(format!(
                            "{label}: run {}: tray process context switches in {:.0} s of state (a), by thread: {}",
                            i + 1,
                            m.tray_secs,
                            m.tray_switches.by_thread_text()
                        ));
                    }
                }
            }
            let windows: Vec<&WindowRep> =
                a.memory.iter().filter_map(|m| m.window.as_ref()).collect();
            if windows.is_empty() {
                return;
            }
            let left: usize = windows.iter().map(|w| w.webkit_left.len()).sum();
            out.row([
                label.clone(),
                "(c) WebKit processes left after the close (all runs)".into(),
                left.to_string(),
                "–".into(),
                "0".into(),
                if left == 0 { "met" } else { "NOT met" }.into(),
            ]);
            out.figure(
                &label,
                "WM_DELETE_WINDOW → window process exited",
                a.memory_spread(|m| m.window.as_ref()?.close_ms),
                msf,
                "–",
            );
            out.figure(
                &label,
                "tray \"Open\" click → window process started",
                a.memory_spread(|m| m.window.as_ref()?.open_times.spawn_ms),
                msf,
                "–",
            );
            out.figure(
                &label,
                "tray \"Open\" click → X window mapped",
                a.memory_spread(|m| m.window.as_ref()?.open_times.mapped_ms),
                msf,
                "–",
            );
            out.figure(
                &label,
                "tray \"Open\" click → web view's first call at the tray process",
                a.memory_spread(|m| m.window.as_ref()?.open_times.first_call_ms),
                msf,
                "–",
            );
        }
    }

    pub fn memory_spread(&self, f: impl Fn(&MemoryRep) -> Option<f64>) -> Option<Spread> {
        Spread::of(&self.memory.iter().filter_map(f).collect::<Vec<_>>())
    }
}

/// The running `quotabell-app` (its tray process). Its stderr is read line by line, each line
/// stamped when it arrives, and copied to a log file.
struct App {
    child: Child,
    pid: u32,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
    log: PathBuf,
}

impl App {
    fn spawn(
        desktop: &Desktop,
        bin: &Path,
        data_dir: &Path,
        args: &[&str],
        rust_log: Option<&str>,
    ) -> Result<Self, BoxError> {
        let log = data_dir.with_extension("stderr");
        let mut cmd = desktop.command(bin);
        cmd.arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        match rust_log {
            Some(l) => cmd.env("RUST_LOG", l),
            None => cmd.env_remove("RUST_LOG"),
        };
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let lines: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
        let sink = lines.clone();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let at = Instant::now();
                let _ = writeln!(file, "{line}");
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((at, strip_ansi(&line)));
            }
        });
        Ok(Self {
            pid: child.id(),
            child,
            lines,
            log,
        })
    }

    /// The first log line containing `needle` that arrived at or after `since`.
    fn line_after(&self, since: Instant, needle: &str) -> Option<(Instant, String)> {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(at, l)| *at >= since && l.contains(needle))
            .cloned()
    }

    fn log_tail(&self, n: usize) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Quits through the tray menu as a user would; SIGTERM, then SIGKILL, if it does not.
    async fn quit(&mut self, watcher: &TrayWatcher, item: Option<&ItemRef>) {
        if let Some(item) = item
            && watcher.try_click_menu(item, QUIT).is_ok()
        {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if self.exited() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            println!("  (the app did not quit from its menu within 10 s: SIGTERM)");
        }
        self.kill();
    }

    fn kill(&mut self) {
        if self.exited() {
            return;
        }
        process::signal(self.pid, libc::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if self.exited() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Removes ANSI colour sequences (ESC [ ... letter), in case the subscriber colours its output.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `pid=N` in a tracing line.
fn field_pid(line: &str) -> Option<u32> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("pid="))
        .and_then(|v| v.trim_matches(|c: char| !c.is_ascii_digit()).parse().ok())
}

fn ms_since(t0: Instant, t: Instant) -> f64 {
    t.saturating_duration_since(t0).as_secs_f64() * 1e3
}

async fn sleep_until(t: Instant) {
    tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await;
}

pub async fn run(launcher: &Launcher, cfg: &Config) -> Result<Report, BoxError> {
    let desktop = launcher.desktop("app")?;
    // Before any app: appindicator looks for the watcher when it creates its indicator.
    let watcher = TrayWatcher::start(&desktop.bus)?;
    let server = launcher.start("app")?;
    let base = format!("http://{}", server.addr);
    println!(
        "[app] server pid {} on {base}; private bus {}; app {}",
        server.pid,
        desktop.bus,
        cfg.app_bin.display()
    );
    let client = posts::client()?;
    let signed_in = Profile {
        bin: cfg.engine_bin.clone(),
        dir: desktop.dir.path().join("signed-in"),
    };
    for account in 0..cfg.accounts {
        let email = match account {
            0 => EMAIL.to_owned(),
            a => format!("app{a}@bench.invalid"),
        };
        let token = server.add_user(&email, "pro")?;
        for n in 0..BUILDS {
            let app = if n % 3 == 0 { "web" } else { "api" };
            let r = client
                .post(format!("{base}/api/v1/builds"))
                .header(reqwest::header::AUTHORIZATION, format!("Bearer {token}"))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(posts::build_body(app, 0, n))
                .send()
                .await?;
            if !r.status().is_success() {
                return Err(format!("posting build {n}: {}", r.status()).into());
            }
        }
        signed_in.login(&desktop, &base, &token)?;
    }
    let signed_out = desktop.dir.path().join("signed-out");
    std::fs::create_dir_all(&signed_out)?;
    println!(
        "[app] {} pro user(s) with {BUILDS} builds each; profile {} signed in to each with `quotabell login`",
        cfg.accounts,
        signed_in.dir.display()
    );

    let mut report = Report {
        start: Vec::new(),
        memory: Vec::new(),
        idle_secs: cfg.idle_secs,
        accounts: cfg.accounts,
    };
    let result = async {
        // One unmeasured start of each profile first. Both measured series then find the same
        // warm page cache, and the X server has GTK's GL visual cache: the first GTK 3 process
        // on an X server probes GLX (loading Mesa, on Xvfb llvmpipe and libLLVM) and stores the
        // result in the root window's GDK_VISUALS property; later ones read it and load no GL.
        // A desktop session where any GTK 3 app ran before is in that second state.
        if cfg.warm_up {
            for dir in [&signed_in.dir, &signed_out] {
                start_round(&desktop, &watcher, cfg, dir, "warm-up").await?;
            }
        } else {
            println!(
                "[app] no warm-up: the first app started is the first GTK 3 process on this X server"
            );
        }
        if cfg.start {
            for (label, dir) in [("signed in", &signed_in.dir), ("signed out", &signed_out)] {
                let mut series = StartSeries {
                    label: format!("{label}, warm page cache"),
                    rounds: Vec::new(),
                    other_load: None,
                    cache_drops: Vec::new(),
                };
                let probe = GroupLoadProbe::start();
                for i in 0..cfg.start_rounds {
                    let r =
                        start_round(&desktop, &watcher, cfg, dir, &format!("{label} {}", i + 1))
                            .await?;
                    series.rounds.push(r);
                }
                series.other_load = probe.other_cores();
                report.start.push(series);
            }
            if cfg.cold_rounds > 0 {
                let mut series = StartSeries {
                    label: "signed in, after dropping the page cache".into(),
                    rounds: Vec::new(),
                    other_load: None,
                    cache_drops: Vec::new(),
                };
                let probe = GroupLoadProbe::start();
                for i in 0..cfg.cold_rounds {
                    let before = sys::page_cache_kib().unwrap_or(0);
                    sys::drop_caches()
                        .map_err(|e| format!("cannot drop the page cache (needs root): {e}"))?;
                    let after = sys::page_cache_kib().unwrap_or(0);
                    println!(
                        "[app-start] dropped caches: page cache {:.0} MB -> {:.0} MB",
                        mb(before),
                        mb(after)
                    );
                    series.cache_drops.push((before, after));
                    let r = start_round(
                        &desktop,
                        &watcher,
                        cfg,
                        &signed_in.dir,
                        &format!("cold {}", i + 1),
                    )
                    .await?;
                    series.rounds.push(r);
                }
                series.other_load = probe.other_cores();
                report.start.push(series);
            }
        }
        if cfg.memory {
            let x = X::open()?;
            for i in 0..cfg.memory_reps {
                let rep = memory_rep(&desktop, &watcher, &x, cfg, &signed_in.dir, i + 1).await?;
                report.memory.push(rep);
            }
        }
        Ok::<_, BoxError>(())
    }
    .await;
    drop(watcher);
    result?;
    Ok(report)
}

async fn start_round(
    desktop: &Desktop,
    watcher: &TrayWatcher,
    cfg: &Config,
    dir: &Path,
    label: &str,
) -> Result<StartRound, BoxError> {
    // Let the previous instance's exit settle (its bus names, its files).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = Instant::now();
    let mut app = App::spawn(desktop, &cfg.app_bin, dir, &["--hidden"], None)?;
    let (reg, reg_at) = match poll(
        "the tray item to register",
        REGISTER_TIMEOUT,
        Duration::from_millis(5),
        || Ok(watcher.registered_after(t0)),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return Err(format!("{e}; app log:\n{}", app.log_tail(20)).into()),
    };
    let tray_ms = ms_since(t0, reg_at);
    // The icon: wait for a quiet ICON_QUIET after the last change.
    let icons = loop {
        let icons = watcher.new_icons(&reg);
        let quiet = icons
            .last()
            .is_some_and(|last| last.elapsed() >= ICON_QUIET);
        if quiet || t0.elapsed() > ICON_TIMEOUT {
            break icons;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let settled_ms = icons.last().map(|&t| ms_since(t0, t.max(reg_at)));
    println!(
        "[app-start] {label}: tray registered after {tray_ms:.1} ms; icon settled after {} ({} icon change(s))",
        settled_ms.map_or("n/a".into(), |v| format!("{v:.1} ms")),
        icons.len()
    );
    app.quit(watcher, Some(&reg)).await;
    Ok(StartRound {
        tray_ms,
        settled_ms,
    })
}

/// Waits until every account of the profile in `dir` is connected (its engine has caught up
/// and follows the stream), or until `deadline`: the wake-up count then holds idle time only.
async fn wait_synced(dir: &Path, accounts: usize, deadline: Instant) {
    let db = dir.join("quotabell.db");
    while Instant::now() < deadline {
        let connected = Cache::open(&db)
            .and_then(|c| c.views())
            .is_ok_and(|v| v.len() == accounts && v.iter().all(|v| v.connection == "connected"));
        if connected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn memory_rep(
    desktop: &Desktop,
    watcher: &TrayWatcher,
    x: &X,
    cfg: &Config,
    dir: &Path,
    n: usize,
) -> Result<MemoryRep, BoxError> {
    let idle = Duration::from_secs_f64(cfg.idle_secs);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = Instant::now();
    let mut app = App::spawn(
        desktop,
        &cfg.app_bin,
        dir,
        &["--hidden"],
        Some(MEMORY_RUST_LOG),
    )?;
    let (reg, _) = match poll(
        "the tray item to register",
        REGISTER_TIMEOUT,
        Duration::from_millis(10),
        || Ok(watcher.registered_after(t0)),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return Err(format!("{e}; app log:\n{}", app.log_tail(20)).into()),
    };
    println!(
        "[app-memory] {n}: started hidden (pid {}); idle {:.0} s",
        app.pid, cfg.idle_secs
    );

    // (a) tray only, as at login. Wake-ups are counted from the engine's first sync on, so
    // start-up's own work is not in them.
    wait_synced(dir, cfg.accounts, t0 + idle).await;
    let probe = GroupLoadProbe::start();
    let counted = Instant::now();
    let mut switches =
        ThreadSwitches::start(app.pid).ok_or("cannot read the tray process's threads")?;
    while Instant::now() < t0 + idle {
        tokio::time::sleep(
            Duration::from_secs(1).min((t0 + idle).saturating_duration_since(Instant::now())),
        )
        .await;
        switches.sample();
    }
    let tray_switches = switches.finish();
    let tray_secs = counted.elapsed().as_secs_f64();
    let hidden = Tree::measure(app.pid);
    let load_a = probe.other_cores();
    hidden.print("(a) hidden, tray only");
    println!(
        "[app-memory] {n}: tray process: {} context switches in {tray_secs:.1} s = {:.3}/s; by thread: {}",
        tray_switches.total(),
        tray_switches.total() as f64 / tray_secs.max(1e-9),
        tray_switches.by_thread_text()
    );
    if cfg.tray_only {
        app.quit(watcher, Some(&reg)).await;
        return Ok(MemoryRep {
            hidden,
            tray_switches,
            tray_secs,
            window: None,
            load: vec![load_a],
        });
    }

    // (b) the window, opened from the tray menu.
    let click = Instant::now();
    watcher.try_click_menu(&reg, OPEN)?;
    let started = poll(
        "the window process to start",
        WINDOW_TIMEOUT,
        Duration::from_millis(5),
        || Ok(app.line_after(click, LOG_WINDOW_STARTED)),
    )
    .await?;
    let window_pid = field_pid(&started.1).ok_or_else(|| {
        format!(
            "no pid in the tray process's line {:?}; app log:\n{}",
            started.1,
            app.log_tail(20)
        )
    })?;
    let mapped = poll(
        "the window to be mapped",
        WINDOW_TIMEOUT,
        Duration::from_millis(5),
        || {
            Ok(x.windows_of(window_pid)
                .iter()
                .any(|w| w.viewable)
                .then(Instant::now))
        },
    )
    .await?;
    let first_call = poll(
        "the web view's first call",
        Duration::from_secs(30),
        Duration::from_millis(5),
        || Ok(app.line_after(click, LOG_WINDOW_CALL)),
    )
    .await
    .ok();
    if first_call.is_none() {
        println!(
            "  no {LOG_WINDOW_CALL:?} line from the tray process (it logs one at debug level for each call of the window; older builds do not)"
        );
    }
    let open_times = OpenTimes {
        spawn_ms: Some(ms_since(click, started.0)),
        mapped_ms: Some(ms_since(click, mapped)),
        first_call_ms: first_call.map(|(t, _)| ms_since(click, t)),
    };
    println!(
        "[app-memory] {n}: Open clicked: window process {window_pid} started after {:.1} ms, window mapped after {:.1} ms, first call after {}; idle {:.0} s",
        open_times.spawn_ms.unwrap_or(f64::NAN),
        open_times.mapped_ms.unwrap_or(f64::NAN),
        open_times
            .first_call_ms
            .map_or("n/a".into(), |v| format!("{v:.1} ms")),
        cfg.idle_secs
    );
    let probe = GroupLoadProbe::start();
    sleep_until(click + idle).await;
    let open = Tree::measure(app.pid);
    let load_b = probe.other_cores();
    open.print("(b) window open");
    let webkit_pids: Vec<u32> = open.webkit().iter().map(|p| p.pid).collect();

    // (c) the window closed as a window manager closes it.
    let window = x
        .windows_of(window_pid)
        .into_iter()
        .find(|w| w.viewable && w.closable)
        .ok_or("the window process has no mapped window that takes WM_DELETE_WINDOW")?;
    let close = Instant::now();
    x.close(window.id);
    let gone = poll(
        "the window process to exit",
        Duration::from_secs(30),
        Duration::from_millis(5),
        || Ok((!process::alive(window_pid)).then(Instant::now)),
    )
    .await;
    let close_ms = gone.as_ref().ok().map(|&t| ms_since(close, t));
    if let Err(e) = &gone {
        println!("  {e}");
    }
    let _ = poll(
        "WebKit's processes to exit",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || {
            Ok(webkit_pids
                .iter()
                .all(|&p| !process::alive(p))
                .then_some(()))
        },
    )
    .await;
    // The tray process reaps it and logs how it ended.
    let exited = poll(
        "the tray process to log the window's exit",
        Duration::from_secs(5),
        Duration::from_millis(10),
        || Ok(app.line_after(close, "window process exited")),
    )
    .await
    .map_or_else(
        |_| {
            // Whatever the tray process said instead.
            let said: Vec<String> = app
                .lines
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .filter(|(at, _)| *at >= close)
                .map(|(_, l)| l.clone())
                .collect();
            format!("no \"window process exited\" line; logged since the close: {said:?}")
        },
        |(_, l)| l,
    );
    println!(
        "[app-memory] {n}: WM_DELETE_WINDOW sent; window process gone after {}; idle {:.0} s\n  tray process: {}",
        close_ms.map_or("n/a".into(), |v| format!("{v:.1} ms")),
        cfg.idle_secs,
        exited.trim()
    );
    let probe = GroupLoadProbe::start();
    sleep_until(close + idle).await;
    let closed = Tree::measure(app.pid);
    let load_c = probe.other_cores();
    closed.print("(c) window closed");
    // Any WebKit process of this session, also one orphaned out of the tree.
    let webkit_left: Vec<String> = sys::processes_named("WebKit")
        .into_iter()
        .filter(|&p| webkit_pids.contains(&p) || sys::environ_contains(p, &desktop.bus))
        .map(|p| format!("{} {p}", sys::exe_name(p)))
        .collect();
    println!(
        "  WebKit processes of this session left: {}",
        if webkit_left.is_empty() {
            "none".to_owned()
        } else {
            webkit_left.join(", ")
        }
    );
    app.quit(watcher, Some(&reg)).await;
    Ok(MemoryRep {
        hidden,
        tray_switches,
        tray_secs,
        window: Some(WindowRep {
            open,
            closed,
            open_times,
            close_ms,
            webkit_left,
        }),
        load: vec![load_a, load_b, load_c],
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn tracing_fields() {
        let l = "2026-11-23T16:40:00.123456Z  INFO quotabell_app::window_host: window process started pid=1234";
        assert_eq!(super::field_pid(l), Some(1234));
        let coloured = "\u{1b}[2mpid\u{1b}[0m\u{1b}[2m=\u{1b}[0m77 x";
        assert_eq!(super::strip_ansi(coloured), "pid=77 x");
        assert_eq!(super::field_pid(&super::strip_ansi(coloured)), Some(77));
    }
}
