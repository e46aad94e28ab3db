//! A reader that refuses over-long lines, for the commands that read files a line at a time
//! (`warden detect`, `warden logs mine`).
//!
//! Their readers buffer one line (or CSV record) before handling it, so an input without
//! newlines (a binary file, a log written as one JSON document) would be buffered whole.
//! [`LineLimit`] sits under them and fails the read, naming the line, as soon as one line
//! passes the limit; what is buffered stays below the limit plus one read.

use std::io::{self, Read};

/// The longest line accepted: 1 MiB.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Wraps a reader; a line longer than `limit` bytes is an `InvalidData` error.
pub struct LineLimit<R> {
    inner: R,
    limit: usize,
    current: usize,
    line: u64,
}

impl<R: Read> LineLimit<R> {
    pub fn new(inner: R, limit: usize) -> Self {
        Self { inner, limit, current: 0, line: 1 }
    }
}

impl<R: Read> Read for LineLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &b in &buf[..n] {
            if b == b'\n' {
                self.line += 1;
                self.current = 0;
            } else {
                self.current += 1;
                if self.current > self.limit {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "line {} is longer than {} bytes (one record or message per line is expected)",
                            self.line, self.limit
                        ),
                    ));
                }
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_over_long_line_is_an_error_naming_it() {
        let text = format!("short\nalso short\n{}\nnext\n", "x".repeat(100));
        let mut out = Vec::new();
        let e = LineLimit::new(text.as_bytes(), 64).read_to_end(&mut out).expect_err("too long");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("line 3 is longer than 64 bytes"), "{e}");
        let mut out = Vec::new();
        LineLimit::new(text.as_bytes(), 100).read_to_end(&mut out).expect("at the limit");
        assert_eq!(out, text.as_bytes());
    }
}
