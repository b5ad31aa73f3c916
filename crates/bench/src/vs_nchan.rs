//! `fanout-vs-nchan`: the fan-out measurement of fanout.rs against Quotabell and against
//! nginx + nchan in one run, with the same client code, the same pinning and the same number
//! of subscribers, and a table of both with the ratios.
//!
//! The two servers cannot hold their subscribers at the same time (10,000 each would need
//! more file descriptors than the bench may open), so the run is made of blocks: each block
//! starts one server, connects the subscribers, runs the rounds and stops it, then does the
//! same with the other server. The order alternates from block to block (Q N, N Q, ...), so a
//! drift in the machine's state during the run does not favour either server.

use std::sync::Arc;

use std::path::PathBuf;

use quotabell_testbed::process::Memory;

use crate::fanout::{self, Publish, Target};
use crate::launcher::Launcher;
use crate::nchan::{self, Setup};
use crate::report::{Column, QUIET_CORES, Section, thousands};
use crate::sse::Subscription;
use crate::stats::Spread;
use crate::{BoxError, Common, sys};

/// `fanout-vs-nchan`'s options.
#[derive(clap::Args, Clone)]
#[group(id = "fanout-vs-nchan-options")]
pub struct Args {
    /// Subscribers of each server.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    pub streams: u32,
    #[command(flatten)]
    pub pace: fanout::Pace,
    /// Blocks, each running both servers one after the other (the order alternates from
    /// block to block).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub blocks: u32,
    /// The nginx binary (Debian package `nginx`).
    #[arg(long, default_value = "nginx")]
    pub nginx_bin: PathBuf,
    /// The nchan module (Debian package `libnginx-mod-nchan`).
    #[arg(long, default_value = nchan::DEFAULT_MODULE)]
    pub nchan_module: PathBuf,
    /// Also measure this many Quotabell instances on one PostgreSQL (a throwaway cluster),
    /// the subscribers spread round-robin over them and the build posted to the first, in
    /// every block after the two single servers (0: not at all).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=16))]
    pub postgres_instances: u32,
}

impl Args {
    pub fn config(&self, common: &Common) -> Config {
        Config {
            fanout: self.pace.config(common, self.streams),
            blocks: self.blocks as usize,
            postgres_instances: self.postgres_instances as usize,
            setup: Setup {
                nginx: self.nginx_bin.clone(),
                module: self.nchan_module.clone(),
            },
        }
    }
}

const COLUMNS: &[Column] = &[
    Column::left("Figure"),
    Column::right("Quotabell"),
    Column::right("nginx + nchan"),
    Column::right("Quotabell / nchan"),
];

pub struct Config {
    pub fanout: fanout::Config,
    pub blocks: usize,
    pub postgres_instances: usize,
    pub setup: Setup,
}

pub struct Report {
    pub quotabell: Vec<fanout::Report>,
    pub nchan: Vec<fanout::Report>,
    /// Several Quotabell instances on one PostgreSQL, if measured.
    pub cluster: Vec<fanout::Report>,
    pub cluster_instances: usize,
    pub versions: String,
    pub streams: usize,
    pub rounds_per_block: usize,
}

#[derive(Clone, Copy)]
enum Server {
    Quotabell,
    Nchan,
}

pub async fn run(launcher: &Launcher, cfg: &Config) -> Result<Report, BoxError> {
    cfg.setup.check()?;
    let versions = cfg.setup.versions();
    println!(
        "[vs-nchan] {versions}; {} block(s) of {} rounds per server, {} subscribers",
        cfg.blocks, cfg.fanout.rounds, cfg.fanout.streams
    );
    let pg = (cfg.postgres_instances > 0)
        .then(quotabell_testbed::Postgres::start)
        .transpose()?;
    let mut report = Report {
        quotabell: Vec::new(),
        nchan: Vec::new(),
        cluster: Vec::new(),
        cluster_instances: cfg.postgres_instances,
        versions,
        streams: cfg.fanout.streams,
        rounds_per_block: cfg.fanout.rounds,
    };
    for block in 0..cfg.blocks {
        let order = if block % 2 == 0 {
            [Server::Quotabell, Server::Nchan]
        } else {
            [Server::Nchan, Server::Quotabell]
        };
        for server in order {
            println!("[vs-nchan] block {}/{}", block + 1, cfg.blocks);
            match server {
                Server::Quotabell => report.quotabell.push(quotabell(launcher, cfg).await?),
                Server::Nchan => report.nchan.push(nchan(launcher, cfg).await?),
            }
        }
        if let Some(pg) = &pg {
            println!(
                "[vs-nchan] block {}/{}: {} instances on PostgreSQL",
                block + 1,
                cfg.blocks,
                cfg.postgres_instances
            );
            report
                .cluster
                .push(cluster(launcher, cfg, pg, block).await?);
        }
    }
    Ok(report)
}

/// Quotabell as several instances on one PostgreSQL database: stream `i` on instance
/// `i % n`, the build posted to the first, so most streams get their event through the
/// other instances' wake-ups (`NOTIFY`).
async fn cluster(
    launcher: &Launcher,
    cfg: &Config,
    pg: &quotabell_testbed::Postgres,
    block: usize,
) -> Result<fanout::Report, BoxError> {
    let db = format!("fanout{block}");
    pg.create_database(&db)?;
    let servers =
        launcher.start_cluster("vs-nchan-pg", &pg.url(&db), cfg.postgres_instances, &[])?;
    let token = servers[0].add_user("fanout@bench.invalid", "pro")?;
    let target = Target {
        name: "quotabell-pg",
        subs: servers
            .iter()
            .map(|s| fanout::stream_subscription(s.addr, &token))
            .collect(),
        publish: Publish::Build {
            url: format!("http://{}/api/v1/builds", servers[0].addr),
            auth: format!("Bearer {token}"),
        },
        pid: servers[0].pid,
        helper_pid: None,
    };
    fanout::measure(&target, &cfg.fanout)
        .await
        .map_err(|e| format!("{e}\nfirst instance's log:\n{}", servers[0].log_tail(20)).into())
}

async fn quotabell(launcher: &Launcher, cfg: &Config) -> Result<fanout::Report, BoxError> {
    let server = launcher.start("vs-nchan")?;
    let target = fanout::quotabell_target(&server)?;
    fanout::measure(&target, &cfg.fanout)
        .await
        .map_err(|e| format!("{e}\nquotabell-server log:\n{}", server.log_tail(20)).into())
}

async fn nchan(launcher: &Launcher, cfg: &Config) -> Result<fanout::Report, BoxError> {
    let nginx = cfg.setup.start(launcher, cfg.fanout.streams)?;
    let addr = nginx.addr;
    let target = Target {
        name: "nchan",
        subs: vec![Arc::new(Subscription {
            addr,
            // What a browser's EventSource sends; nchan answers anything else with 403 here,
            // since the location offers no other subscriber type.
            request: format!(
                "GET {} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\
                 Cache-Control: no-cache\r\n\r\n",
                nchan::SUBSCRIBE_PATH
            ),
            kind: "message",
        })],
        publish: Publish::Message {
            url: format!("http://{addr}{}", nchan::PUBLISH_PATH),
        },
        pid: nginx.worker,
        helper_pid: Some(nginx.master),
    };
    fanout::measure(&target, &cfg.fanout)
        .await
        .map_err(|e| format!("{e}\nnginx log:\n{}", nginx.log_tail(20)).into())
}

/// One server's blocks taken together.
struct Side<'a>(&'a [fanout::Report]);

impl Side<'_> {
    fn rounds(&self, f: impl Fn(&fanout::Round) -> f64) -> Option<Spread> {
        fanout::spread_of(self.0.iter().flat_map(|r| &r.rounds), f)
    }
    fn blocks(&self, f: impl Fn(&fanout::Report) -> Option<f64>) -> Option<Spread> {
        Spread::of(&self.0.iter().filter_map(f).collect::<Vec<_>>())
    }
    fn rss(&self, f: impl Fn(&fanout::Report) -> Option<Memory>) -> Option<Spread> {
        self.blocks(|r| f(r).map(|m| sys::mib(m.rss_kib)))
    }
    fn round_count(&self) -> usize {
        self.0.iter().map(|r| r.rounds.len()).sum()
    }
    fn rounds_missing(&self) -> usize {
        self.0
            .iter()
            .flat_map(|r| &r.rounds)
            .filter(|r| r.missed > 0)
            .count()
    }
    fn sum(&self, f: impl Fn(&fanout::Report) -> usize) -> usize {
        self.0.iter().map(f).sum()
    }
    fn busiest_load(&self) -> Option<f64> {
        self.0.iter().filter_map(|r| r.other_load).reduce(f64::max)
    }
}

impl Report {
    pub fn errors(&self) -> u64 {
        self.quotabell
            .iter()
            .chain(&self.nchan)
            .map(|f| (f.stream_errors + f.missed + f.post_errors) as u64)
            .sum()
    }
}

impl Report {
    /// The comparison as a markdown table, with the verdict and the command that produced it.
    pub fn section(&self, command: &str) -> Section {
        let r = self;
        let mut out = Section::new("Fan-out side by side with nginx + nchan", COLUMNS);
        let (q, n) = (Side(&r.quotabell), Side(&r.nchan));
        let ms = |v: f64| format!("{v:.2} ms");
        let mib = |v: f64| format!("{v:.1} MiB");
        let msf: &dyn Fn(f64) -> String = &ms;
        let mibf: &dyn Fn(f64) -> String = &mib;
        out.note("");
        out.note(format!("command: `{command}`"));
        out.note(format!("nginx: {}", r.versions));
        out.note(format!(
        "{} subscribers; {} block(s), each: Quotabell then nchan (or the reverse, alternating), {} rounds per server",
        thousands(r.streams as f64),
        r.quotabell.len().max(r.nchan.len()),
        r.rounds_per_block
    ));
        let row = |out: &mut Section,
                   figure: &str,
                   a: Option<Spread>,
                   b: Option<Spread>,
                   f: &dyn Fn(f64) -> String| {
            let cell = |s: Option<Spread>| {
                s.map_or("n/a".into(), |s| {
                    if s.min == s.max {
                        f(s.median)
                    } else {
                        format!("{} ({} – {})", f(s.median), f(s.min), f(s.max))
                    }
                })
            };
            out.row([figure.to_owned(), cell(a), cell(b), ratio(a, b)]);
        };
        if !r.cluster.is_empty() {
            let c = Side(&r.cluster);
            let cell = |s: Option<Spread>| {
                s.map_or("n/a".into(), |s| {
                    format!("{} ({} – {})", ms(s.median), ms(s.min), ms(s.max))
                })
            };
            out.after("");
            out.after(format!(
                "{} Quotabell instances on one PostgreSQL, the same subscribers spread over them, in the same run ({} rounds):",
                r.cluster_instances,
                c.round_count()
            ));
            out.after("");
            out.after("| Figure | Quotabell, several instances on PostgreSQL | Quotabell, one on SQLite | nginx + nchan | several / nchan |");
            out.after("| --- | ---: | ---: | ---: | ---: |");
            for (name, f) in [
                (
                    "client-observed latency p50",
                    (|x: &fanout::Round| x.p50_ms) as fn(&fanout::Round) -> f64,
                ),
                ("client-observed latency p99", |x: &fanout::Round| x.p99_ms),
            ] {
                out.after(format!(
                    "| {name} | {} | {} | {} | {} |",
                    cell(c.rounds(f)),
                    cell(q.rounds(f)),
                    cell(n.rounds(f)),
                    ratio(c.rounds(f), n.rounds(f))
                ));
            }
            out.after(format!(
                "| events missed (rounds with a stream that missed it) | {} | {} | {} | – |",
                c.rounds_missing(),
                q.rounds_missing(),
                n.rounds_missing()
            ));
        }
        let rounds_label = format!("{} + {} rounds", q.round_count(), n.round_count());
        row(
            &mut out,
            &format!("client-observed latency p50 (median of the rounds' p50; {rounds_label})"),
            q.rounds(|x| x.p50_ms),
            n.rounds(|x| x.p50_ms),
            msf,
        );
        row(
            &mut out,
            "client-observed latency p99 (median of the rounds' p99)",
            q.rounds(|x| x.p99_ms),
            n.rounds(|x| x.p99_ms),
            msf,
        );
        row(
            &mut out,
            "client-observed latency max (median of the rounds' max)",
            q.rounds(|x| x.max_ms),
            n.rounds(|x| x.max_ms),
            msf,
        );
        row(
            &mut out,
            "latency at the subscriber's socket (kernel arrival), p50",
            q.rounds(|x| x.kernel_p50_ms),
            n.rounds(|x| x.kernel_p50_ms),
            msf,
        );
        row(
            &mut out,
            "latency at the subscriber's socket (kernel arrival), p99",
            q.rounds(|x| x.kernel_p99_ms),
            n.rounds(|x| x.kernel_p99_ms),
            msf,
        );
        row(
            &mut out,
            "publish request answered (Quotabell: build POST incl. commit)",
            q.rounds(|x| x.post_ms),
            n.rounds(|x| x.post_ms),
            msf,
        );
        row(
            &mut out,
            "server CPU time per round",
            q.rounds(|x| x.server_cpu_ms),
            n.rounds(|x| x.server_cpu_ms),
            &|v| format!("{v:.0} ms"),
        );
        row(
            &mut out,
            "server RSS, subscribers connected (nchan: the worker)",
            q.rss(|x| x.mem_connected),
            n.rss(|x| x.mem_connected),
            mibf,
        );
        row(
            &mut out,
            "server RSS after the rounds, subscribers still connected (nchan: the worker)",
            q.rss(|x| x.mem_after),
            n.rss(|x| x.mem_after),
            mibf,
        );
        row(
            &mut out,
            "server RSS idle, before the subscribers (nchan: the worker)",
            q.rss(|x| x.mem_idle),
            n.rss(|x| x.mem_idle),
            mibf,
        );
        out.row([
            "nginx master RSS after the rounds (not counted above)".into(),
            "–".into(),
            n.rss(|x| x.helper_mem_after)
                .map_or("n/a".into(), |s| mib(s.median)),
            "–".into(),
        ]);
        row(
            &mut out,
            "seconds to connect all subscribers",
            q.blocks(|x| Some(x.connect_secs)),
            n.blocks(|x| Some(x.connect_secs)),
            &|v| format!("{v:.1} s"),
        );
        let count = |s: &Side| {
            format!(
                "{} / {}",
                thousands(s.sum(|x| x.connected) as f64),
                thousands(s.sum(|x| x.streams) as f64)
            )
        };
        out.row([
            "subscribers connected (all blocks)".into(),
            count(&q),
            count(&n),
            "–".into(),
        ]);
        let missed = |s: &Side| {
            format!(
                "{} ({} of {} rounds)",
                s.sum(|x| x.missed),
                s.rounds_missing(),
                s.round_count()
            )
        };
        out.row([
            "missed deliveries (rounds with a miss)".into(),
            missed(&q),
            missed(&n),
            "–".into(),
        ]);
        let errors = |s: &Side| {
            format!(
                "{} / {} / {}",
                s.sum(|x| x.stream_errors),
                s.sum(|x| x.post_errors),
                s.sum(|x| x.stray_events)
            )
        };
        out.row([
            "streams lost / publishes failed / stray events".into(),
            errors(&q),
            errors(&n),
            "–".into(),
        ]);
        let load = |s: &Side| {
            s.busiest_load().map_or("n/a".into(), |o| {
                format!(
                    "{:.0}% of a core ({})",
                    o * 100.0,
                    if o < QUIET_CORES {
                        "quiet"
                    } else {
                        "DISTURBED"
                    }
                )
            })
        };
        out.row([
            "other processes' CPU during the rounds, busiest block".into(),
            load(&q),
            load(&n),
            "–".into(),
        ]);
        verdict(&mut out, &q, &n, r.streams);
        out
    }
}

/// Says whether Quotabell is at or below nchan on p50, p99 and RSS, and flags a busy machine.
/// RSS has to hold at both readings (the worker of nchan grows during the rounds, Quotabell's
/// server hardly), so neither reading alone decides.
///
/// Latency is judged twice. Client-observed is when the bench's stream task had the event; at
/// the socket is when the kernel queued the bytes on the subscriber's socket (SO_TIMESTAMPNS),
/// that is when the server's write was delivered. They agree while the one-core client keeps
/// up; when a server delivers faster than the client can read 10,000 sockets, the
/// client-observed figure measures the client's own queue, and the bench says so.
fn verdict(out: &mut Section, q: &Side, n: &Side, streams: usize) {
    let rss = [
        (
            "RSS connected",
            q.rss(|x| x.mem_connected),
            n.rss(|x| x.mem_connected),
        ),
        (
            "RSS after the rounds",
            q.rss(|x| x.mem_after),
            n.rss(|x| x.mem_after),
        ),
    ];
    let judged = |p50: fn(&fanout::Round) -> f64, p99: fn(&fanout::Round) -> f64| {
        let mut checks = vec![
            ("p50", q.rounds(p50), n.rounds(p50)),
            ("p99", q.rounds(p99), n.rounds(p99)),
        ];
        checks.extend(rss);
        let parts: Vec<String> = checks
            .iter()
            .map(|(what, a, b)| format!("{what} {}", ratio(*a, *b)))
            .collect();
        let met = checks
            .iter()
            .all(|(_, a, b)| a.zip(*b).is_some_and(|(a, b)| a.median <= b.median));
        format!(
            "{} ({})",
            if met { "met" } else { "NOT met" },
            parts.join(", ")
        )
    };
    out.after(format!(
        "Target (Quotabell at or below nchan on p50, p99 and RSS at {} subscribers):",
        thousands(streams as f64)
    ));
    out.after(format!(
        "- client-observed latency: {}",
        judged(|x| x.p50_ms, |x| x.p99_ms)
    ));
    out.after(format!(
        "- latency at the subscriber's socket (kernel arrival): {}",
        judged(|x| x.kernel_p50_ms, |x| x.kernel_p99_ms)
    ));
    for (name, side) in [("Quotabell", q), ("nchan", n)] {
        let lag = side.rounds(|x| x.p99_ms - x.kernel_p99_ms);
        let at_socket = side.rounds(|x| x.kernel_p99_ms);
        if let Some((lag, at)) = lag.zip(at_socket)
            && lag.median > 0.1 * at.median
        {
            out.after(format!(
                "note: with {name} the client read its sockets {:.2} ms (p99, median of the rounds) after the kernel had the bytes: the one-core client did not keep up, so its client-observed figures include the client's own queue",
                lag.median
            ));
        }
    }
    if q.sum(|x| x.missed) + n.sum(|x| x.missed) > 0 {
        out.after(
            "note: some subscribers missed an event; the latencies above are over the deliveries made",
        );
    }
    let busiest = q
        .busiest_load()
        .into_iter()
        .chain(n.busiest_load())
        .reduce(f64::max);
    if let Some(o) = busiest.filter(|o| *o >= QUIET_CORES) {
        out.after(format!(
            "WARNING: other processes (or the hypervisor: steal time counts) used up to {:.0}% of a core during the rounds; the figures are disturbed, rerun on a quiet machine",
            o * 100.0
        ));
    }
}

/// "0.85×" from the medians.
fn ratio(a: Option<Spread>, b: Option<Spread>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b.median > 0.0 && a.median.is_finite() => {
            format!("{:.2}×", a.median / b.median)
        }
        _ => "n/a".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_of_medians() {
        let s = |m| Spread::of(&[m]);
        assert_eq!(ratio(s(50.0), s(100.0)), "0.50×");
        assert_eq!(ratio(s(1.0), s(0.0)), "n/a");
        assert_eq!(ratio(None, s(1.0)), "n/a");
    }
}
