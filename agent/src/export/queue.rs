//! The bounded buffer between collection and OTLP export. The export path
//! is itself a batcher, and it reports on itself the same four metrics it
//! measures for everyone else: batch size (points per request), batch wait
//! (collection to delivery), buffer depth against capacity, and drops.
//!
//! When the receiver is unreachable the agent keeps collecting; the queue
//! keeps up to its capacity of collections and drops the oldest beyond.
//! Series are cumulative, so a dropped collection loses resolution, never
//! counts: the next one delivered holds them.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard},
    time::Instant,
};

use agent_common::{hist::log2_slot, write::GAP_SLOTS};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use tokio::sync::Notify;

use super::catalog::EXPORT_BATCH_SLOTS;

/// One collection, ready to send.
#[derive(Debug)]
pub struct Batch {
    pub request: ExportMetricsServiceRequest,
    pub points: usize,
    pub collected: Instant,
}

/// The export path's own batching metrics, cumulative since start.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportHealth {
    /// Log2 histogram of points per delivered request, and their sum.
    pub batch_size: [u64; EXPORT_BATCH_SLOTS],
    pub batch_points: u64,
    /// Log2 histogram of nanoseconds from collection to delivery, and their sum.
    pub batch_wait: [u64; GAP_SLOTS],
    pub batch_wait_ns: u64,
    /// Collections waiting (the one being sent is not counted), and room.
    pub queued: usize,
    pub capacity: usize,
    /// Points dropped because the queue was full, and points the receiver refused.
    pub dropped_queue_full: u64,
    pub rejected: u64,
}

pub struct ExportQueue {
    inner: Mutex<Inner>,
    /// Wakes the sender when a batch arrives or the queue closes.
    ready: Notify,
}

struct Inner {
    waiting: VecDeque<Arc<Batch>>,
    /// The batch being sent, taken out of `waiting`.
    in_flight: Option<Arc<Batch>>,
    closed: bool,
    health: ExportHealth,
}

impl ExportQueue {
    pub fn new(capacity: usize) -> ExportQueue {
        let health = ExportHealth {
            batch_size: [0; EXPORT_BATCH_SLOTS],
            batch_points: 0,
            batch_wait: [0; GAP_SLOTS],
            batch_wait_ns: 0,
            queued: 0,
            capacity,
            dropped_queue_full: 0,
            rejected: 0,
        };
        let inner = Inner { waiting: VecDeque::new(), in_flight: None, closed: false, health };
        ExportQueue { inner: Mutex::new(inner), ready: Notify::new() }
    }

    /// Adds a collection; when the queue is full, the oldest waiting one is
    /// dropped first.
    pub fn push(&self, batch: Batch) {
        let mut inner = self.lock();
        if inner.waiting.len() >= inner.health.capacity {
            inner.drop_oldest();
        }
        inner.waiting.push_back(Arc::new(batch));
        drop(inner);
        self.ready.notify_one();
    }

    /// The oldest collection, to send; `None` once the queue is closed and
    /// empty.
    pub async fn next(&self) -> Option<Arc<Batch>> {
        loop {
            {
                let mut inner = self.lock();
                if let Some(batch) = inner.waiting.pop_front() {
                    inner.in_flight = Some(batch.clone());
                    return Some(batch);
                }
                if inner.closed {
                    return None;
                }
            }
            self.ready.notified().await;
        }
    }

    /// Puts back a batch whose delivery failed, to try again: first in
    /// line, unless the queue filled up meanwhile; then, being the oldest,
    /// it is the one dropped.
    pub fn retry(&self, batch: Arc<Batch>) {
        let mut inner = self.lock();
        inner.in_flight = None;
        if inner.waiting.len() >= inner.health.capacity {
            inner.health.dropped_queue_full += batch.points as u64;
        } else {
            inner.waiting.push_front(batch);
        }
    }

    /// Records a delivered batch, of which the receiver refused `rejected` points.
    pub fn delivered(&self, batch: &Batch, rejected: u64) {
        let wait_ns = batch.collected.elapsed().as_nanos() as u64;
        let mut inner = self.lock();
        inner.in_flight = None;
        let health = &mut inner.health;
        health.batch_size[log2_slot(batch.points as u64, EXPORT_BATCH_SLOTS)] += 1;
        health.batch_points += batch.points as u64;
        health.batch_wait[log2_slot(wait_ns, GAP_SLOTS)] += 1;
        health.batch_wait_ns += wait_ns;
        health.rejected += rejected;
    }

    /// Records a batch the receiver refused as a whole.
    pub fn refused(&self, batch: &Batch) {
        let mut inner = self.lock();
        inner.in_flight = None;
        inner.health.rejected += batch.points as u64;
    }

    /// No more collections will come: [`next`](Self::next) returns `None`
    /// once the queue is empty.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    /// Gives up on what was not delivered (at shutdown, past the deadline),
    /// counting it as dropped; returns how many collections that was.
    pub fn abandon(&self) -> usize {
        let mut inner = self.lock();
        let lost: Vec<Arc<Batch>> = inner.in_flight.take().into_iter().chain(inner.waiting.drain(..)).collect();
        inner.health.dropped_queue_full += lost.iter().map(|batch| batch.points as u64).sum::<u64>();
        lost.len()
    }

    pub fn health(&self) -> ExportHealth {
        let inner = self.lock();
        ExportHealth { queued: inner.waiting.len(), ..inner.health.clone() }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves plain counters behind: keep going.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Inner {
    fn drop_oldest(&mut self) {
        if let Some(oldest) = self.waiting.pop_front() {
            self.health.dropped_queue_full += oldest.points as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn batch(points: usize) -> Batch {
        Batch { request: ExportMetricsServiceRequest::default(), points, collected: Instant::now() }
    }

    fn now_or_never<T>(future: impl Future<Output = T>) -> Option<T> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        runtime.block_on(async { tokio::time::timeout(Duration::from_millis(50), future).await.ok() })
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_counts_its_points() {
        let queue = ExportQueue::new(2);
        queue.push(batch(10));
        queue.push(batch(20));
        queue.push(batch(30));
        let health = queue.health();
        assert_eq!((health.queued, health.capacity, health.dropped_queue_full), (2, 2, 10));
        assert_eq!(now_or_never(queue.next()).flatten().map(|b| b.points), Some(20));
    }

    #[test]
    fn a_failed_batch_goes_back_first_unless_the_queue_filled_up() {
        let queue = ExportQueue::new(2);
        queue.push(batch(1));
        queue.push(batch(2));
        let first = now_or_never(queue.next()).flatten().unwrap();
        queue.retry(first);
        assert_eq!(now_or_never(queue.next()).flatten().map(|b| b.points), Some(1));
        let again = queue.lock().in_flight.clone().unwrap();
        queue.push(batch(3));
        // Full now (2 and 3 wait): the failed one, the oldest, is dropped.
        queue.retry(again);
        let health = queue.health();
        assert_eq!((health.queued, health.dropped_queue_full), (2, 1));
    }

    #[test]
    fn delivery_records_size_wait_and_rejections() {
        let queue = ExportQueue::new(4);
        queue.push(batch(100));
        let sent = now_or_never(queue.next()).flatten().unwrap();
        queue.delivered(&sent, 3);
        let health = queue.health();
        assert_eq!(health.batch_size[log2_slot(100, EXPORT_BATCH_SLOTS)], 1);
        assert_eq!((health.batch_points, health.rejected), (100, 3));
        assert_eq!(health.batch_wait.iter().sum::<u64>(), 1);
        assert!(health.batch_wait_ns > 0);
    }

    #[test]
    fn closing_ends_next_once_empty_and_abandon_counts_the_rest() {
        let queue = ExportQueue::new(4);
        queue.push(batch(5));
        queue.push(batch(7));
        queue.close();
        let sent = now_or_never(queue.next()).flatten().unwrap();
        assert_eq!(queue.abandon(), 2, "the one in flight and the one waiting");
        assert_eq!(queue.health().dropped_queue_full, 12);
        drop(sent);
        assert!(now_or_never(queue.next()).unwrap().is_none(), "closed and empty");
    }

    #[test]
    fn next_waits_for_a_push() {
        let queue = ExportQueue::new(4);
        assert!(now_or_never(queue.next()).is_none(), "nothing yet");
    }
}
