//! Bounded reads of the text files a configuration is or names: the configuration itself,
//! `file:` secrets and `memory` fixtures. Each read stops one byte past its limit (so
//! `/dev/zero` ends in an error, not in memory exhaustion), and the file must be UTF-8 text
//! without NUL bytes; a bad byte is reported at its line and column.

use std::io::Read;
use std::path::Path;

/// Largest configuration file.
pub const CONFIG_LIMIT: u64 = 1 << 20;
/// Largest `file:` secret.
pub const SECRET_FILE_LIMIT: u64 = 64 << 10;
/// Largest `memory` fixtures file.
pub const FIXTURES_LIMIT: u64 = 64 << 20;

/// Why a text file could not be read. Never carries any of the file's content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read the file: {0}")]
    Io(String),
    #[error("is a directory, not a file")]
    Directory,
    /// A named pipe or socket: reading it could wait forever for a writer.
    #[error("is a pipe or socket, not a file")]
    NotAFile,
    #[error("is larger than {}; refused", size(*limit))]
    TooLarge { limit: u64 },
    #[error("is not UTF-8 text (invalid byte at line {line}, column {column})")]
    NotUtf8 { line: usize, column: usize },
    #[error("is a binary file, not text (NUL byte at line {line}, column {column})")]
    Binary { line: usize, column: usize },
}

impl ReadError {
    /// Line and column (1-based) of the offending byte, when the error has one.
    pub fn position(&self) -> Option<(usize, usize)> {
        match self {
            ReadError::NotUtf8 { line, column } | ReadError::Binary { line, column } => {
                Some((*line, *column))
            }
            _ => None,
        }
    }
}

/// `1 MiB`, `64 KiB`, `100 bytes`.
fn size(n: u64) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

/// Line and column (1-based, in characters) of byte `offset`; `bytes[..offset]` is UTF-8.
fn position(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = String::from_utf8_lossy(&bytes[..offset]);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The bytes as text: UTF-8 without NUL bytes, else the first offending byte's position.
pub fn text_of(bytes: Vec<u8>) -> Result<String, ReadError> {
    let nul = bytes.iter().position(|b| *b == 0);
    match String::from_utf8(bytes) {
        Ok(text) => match nul {
            None => Ok(text),
            Some(n) => {
                let (line, column) = position(text.as_bytes(), n);
                Err(ReadError::Binary { line, column })
            }
        },
        Err(e) => {
            let bad = e.utf8_error().valid_up_to();
            let (line, column) = position(e.as_bytes(), nul.unwrap_or(bad).min(bad));
            Err(match nul {
                Some(n) if n < bad => ReadError::Binary { line, column },
                _ => ReadError::NotUtf8 { line, column },
            })
        }
    }
}

/// Reads at most `limit` bytes of text from `path`.
pub fn read_text(path: &Path, limit: u64) -> Result<String, ReadError> {
    let io = |e: std::io::Error| ReadError::Io(e.to_string());
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.is_dir() {
        return Err(ReadError::Directory);
    }
    if is_pipe_or_socket(&meta) {
        return Err(ReadError::NotAFile);
    }
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge { limit });
    }
    text_of(bytes)
}

#[cfg(unix)]
fn is_pipe_or_socket(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    meta.file_type().is_fifo() || meta.file_type().is_socket()
}

#[cfg(not(unix))]
fn is_pipe_or_socket(_: &std::fs::Metadata) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn refuses_a_named_pipe_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().expect("temp dir");
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
        assert_eq!(read_text(&fifo, 100), Err(ReadError::NotAFile));
    }

    #[test]
    fn reads_text_and_locates_bad_bytes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let p = dir.path().join("a.txt");
        std::fs::write(&p, "ä\nok").expect("write");
        assert_eq!(read_text(&p, 100).as_deref(), Ok("ä\nok"));
        std::fs::write(&p, b"a\nb\xc3\xa4\xff\n").expect("write");
        let e = read_text(&p, 100).expect_err("not UTF-8");
        assert_eq!(e, ReadError::NotUtf8 { line: 2, column: 3 });
        assert_eq!(e.position(), Some((2, 3)));
        std::fs::write(&p, b"x = 1\n\0\xff").expect("write");
        assert_eq!(
            read_text(&p, 100),
            Err(ReadError::Binary { line: 2, column: 1 })
        );
        std::fs::write(&p, b"\xff\0").expect("write");
        assert_eq!(
            read_text(&p, 100),
            Err(ReadError::NotUtf8 { line: 1, column: 1 })
        );
    }

    #[test]
    fn refuses_directories_missing_files_and_too_much() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(read_text(dir.path(), 100), Err(ReadError::Directory));
        let e = read_text(&dir.path().join("none"), 100).expect_err("missing");
        assert!(matches!(e, ReadError::Io(_)), "{e}");
        assert_eq!(e.position(), None);
        let p = dir.path().join("big");
        std::fs::write(&p, "0123456789").expect("write");
        assert_eq!(read_text(&p, 10).as_deref(), Ok("0123456789"));
        let e = read_text(&p, 9).expect_err("too large");
        assert_eq!(e.to_string(), "is larger than 9 bytes; refused");
        let zero = read_text(Path::new("/dev/zero"), SECRET_FILE_LIMIT).expect_err("endless");
        assert_eq!(zero.to_string(), "is larger than 64 KiB; refused");
        assert_eq!(size(CONFIG_LIMIT), "1 MiB");
    }
}
