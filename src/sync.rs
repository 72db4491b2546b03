//! Locks that outlive a panic: a task that panicked while holding one left
//! plain data behind (counters, maps, an `Option`), still fit to read and
//! write, so the next holder takes it as it is instead of panicking too.

use std::sync::{Mutex, MutexGuard, PoisonError};

pub trait LockExt<T> {
    /// The guard, poisoned or not.
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T> LockExt<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
