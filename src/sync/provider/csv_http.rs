//! Daily CSV over HTTP from a URL template (Stooq style):
//! `Date,Open,High,Low,Close,Volume`, one row per trading date.
//!
//! The template's `{symbol}`, `{start}`, `{end}` (YYYYMMDD, `end` inclusive) and `{interval}`
//! (`d` or `w`) are filled in; a relative template is joined to `base_url`.

use chrono::NaiveDate;

use super::convert::{UNLIMITED_RANGE, dated_bar_us, encode, yyyymmdd};
use super::{FetchError, FetchRequest, Fetched, Provider, RawBar, Rejected, Upstream};
use crate::model::Interval;

#[derive(Debug)]
pub struct CsvHttp {
    /// The absolute URL template.
    template: String,
}

impl CsvHttp {
    pub fn new(base_url: Option<String>, template: String) -> Result<Self, String> {
        if !template.contains("{symbol}") {
            return Err(format!("url_template {template:?} has no {{symbol}}"));
        }
        let absolute = template.starts_with("http://") || template.starts_with("https://");
        let template = match (absolute, base_url) {
            (true, _) => template,
            (false, Some(base)) => format!(
                "{}/{}",
                base.trim_end_matches('/'),
                template.trim_start_matches('/')
            ),
            (false, None) => {
                return Err(format!(
                    "url_template {template:?} is relative and there is no base_url"
                ));
            }
        };
        Ok(Self { template })
    }

    fn url(&self, req: &FetchRequest) -> String {
        self.template
            .replace("{symbol}", &encode(req.symbol.as_str()))
            .replace("{start}", &yyyymmdd(req.start))
            .replace("{end}", &yyyymmdd(req.end - 1))
            .replace(
                "{interval}",
                if req.interval == Interval::W1 {
                    "w"
                } else {
                    "d"
                },
            )
    }
}

#[async_trait::async_trait]
impl Provider for CsvHttp {
    fn kind(&self) -> &'static str {
        "csv"
    }

    fn supports(&self, interval: Interval) -> bool {
        matches!(interval, Interval::D1 | Interval::W1)
    }

    fn max_range(&self, _interval: Interval) -> i64 {
        UNLIMITED_RANGE
    }

    async fn fetch(&self, up: &Upstream, req: &FetchRequest) -> Result<Fetched, FetchError> {
        if !self.supports(req.interval) {
            return Err(FetchError::Invalid(format!(
                "csv provider serves daily and weekly bars, not {}",
                req.interval
            )));
        }
        let mut fetched = up
            .get(&self.url(req), &[], |body| parse_csv(body, req))
            .await?;
        fetched.requests = 1;
        Ok(fetched)
    }
}

/// A date as `YYYY-MM-DD`, `YYYYMMDD` or the date part of an RFC 3339 time.
fn parse_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .or_else(|_| NaiveDate::parse_from_str(s, "%Y%m%d"))
        .ok()
        .or_else(|| {
            chrono::DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.date_naive())
        })
        .or_else(|| {
            s.get(..10)
                .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        })
}

pub(crate) fn parse_csv(body: &[u8], req: &FetchRequest) -> Result<Fetched, String> {
    let text = std::str::from_utf8(body).map_err(|_| "body is not UTF-8 text".to_string())?;
    let text = text.trim_start_matches('\u{feff}').trim();
    let mut out = Fetched::default();
    if text.is_empty() || text.to_ascii_lowercase().starts_with("no data") {
        return Ok(out);
    }
    if text.starts_with('<') || text.starts_with('{') || text.starts_with('[') {
        let mut head: String = text.chars().take(80).collect();
        head = head.replace('\n', " ");
        return Err(format!("not CSV: {head}"));
    }
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| format!("CSV header: {e}"))?
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let col = |names: &[&str]| headers.iter().position(|h| names.contains(&h.as_str()));
    let (Some(date), Some(open), Some(high), Some(low), Some(close)) = (
        col(&["date", "timestamp", "time"]),
        col(&["open"]),
        col(&["high"]),
        col(&["low"]),
        col(&["close"]),
    ) else {
        return Err(format!(
            "CSV header {headers:?} lacks date, open, high, low or close"
        ));
    };
    let volume = col(&["volume", "vol"]);
    if let Some(symbol) = col(&["symbol", "ticker"]) {
        if let Some(row) = reader.records().next() {
            let row = row.map_err(|e| format!("CSV: {e}"))?;
            let answered = row.get(symbol).unwrap_or("").trim();
            if !answered.eq_ignore_ascii_case(req.symbol.as_str()) {
                return Err(format!(
                    "answer is for {answered}, asked for {}",
                    req.symbol
                ));
            }
        }
        reader = csv::ReaderBuilder::new()
            .flexible(true)
            .from_reader(text.as_bytes());
    }
    for (line, row) in reader.records().enumerate() {
        let row = row.map_err(|e| format!("CSV line {}: {e}", line + 2))?;
        let raw = || row.iter().collect::<Vec<_>>().join(",");
        let f = |i: usize| row.get(i).and_then(|x| x.trim().parse::<f64>().ok());
        let ts = row
            .get(date)
            .and_then(parse_date)
            .map(|d| dated_bar_us(req.interval, d));
        // A missing volume column is an index: no volume.
        let vol = match volume {
            Some(i) => f(i),
            None => Some(0.0),
        };
        match (ts, f(open), f(high), f(low), f(close), vol) {
            (Some(ts), Some(open), Some(high), Some(low), Some(close), Some(volume)) => {
                out.bars.push(RawBar {
                    ts,
                    open,
                    high,
                    low,
                    close,
                    volume,
                    vwap: None,
                    trades: None,
                })
            }
            (ts, ..) => out.rejected.push(Rejected {
                ts,
                raw: raw(),
                reason: format!(
                    "line {}: {}",
                    line + 2,
                    if ts.is_none() {
                        "no valid date"
                    } else {
                        "a price or the volume is not a number"
                    }
                ),
            }),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Symbol;

    fn req(interval: Interval) -> FetchRequest {
        FetchRequest::new(
            Symbol::new("^SPX").unwrap(),
            interval,
            1_612_137_600_000_000,
            1_612_137_600_000_000 + 3 * crate::model::MICROS_PER_DAY,
        )
    }

    #[test]
    fn template_is_filled_in() {
        let p = CsvHttp::new(
            Some("http://x/".into()),
            "/q/d/l/?s={symbol}&d1={start}&d2={end}&i={interval}".into(),
        )
        .unwrap();
        assert_eq!(
            p.url(&req(Interval::D1)),
            "http://x/q/d/l/?s=%5ESPX&d1=20210201&d2=20210203&i=d"
        );
        assert!(CsvHttp::new(None, "/q?s={symbol}".into()).is_err());
    }

    #[test]
    fn stooq_rows_no_data_and_html() {
        let body = b"Date,Open,High,Low,Close,Volume\n\
            2021-02-01,3731.17,3784.32,3725.62,3773.86,2473640000\n\
            2021-02-02,3791.84,3843.09,3791.84,3826.31,\n";
        let f = parse_csv(body, &req(Interval::D1)).unwrap();
        assert_eq!(f.bars.len(), 1);
        assert_eq!(f.bars[0].ts, 1_612_137_600_000_000);
        assert_eq!(f.bars[0].close, 3773.86);
        assert_eq!(f.rejected.len(), 1);
        let f = parse_csv(
            b"timestamp,open,high,low,close\n20210203,1,2,0.5,1.5\n",
            &req(Interval::W1),
        )
        .unwrap();
        // Wednesday → its Monday.
        assert_eq!(f.bars[0].ts, 1_612_137_600_000_000);
        assert!(
            parse_csv(b"No data", &req(Interval::D1))
                .unwrap()
                .bars
                .is_empty()
        );
        assert!(parse_csv(b"<html><body>busy</body></html>", &req(Interval::D1)).is_err());
        // Alpha Vantage's real error body (Pooksoft data set) is not CSV.
        assert!(parse_csv(b"{\nError Message\n}\n", &req(Interval::D1)).is_err());
        let err = parse_csv(
            b"Symbol,Date,Open,High,Low,Close\nOTHER,2021-02-01,1,2,0.5,1\n",
            &req(Interval::D1),
        )
        .unwrap_err();
        assert_eq!(err, "answer is for OTHER, asked for ^SPX");
    }
}
