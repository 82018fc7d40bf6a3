//! A notifier that records every problem it is told about, and can be made to fail like an
//! unreachable mail server: the operator's inbox in tests and trials.

use crate::notify::{Notifier, NotifyError, Problem};
use async_trait::async_trait;
use std::sync::{Arc, Mutex, MutexGuard};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Records every problem it is told about; can be made to fail like an unreachable mail server.
#[derive(Clone, Default)]
pub struct RecordingNotifier {
    sent: Arc<Mutex<Vec<Problem>>>,
    down: Arc<Mutex<bool>>,
}

impl RecordingNotifier {
    pub fn sent(&self) -> Vec<Problem> {
        lock(&self.sent).clone()
    }

    /// While down, every notification fails and nothing is recorded.
    pub fn set_down(&self, down: bool) {
        *lock(&self.down) = down;
    }
}

#[async_trait]
impl Notifier for RecordingNotifier {
    async fn notify(&self, p: &Problem) -> Result<(), NotifyError> {
        if *lock(&self.down) {
            return Err(NotifyError("mail server unreachable".into()));
        }
        lock(&self.sent).push(p.clone());
        Ok(())
    }
}
