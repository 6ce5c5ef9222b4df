//! The process's lifecycle as the service sees it: serving, or shutting down.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Whether the process has begun shutting down; readiness turns 503 the moment it has.
#[derive(Clone, Default)]
pub struct Lifecycle {
    shutting_down: Arc<AtomicBool>,
}

impl Lifecycle {
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}
