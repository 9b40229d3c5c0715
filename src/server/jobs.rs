//! The library's scheduler as the server uses it: started once the store is loaded, its job
//! states for the status endpoints and metrics, its errors as HTTP answers.

use std::sync::Arc;

use axum::http::StatusCode;

use super::App;
use super::error::ApiError;
use crate::sync::scheduler::{Job, JobError, JobState, Scheduler};

impl App {
    /// Starts the scheduler over the loaded store and syncer, with the config's settings.
    pub(super) fn start_scheduler(&self, store: Arc<crate::Store>) -> Result<(), ApiError> {
        let syncer = self.syncer()?;
        let scheduler = Scheduler::start(store, Some(syncer), self.config.scheduler_settings());
        let _ = self.scheduler.set(Arc::new(scheduler));
        Ok(())
    }

    /// The scheduler; ready with the store.
    pub fn scheduler(&self) -> Result<Arc<Scheduler>, ApiError> {
        self.scheduler.get().cloned().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "the server is still loading the catalog",
            )
            .with_retry_after(1)
        })
    }

    /// What `job` did last (nothing before the store is loaded).
    pub fn job_state(&self, job: Job) -> JobState {
        self.scheduler
            .get()
            .map(|s| s.state(job))
            .unwrap_or_default()
    }
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::Store(e) => e.into(),
            JobError::Sync(e) => e.into(),
            e @ (JobError::NoSyncer(_) | JobError::Panicked { .. }) => {
                ApiError::internal(e.to_string())
            }
        }
    }
}
