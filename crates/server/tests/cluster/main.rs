//! Several `quotabell-server` instances on one PostgreSQL database (a throwaway cluster per test
//! process, a database per test), with clients spread over them, and instances, connections
//! and the database itself killed under load. What must hold is what a single SQLite instance
//! guarantees: no overshoot of a hard limit, every event of a user exactly once and in order on
//! every stream whichever instance serves it, retries that never count twice, background jobs
//! that run once.

#[allow(dead_code)]
#[path = "../api/support.rs"]
mod support;

mod faults;
mod load;
mod start;

use std::collections::HashMap;

use support::*;

/// `n` instances on a new database: of the process's cluster, or of a cluster of their own
/// for a test that restarts PostgreSQL (the other tests share the process's).
pub struct Cluster {
    pub db: String,
    pub servers: Vec<Server>,
    pub own: Option<quotabell_testbed::Postgres>,
}

impl Cluster {
    pub fn start(n: usize, extra: &[&str]) -> Self {
        let db = new_database();
        let servers = (0..n).map(|_| Server::start_on(&db, extra)).collect();
        Self {
            db,
            servers,
            own: None,
        }
    }

    pub fn start_alone(n: usize, extra: &[&str]) -> Self {
        let pg = quotabell_testbed::Postgres::start().unwrap();
        pg.create_database("alone").unwrap();
        let db = pg.url("alone");
        let servers = (0..n).map(|_| Server::start_on(&db, extra)).collect();
        Self {
            db,
            servers,
            own: Some(pg),
        }
    }

    /// Every instance's base URL, in order (a killed one stays in the list: clients find out).
    pub fn bases(&self) -> Vec<String> {
        self.servers.iter().map(|s| s.base.clone()).collect()
    }

    pub fn psql(&self, sql: &str) -> String {
        let name = self.db.rsplit('/').next().unwrap().to_owned();
        match &self.own {
            Some(pg) => pg.psql(&name, sql).unwrap(),
            None => with_cluster(|pg| pg.psql(&name, sql).unwrap()),
        }
    }
}

pub fn new_database() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "c{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    with_cluster(|pg| {
        pg.create_database(&name).unwrap();
        pg.url(&name)
    })
}

/// Acceptance: 200 concurrent posts for one user with 100 builds left, spread round-robin over
/// three instances: exactly 100 accepted and 100 refused, and the counters agree with the rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_never_overshoot_a_hard_limit() {
    let cluster = Cluster::start(3, &[]);
    let token = cluster.servers[0].add_user("race@example.com", "free");
    let c = client();
    let posts: Vec<_> = (0..200)
        .map(|n| {
            let s = &cluster.servers[n % 3];
            let (c, token, url) = (c.clone(), token.clone(), s.url("/builds"));
            tokio::spawn(async move { post_to(&c, url, &token, &build_body("web", n)).await.0 })
        })
        .collect();
    let mut by_status: HashMap<u16, usize> = HashMap::new();
    for p in posts {
        *by_status.entry(p.await.unwrap()).or_default() += 1;
    }
    assert_eq!(by_status.get(&201), Some(&100), "{by_status:?}");
    assert_eq!(by_status.get(&402), Some(&100), "{by_status:?}");
    for s in &cluster.servers {
        let (_, usage) = get_json(&c, s, &token, "/usage").await;
        assert_eq!(
            usage["quotas"][0],
            serde_json::json!({"metric": "builds", "used": 100, "limit": 100})
        );
    }
    let counted = cluster.psql(
        "SELECT u.builds_used, (SELECT count(*) FROM builds b WHERE b.user_id = u.id)
         FROM users u WHERE email = 'race@example.com'",
    );
    assert_eq!(counted, "100|100", "counter|rows");
    let events = all_events(&c, &cluster.servers[1], &token).await;
    let count = |kind: &str| events.iter().filter(|e| e.kind == kind).count();
    assert_eq!(count("build.accepted"), 100);
    assert_eq!(count("build.rejected"), 100);
    assert_eq!(count("quota.exceeded"), 1);
    let ids: Vec<u64> = events.iter().map(|e| e.id.parse().unwrap()).collect();
    assert_eq!(
        ids,
        (1..=ids.len() as u64).collect::<Vec<_>>(),
        "contiguous ids"
    );
}
