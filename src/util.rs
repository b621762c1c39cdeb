//! Small rules every layer shares: how a digest is written, how a file is replaced so that a
//! reader (or an interrupted run) never sees half of it, and how a job is cut into shards.
//!
//! May import: `error`. Everything else may import it.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// sha256 of one file's bytes, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hexadecimal of `bytes` (how digests are written in manifests and errors).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The temporary file beside `path` that [`replace_with`] writes first: `path` with `.tmp`
/// appended to its whole name.
pub fn temporary_beside(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Replaces `path` by what `write` puts into a temporary file beside it, then renames that
/// file over `path`: a reader sees the old file or the new one, never half of either.
pub fn replace_with<E>(
    path: &Path,
    write: impl FnOnce(&Path) -> std::result::Result<(), E>,
) -> std::result::Result<(), E>
where
    E: From<Error>,
{
    let tmp = temporary_beside(path);
    write(&tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| E::from(Error::io(path, e)))
}

/// Replaces `path` by `bytes`, as [`replace_with`].
pub fn write_atomic(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    replace_with(path, |tmp| {
        std::fs::write(tmp, bytes.as_ref()).map_err(|e| Error::io(tmp, e))
    })
}

/// Shard `index` of `count` (0-based) of a job split across processes or machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// The whole job as one shard.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };
}

impl std::str::FromStr for Shard {
    type Err = Error;
    /// `i/n` with 0 ≤ i < n.
    fn from_str(text: &str) -> Result<Self> {
        let parsed = text
            .split_once('/')
            .and_then(|(i, n)| Some((i.trim().parse().ok()?, n.trim().parse().ok()?)));
        match parsed {
            Some((index, count)) if index < count => Ok(Shard { index, count }),
            _ => Err(Error::invalid(
                "shard",
                format!("`{text}` (expected i/n with 0 ≤ i < n)"),
            )),
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn hex_and_digest_are_lower_case() {
        let cases: [(&[u8], &str); 2] = [
            (
                b"",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
            (b"\x00\xff", "00ff"),
        ];
        assert_eq!(sha256_hex(cases[0].0), cases[0].1);
        assert_eq!(hex(cases[1].0), cases[1].1);
    }

    #[test]
    fn a_replaced_file_holds_the_new_bytes_and_no_temporary_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        for bytes in [&b"first"[..], b"second, longer", b""] {
            write_atomic(&path, bytes).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), bytes);
            assert!(!temporary_beside(&path).exists());
        }
    }

    #[test]
    fn a_failed_write_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write_atomic(&path, b"old").unwrap();
        let failed: Result<()> = replace_with(&path, |tmp| {
            Err(Error::io(tmp, std::io::Error::other("disk full")))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
    }
}
