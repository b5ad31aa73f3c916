//! Live events written straight to idle streams' sockets, in one pass per commit.
//!
//! Why: with a task per stream, every commit wakes every stream's task, each of which polls
//! its body, finds the shared batch in the hub and writes it; at 10,000 streams that wake-up
//! and poll was about a fifth of the server's CPU time per event. nginx + nchan instead walks
//! its subscribers and writes to each. Here a stream that is caught up and has nothing to send
//! *parks*: it lends its socket to the hub (`Sink::park`) and sleeps. The hub's fan-out task
//! (`UserHub::fan_out`) then writes each commit's batch, framed once as an HTTP/1.1 chunk, to
//! every parked socket whose cursor is just before the batch, and moves that cursor on.
//! Anything else — a partial write, a full socket buffer, a cursor that is behind, a retired
//! hub — unparks the stream and wakes its task, which continues exactly as before from the
//! cursor the sink hands back (`Sink::unpark`). So the hub's writes are an optimisation of the
//! same order of bytes, never a second source of them.
//!
//! The one rule that keeps the bytes in order: only the party holding the socket writes. A
//! parked sink belongs to the fan-out (the stream's writer is waiting for its body, which is
//! waiting in `park`); an unparked one to its stream. A partial write leaves the rest in
//! `leftover`, and the stream's writer sends it before anything else; the stream does not park
//! again until it has.

use std::io;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

pub struct Sink {
    tcp: Arc<TcpStream>,
    state: Mutex<State>,
    wake: Notify,
}

#[derive(Default)]
struct State {
    parked: bool,
    cursor: u64,
    /// The unwritten end of a chunk the fan-out started.
    leftover: Option<Bytes>,
    /// When the fan-out last wrote, so the stream's keepalive counts silence from there.
    written_at: Option<Instant>,
}

/// What `offer` did with a parked sink.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer {
    /// Not parked, or parked elsewhere: left alone.
    Skipped,
    /// The whole chunk was written; the sink stays parked after it.
    Written,
    /// The stream was woken to carry on by itself.
    Woken,
}

impl Sink {
    pub fn new(tcp: Arc<TcpStream>) -> Arc<Self> {
        Arc::new(Self {
            tcp,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
        })
    }

    /// The stream, idle at `cursor`, lends its socket to the fan-out. `false` when a leftover
    /// must be written first (the stream's writer does that with its next chunk).
    pub fn park(&self, cursor: u64) -> bool {
        let mut st = lock(&self.state);
        if st.leftover.is_some() {
            return false;
        }
        st.parked = true;
        st.cursor = cursor;
        true
    }

    /// The stream takes its socket back; returns its cursor, moved on by what was written
    /// meanwhile, and when the fan-out last wrote.
    pub fn unpark(&self) -> (u64, Option<Instant>) {
        let mut st = lock(&self.state);
        st.parked = false;
        (st.cursor, st.written_at)
    }

    /// Resolves when the fan-out hands the socket back (a stored permit covers a wake that
    /// came before the wait).
    pub async fn woken(&self) {
        self.wake.notified().await;
    }

    /// For the stream's writer: bytes the fan-out could not finish, to send before anything
    /// else.
    pub fn take_leftover(&self) -> Option<Bytes> {
        lock(&self.state).leftover.take()
    }

    /// The cursor of a parked sink, `None` when its stream holds the socket.
    pub fn parked_at(&self) -> Option<u64> {
        let st = lock(&self.state);
        st.parked.then_some(st.cursor)
    }

    /// For the fan-out: write `chunk` (HTTP/1.1-framed events `after + 1 ..= last`) if the
    /// sink is parked at `after`.
    pub fn offer(&self, after: u64, last: u64, chunk: &Bytes) -> Offer {
        let mut st = lock(&self.state);
        if !st.parked || st.cursor != after {
            return Offer::Skipped;
        }
        match self.tcp.try_write(chunk) {
            Ok(n) if n == chunk.len() => {
                st.cursor = last;
                st.written_at = Some(Instant::now());
                return Offer::Written;
            }
            Ok(n) => {
                tracing::debug!(written = n, of = chunk.len(), "fan-out write cut short");
                st.cursor = last;
                st.written_at = Some(Instant::now());
                st.leftover = Some(chunk.slice(n..));
            }
            // Full (the stream waits for room itself) or broken (its writer finds out).
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => {}
        }
        st.parked = false;
        drop(st);
        self.wake.notify_one();
        Offer::Woken
    }

    /// For the fan-out: give a parked stream its socket back (a cursor it cannot serve, a
    /// retired hub).
    pub fn wake(&self) {
        let mut st = lock(&self.state);
        if st.parked {
            st.parked = false;
            drop(st);
            self.wake.notify_one();
        }
    }
}

/// `bytes` as one HTTP/1.1 chunk.
pub fn chunk(bytes: &[u8]) -> Bytes {
    let size = format!("{:x}\r\n", bytes.len());
    let mut out = BytesMut::with_capacity(size.len() + bytes.len() + 2);
    out.extend_from_slice(size.as_bytes());
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
    out.freeze()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpSocket};

    /// A connected pair on loopback whose client end has a small receive buffer and does not
    /// read, so a large write fills both buffers and is cut short.
    async fn pair() -> (Arc<TcpStream>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let client = socket
            .connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Arc::new(server), client)
    }

    #[tokio::test]
    async fn only_a_parked_sink_at_the_cursor_is_written() {
        let (server, mut client) = pair().await;
        let sink = Sink::new(server);
        let hello = chunk(b"id: 1\n\n");
        assert_eq!(sink.offer(0, 1, &hello), Offer::Skipped, "not parked");
        assert!(sink.park(3));
        assert_eq!(sink.offer(0, 1, &hello), Offer::Skipped, "parked elsewhere");
        assert_eq!(sink.parked_at(), Some(3));
        assert_eq!(sink.offer(3, 4, &hello), Offer::Written);
        assert_eq!(sink.parked_at(), Some(4), "stays parked, cursor moved on");
        let (cursor, written_at) = sink.unpark();
        assert_eq!(cursor, 4);
        assert!(written_at.is_some());
        assert_eq!(sink.parked_at(), None);
        let mut got = vec![0; hello.len()];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got, hello);
        assert_eq!(&got[..3], b"7\r\n");
    }

    #[tokio::test]
    async fn a_cut_short_write_leaves_the_rest_and_wakes_the_stream() {
        let (server, mut client) = pair().await;
        let sink = Sink::new(server);
        // Far more than both socket buffers can take at once.
        let body: Vec<u8> = (0..16 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let framed = chunk(&body);
        assert!(sink.park(7));
        assert_eq!(sink.offer(7, 9, &framed), Offer::Woken);
        tokio::time::timeout(std::time::Duration::from_secs(5), sink.woken())
            .await
            .expect("the stream is woken");
        assert_eq!(sink.parked_at(), None, "the socket is the stream's again");
        assert!(!sink.park(9), "no parking while a leftover waits");
        assert_eq!(sink.unpark().0, 9, "the cursor counts the batch as sent");
        let rest = sink.take_leftover().expect("a leftover");
        assert!(!rest.is_empty() && rest.len() < framed.len());
        // What the client reads is the whole chunk once the stream writes the rest.
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        });
        let tcp = sink.tcp.clone();
        let mut off = 0;
        while off < rest.len() {
            tcp.writable().await.unwrap();
            match tcp.try_write(&rest[off..]) {
                Ok(n) => off += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        socket2::SockRef::from(&*tcp)
            .shutdown(std::net::Shutdown::Write)
            .unwrap();
        assert_eq!(reader.await.unwrap(), framed);
        assert!(sink.park(9), "parks again once the leftover is out");
    }
}
