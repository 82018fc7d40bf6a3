//! A notifier that records every problem and every payment link it is told about, and can be
//! made to fail like an unreachable mail server: the operator's and the customers' inboxes in
//! tests and trials.

use crate::notify::{Notifier, NotifyError, PaymentLinkMail, Problem};
use async_trait::async_trait;
use std::sync::{Arc, Mutex, MutexGuard};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Records every problem and payment link it is told about; can be made to fail like an
/// unreachable mail server.
#[derive(Clone, Default)]
pub struct RecordingNotifier {
    sent: Arc<Mutex<Vec<Problem>>>,
    links: Arc<Mutex<Vec<PaymentLinkMail>>>,
    down: Arc<Mutex<bool>>,
}

impl RecordingNotifier {
    pub fn sent(&self) -> Vec<Problem> {
        lock(&self.sent).clone()
    }

    /// The payment-link mails "sent", in order.
    pub fn payment_links(&self) -> Vec<PaymentLinkMail> {
        lock(&self.links).clone()
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

    async fn payment_link(&self, mail: &PaymentLinkMail) -> Result<(), NotifyError> {
        if *lock(&self.down) {
            return Err(NotifyError("mail server unreachable".into()));
        }
        lock(&self.links).push(mail.clone());
        Ok(())
    }
}
