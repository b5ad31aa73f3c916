//! The cheap SSE subscriber the fan-out benchmarks share: a plain TCP connection that speaks
//! just enough HTTP/1.1 (one GET, then a chunked or close-delimited body) and SSE (blocks
//! split on a blank line) to notice the first block and the events. That keeps the client
//! cheap, so that thousands of streams on one core measure the server more than the client.
//!
//! It serves Quotabell's `/api/v1/stream` (chunked; a `retry:` prelude; `event: build.accepted`)
//! and nchan's EventSource subscriber (close-delimited; a `: hi` comment; events without an
//! `event:` line, so of type `message`, with nchan's own `id:` lines) alike: a stream is ready
//! once the first SSE block arrives, and an event counts when its type matches and its data
//! is JSON with a numeric `id`.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, mpsc};

/// What to subscribe to and which events to report.
pub struct Subscription {
    pub addr: SocketAddr,
    /// The whole GET request, headers and blank line included.
    pub request: String,
    /// The SSE event type that carries the published `{"id": N}`.
    pub kind: &'static str,
}

/// What a stream task tells the coordinator; `stream` is its index.
pub enum Msg {
    Ready {
        stream: usize,
    },
    Delivered {
        stream: usize,
        /// The `id` in the event's JSON data.
        id: i64,
        /// When the stream task had the event (client-observed).
        at: Instant,
        /// When the kernel queued the bytes on the client socket (SO_TIMESTAMPNS), if known.
        kernel_at: Option<SystemTime>,
    },
    Closed {
        stream: usize,
        reason: String,
    },
}

/// One SSE stream: GET, wait for the first SSE block (then report it ready and release the
/// connection permit), then report every matching event until the stream ends. Returns why
/// it ended.
pub async fn stream(
    index: usize,
    sub: Arc<Subscription>,
    tx: mpsc::UnboundedSender<Msg>,
    permit: OwnedSemaphorePermit,
) -> Result<(), String> {
    let mut permit = Some(permit);
    let mut sock = tokio::time::timeout(Duration::from_secs(30), TcpStream::connect(sub.addr))
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| format!("connect: {e}"))?;
    let _ = sock.set_nodelay(true);
    sock.write_all(sub.request.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    // From here on only reads, through AsyncFd, whose readiness can be cleared after a short
    // read (see `recv`). The std socket stays non-blocking.
    let sock = sock.into_std().map_err(|e| format!("register: {e}"))?;
    // SAFETY: the AsyncFd owns the std socket, which is open and keeps its descriptor until
    // the AsyncFd drops it; nothing else closes it.
    let sock = unsafe { AsyncFd::register_with_interest(sock, Interest::READABLE) }
        .map_err(|e| format!("register: {e}"))?;
    let fd = sock.as_raw_fd();
    let timestamps = enable_rx_timestamps(fd);
    let mut parser = Parser::default();
    let mut buf = vec![0u8; 16 * 1024];
    let mut events = Vec::new();
    loop {
        let read = if permit.is_some() {
            tokio::time::timeout(
                Duration::from_secs(30),
                recv(&sock, fd, &mut buf, timestamps),
            )
            .await
            .map_err(|_| "no first SSE block within 30 s".to_owned())?
        } else {
            recv(&sock, fd, &mut buf, timestamps).await
        };
        let (n, kernel_at) = read.map_err(|e| format!("read: {e}"))?;
        let at = Instant::now();
        if n == 0 {
            return Err("server closed the stream".into());
        }
        parser.feed(&buf[..n], &mut events)?;
        if permit.is_some() && parser.blocks > 0 {
            permit = None;
            let _ = tx.send(Msg::Ready { stream: index });
        }
        for ev in events.drain(..) {
            if ev.kind != sub.kind {
                continue;
            }
            let id = serde_json::from_str::<Published>(&ev.data)
                .map(|p| p.id)
                .map_err(|_| format!("{} event without a numeric id: {}", ev.kind, ev.data))?;
            let _ = tx.send(Msg::Delivered {
                stream: index,
                id,
                at,
                kernel_at,
            });
        }
    }
}

/// The part of an event's data the bench reads; typed, so the other fields are skipped
/// without building a map of them.
#[derive(serde::Deserialize)]
struct Published {
    id: i64,
}

/// Asks the kernel to stamp received data (SO_TIMESTAMPNS); false if it refuses.
fn enable_rx_timestamps(fd: RawFd) -> bool {
    let on: libc::c_int = 1;
    // SAFETY: passes a valid int option for a socket this task owns.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

/// Reads what is there, with the kernel's receive timestamp of the last segment read.
///
/// A read shorter than the buffer took everything the socket had queued, so it clears the
/// readiness itself instead of paying one more `recvmsg` for the `EAGAIN` that would: with
/// 10,000 sockets on one core that second system call per delivery was a large part of the
/// client's cost. Readiness that arrived after the guard was taken is kept (tokio compares
/// the readiness tick), so no delivery is missed.
async fn recv(
    sock: &AsyncFd<std::net::TcpStream>,
    fd: RawFd,
    buf: &mut [u8],
    timestamps: bool,
) -> std::io::Result<(usize, Option<SystemTime>)> {
    loop {
        let mut ready = sock.readable().await?;
        match recvmsg(fd, buf, timestamps) {
            Ok((n, stamp)) => {
                if n > 0 && n < buf.len() {
                    ready.clear_ready();
                }
                return Ok((n, stamp));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => ready.clear_ready(),
            Err(e) => return Err(e),
        }
    }
}

fn recvmsg(
    fd: RawFd,
    buf: &mut [u8],
    timestamps: bool,
) -> std::io::Result<(usize, Option<SystemTime>)> {
    // u64s keep the control buffer aligned for cmsghdr.
    let mut control = [0u64; 16];
    // SAFETY: iov and control point into live buffers of the stated lengths; the cmsg walk
    // uses the libc macros over the length the kernel filled in, and reads the timespec
    // unaligned.
    unsafe {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if timestamps {
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&control) as _;
        }
        let n = libc::recvmsg(fd, &mut msg, 0);
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut stamp = None;
        if timestamps {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET
                    && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
                {
                    let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    stamp = Some(
                        SystemTime::UNIX_EPOCH + Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32),
                    );
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        Ok((n as usize, stamp))
    }
}

/// One dispatched SSE event.
#[derive(Debug, PartialEq)]
struct Event {
    kind: String,
    data: String,
}

#[derive(Default, Debug, Clone, Copy, PartialEq)]
enum State {
    #[default]
    Head,
    ChunkSize,
    ChunkData(usize),
    ChunkEnd,
    Identity,
}

/// Incremental HTTP/1.1 response + SSE parser, just enough for an event stream.
#[derive(Default)]
struct Parser {
    state: State,
    raw: Vec<u8>,
    body: Vec<u8>,
    /// SSE blocks seen so far, events or not (a `retry:` prelude, a comment).
    blocks: usize,
}

const MAX_BUFFER: usize = 1 << 20;

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Parser {
    fn feed(&mut self, data: &[u8], out: &mut Vec<Event>) -> Result<(), String> {
        self.raw.extend_from_slice(data);
        loop {
            match self.state {
                State::Head => {
                    let Some(end) = find(&self.raw, b"\r\n\r\n") else {
                        break;
                    };
                    let head = String::from_utf8_lossy(&self.raw[..end]).to_ascii_lowercase();
                    let status = head.lines().next().unwrap_or_default().to_owned();
                    if status.split_whitespace().nth(1) != Some("200") {
                        let rest = String::from_utf8_lossy(&self.raw[end + 4..]);
                        return Err(format!("stream answered {status:?}: {rest}"));
                    }
                    let chunked = head.lines().any(|l| {
                        l.split_once(':').is_some_and(|(k, v)| {
                            k.trim() == "transfer-encoding" && v.contains("chunked")
                        })
                    });
                    self.raw.drain(..end + 4);
                    self.state = if chunked {
                        State::ChunkSize
                    } else {
                        State::Identity
                    };
                }
                State::ChunkSize => {
                    let Some(end) = find(&self.raw, b"\r\n") else {
                        break;
                    };
                    let line = String::from_utf8_lossy(&self.raw[..end]);
                    let hex = line.split(';').next().unwrap_or_default().trim();
                    let size = usize::from_str_radix(hex, 16)
                        .map_err(|_| format!("bad chunk size line {line:?}"))?;
                    self.raw.drain(..end + 2);
                    if size == 0 {
                        return Err("server ended the stream".into());
                    }
                    self.state = State::ChunkData(size);
                }
                State::ChunkData(left) => {
                    if self.raw.is_empty() {
                        break;
                    }
                    let take = left.min(self.raw.len());
                    self.body.extend(self.raw.drain(..take));
                    self.state = if take == left {
                        State::ChunkEnd
                    } else {
                        State::ChunkData(left - take)
                    };
                }
                State::ChunkEnd => {
                    if self.raw.len() < 2 {
                        break;
                    }
                    if &self.raw[..2] != b"\r\n" {
                        return Err("chunk not followed by CRLF".into());
                    }
                    self.raw.drain(..2);
                    self.state = State::ChunkSize;
                }
                State::Identity => {
                    self.body.append(&mut self.raw);
                    break;
                }
            }
        }
        if self.raw.len() > MAX_BUFFER || self.body.len() > MAX_BUFFER {
            return Err("unparsed data piling up".into());
        }
        // Both servers end lines with a bare LF, so a block ends at the first "\n\n".
        let mut start = 0;
        while let Some(end) = find(&self.body[start..], b"\n\n") {
            self.blocks += 1;
            out.extend(parse_block(&String::from_utf8_lossy(
                &self.body[start..start + end],
            )));
            start += end + 2;
        }
        self.body.drain(..start);
        Ok(())
    }
}

/// The event a block dispatches, if any: per the SSE rules a block with data and no `event:`
/// line is of type `message` (nchan's case); blocks without data (`retry:`, comments such as
/// keepalives and nchan's `: hi`) dispatch nothing. A block with an `event:` line but no data
/// counts too (the bench looks only at its own event type, whose data it then checks).
fn parse_block(block: &str) -> Option<Event> {
    let (mut kind, mut data, mut has_data) = (None, String::new(), false);
    for line in block.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => kind = Some(value.to_owned()),
            "data" => {
                if has_data {
                    data.push('\n');
                }
                data.push_str(value);
                has_data = true;
            }
            _ => {} // comments, id, retry
        }
    }
    match kind {
        Some(kind) => Some(Event { kind, data }),
        None if has_data => Some(Event {
            kind: "message".into(),
            data,
        }),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `wire` in pieces of every size; returns the events and the blocks seen.
    fn parse_split_anywhere(wire: &[u8]) -> (Vec<Event>, usize) {
        let mut first = None;
        for split in 1..wire.len() {
            let mut p = Parser::default();
            let mut out = Vec::new();
            for part in wire.chunks(split) {
                p.feed(part, &mut out).unwrap();
            }
            match &first {
                None => first = Some((out, p.blocks)),
                Some((events, blocks)) => {
                    assert_eq!((&out, p.blocks), (events, *blocks), "split {split}");
                }
            }
        }
        first.unwrap_or_default()
    }

    #[test]
    fn parses_quotabell_chunked_stream() {
        let wire = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n\
            d\r\nretry: 3000\n\n\r\n3\r\n:\n\n\r\n\
            2d\r\nid: 7\nevent: build.accepted\ndata: {\"id\":42}\n\n\r\n";
        let (events, blocks) = parse_split_anywhere(wire);
        assert_eq!(blocks, 3);
        assert_eq!(
            events,
            [Event {
                kind: "build.accepted".into(),
                data: "{\"id\":42}".into()
            }]
        );
    }

    #[test]
    fn parses_nchan_close_delimited_stream() {
        // As nginx 1.22 + nchan 1.3.6 send it: no chunking, a `: hi` comment first, events
        // without an `event:` line.
        let wire = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n\
            Content-Type: text/event-stream; charset=utf-8\r\nConnection: keep-alive\r\n\r\n\
            : hi\n\nid: 1795460990:0\ndata: {\"id\":3}\n\n";
        let (events, blocks) = parse_split_anywhere(wire);
        assert_eq!(blocks, 2);
        assert_eq!(
            events,
            [Event {
                kind: "message".into(),
                data: "{\"id\":3}".into()
            }]
        );
    }

    #[test]
    fn rejects_error_status() {
        let mut p = Parser::default();
        let err = p
            .feed(b"HTTP/1.1 403 Forbidden\r\n\r\n{}", &mut Vec::new())
            .unwrap_err();
        assert!(err.contains("403"), "{err}");
    }

    #[test]
    fn blocks_without_data_dispatch_nothing() {
        assert_eq!(parse_block(": hi"), None);
        assert_eq!(parse_block("retry: 3000"), None);
        assert_eq!(
            parse_block("data: a\ndata: b"),
            Some(Event {
                kind: "message".into(),
                data: "a\nb".into()
            })
        );
    }
}
