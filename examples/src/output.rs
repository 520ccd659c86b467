//! Writing a command's result to stdout the way Unix tools do.
//!
//! `println!` panics when stdout is a pipe whose reader went away (`run | head`: Rust ignores
//! SIGPIPE, so the write fails with `EPIPE`) and says nothing when the write fails for another
//! reason (`run > /dev/full`), losing the report with exit 0. Every binary writes its result
//! through [`print()`] instead: a reader that left early is not an error (the command ends
//! quietly, as coreutils do), any other failure is, and is named.

use std::io::{self, Write};

/// How a write to stdout ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Everything was written and flushed.
    All,
    /// The reader closed the pipe (`| head`): the rest was not wanted.
    ReaderGone,
}

/// Writes `text` as is to `out` and flushes; a closed pipe is [`Written::ReaderGone`], any
/// other failure an error.
pub fn write_text(out: &mut impl Write, text: &str) -> io::Result<Written> {
    let result = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    match result {
        Ok(()) => Ok(Written::All),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(Written::ReaderGone),
        Err(e) => Err(e),
    }
}

/// Writes `text` as is to stdout; see [`write_text`].
pub fn print(text: &str) -> io::Result<Written> {
    write_text(&mut io::stdout().lock(), text)
}

/// Writes `text` to stdout and settles the exit code: `code` when the text was written or the
/// reader left early (a closed pipe does not change the command's outcome), `fail_code` with
/// the reason on stderr when the write failed (a full disk, a closed descriptor).
pub fn print_or(text: &str, code: u8, fail_code: u8) -> u8 {
    match print(text) {
        Ok(_) => code,
        Err(e) => {
            // stderr may be gone too; nothing more can be said then.
            let _ = writeln!(io::stderr(), "error: cannot write to stdout: {e}");
            fail_code
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that fails every write (or only the flush) with `kind`.
    struct Failing {
        kind: io::ErrorKind,
        on_flush_only: bool,
        written: Vec<u8>,
    }

    impl Write for Failing {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.on_flush_only {
                self.written.extend_from_slice(buf);
                Ok(buf.len())
            } else {
                Err(io::Error::from(self.kind))
            }
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::Error::from(self.kind))
        }
    }

    #[test]
    fn outcomes_by_failure() {
        let mut ok = Vec::new();
        assert_eq!(write_text(&mut ok, "{}\n").unwrap(), Written::All);
        assert_eq!(ok, b"{}\n");
        let cases = [
            (io::ErrorKind::BrokenPipe, false, Some(Written::ReaderGone)),
            (io::ErrorKind::BrokenPipe, true, Some(Written::ReaderGone)),
            (io::ErrorKind::StorageFull, true, None),
            (io::ErrorKind::Other, false, None),
        ];
        for (kind, on_flush_only, want) in cases {
            let mut w = Failing {
                kind,
                on_flush_only,
                written: Vec::new(),
            };
            let got = write_text(&mut w, "report").ok();
            assert_eq!(got, want, "{kind:?}, flush only: {on_flush_only}");
        }
    }
}
