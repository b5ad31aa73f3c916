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
//!
//! The guard also applies the WHATWG rules the crate gets wrong (ARCHITECTURE.md): it strips
//! only the stream's first BOM (the crate would strip one more at its own start), and it
//! passes on only the lines the parser must see — `data`, `event` and `id` without NUL — in
//! blocks that have a `data` or `id` line. Comments, `retry` (read here), unknown fields (a
//! line after a second BOM among them) and blocks of nothing else are dropped: the crate fails
//! the connection on a block that sets nothing before the first id.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};

pub const OVERSIZED: &str = "quotabell.oversized";
/// How much of a line is held to read its field name and an `id` or `retry` value.
const MAX_ID_LINE: usize = 4096;
const BOM: &[u8] = b"\xEF\xBB\xBF";

pub struct SseGuard {
    max_block: usize,
    /// The lines of the current block the parser needs, each ending in LF, while the block is
    /// within the limit.
    block: BytesMut,
    /// Bytes of the current block as received, kept or not: what the limit counts.
    block_len: usize,
    /// Where the current line starts in `block`.
    line_start: usize,
    /// The first bytes of the current line.
    line: Vec<u8>,
    line_len: usize,
    prev_cr: bool,
    /// How many bytes of a leading BOM were seen; `None` once the start of the stream is past.
    bom: Option<usize>,
    /// The block has a `data` or a valid `id` line: the parser dispatches or remembers it.
    counts: bool,
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
            line_start: 0,
            line: Vec::new(),
            line_len: 0,
            prev_cr: false,
            bom: Some(0),
            counts: false,
            id: None,
            retry_ms: None,
        }
    }

    /// Feeds bytes; returns the complete blocks they finish (possibly none).
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Bytes> {
        let mut out = Vec::new();
        let mut rest = chunk;
        if let Some(seen) = self.bom {
            // Only the stream's first BOM is stripped (even split across reads); a later one is
            // part of a field name, so its line is ignored like any unknown field.
            let mut n = seen;
            let mut i = 0;
            while n < BOM.len() && i < rest.len() && rest[i] == BOM[n] {
                n += 1;
                i += 1;
            }
            if n < BOM.len() && i == rest.len() {
                self.bom = Some(n);
                return out;
            }
            self.bom = None;
            if n < BOM.len() {
                // Not a BOM after all: what was held is ordinary input.
                for &b in &BOM[..n] {
                    self.byte(b, &mut out);
                }
            }
            rest = &rest[i..];
        }
        for &b in rest {
            self.byte(b, &mut out);
        }
        out
    }

    fn byte(&mut self, b: u8, out: &mut Vec<Bytes>) {
        if b == b'\n' && self.prev_cr {
            // The LF of a CRLF: the line already ended at the CR.
            self.prev_cr = false;
            return;
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
            if self.line_len == 0 {
                self.line_start = self.block.len();
            }
            self.line_len += 1;
            if self.line.len() < MAX_ID_LINE {
                self.line.push(b);
            }
            self.keep(b);
        }
    }

    fn keep(&mut self, b: u8) {
        self.block_len += 1;
        if self.block_len <= self.max_block {
            self.block.extend_from_slice(&[b]);
        } else if !self.block.is_empty() {
            self.block.clear(); // over the limit: drop what was held, skip to the block's end
        }
    }

    /// Reads the line's field; keeps the line for the parser only if the parser must see it.
    fn end_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        let whole = self.line_len == line.len();
        let (field, value) = match line.iter().position(|&c| c == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (&line[..], &b""[..]),
        };
        let keep = match field {
            b"data" => {
                self.counts = true;
                true
            }
            b"event" => true,
            b"id" => {
                // A NUL anywhere in the value makes the parser ignore the line.
                let nul = if whole {
                    value.contains(&0)
                } else {
                    self.block
                        .get(self.line_start..)
                        .is_none_or(|l| l.contains(&0))
                };
                if !nul {
                    self.counts = true;
                    // The marker's id (an id that is not UTF-8 is left to the parser).
                    self.id = whole
                        .then(|| std::str::from_utf8(value).ok().map(str::to_owned))
                        .flatten();
                }
                !nul
            }
            b"retry" => {
                // Read here (the parser's copy would be unused); anything but ASCII digits is
                // ignored.
                if whole
                    && !value.is_empty()
                    && value.iter().all(u8::is_ascii_digit)
                    && let Some(ms) = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok())
                {
                    self.retry_ms = Some(ms);
                }
                false
            }
            // Comments (an empty field name) and unknown fields (a second BOM included).
            _ => false,
        };
        if !keep && self.block_len <= self.max_block {
            self.block.truncate(self.line_start);
        }
        self.line = line;
        self.line.clear();
        self.line_len = 0;
    }

    fn end_block(&mut self) -> Option<Bytes> {
        let len = std::mem::take(&mut self.block_len);
        let id = self.id.take();
        let counts = std::mem::take(&mut self.counts);
        if len > self.max_block {
            self.block.clear();
            if !counts {
                return None; // a huge comment or unknown field: not an event
            }
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
        let block = self.block.split();
        if !counts {
            // Only comments, `retry`, `event` or ignored lines: the parser would dispatch and
            // remember nothing (and eventsource-client fails on such a block before any id).
            return None;
        }
        Some(block.freeze())
    }
}

/// The stream is UTF-8 with errors replaced by U+FFFD (WHATWG); eventsource-client instead
/// fails the connection on a bad byte, so the same event would fail every reconnect. Applied
/// to whole blocks: a block ends at a line end, so no valid sequence is split.
pub fn replace_invalid_utf8(block: Bytes) -> Bytes {
    match String::from_utf8_lossy(&block) {
        Cow::Borrowed(_) => block,
        Cow::Owned(text) => {
            tracing::warn!("invalid UTF-8 in the event stream replaced with U+FFFD");
            Bytes::from(text)
        }
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
    fn only_the_first_bom_is_stripped_even_split_across_reads() {
        let mut g = SseGuard::new(1024);
        let out = feed(
            &mut g,
            &[
                b"\xEF\xBB",
                b"\xBFid: 1\ndata: a\n\n\xEF\xBB\xBFid: 2\ndata: b\n\xEF\xBB\xBFdata: c\n\n",
            ],
        );
        assert_eq!(out, ["id: 1\ndata: a\n\n", "data: b\n\n"]);
        // Two BOMs at the start: the second is part of the first field name.
        let mut g = SseGuard::new(1024);
        let out = feed(&mut g, &[b"\xEF\xBB\xBF\xEF\xBB\xBFid: 1\ndata: a\n\n"]);
        assert_eq!(out, ["data: a\n\n"]);
        // Bytes that start like a BOM but are not one are ordinary input.
        let mut g = SseGuard::new(1024);
        let out = feed(&mut g, &[b"\xEF", b"\xBB", b"X\nid: 1\ndata: a\n\n"]);
        assert_eq!(out, ["id: 1\ndata: a\n\n"]);
    }

    #[test]
    fn only_lines_the_parser_needs_are_passed_on() {
        let mut g = SseGuard::new(1024);
        let out = feed(
            &mut g,
            &[
                b": c\n\nfoo: bar\n\nretry: x\n\nretry:\n\nevent: e\n\nid: 1\0\n\n\
               id: 2\n: c\nfoo\nretry: 1.5\nevent: e\ndata:d\nid: 3\0\n\nid: 4\n\nretry: 250\n\n",
            ],
        );
        assert_eq!(out, ["id: 2\nevent: e\ndata:d\n\n", "id: 4\n\n"]);
        assert_eq!(g.retry_ms, Some(250));
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let block = Bytes::from_static(b"id: 1\ndata: caf\xC3\n\n");
        assert_eq!(
            replace_invalid_utf8(block),
            Bytes::from("id: 1\ndata: caf\u{FFFD}\n\n")
        );
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

/// Property tests ("fuzzing" on stable Rust): `cargo test -p quotabell-core fuzz_` runs them
/// briefly; `PROPTEST_CASES=100000 cargo test --release -p quotabell-core fuzz_` for longer.
#[cfg(test)]
pub(crate) mod fuzz {
    use proptest::prelude::*;

    use super::*;

    /// Bytes that look like an event stream often enough to reach every branch: field names,
    /// every kind of line end, BOMs, NUL, invalid UTF-8, long runs, and plain noise.
    pub(crate) fn sse_bytes() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"id: ".to_vec()),
            Just(b"id:".to_vec()),
            Just(b"data: ".to_vec()),
            Just(b"data:".to_vec()),
            Just(b"event: ".to_vec()),
            Just(b"retry: ".to_vec()),
            Just(b"retry:".to_vec()),
            Just(b": comment".to_vec()),
            Just(b":".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\r".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\n\n".to_vec()),
            Just(b"\r\n\r\n".to_vec()),
            Just(b"\xEF\xBB\xBF".to_vec()),
            Just(b"\0".to_vec()),
            Just(b"\xff\xfe".to_vec()),
            Just(b"quotabell.oversized".to_vec()),
            Just(b"sync.reset".to_vec()),
            "[0-9]{1,25}".prop_map(String::into_bytes),
            (1usize..600).prop_map(|n| vec![b'x'; n]),
            proptest::collection::vec(any::<u8>(), 0..16),
        ];
        proptest::collection::vec(piece, 0..64).prop_map(|p| p.concat())
    }

    /// Splits `bytes` into chunks of the given sizes (the rest as one last chunk).
    pub(crate) fn split<'a>(bytes: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
        let mut rest = bytes;
        let mut out = Vec::new();
        for &n in sizes {
            let (a, b) = rest.split_at(n.min(rest.len()));
            out.push(a);
            rest = b;
        }
        out.push(rest);
        out
    }

    fn is_marker(block: &[u8]) -> bool {
        let text = String::from_utf8_lossy(block);
        let body = match text.strip_prefix("id: ") {
            Some(rest) => rest.split_once('\n').map_or("", |(_, b)| b),
            None => &text,
        };
        body.starts_with(&format!("event: {OVERSIZED}\ndata: {{\"bytes\":"))
    }

    proptest! {
        /// Where the reads split the stream changes nothing: the same blocks and the same
        /// `retry:` come out as when it arrives in one piece.
        #[test]
        fn fuzz_guard_chunk_boundaries_are_invisible(
            bytes in sse_bytes(),
            sizes in proptest::collection::vec(0usize..300, 0..40),
            max in 1usize..2048,
        ) {
            let mut whole = SseGuard::new(max);
            let expected = whole.push(&bytes);
            let mut chunked = SseGuard::new(max);
            let got: Vec<Bytes> = split(&bytes, &sizes).into_iter().flat_map(|c| chunked.push(c)).collect();
            prop_assert_eq!(got, expected);
            prop_assert_eq!(chunked.retry_ms, whole.retry_ms);
        }

        /// No block over the limit is passed on (only the small marker that replaces one), and
        /// the guard never holds more than the limit plus the chunk it was handed.
        #[test]
        fn fuzz_guard_output_and_memory_are_bounded(
            bytes in sse_bytes(),
            sizes in proptest::collection::vec(0usize..300, 0..40),
            max in 1usize..2048,
        ) {
            let mut g = SseGuard::new(max);
            for chunk in split(&bytes, &sizes) {
                let held = g.block.len();
                let out = g.push(chunk);
                let mut passed = 0;
                for block in &out {
                    if block.len() > max || is_marker(block) {
                        prop_assert!(is_marker(block), "block over the limit: {:?}", block);
                        prop_assert!(block.len() <= MAX_ID_LINE + 128, "marker too big: {}", block.len());
                    } else {
                        passed += block.len();
                    }
                    // Whole blocks only: each ends with the blank line.
                    prop_assert!(block.ends_with(b"\n\n") || block.as_ref() == b"\n", "{:?}", block);
                }
                // (+3: the start of a BOM held back from the previous read.)
                prop_assert!(passed <= held + chunk.len() + 3);
                prop_assert!(g.block.len() <= max);
                prop_assert!(g.line.len() <= MAX_ID_LINE);
                // The allocation behind it: BytesMut's growth (doubling, reclaiming the space
                // of blocks already handed on) keeps it within 4x the limit.
                prop_assert!(g.block.capacity() <= 4 * (max + 1) + 8,
                    "capacity {} for limit {max}", g.block.capacity());
            }
        }
    }
}
