//! Reading and writing local files without ever corrupting one.
//!
//! - A file that is not valid UTF-8, or holds a NUL byte (binary), opens **read-only**: it is
//!   shown with U+FFFD for the bad bytes and `^@` for NULs, with a message saying why, and saving
//!   it is refused — writing the shown text back would replace bytes the editor cannot represent.
//! - A UTF-8 byte order mark is taken off on load and put back on save; so are CRLF line endings
//!   when every line of the file has them (the buffer then holds `\n` only). A file with mixed
//!   endings is kept byte for byte (its `\r`s show as `^M`).
//! - Saving writes a temporary file beside the target, syncs it, gives it the target's
//!   permissions and renames it over the target (through symlinks), so a crash or a full disk
//!   never leaves half a file. A file that changed on disk since it was read is not overwritten
//!   without asking (see [`Stamp`]).

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use editor_core::{GapBuffer, TextBuffer};

/// How the file's text was stored, so saving writes it back the same way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Format {
    pub bom: bool,
    pub crlf: bool,
}

/// What identifies the version of a file on disk: size and modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub len: u64,
    pub modified: Option<SystemTime>,
}

impl Stamp {
    /// The stamp of `path` now, or `None` if it does not exist.
    pub fn of(path: &Path) -> Option<Stamp> {
        let meta = fs::metadata(path).ok()?;
        Some(Stamp {
            len: meta.len(),
            modified: meta.modified().ok(),
        })
    }
}

/// A file read for editing.
#[derive(Debug)]
pub struct Loaded {
    pub text: String,
    pub format: Format,
    /// Why the file may not be saved (not UTF-8, binary); `None` when it may.
    pub read_only: Option<String>,
    /// The file did not exist: it is created by the first save.
    pub new_file: bool,
    pub stamp: Option<Stamp>,
}

/// Reads `path`. A missing file is an empty new one; anything else that fails is an error.
pub fn load(path: &Path) -> io::Result<Loaded> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Loaded {
                text: String::new(),
                format: Format::default(),
                read_only: None,
                new_file: true,
                stamp: None,
            })
        }
        Err(e) => return Err(e),
    };
    let stamp = Stamp::of(path);
    let nul = memchr_nul(&bytes);
    let (text, read_only) = match String::from_utf8(bytes) {
        Ok(text) => {
            let why = nul.map(|at| {
                format!(
                    "binary file (NUL byte at offset {at}): opened read-only, saving is disabled"
                )
            });
            (text, why)
        }
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let bytes = e.into_bytes();
            let kind = if nul.is_some() {
                "binary file"
            } else {
                "not valid UTF-8"
            };
            let why = format!(
                "{kind} (invalid byte 0x{:02x} at offset {at}): opened read-only, saving is disabled",
                bytes[at]
            );
            (String::from_utf8_lossy(&bytes).into_owned(), Some(why))
        }
    };
    if read_only.is_some() {
        return Ok(Loaded {
            text,
            format: Format::default(),
            read_only,
            new_file: false,
            stamp,
        });
    }
    let (text, bom) = match text.strip_prefix('\u{feff}') {
        Some(rest) => (rest.to_string(), true),
        None => (text, false),
    };
    let crlf = all_crlf(&text);
    let text = if crlf {
        text.replace("\r\n", "\n")
    } else {
        text
    };
    Ok(Loaded {
        text,
        format: Format { bom, crlf },
        read_only: None,
        new_file: false,
        stamp,
    })
}

fn memchr_nul(bytes: &[u8]) -> Option<usize> {
    memchr::memchr(0, bytes)
}

/// True when the text has line breaks and every one of them is `\r\n`.
fn all_crlf(text: &str) -> bool {
    let bytes = text.as_bytes();
    let lf = memchr::memchr_iter(b'\n', bytes).count();
    lf > 0 && memchr::memmem::find_iter(bytes, b"\r\n").count() == lf
}

/// Writes `buf` to `path` atomically in `format`; returns the new file's stamp.
pub fn save(path: &Path, buf: &GapBuffer, format: Format) -> io::Result<Option<Stamp>> {
    let target = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!(".{name}.quire-{}.tmp", std::process::id()));
    let result = (|| {
        let file = File::create(&tmp)?;
        let mut out = BufWriter::with_capacity(1 << 16, file);
        if format.bom {
            out.write_all("\u{feff}".as_bytes())?;
        }
        for chunk in buf.chunks() {
            if format.crlf {
                let mut rest = chunk;
                while let Some(i) = rest.find('\n') {
                    out.write_all(&rest.as_bytes()[..i])?;
                    out.write_all(b"\r\n")?;
                    rest = &rest[i + 1..];
                }
                out.write_all(rest.as_bytes())?;
            } else {
                out.write_all(chunk.as_bytes())?;
            }
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        if let Ok(meta) = fs::metadata(&target) {
            file.set_permissions(meta.permissions())?;
        }
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, &target)?;
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map(|()| Stamp::of(&target))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("quire-term-file-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn round_trips_bom_and_crlf() {
        let d = tmpdir("crlf");
        let p = d.join("a.txt");
        fs::write(&p, "\u{feff}one\r\ntwo\r\n").unwrap();
        let l = load(&p).unwrap();
        assert_eq!(l.text, "one\ntwo\n");
        assert_eq!(
            l.format,
            Format {
                bom: true,
                crlf: true
            }
        );
        let mut b = GapBuffer::from_text(&l.text);
        b.insert(3, "!").unwrap();
        save(&p, &b, l.format).unwrap();
        assert_eq!(fs::read(&p).unwrap(), "\u{feff}one!\r\ntwo\r\n".as_bytes());
        // Mixed endings stay as they are.
        fs::write(&p, "a\r\nb\n").unwrap();
        let l = load(&p).unwrap();
        assert_eq!((l.text.as_str(), l.format.crlf), ("a\r\nb\n", false));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn invalid_utf8_and_binary_are_read_only() {
        let d = tmpdir("bin");
        let p = d.join("b");
        fs::write(&p, b"ab\xffc\n").unwrap();
        let l = load(&p).unwrap();
        assert_eq!(l.text, "ab\u{fffd}c\n");
        assert!(l.read_only.unwrap().contains("not valid UTF-8"));
        fs::write(&p, b"ab\0c").unwrap();
        assert!(load(&p).unwrap().read_only.unwrap().contains("binary"));
        let l = load(&d.join("missing")).unwrap();
        assert!(l.new_file && l.read_only.is_none());
        fs::remove_dir_all(&d).unwrap();
    }
}
