//! A queue's consumers: handing ready messages to them (round-robin by priority, with credit),
//! adding and removing them.

use super::{Queue, QueueInner};
use crate::broker::backlog::Ready;
use crate::broker::delivery::{Consumer, Offer};
use std::sync::Arc;
use std::sync::atomic::Ordering;

impl Queue {
    /// Delivers ready messages to consumers with credit.
    pub fn dispatch(self: &Arc<Self>) {
        let mut inner = self.inner.lock();
        if inner.backlog.tail() > 0 {
            inner.backlog.page_out(self.committed.load(Ordering::Acquire), &self.home());
        }
        self.dispatch_locked(&mut inner);
        self.finish(inner);
    }

    /// Consumers are kept in priority order (x-priority, highest first); messages go round-robin
    /// to the consumers of the highest priority that have credit, to lower ones only when none
    /// has. With x-single-active-consumer only the first consumer (the oldest) receives.
    pub(super) fn dispatch_locked(self: &Arc<Self>, inner: &mut QueueInner) {
        self.dispatch_consumers(inner, &mut None);
        self.lower_flow(inner);
    }

    /// A new message that found nothing queued (`arrival`, from [`Backlogs::arrival`]): offered
    /// to the consumers exactly as if it had been queued and dispatched, but queued only if none
    /// takes it (RabbitMQ's queue, too, delivers before it enqueues).
    ///
    /// [`Backlogs::arrival`]: crate::broker::backlog::Backlogs::arrival
    pub(super) fn dispatch_arrival(self: &Arc<Self>, inner: &mut QueueInner, arrival: Ready) {
        let mut arrival = Some(arrival);
        self.dispatch_consumers(inner, &mut arrival);
        if let Some(r) = arrival {
            // Nothing was queued before it and a dispatch only takes messages out.
            inner.backlog.push_front(r);
        }
        self.lower_flow(inner);
    }

    /// `arrival`: a message to offer before the queued ones (only when none is queued).
    fn dispatch_consumers(self: &Arc<Self>, inner: &mut QueueInner, arrival: &mut Option<Ready>) {
        let total = if self.declared.single_active_consumer { inner.consumers.len().min(1) } else { inner.consumers.len() };
        let mut start = 0;
        while start < total && (arrival.is_some() || !inner.backlog.is_empty()) {
            let prio = inner.consumers[start].priority;
            let end = (start..total).find(|&i| inner.consumers[i].priority != prio).unwrap_or(total);
            let n = end - start;
            let mut idle = 0;
            while idle < n && (arrival.is_some() || !inner.backlog.is_empty()) {
                let idx = start + inner.rr % n;
                inner.rr = inner.rr.wrapping_add(1);
                if !inner.consumers[idx].has_credit() {
                    idle += 1;
                    continue;
                }
                let Some(ready) = arrival.take().or_else(|| self.pop(inner)) else { return };
                // Looked up again rather than cloned across `pop` (two atomic operations less
                // per message); `pop` leaves the consumers as they are.
                match inner.consumers[idx].offer(self, &ready) {
                    Offer::Delivered => idle = 0,
                    Offer::Refused => {
                        inner.backlog.push_front(ready);
                        idle += 1;
                    }
                }
            }
            start = end;
        }
    }

    /// Adds a consumer (the caller checked exclusivity with [`Queue::check_consume`]).
    pub fn add_consumer(self: &Arc<Self>, c: Arc<Consumer>) {
        c.channel.conn.add_feeder(self);
        let mut inner = self.inner.lock();
        if c.exclusive {
            inner.exclusive_consumer = true;
        }
        inner.had_consumer = true;
        // Priority order, oldest first within a priority.
        let at = inner.consumers.iter().position(|x| x.priority < c.priority).unwrap_or(inner.consumers.len());
        inner.consumers.insert(at, c);
        self.touch();
        self.dispatch_locked(&mut inner);
        self.finish(inner);
    }

    /// `Err(true)` if an exclusive consumer holds the queue, `Err(false)` if `exclusive` was
    /// asked and consumers exist.
    pub fn check_consume(&self, exclusive: bool) -> Result<(), ()> {
        let inner = self.inner.lock();
        if inner.exclusive_consumer || (exclusive && !inner.consumers.is_empty()) {
            return Err(());
        }
        Ok(())
    }

    /// Removes a consumer; returns true if the queue should now be auto-deleted.
    pub fn remove_consumer(&self, c: &Arc<Consumer>) -> bool {
        let mut inner = self.inner.lock();
        let before = inner.consumers.len();
        inner.consumers.retain(|x| !Arc::ptr_eq(x, c));
        if inner.consumers.len() != before && c.exclusive {
            inner.exclusive_consumer = false;
        }
        if inner.consumers.is_empty() {
            // x-expires counts from when the last consumer left.
            self.touch();
        }
        self.lower_flow(&inner);
        self.auto_delete && inner.had_consumer && inner.consumers.is_empty() && !self.is_deleted()
    }
}
