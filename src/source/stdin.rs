//! JSON lines on standard input (a CloudWatch Logs subscription, a queue consumer...), cut
//! into chunks: a chunk closes after a number of lines or a short wait, whichever comes first,
//! so that a trickle of records is still counted promptly. A line longer than the limit is
//! never held in memory: it is skipped and reported by its line number.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;

use super::{Ending, Input, Loaded, Pull, Source, SourceError, Stop, Trouble};

/// A run of complete lines.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Chunk {
    /// Line number (1-based) of the chunk's first line.
    pub first_line: u64,
    /// Lines kept, each ending with `\n`.
    pub content: Vec<u8>,
    /// Lines kept.
    pub lines: u64,
    /// Lines skipped as too long: (line number, bytes).
    pub oversized: Vec<(u64, u64)>,
}

/// How chunks are cut.
#[derive(Debug, Clone, Copy)]
pub struct ChunkLimits {
    /// Longest line kept, in bytes.
    pub max_line: usize,
    /// Lines per chunk.
    pub max_lines: u64,
    /// Longest wait between a chunk's first line and its sending.
    pub max_wait: Duration,
}

/// Reads `input` to its end, sending chunks; returns the number of lines read. Stops early
/// (without error) when the receiver is gone.
pub async fn read_chunks<R: AsyncRead + Unpin>(
    input: R,
    limits: ChunkLimits,
    tx: mpsc::Sender<Chunk>,
) -> std::io::Result<u64> {
    let mut reader = BufReader::with_capacity(256 * 1024, input);
    let mut line_no: u64 = 0;
    let mut chunk = Chunk {
        first_line: 1,
        ..Chunk::default()
    };
    let mut line: Vec<u8> = Vec::new();
    let mut line_len: u64 = 0;
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let available = match deadline {
            Some(d) => match tokio::time::timeout_at(d, reader.fill_buf()).await {
                Ok(r) => Some(r?),
                Err(_) => None,
            },
            None => Some(reader.fill_buf().await?),
        };
        let Some(available) = available else {
            // The wait is over: send what is complete.
            if (chunk.lines > 0 || !chunk.oversized.is_empty())
                && !send(&tx, &mut chunk, line_no).await
            {
                return Ok(line_no);
            }
            deadline = None;
            continue;
        };
        if available.is_empty() {
            // End of input: a last line without a newline still counts.
            if line_len > 0 {
                line_no += 1;
                finish_line(
                    &mut chunk,
                    &mut line,
                    line_len,
                    false,
                    line_no,
                    limits.max_line,
                );
            }
            if chunk.lines > 0 || !chunk.oversized.is_empty() {
                let _ = tx.send(chunk).await;
            }
            return Ok(line_no);
        }
        let (used, complete) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        let piece = available.get(..used).unwrap_or_default();
        line_len += piece.len() as u64;
        if line_len <= limits.max_line as u64 + 1 {
            line.extend_from_slice(piece);
        }
        reader.consume(used);
        if complete {
            line_no += 1;
            finish_line(
                &mut chunk,
                &mut line,
                line_len,
                true,
                line_no,
                limits.max_line,
            );
            line_len = 0;
            if deadline.is_none() {
                deadline = Some(tokio::time::Instant::now() + limits.max_wait);
            }
            if chunk.lines >= limits.max_lines {
                if !send(&tx, &mut chunk, line_no).await {
                    return Ok(line_no);
                }
                deadline = None;
            }
        }
    }
}

/// `watch -`: JSON lines on standard input, cut into chunks by [`read_chunks`] on the runtime;
/// what was absorbed is committed as soon as no more input waits (it cannot be read again).
pub struct FollowStdin {
    chunks: mpsc::Receiver<Chunk>,
    reader: Option<tokio::task::JoinHandle<std::io::Result<u64>>>,
    runtime: tokio::runtime::Handle,
    stop: Stop,
    queue: VecDeque<Pull>,
}

impl FollowStdin {
    /// Starts reading standard input; `max_line` bounds a line kept in memory.
    pub fn open(max_line: usize, stop: Stop, runtime: tokio::runtime::Handle) -> FollowStdin {
        let limits = ChunkLimits {
            max_line,
            max_lines: 5_000,
            max_wait: Duration::from_secs(1),
        };
        let (tx, chunks) = mpsc::channel(4);
        let reader = runtime.spawn(read_chunks(tokio::io::stdin(), limits, tx));
        tracing::info!("reading JSON lines from standard input");
        FollowStdin {
            chunks,
            reader: Some(reader),
            runtime,
            stop,
            queue: VecDeque::new(),
        }
    }

    /// Queues what one chunk hands out.
    fn take(&mut self, chunk: Chunk) {
        // The content holds one line per input line from its first on (skipped lines left
        // empty); oversized lines before it are not in it.
        let content_lines = chunk.content.iter().filter(|&&b| b == b'\n').count() as u64;
        let last = chunk.first_line + content_lines.max(1) - 1;
        let last = chunk
            .oversized
            .iter()
            .map(|&(line, _)| line)
            .fold(last, u64::max);
        for &(line, bytes) in &chunk.oversized {
            tracing::warn!(
                input = "<stdin>",
                line,
                bytes,
                "line longer than the limit; skipped"
            );
            self.queue.push_back(Pull::Trouble(Trouble::Damaged));
        }
        if !chunk.content.is_empty() {
            self.queue.push_back(Pull::Inputs(vec![Input::Bytes(Loaded {
                display: format!("<stdin> lines {}-{}", chunk.first_line, last),
                ingest_key: None,
                delivery_minute: None,
                content: chunk.content,
                first_line: chunk.first_line,
            })]));
        }
        if self.chunks.is_empty() {
            self.queue.push_back(Pull::CaughtUp { must_commit: true });
        }
    }
}

impl Source for FollowStdin {
    fn next(&mut self) -> Result<Pull, SourceError> {
        loop {
            if let Some(pull) = self.queue.pop_front() {
                return Ok(pull);
            }
            let stop = self.stop.clone();
            let chunks = &mut self.chunks;
            let received = self.runtime.block_on(async move {
                tokio::select! {
                    _ = stop.stopped() => None,
                    chunk = chunks.recv() => Some(chunk),
                }
            });
            match received {
                None => {
                    return Ok(Pull::End(Ending {
                        stopped: true,
                        ..Ending::default()
                    }))
                }
                Some(Some(chunk)) => self.take(chunk),
                Some(None) => {
                    if let Some(reader) = self.reader.take() {
                        match self.runtime.block_on(reader) {
                            Ok(Ok(lines)) => {
                                tracing::info!("standard input ended after {lines} lines")
                            }
                            Ok(Err(e)) => tracing::error!("reading standard input failed: {e}"),
                            Err(e) => tracing::error!("the standard input reader failed: {e}"),
                        }
                    }
                    return Ok(Pull::End(Ending::default()));
                }
            }
        }
    }
}

/// Sends the chunk and starts the next one after line `line_no`; false when nobody listens.
async fn send(tx: &mpsc::Sender<Chunk>, chunk: &mut Chunk, line_no: u64) -> bool {
    let next = Chunk {
        first_line: line_no + 1,
        ..Chunk::default()
    };
    tx.send(std::mem::replace(chunk, next)).await.is_ok()
}

fn finish_line(
    chunk: &mut Chunk,
    line: &mut Vec<u8>,
    len: u64,
    newline: bool,
    line_no: u64,
    max_line: usize,
) {
    let body_len = len - u64::from(newline);
    let kept = body_len <= max_line as u64 && line.iter().any(|b| !b.is_ascii_whitespace());
    if !kept && !chunk.content.is_empty() {
        // An empty line in its place keeps the content's line numbers those of the input
        // (line `k` of the content is line `first_line + k - 1`); the parser passes over it.
        chunk.content.push(b'\n');
    }
    if body_len > max_line as u64 {
        chunk.oversized.push((line_no, body_len));
    } else if kept {
        if chunk.lines == 0 && chunk.content.is_empty() {
            chunk.first_line = line_no;
        }
        chunk.content.extend_from_slice(line);
        if chunk.content.last() != Some(&b'\n') {
            chunk.content.push(b'\n');
        }
        chunk.lines += 1;
    }
    line.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn collect(input: &'static [u8], limits: ChunkLimits) -> Vec<Chunk> {
        let (tx, mut rx) = mpsc::channel(16);
        let reader = tokio::spawn(read_chunks(input, limits, tx));
        let mut out = Vec::new();
        while let Some(c) = rx.recv().await {
            out.push(c);
        }
        reader.await.unwrap().unwrap();
        out
    }

    #[tokio::test]
    async fn lines_are_cut_into_chunks_and_long_lines_skipped() {
        let limits = ChunkLimits {
            max_line: 10,
            max_lines: 2,
            max_wait: Duration::from_secs(60),
        };
        let input: &'static [u8] = b"{\"a\":1}\n{\"b\":2}\n0123456789ABCDEF\n{\"c\":3}";
        let chunks = collect(input, limits).await;
        assert_eq!(chunks.len(), 2, "{chunks:?}");
        assert_eq!(chunks[0].content, b"{\"a\":1}\n{\"b\":2}\n");
        assert_eq!(chunks[0].first_line, 1);
        assert_eq!(chunks[1].oversized, vec![(3, 16)]);
        assert_eq!(
            chunks[1].content, b"{\"c\":3}\n",
            "last line without newline kept"
        );
        assert_eq!(chunks[1].first_line, 4);
    }

    #[tokio::test]
    async fn the_content_keeps_the_input_line_numbers_across_skipped_lines() {
        // Regression: an oversized or blank line was dropped from the content, so the parser
        // numbered every later line of the chunk one too low.
        let limits = ChunkLimits {
            max_line: 10,
            max_lines: 100,
            max_wait: Duration::from_secs(60),
        };
        let input: &'static [u8] = b"\n{\"a\":1}\n0123456789ABCDEF\n\n{\"c\":3}\n{bad\n";
        let chunks = collect(input, limits).await;
        assert_eq!(chunks.len(), 1, "{chunks:?}");
        let chunk = &chunks[0];
        assert_eq!(chunk.first_line, 2);
        assert_eq!(chunk.lines, 3);
        let lines: Vec<&[u8]> = chunk.content.split(|&b| b == b'\n').collect();
        assert_eq!(lines[0], b"{\"a\":1}");
        // Input line 6 is line 5 of the content, which starts at line 2.
        assert_eq!(lines[(6 - chunk.first_line) as usize], b"{bad");
        assert_eq!(lines[(5 - chunk.first_line) as usize], b"{\"c\":3}");
    }

    #[tokio::test]
    async fn a_trickle_is_sent_after_the_wait() {
        let (mut writer, reader) = tokio::io::duplex(1024);
        let limits = ChunkLimits {
            max_line: 1000,
            max_lines: 1000,
            max_wait: Duration::from_millis(50),
        };
        let (tx, mut rx) = mpsc::channel(4);
        let task = tokio::spawn(read_chunks(reader, limits, tx));
        use tokio::io::AsyncWriteExt;
        writer.write_all(b"{\"x\":1}\n").await.unwrap();
        // The writer stays open: only the wait can close this chunk.
        let chunk = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("chunk sent after the wait")
            .unwrap();
        assert_eq!(chunk.lines, 1);
        drop(writer);
        assert!(rx.recv().await.is_none());
        assert_eq!(task.await.unwrap().unwrap(), 1);
    }
}
