//! A throwaway PostgreSQL cluster: `initdb` in a temporary directory, the server on a free
//! loopback port with its socket in that directory, stopped and deleted on drop. No system
//! service and no root-only set-up: as root (CI is root) the cluster belongs to the `postgres`
//! user, since `initdb` and `postgres` refuse to run as root.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::{Error, Result};

/// The role the cluster is created with; it trusts loopback connections.
pub const ROLE: &str = "quotabell";

pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl Postgres {
    /// Creates and starts a cluster (Debian's `postgresql` package provides the binaries).
    pub fn start() -> Result<Self> {
        let bin = bin_dir()?;
        let as_postgres = unsafe { libc::geteuid() } == 0;
        let dir = tempfile::Builder::new()
            .prefix("quotabell-pg-")
            .tempdir()
            .map_err(Error::io("a directory for the cluster"))?;
        if as_postgres {
            // The postgres user must own the data directory and reach it.
            run(Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path()))?;
        }
        let port = free_port()?;
        let pg = Self {
            dir,
            bin,
            port,
            as_postgres,
        };
        let data = pg.data();
        pg.tool(
            "initdb",
            &["-D", &data, "-A", "trust", "-U", ROLE, "-E", "UTF8"],
        )?;
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1",
            pg.dir.path().display()
        );
        let log = pg.log().display().to_string();
        pg.server_ctl(&["-D", &data, "-l", &log, "-o", &opts, "-w", "start"])?;
        Ok(pg)
    }

    /// `postgres://quotabell@127.0.0.1:PORT/DB`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{ROLE}@127.0.0.1:{}/{database}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates an empty database.
    pub fn create_database(&self, name: &str) -> Result<()> {
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""))
            .map(drop)
    }

    /// Runs SQL with `psql` and returns what it printed (unaligned, tuples only).
    pub fn psql(&self, database: &str, sql: &str) -> Result<String> {
        let out = run(Command::new(self.bin.join("psql")).args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &self.url(database),
            "-c",
            sql,
        ]))?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Creates a login role that must give `password` (scram-sha-256) over loopback, while every
    /// other role stays trusted: for testing what a wrong password looks like.
    pub fn add_password_role(&self, role: &str, password: &str) -> Result<()> {
        self.psql(
            "postgres",
            &format!("CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'"),
        )?;
        let hba = self.dir.path().join("data").join("pg_hba.conf");
        let old = std::fs::read_to_string(&hba).map_err(Error::io("reading pg_hba.conf"))?;
        // The first matching line decides, so the role's line goes first.
        let new = format!("host all \"{role}\" 127.0.0.1/32 scram-sha-256\n{old}");
        std::fs::write(&hba, new).map_err(Error::io("writing pg_hba.conf"))?;
        self.psql("postgres", "SELECT pg_reload_conf()").map(drop)
    }

    /// Stops and starts the server on the same port (a PostgreSQL restart under load).
    pub fn restart(&self) -> Result<()> {
        self.server_ctl(&["-D", &self.data(), "-m", "fast", "-w", "restart"])
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// `pg_ctl` for a command that leaves the server running: the server would inherit pipes
    /// for its output and hold them open, so its output goes to nothing here (the server's own
    /// log says why when it fails).
    fn server_ctl(&self, args: &[&str]) -> Result<()> {
        let exe = self.bin.join("pg_ctl");
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let what = format!("{cmd:?} {args:?}");
        let status = cmd
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(Error::io(what.clone()))?;
        if !status.success() {
            let log = std::fs::read_to_string(self.log()).unwrap_or_default();
            return Err(Error::Failed(format!("{what} failed ({status}): {log}")));
        }
        Ok(())
    }

    /// Runs one of the cluster's tools, as the postgres user when we are root.
    fn tool(&self, name: &str, args: &[&str]) -> Result<Output> {
        let exe = self.bin.join(name);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        run(cmd.args(args).current_dir(self.dir.path()))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.server_ctl(&["-D", &self.data(), "-m", "immediate", "-w", "stop"]);
    }
}

/// The newest installed PostgreSQL's binaries (`/usr/lib/postgresql/N/bin` on Debian).
fn bin_dir() -> Result<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(root)
        .map_err(Error::io(
            "/usr/lib/postgresql (install Debian's `postgresql`)",
        ))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("initdb").exists())
        .max_by_key(|(v, _)| *v);
    newest
        .map(|(_, bin)| bin)
        .ok_or_else(|| Error::Failed("no PostgreSQL with initdb under /usr/lib/postgresql".into()))
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(Error::io("a free port"))?;
    Ok(l.local_addr().map_err(Error::io("a free port"))?.port())
}

fn run(cmd: &mut Command) -> Result<Output> {
    let what = format!("{cmd:?}");
    let out = cmd.output().map_err(Error::io(what.clone()))?;
    if !out.status.success() {
        return Err(Error::Failed(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cluster the PostgreSQL tests run against starts, answers on loopback, survives a
    /// restart on its port, and is gone after drop.
    #[test]
    fn a_throwaway_cluster_starts_answers_restarts_and_goes() {
        let pg = Postgres::start().unwrap();
        pg.create_database("qb").unwrap();
        assert_eq!(pg.psql("qb", "SELECT 40 + 2").unwrap(), "42");
        pg.psql("qb", "CREATE TABLE t (x int); INSERT INTO t VALUES (7)")
            .unwrap();
        pg.restart().unwrap();
        assert_eq!(pg.psql("qb", "SELECT x FROM t").unwrap(), "7");
        let (port, dir) = (pg.port(), pg.dir.path().to_owned());
        drop(pg);
        assert!(!dir.exists(), "the cluster's directory is deleted");
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "nothing listens on the port any more"
        );
    }
}
