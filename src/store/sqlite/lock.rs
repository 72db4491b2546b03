//! One server per SQLite file: the file's claim, held while the service runs.

use super::StoreError;

use super::*;

/// An exclusive claim on an SQLite database file by one serving process,
/// held until dropped: a second `trawl serve` on the same file would
/// otherwise mark the first one's running crawls interrupted and have their
/// writes refused. An advisory `flock` on `<file>.lock` (not on the database
/// file, whose POSIX locks SQLite owns); the kernel drops it when the
/// process dies, so a killed server never blocks the next.
#[derive(Debug)]
pub struct ProcessLock {
    _file: std::fs::File,
}

impl ProcessLock {
    /// Claims the database `database_url` names, or says who holds it.
    /// In-memory databases need no claim.
    pub fn acquire(database_url: &str) -> Result<Option<ProcessLock>, StoreError> {
        use std::io::{Read, Seek, Write};
        use std::os::fd::AsRawFd;
        let opts = connect_options(database_url)?;
        let path = opts.get_filename();
        if path.as_os_str().is_empty() || path.to_string_lossy().contains(":memory:") {
            return Ok(None);
        }
        let lock_path = format!("{}.lock", path.display());
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| StoreError::Locked(format!("cannot open {lock_path}: {e}")))?;
        // SAFETY: flock only takes a lock on a descriptor we own.
        let taken = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if !taken {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() { "another process".to_string() } else { format!("process {holder}") };
            return Err(StoreError::Locked(format!(
                "{} is in use by {who} (a running trawl serve?); stop it first or give this one another --database",
                path.display()
            )));
        }
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "{}", std::process::id());
        Ok(Some(ProcessLock { _file: file }))
    }
}
