//! A guard in front of the SSE parser: passes the byte stream on in whole blocks (an event
//! and the blank line that ends it), and bounds what one block may cost.
//!
//! eventsource-client buffers an event's data without limit, so a hostile or broken server
//! could make it allocate without bound. The guard holds at most `max_block` bytes of the
//! current block; a larger block is skipped to its end and replaced by a small synthetic
//! `quotabell.oversized` event that carries the skipped event's id, so the engine records the
//! loss and moves its cursor past it instead of fetching it again forever. Handing over whole
//! blocks only also means an event cut off by a dropped connection is never parsed (the
//! WHATWG rule: an unterminated event is discarded). Line ends (CR, LF, CRLF, even split across
//! reads) are normalised to LF on the way, so the parser never has to wait for the byte after
//! a CR to know where a line ended.

use bytes::{Bytes, BytesMut};

pub const OVERSIZED: &str = "quotabell.oversized";
const MAX_ID_LINE: usize = 4096;

pub struct SseGuard {
    max_block: usize,
    block: BytesMut,
    block_len: usize,
    line: Vec<u8>,
    line_len: usize,
    prev_cr: bool,
    /// Id of the current block, as far as seen.
    id: Option<String>,
    /// Last `retry:` value seen, in milliseconds.
    pub retry_ms: Option<u64>,
}

impl SseGuard {
    pub fn new(max_block: usize) -> Self {
        Self {
            max_block,
            block: BytesMut::new(),
            block_len: 0,
            line: Vec::new(),
            line_len: 0,
            prev_cr: false,
            id: None,
            retry_ms: None,
        }
    }

    /// Feeds bytes; returns the complete blocks they finish (possibly none).
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Bytes> {
        let mut out = Vec::new();
        for &b in chunk {
            if b == b'\n' && self.prev_cr {
                // The LF of a CRLF: the line already ended at the CR.
                self.prev_cr = false;
                continue;
            }
            self.prev_cr = b == b'\r';
            if b == b'\r' || b == b'\n' {
                self.keep(b'\n');
                if self.line_len == 0 {
                    if let Some(block) = self.end_block() {
                        out.push(block);
                    }
                } else {
                    self.end_line();
                }
            } else {
                self.line_len += 1;
                if self.line.len() < MAX_ID_LINE {
                    self.line.push(b);
                }
                self.keep(b);
            }
        }
        out
    }

    fn keep(&mut self, b: u8) {
        self.block_len += 1;
        if self.block_len <= self.max_block {
            self.block.extend_from_slice(&[b]);
        } else if !self.block.is_empty() {
            self.block.clear(); // over the limit: drop what was held, skip to the block's end
        }
    }

    fn end_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        let (field, value) = match line.iter().position(|&c| c == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (&line[..], &b""[..]),
        };
        match field {
            b"id" if !value.contains(&0) && self.line_len == line.len() => {
                self.id = std::str::from_utf8(value).ok().map(str::to_owned);
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                self.retry_ms = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
            }
            _ => {}
        }
        self.line = line;
        self.line.clear();
        self.line_len = 0;
    }

    fn end_block(&mut self) -> Option<Bytes> {
        let len = std::mem::take(&mut self.block_len);
        let id = self.id.take();
        if len > self.max_block {
            self.block.clear();
            tracing::error!(bytes = len, id = ?id, limit = self.max_block, "event over the size limit dropped");
            let mut text = String::new();
            if let Some(id) = id {
                text.push_str(&format!("id: {id}\n"));
            }
            text.push_str(&format!(
                "event: {OVERSIZED}\ndata: {{\"bytes\":{len}}}\n\n"
            ));
            return Some(Bytes::from(text));
        }
        Some(self.block.split().freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(g: &mut SseGuard, parts: &[&[u8]]) -> Vec<String> {
        parts
            .iter()
            .flat_map(|p| g.push(p))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .collect()
    }

    #[test]
    fn passes_whole_blocks_with_any_line_ending() {
        let mut g = SseGuard::new(1024);
        let out = feed(
            &mut g,
            &[
                b"retry: 3000\n\nid: 1\ndata: a",
                b"\n\nid: 2\r\ndata: b\r\n\r\nid: 3\rdata: c\r\r",
            ],
        );
        assert_eq!(
            out,
            [
                "retry: 3000\n\n",
                "id: 1\ndata: a\n\n",
                "id: 2\ndata: b\n\n",
                "id: 3\ndata: c\n\n"
            ]
        );
        assert_eq!(g.retry_ms, Some(3000));
        // One byte at a time, and a CRLF split across reads.
        let mut g = SseGuard::new(1024);
        let bytes = b"id: 4\r\ndata: d\r\n\r\n";
        let parts: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(feed(&mut g, &parts), ["id: 4\ndata: d\n\n"]);
    }

    #[test]
    fn unterminated_block_is_never_passed_on() {
        let mut g = SseGuard::new(1024);
        assert!(feed(&mut g, &[b"id: 9\ndata: half"]).is_empty());
    }

    #[test]
    fn oversized_block_becomes_a_marker_with_its_id() {
        let mut g = SseGuard::new(64);
        let big = vec![b'x'; 10_000];
        let out = feed(
            &mut g,
            &[
                b"id: 7\nevent: notice\ndata: ",
                &big,
                b"\n\nid: 8\ndata: ok\n\n",
            ],
        );
        assert_eq!(
            out[0],
            "id: 7\nevent: quotabell.oversized\ndata: {\"bytes\":10028}\n\n"
        );
        assert_eq!(out[1], "id: 8\ndata: ok\n\n");
        assert!(g.block.capacity() < 1024, "memory stays bounded");
    }
}
