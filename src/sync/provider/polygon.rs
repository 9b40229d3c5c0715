//! Polygon chart v8: `/v8/finance/chart/{symbol}?period1&period2&interval`, no key.

use super::{FetchError, FetchRequest, Fetched, Provider, Upstream};
use crate::model::Interval;

#[derive(Debug)]
pub struct Polygon {
    base_url: String,
}

impl Polygon {
    pub fn new(base_url: Option<String>, _api_key: Option<String>) -> Self {
        Self {
            base_url: base_url.unwrap_or_else(|| "https://query1.finance.yahoo.com".into()),
        }
    }
}

#[async_trait::async_trait]
impl Provider for Polygon {
    fn kind(&self) -> &'static str {
        "polygon"
    }

    fn supports(&self, _interval: Interval) -> bool {
        true
    }

    fn max_range(&self, _interval: Interval) -> i64 {
        i64::MAX
    }

    async fn fetch(&self, _up: &Upstream, _req: &FetchRequest) -> Result<Fetched, FetchError> {
        Err(FetchError::Invalid(format!(
            "{} adapter: TODO",
            self.base_url
        )))
    }
}
