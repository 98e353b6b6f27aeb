//! Background sweeps: requeue tasks whose lease lapsed (their worker died),
//! and purge images and results past the retention period.

use std::sync::Arc;
use std::time::Duration;

use imagegate_store::StoreError;
use tokio::task::JoinHandle;

use crate::worker::Queue;

impl Queue {
    /// One pass of the lease sweeper; returns (requeued, failed) counts.
    pub async fn sweep_leases(&self) -> Result<(usize, usize), StoreError> {
        let (requeued, failed) = self.db.requeue_expired().await?;
        if !requeued.is_empty() {
            tracing::warn!(count = requeued.len(), "requeued tasks whose worker stopped heartbeating");
            for _ in &requeued {
                self.wake();
            }
        }
        for id in &failed {
            tracing::warn!(task_id = %id, "task failed: out of attempts after lapsed leases");
            self.hub.notify(id);
        }
        Ok((requeued.len(), failed.len()))
    }

    /// One pass of the retention sweeper (which also writes off expired
    /// credit grants); returns how many tasks were purged.
    pub async fn sweep_retention(&self) -> Result<usize, StoreError> {
        let now = imagegate_store::now_ms();
        let expired = self.db.expire_grants(now).await?;
        if expired > 0 {
            tracing::info!(millicredits = expired, "wrote off expired credits");
        }
        let before = now - self.config.retention_ms();
        let mut purged = 0;
        loop {
            let tasks = self.db.purgeable_tasks(before, 100).await?;
            if tasks.is_empty() {
                return Ok(purged);
            }
            for t in tasks {
                for img in t.result.iter().flat_map(|r| &r.images) {
                    self.objects.delete(&img.key).await?;
                }
                self.db.mark_purged(&t.id).await?;
                purged += 1;
            }
        }
    }

    /// Runs both sweepers forever at their configured periods.
    pub fn spawn_sweepers(self: &Arc<Self>) -> Vec<JoinHandle<()>> {
        let leases = {
            let q = self.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs_f64(q.config.sweep_secs.max(0.05)));
                loop {
                    tick.tick().await;
                    if let Err(e) = q.sweep_leases().await {
                        tracing::error!(error = %e, "lease sweep failed");
                    }
                }
            })
        };
        let retention = {
            let q = self.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs_f64(q.config.retention_sweep_secs.max(1.0)));
                loop {
                    tick.tick().await;
                    match q.sweep_retention().await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(count = n, "purged tasks past retention"),
                        Err(e) => tracing::error!(error = %e, "retention sweep failed"),
                    }
                }
            })
        };
        vec![leases, retention]
    }
}
