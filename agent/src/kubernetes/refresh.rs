//! The refresh loop: lists the node's pods periodically and when lookups
//! miss, at most once per [`RefreshPolicy::min_gap`].
//!
//! Lists are numbered. A lookup that misses records the number of the latest
//! list that had started (its "ask") and wakes the loop; the ask is answered
//! by the first list that starts after it. A container that the answering
//! list still lacks (a container outside Kubernetes, say) asks no more until
//! the next periodic list, so it cannot make the agent list every gap.

use std::{
    collections::HashMap,
    sync::{Arc, Condvar, Mutex, PoisonError},
};

use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client, api::ListParams};
use tokio::{
    sync::{Notify, oneshot},
    time::{Instant, sleep_until, timeout},
};
use tracing::{info, warn};

use super::{
    RefreshPolicy,
    jobs::{JobOwners, JobReads},
    pods::PodIndex,
};

/// What the loop and the lookups share.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) state: Mutex<State>,
    /// Signalled when a list comes back.
    pub(super) listed: Condvar,
    /// Wakes the loop when a lookup asked for a list.
    pub(super) wake: Notify,
}

#[derive(Debug, Default)]
pub(super) struct State {
    /// The pods of the last list that succeeded.
    pub(super) index: Arc<PodIndex>,
    /// The number of the latest list started (1 for the first).
    lists_started: u64,
    /// How many lists came back, successful or not.
    pub(super) lists_finished: u64,
    /// The number of the latest successful list, 0 before the first.
    pub(super) listed_since: u64,
    /// Why the latest list failed, if it did.
    pub(super) last_error: Option<String>,
    /// How many lists failed.
    pub(super) lists_failed: u64,
    /// Reads of a pod's Job that failed or were put off, all lists together.
    pub(super) job_reads_failed: u64,
    /// Why the latest list's first failed read failed, if one did.
    pub(super) job_read_error: Option<String>,
    /// Whether a lookup asked for a list since the latest one started.
    wanted: bool,
    /// Container ids that missed, with the latest list started when they did.
    asked: HashMap<String, u64>,
}

impl Shared {
    pub(super) fn new() -> Shared {
        Shared { state: Mutex::default(), listed: Condvar::new(), wake: Notify::new() }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    /// Records that container `id` missed; says whether the loop must be
    /// woken: not when a list that started after its first miss is running
    /// or has come back already.
    pub(super) fn ask(&mut self, id: &str) -> bool {
        let asked_at = *self.asked.entry(id.to_owned()).or_insert(self.lists_started);
        let wanted = asked_at == self.lists_started;
        self.wanted |= wanted;
        wanted
    }
}

/// The loop's own part.
pub(super) struct Refresher {
    pub(super) client: Client,
    pub(super) pods: Api<Pod>,
    pub(super) params: ListParams,
    pub(super) policy: RefreshPolicy,
    pub(super) node: String,
    pub(super) shared: Arc<Shared>,
    /// The CronJobs of the pods' Jobs, as read so far.
    pub(super) jobs: JobOwners,
}

impl Refresher {
    /// Lists until `stop` resolves (its sender is dropped).
    pub(super) async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        let mut periodic = true;
        let mut failures = 0u32;
        loop {
            let started = Instant::now();
            let number = {
                let mut state = self.shared.lock();
                state.lists_started += 1;
                state.wanted = false;
                state.lists_started
            };
            let result = tokio::select! {
                result = timeout(self.policy.request_timeout, self.pods.list(&self.params)) => result,
                _ = &mut stop => return,
            };
            let outcome = match result {
                Ok(Ok(list)) => {
                    let reads = tokio::select! {
                        reads = self.jobs.refresh(&self.client, &list.items, self.policy.request_timeout) => reads,
                        _ = &mut stop => return,
                    };
                    self.record_job_reads(reads);
                    Ok(PodIndex::new(&list.items, &self.jobs))
                }
                Ok(Err(error)) => Err(error.to_string()),
                Err(_) => Err(format!("no answer within {:?}", self.policy.request_timeout)),
            };
            failures = if outcome.is_ok() { 0 } else { failures.saturating_add(1) };
            self.finish(number, outcome, periodic);

            let next_periodic = started + self.policy.next_periodic(failures);
            periodic = loop {
                if self.shared.lock().wanted {
                    tokio::select! {
                        () = sleep_until(started + self.policy.min_gap) => break false,
                        _ = &mut stop => return,
                    }
                }
                tokio::select! {
                    () = sleep_until(next_periodic) => break true,
                    () = self.shared.wake.notified() => {}
                    _ = &mut stop => return,
                }
            };
        }
    }

    /// Counts the Job reads that failed, and says why when the reason changes.
    fn record_job_reads(&self, reads: JobReads) {
        let mut state = self.shared.lock();
        state.job_reads_failed += reads.failed;
        if reads.error.is_some() && state.job_read_error != reads.error {
            warn!(
                node = %self.node,
                failed = reads.failed,
                "kubernetes: pods of these Jobs go without k8s.cronjob.name until a read succeeds: {}",
                reads.error.as_deref().unwrap_or_default()
            );
        }
        state.job_read_error = reads.error;
    }

    /// Publishes a list's outcome.
    fn finish(&self, number: u64, outcome: Result<PodIndex, String>, periodic: bool) {
        let mut state = self.shared.lock();
        state.lists_finished += 1;
        match outcome {
            Ok(index) => {
                if state.listed_since == 0 || state.last_error.is_some() {
                    info!(node = %self.node, pods = index.pods(), "kubernetes: listed the node's pods");
                }
                state.index = Arc::new(index);
                state.listed_since = number;
                state.last_error = None;
                if periodic {
                    // Containers that missed get one more ask after each periodic list.
                    state.asked.retain(|_, asked_at| *asked_at >= number);
                }
            }
            Err(reason) => {
                state.lists_failed += 1;
                if state.last_error.as_ref() != Some(&reason) {
                    warn!(node = %self.node, "kubernetes: listing the node's pods failed: {reason}");
                }
                state.last_error = Some(reason);
            }
        }
        drop(state);
        self.shared.listed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_miss_asks_until_a_list_starts_after_it() {
        let mut state = State { lists_started: 1, listed_since: 1, ..State::default() };
        assert!(state.ask("a"), "first miss");
        assert!(state.ask("a"), "no list started since: ask again (the loop coalesces)");
        state.lists_started = 2; // the answering list runs
        assert!(!state.ask("a"), "list 2 answers it");
        assert!(state.ask("b"), "a miss during list 2 needs list 3");
        state.listed_since = 2;
        assert!(!state.ask("a"), "list 2 came back without it: no more asks");
    }
}
