//! `GET /api/v1/stream` connections, served without hyper.
//!
//! Why: hyper keeps an 8 KiB read buffer and an 8 KiB write buffer for every HTTP/1
//! connection, with no setting for either, and its dispatcher tries a read on every wake-up.
//! An event stream is one request whose connection then only carries writes, mostly idle: with
//! many streams those buffers were most of the server's memory, and the extra read a syscall
//! per stream per event (BENCHMARKS.md, "Fan-out side by side with nginx + nchan").
//! So a stream connection gets this instead: the request head is read into a small buffer and
//! parsed with `httparse` (hyper's own parser), the request goes through the same axum router
//! as any other (authentication, errors, the stream handler), and the response is written
//! here: the head, then each body chunk in one vectored write, with `Connection: close` (the
//! connection serves this one request). A closed peer is noticed by read readiness alone.

use std::io::{self, IoSlice};
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version, header};
use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tower::ServiceExt;

use super::direct::Sink;

/// What a connection's first bytes name.
const STREAM_REQUEST: &[u8] = b"GET /api/v1/stream";
/// Bounds of the request head (hyper's defaults are about the same).
const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 100;
/// A client has this long to send its request head (a slow-headers client holds nothing else).
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, PartialEq, Eq)]
pub enum Sniff {
    Stream,
    Other,
    Closed,
}

/// Whether `head` (a connection's first bytes) starts a stream request; `None` while it is a
/// prefix of one.
fn classify(head: &[u8]) -> Option<Sniff> {
    let n = head.len().min(STREAM_REQUEST.len());
    if head[..n] != STREAM_REQUEST[..n] {
        return Some(Sniff::Other);
    }
    match head.get(STREAM_REQUEST.len()) {
        None => None,
        Some(b' ' | b'?') => Some(Sniff::Stream),
        Some(_) => Some(Sniff::Other),
    }
}

/// Looks at a new connection's first bytes without consuming them, so hyper can still read
/// the request from the start.
pub async fn sniff(tcp: &TcpStream) -> Sniff {
    let mut head = [0u8; STREAM_REQUEST.len() + 1];
    loop {
        match tcp.peek(&mut head).await {
            Ok(0) | Err(_) => return Sniff::Closed,
            Ok(n) => match classify(&head[..n]) {
                Some(kind) => return kind,
                // `peek` returns what is there at once; a client sending its request in
                // pieces is rare, so waiting a moment for the rest is enough.
                None => tokio::time::sleep(Duration::from_millis(5)).await,
            },
        }
    }
}

/// Serves the one stream request on `tcp` until the response ends, the peer goes away, or the
/// server stops (the stream handler ends its body then).
pub async fn serve(tcp: TcpStream, app: Router, mut stopping: watch::Receiver<bool>) {
    let _ = tcp.set_nodelay(true);
    // Shared with the hub, which writes live events to it while the stream is idle.
    let tcp = Arc::new(tcp);
    let sink = Sink::new(tcp.clone());
    let head = tokio::select! {
        head = tokio::time::timeout(HEAD_TIMEOUT, read_head(&tcp)) => head,
        _ = stopping.wait_for(|s| *s) => return,
    };
    let response = match head {
        Ok(Ok(mut request)) => {
            // The stream handler finds the sink here and parks on it while idle.
            request.extensions_mut().insert(sink.clone());
            match app.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        }
        Ok(Err(HeadError::Refused(status))) => plain(status),
        Ok(Err(HeadError::Gone)) | Err(_) => return,
    };
    if write_response(&tcp, &sink, response).await.is_ok() {
        // A FIN after the last byte rather than a reset, so the client reads all of it.
        let _ = socket2::SockRef::from(&*tcp).shutdown(std::net::Shutdown::Write);
    }
}

enum HeadError {
    /// Answer with this status and close.
    Refused(StatusCode),
    /// The peer went away or the socket failed.
    Gone,
}

async fn read_head(tcp: &TcpStream) -> Result<Request<Body>, HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        tcp.readable().await.map_err(|_| HeadError::Gone)?;
        match tcp.try_read(&mut chunk) {
            Ok(0) => return Err(HeadError::Gone),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(_) => return Err(HeadError::Gone),
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => return to_request(&parsed),
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
                return Err(HeadError::Refused(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                ));
            }
            Err(_) => return Err(HeadError::Refused(StatusCode::BAD_REQUEST)),
        }
    }
}

fn to_request(parsed: &httparse::Request<'_, '_>) -> Result<Request<Body>, HeadError> {
    let mut request = Request::builder()
        .method(Method::GET)
        .uri(parsed.path.unwrap_or("/"))
        .version(match parsed.version {
            Some(0) => Version::HTTP_10,
            _ => Version::HTTP_11,
        })
        .body(Body::empty())
        .map_err(bad)?;
    let headers = request.headers_mut();
    for h in parsed.headers.iter() {
        headers.append(
            HeaderName::from_bytes(h.name.as_bytes()).map_err(bad)?,
            HeaderValue::from_bytes(h.value).map_err(bad)?,
        );
    }
    Ok(request)
}

fn bad<E>(_: E) -> HeadError {
    HeadError::Refused(StatusCode::BAD_REQUEST)
}

fn plain(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

async fn write_response(tcp: &TcpStream, sink: &Sink, response: Response<Body>) -> io::Result<()> {
    let (parts, body) = response.into_parts();
    let bodyless = parts.status == StatusCode::NO_CONTENT
        || parts.status == StatusCode::NOT_MODIFIED
        || parts.status.is_informational();
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(parts.status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        // The framing is this writer's business.
        if matches!(
            *name,
            header::CONTENT_LENGTH | header::TRANSFER_ENCODING | header::CONNECTION
        ) {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"date: ");
    head.extend_from_slice(httpdate::fmt_http_date(SystemTime::now()).as_bytes());
    head.extend_from_slice(b"\r\nconnection: close\r\n");
    if bodyless {
        head.extend_from_slice(b"\r\n");
        return write_all(tcp, &mut [IoSlice::new(&head)]).await;
    }
    head.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
    write_all(tcp, &mut [IoSlice::new(&head)]).await?;

    let mut data = body.into_data_stream();
    let mut hangup = pin!(peer_closed(tcp));
    loop {
        let next = tokio::select! {
            next = data.next() => next,
            () = &mut hangup => return Err(io::ErrorKind::ConnectionReset.into()),
        };
        // The hub may have left part of a chunk unwritten; it goes before anything else.
        if let Some(rest) = sink.take_leftover() {
            write_all(tcp, &mut [IoSlice::new(&rest)]).await?;
        }
        match next {
            Some(Ok(bytes)) if bytes.is_empty() => {}
            Some(Ok(bytes)) => {
                let size = format!("{:x}\r\n", bytes.len());
                write_all(
                    tcp,
                    &mut [
                        IoSlice::new(size.as_bytes()),
                        IoSlice::new(&bytes),
                        IoSlice::new(b"\r\n"),
                    ],
                )
                .await?;
            }
            // The body failed: cut the response short, as hyper does, so the client sees an
            // incomplete body rather than a complete one.
            Some(Err(e)) => return Err(io::Error::other(e)),
            None => return write_all(tcp, &mut [IoSlice::new(b"0\r\n\r\n")]).await,
        }
    }
}

/// Writes all of `bufs`, in as few system calls as the socket allows.
async fn write_all(tcp: &TcpStream, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !bufs.is_empty() {
        match tcp.try_write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => tcp.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Resolves when the peer has closed (or reset) the connection. Anything it sends after its
/// request is read and dropped.
async fn peer_closed(tcp: &TcpStream) {
    let mut sink = [0u8; 256];
    loop {
        if tcp.readable().await.is_err() {
            return;
        }
        match tcp.try_read(&mut sink) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stream_gets_are_taken_from_hyper() {
        assert_eq!(
            classify(b"GET /api/v1/stream HTTP/1.1\r\n"),
            Some(Sniff::Stream)
        );
        assert_eq!(
            classify(b"GET /api/v1/stream?x=1 HTTP"),
            Some(Sniff::Stream)
        );
        assert_eq!(
            classify(b"GET /api/v1/streams HTTP/1.1"),
            Some(Sniff::Other)
        );
        assert_eq!(
            classify(b"HEAD /api/v1/stream HTTP/1.1"),
            Some(Sniff::Other)
        );
        assert_eq!(
            classify(b"POST /api/v1/builds HTTP/1.1"),
            Some(Sniff::Other)
        );
        assert_eq!(classify(b"GET /api/v1/str"), None);
        assert_eq!(classify(b"G"), None);
        assert_eq!(classify(b"X"), Some(Sniff::Other));
    }
}
