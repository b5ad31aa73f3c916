//! Live fan-out of committed events to the streams of the same user.
//!
//! Each user with at least one open stream has a hub: a short tail of recent events, already
//! framed as SSE bytes (framed once, shared by every stream of that user), and a watch channel
//! carrying the newest id. Streams never depend on the hub for correctness: per-user ids are
//! contiguous, so a stream takes events from the tail only when the tail reaches back to its own
//! cursor, and reads the database otherwise. A missed wake-up or a cleared tail can make a
//! stream slower, never make it skip or repeat.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;

use super::direct::{self, Offer, Sink};
use crate::events::StoredEvent;

const TAIL_LEN: usize = 1024;

#[derive(Debug, Clone)]
pub struct Frame {
    pub id: u64,
    pub bytes: Bytes,
    /// On the last frame of a published batch: the first id of the batch and the whole batch
    /// framed once, so a stream that wants exactly that batch (the common case: a live stream
    /// waiting for the next commit) sends one shared buffer instead of concatenating.
    pub batch: Option<(u64, Bytes)>,
}

/// What the tail holds after a cursor: up to which id, and the bytes to send.
#[derive(Debug)]
pub struct Chunk {
    pub last_id: u64,
    pub bytes: Bytes,
}

pub struct UserHub {
    /// The log this hub mirrors; when the user's log gets a new epoch the hub is retired.
    epoch: String,
    retired: AtomicBool,
    tail: Mutex<VecDeque<Frame>>,
    newest: watch::Sender<u64>,
    /// Streams that may park their sockets here (see `direct`), and whether the task that
    /// writes to them runs.
    sinks: Mutex<Sinks>,
    fan_out_running: AtomicBool,
}

impl UserHub {
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// True once the log this hub mirrored was reset: its streams end so that clients
    /// reconnect and meet the new epoch.
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        self.newest.send_modify(|_| {}); // wake every waiter
    }

    /// Lets `sink` park on this hub, and starts the fan-out task if it is not running.
    pub fn attach(self: &Arc<Self>, sink: &Arc<Sink>) {
        lock(&self.sinks).push(sink);
        if !self.fan_out_running.swap(true, Ordering::AcqRel) {
            tokio::spawn(fan_out(Arc::downgrade(self), self.subscribe()));
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.newest.subscribe()
    }

    /// The frames after `cursor` (at most `max`) as one chunk, if the tail covers
    /// `cursor + 1`: `Some(None)` when there is nothing newer in the tail, `None` when the
    /// caller must read the database.
    pub fn after(&self, cursor: u64, max: usize) -> Option<Option<Chunk>> {
        let tail = lock(&self.tail);
        let first = tail.front()?.id;
        if first > cursor + 1 {
            return None;
        }
        let skip = (cursor + 1 - first) as usize;
        let end = (skip + max).min(tail.len());
        if skip >= end {
            return Some(None);
        }
        let (head, last) = (&tail[skip], &tail[end - 1]);
        if let Some((batch_first, bytes)) = &last.batch
            && *batch_first == head.id
        {
            return Some(Some(Chunk {
                last_id: last.id,
                bytes: bytes.clone(),
            }));
        }
        if end - skip == 1 {
            return Some(Some(Chunk {
                last_id: head.id,
                bytes: head.bytes.clone(),
            }));
        }
        let mut buf = BytesMut::new();
        tail.range(skip..end)
            .for_each(|f| buf.extend_from_slice(&f.bytes));
        Some(Some(Chunk {
            last_id: last.id,
            bytes: buf.freeze(),
        }))
    }

    /// The newest id this hub has announced.
    pub fn newest(&self) -> u64 {
        *self.newest.borrow()
    }

    /// Raises the newest known id without adding frames, waking waiters to re-read.
    pub fn note_newest(&self, newest: u64) {
        self.newest.send_if_modified(|v| {
            let changed = *v < newest;
            *v = (*v).max(newest);
            changed
        });
    }

    fn push(&self, events: &[StoredEvent]) {
        let mut tail = lock(&self.tail);
        let mut batch = BytesMut::new();
        let mut batch_first = None;
        for ev in events {
            match tail.back() {
                Some(last) if ev.id <= last.id => continue, // already there (published twice)
                Some(last) if ev.id != last.id + 1 => tail.clear(), // a gap: start over from here
                _ => {}
            }
            if tail.len() == TAIL_LEN {
                tail.pop_front();
            }
            let bytes = Bytes::from(ev.sse_frame());
            if batch_first.is_none() {
                batch_first = Some(ev.id);
            }
            batch.extend_from_slice(&bytes);
            tail.push_back(Frame {
                id: ev.id,
                bytes,
                batch: None,
            });
        }
        if let (Some(first), Some(last)) = (batch_first, tail.back_mut())
            && last.id > first
        {
            last.batch = Some((first, batch.freeze()));
        }
        if let Some(last) = tail.back() {
            let newest = last.id;
            drop(tail);
            self.note_newest(newest);
        }
    }
}

/// The sinks attached to a hub. Entries of closed streams go at each commit, and on attach once
/// the list has doubled since it was last pruned, so a user who reconnects all day without
/// a single event does not grow it without bound (amortised O(1) per attach).
#[derive(Default)]
struct Sinks {
    list: Vec<Weak<Sink>>,
    prune_at: usize,
}

impl Sinks {
    const MIN_PRUNE: usize = 64;

    fn push(&mut self, sink: &Arc<Sink>) {
        self.list.push(Arc::downgrade(sink));
        if self.list.len() >= self.prune_at.max(Self::MIN_PRUNE) {
            self.prune();
        }
    }

    fn prune(&mut self) {
        self.list.retain(|w| w.strong_count() > 0);
        self.prune_at = 2 * self.list.len();
    }

    fn live(&mut self) -> Vec<Arc<Sink>> {
        self.prune();
        self.list.iter().filter_map(Weak::upgrade).collect()
    }
}

/// Sinks written between two yields to the scheduler, so one commit to 10,000 streams does not
/// hold up every other request for the whole pass.
const SINKS_PER_SLICE: usize = 256;

/// Events in one chunk the fan-out writes; a stream further behind pages by itself.
const EVENTS_PER_CHUNK: usize = 256;

/// The hub's fan-out task: after each commit, writes the new batch to every parked sink whose
/// cursor is just before it (framed once per distinct cursor, nearly always one), and wakes
/// the parked ones it cannot serve. With many sinks the pass is split over the runtime's
/// workers (`PARALLEL_AT`): each sink is in exactly one part, and the next commit's pass starts
/// only when every part of this one is done, so no stream's bytes are reordered. It ends with
/// the hub.
async fn fan_out(hub: Weak<UserHub>, mut newest: watch::Receiver<u64>) {
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    while newest.changed().await.is_ok() {
        let now = *newest.borrow_and_update();
        let sinks: Arc<[Arc<Sink>]> = {
            let Some(hub) = hub.upgrade() else { return };
            lock(&hub.sinks).live().into()
        };
        let parts = if sinks.len() >= PARALLEL_AT {
            workers.min(sinks.len() / SINKS_PER_SLICE).max(1)
        } else {
            1
        };
        let size = sinks.len().div_ceil(parts);
        let mut others = Vec::with_capacity(parts - 1);
        for p in 1..parts {
            let (hub, sinks) = (hub.clone(), sinks.clone());
            let range = p * size..((p + 1) * size).min(sinks.len());
            others.push(tokio::spawn(async move {
                write_parked(&hub, &sinks[range], now).await
            }));
        }
        let mut alive = write_parked(&hub, &sinks[..size.min(sinks.len())], now).await;
        for part in others {
            // A part that panicked has left its sinks parked; their streams' keepalives
            // find them (`Sink::unpark` on the stream's side).
            alive &= part.await.unwrap_or(true);
        }
        if !alive {
            return;
        }
    }
}

/// Sinks at or above which one commit's pass is split over the runtime's workers: below it,
/// a pass is shorter than handing a part to another worker.
const PARALLEL_AT: usize = 2 * SINKS_PER_SLICE;

/// One part of a fan-out pass: `sinks` parked just before the batch ending at `now` get it;
/// the others that are parked are woken. `false` when the hub is gone.
async fn write_parked(hub: &Weak<UserHub>, sinks: &[Arc<Sink>], now: u64) -> bool {
    let mut framed: Option<(u64, u64, Bytes)> = None;
    for (i, sink) in sinks.iter().enumerate() {
        if i > 0 && i % SINKS_PER_SLICE == 0 {
            tokio::task::yield_now().await;
        }
        let Some(after) = sink.parked_at() else {
            continue;
        };
        let Some(hub) = hub.upgrade() else {
            return false;
        };
        // Before the cursor check: retiring announces no new id, so a caught-up stream
        // would otherwise sleep on the old log until its keepalive.
        if hub.is_retired() {
            sink.wake();
            continue;
        }
        if after >= now {
            continue;
        }
        if framed.as_ref().is_none_or(|f| f.0 != after) {
            framed = match hub.after(after, EVENTS_PER_CHUNK) {
                Some(Some(c)) => Some((after, c.last_id, direct::chunk(&c.bytes))),
                // The tail does not reach back that far: the stream reads the database.
                _ => None,
            };
        }
        match &framed {
            Some((_, last, bytes)) => {
                // A chunk that stops short of `now` (more than one chunk's worth arrived
                // at once, or the tail ends early): the stream reads the rest itself
                // rather than waiting for the next commit.
                if sink.offer(after, *last, bytes) == Offer::Written && *last < now {
                    sink.wake();
                }
            }
            None => sink.wake(),
        }
    }
    true
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave a VecDeque or HashMap half-updated in a way
    // that matters here; keep serving rather than poisoning every later stream.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Default)]
pub struct Hubs {
    by_user: Mutex<HashMap<i64, Weak<UserHub>>>,
}

impl Hubs {
    /// The hub of `user_id`, created if no stream holds it; it lives while a stream holds it.
    /// `newest` is the newest id and `epoch` the log epoch the caller just read; a hub of
    /// another epoch is retired and replaced (if the caller's read was the stale one, the
    /// outside-write watcher retires the new hub in turn: retiring is always safe).
    pub fn hub(&self, user_id: i64, newest: u64, epoch: &str) -> Arc<UserHub> {
        let mut map = lock(&self.by_user);
        if let Some(hub) = map.get(&user_id).and_then(Weak::upgrade) {
            if hub.epoch == epoch {
                return hub;
            }
            hub.retire();
        }
        map.retain(|_, w| w.strong_count() > 0);
        let hub = Arc::new(UserHub {
            epoch: epoch.to_owned(),
            retired: AtomicBool::new(false),
            tail: Mutex::new(VecDeque::new()),
            newest: watch::channel(newest).0,
            sinks: Mutex::new(Sinks::default()),
            fan_out_running: AtomicBool::new(false),
        });
        map.insert(user_id, Arc::downgrade(&hub));
        hub
    }

    /// Called after commit with the events just made durable.
    pub fn publish(&self, user_id: i64, events: &[StoredEvent]) {
        if events.is_empty() {
            return;
        }
        let hub = lock(&self.by_user).get(&user_id).and_then(Weak::upgrade);
        if let Some(hub) = hub {
            hub.push(events);
        }
    }

    /// Retires the hub of `user_id` (its log was reset); later streams get a new one.
    pub fn retire(&self, user_id: i64) {
        if let Some(hub) = lock(&self.by_user)
            .remove(&user_id)
            .and_then(|w| w.upgrade())
        {
            hub.retire();
        }
    }

    /// Users that have a live hub now, with the newest id their hub knows of.
    pub fn live_users(&self) -> Vec<(i64, Arc<UserHub>, u64)> {
        lock(&self.by_user)
            .iter()
            .filter_map(|(u, w)| {
                w.upgrade().map(|h| {
                    let n = *h.newest.borrow();
                    (*u, h, n)
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventKind;

    fn ev(id: u64) -> StoredEvent {
        StoredEvent {
            user_id: 1,
            id,
            kind: EventKind::Notice,
            data: "{}".into(),
            created_at: 0,
        }
    }

    /// The ids in the chunk after `cursor`, read back from its SSE text.
    fn ids(hub: &UserHub, cursor: u64) -> Vec<u64> {
        let chunk = hub.after(cursor, 10).unwrap().unwrap();
        let text = String::from_utf8(chunk.bytes.to_vec()).unwrap();
        let ids: Vec<u64> = text
            .lines()
            .filter_map(|l| l.strip_prefix("id: "))
            .map(|i| i.parse().unwrap())
            .collect();
        assert_eq!(ids.last(), Some(&chunk.last_id));
        ids
    }

    #[tokio::test]
    async fn closed_streams_leave_the_sink_list_without_a_commit() {
        let hubs = Hubs::default();
        let hub = hubs.hub(1, 0, "e");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = Arc::new(
            tokio::net::TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap(),
        );
        let live = Sink::new(tcp.clone());
        hub.attach(&live);
        for _ in 0..10_000 {
            hub.attach(&Sink::new(tcp.clone())); // attached and dropped: a reconnect
        }
        let len = lock(&hub.sinks).list.len();
        assert!(
            len <= Sinks::MIN_PRUNE,
            "{len} entries kept for 1 live stream"
        );
        assert_eq!(lock(&hub.sinks).live().len(), 1);
    }

    /// A parked sink on a real loopback socket whose client end reads nothing (the chunks
    /// here fit its buffers).
    async fn parked_sink(hub: &Arc<UserHub>, cursor: u64) -> (Arc<Sink>, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let sink = Sink::new(Arc::new(server));
        assert!(sink.park(cursor));
        hub.attach(&sink);
        (sink, client)
    }

    const SOON: std::time::Duration = std::time::Duration::from_secs(5);

    #[tokio::test]
    async fn retiring_wakes_a_caught_up_parked_stream() {
        let hubs = Hubs::default();
        let hub = hubs.hub(1, 0, "e");
        hubs.publish(1, &[ev(1)]);
        let (sink, _client) = parked_sink(&hub, 1).await;
        hubs.retire(1);
        tokio::time::timeout(SOON, sink.woken())
            .await
            .expect("the stream is handed its socket back, to end on the old log");
        assert_eq!(sink.parked_at(), None);
    }

    #[tokio::test]
    async fn a_batch_larger_than_one_chunk_wakes_the_stream_for_the_rest() {
        let hubs = Hubs::default();
        let hub = hubs.hub(1, 0, "e");
        let (sink, _client) = parked_sink(&hub, 0).await;
        let batch: Vec<StoredEvent> = (1..=300).map(ev).collect();
        hubs.publish(1, &batch);
        tokio::time::timeout(SOON, sink.woken())
            .await
            .expect("the stream is woken to send what the chunk left out");
        let (cursor, _) = sink.unpark();
        assert_eq!(
            cursor, EVENTS_PER_CHUNK as u64,
            "the fan-out wrote one chunk"
        );
        assert_eq!(ids(&hub, 256)[0], 257, "the rest is still in the tail");
    }

    #[test]
    fn tail_serves_only_contiguous_ranges() {
        let hubs = Hubs::default();
        let hub = hubs.hub(1, 0, "e");
        hubs.publish(1, &[ev(5), ev(6), ev(7)]);
        assert!(hub.after(3, 10).is_none(), "4 is not in the tail");
        assert_eq!(ids(&hub, 4), [5, 6, 7]);
        assert!(hub.after(7, 10).unwrap().is_none());
        hubs.publish(1, &[ev(6), ev(7), ev(8)]);
        assert_eq!(ids(&hub, 6), [7, 8], "republished ids are ignored");
        assert_eq!(
            ids(&hub, 5),
            [6, 7, 8],
            "a range across batches is concatenated"
        );
        hubs.publish(1, &[ev(10)]);
        assert!(hub.after(8, 10).is_none(), "a gap clears the tail");
        assert_eq!(*hub.subscribe().borrow(), 10);
    }

    #[test]
    fn hub_lives_while_held() {
        let hubs = Hubs::default();
        let hub = hubs.hub(7, 0, "e");
        assert_eq!(hubs.live_users().len(), 1);
        drop(hub);
        hubs.publish(7, &[ev(1)]);
        assert!(hubs.live_users().is_empty());
    }

    #[test]
    fn a_new_epoch_retires_the_hub() {
        let hubs = Hubs::default();
        let old = hubs.hub(3, 0, "a");
        assert!(Arc::ptr_eq(&old, &hubs.hub(3, 0, "a")));
        let new = hubs.hub(3, 0, "b");
        assert!(old.is_retired() && !new.is_retired());
        hubs.retire(3);
        assert!(new.is_retired());
    }
}
