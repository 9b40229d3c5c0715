//! Binance spot klines: `/api/v3/klines?symbol&interval&startTime&endTime&limit`, no key.
//!
//! Rows are arrays `[open ms, "o", "h", "l", "c", "volume", close ms, "quote volume", trades,
//! ...]`. Weekly klines open on Monday 00:00 UTC and daily ones at 00:00 UTC: our grid.

use serde_json::Value;

use super::convert::{floor_ms, join};
use super::{FetchError, FetchRequest, Fetched, Provider, RawBar, Rejected, Upstream};
use crate::model::Interval;

/// Rows per request Binance serves at most.
pub(crate) const PAGE_LIMIT: usize = 1000;
const MAX_PAGES: u32 = 100_000;

#[derive(Debug)]
pub struct Binance {
    base_url: String,
}

impl Binance {
    pub fn new(base_url: Option<String>) -> Self {
        Self {
            base_url: base_url.unwrap_or_else(|| "https://api.binance.com".into()),
        }
    }
}

/// Binance spells pairs without separators: `BTC-USD` and `BTC/USD` are `BTCUSD`.
pub(crate) fn binance_symbol(symbol: &str) -> String {
    symbol
        .chars()
        .filter(|c| !matches!(c, '-' | '/'))
        .collect::<String>()
        .to_ascii_uppercase()
}

#[async_trait::async_trait]
impl Provider for Binance {
    fn kind(&self) -> &'static str {
        "binance"
    }

    fn supports(&self, _interval: Interval) -> bool {
        true
    }

    /// 1,000 bars: one request.
    fn max_range(&self, interval: Interval) -> i64 {
        interval.micros() * PAGE_LIMIT as i64
    }

    async fn fetch(&self, up: &Upstream, req: &FetchRequest) -> Result<Fetched, FetchError> {
        let symbol = binance_symbol(req.symbol.as_str());
        // Both bounds are inclusive ms.
        let end_ms = floor_ms(req.end - 1);
        let mut start_ms = -((-req.start).div_euclid(1000));
        let mut fetched = Fetched::default();
        // Pages move `startTime` an interval past the last open time. A short page does not
        // end the range on its own (a server may serve fewer rows than `limit`): an empty page
        // or reaching `end` does.
        while start_ms <= end_ms {
            let url = join(
                &self.base_url,
                &format!(
                    "/api/v3/klines?symbol={symbol}&interval={}&startTime={start_ms}\
                     &endTime={end_ms}&limit={PAGE_LIMIT}",
                    req.interval.as_str()
                ),
            );
            let page = up.get(&url, &[], |body| parse_klines(body, req)).await?;
            fetched.requests += 1;
            let last = page.bars.iter().map(|b| b.ts).max();
            let rows = page.bars.len() + page.rejected.len();
            fetched.bars.extend(page.bars);
            fetched.rejected.extend(page.rejected);
            let Some(last) = last.filter(|_| rows > 0) else {
                break;
            };
            // The next kline opens an interval after the last one.
            let next = floor_ms(last) + floor_ms(req.interval.micros());
            if next <= start_ms || fetched.requests >= MAX_PAGES {
                return Err(FetchError::Malformed {
                    url,
                    message: format!("klines do not advance past {start_ms}"),
                });
            }
            start_ms = next;
        }
        Ok(fetched)
    }
}

/// Parses a klines body. Prices are decimal strings; `"NaN"` parses as NaN and is left for
/// validation to quarantine.
pub(crate) fn parse_klines(body: &[u8], _req: &FetchRequest) -> Result<Fetched, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not klines JSON: {e}"))?;
    let rows = match v {
        Value::Array(rows) => rows,
        Value::Object(o) => {
            return Err(format!(
                "error {}: {}",
                o.get("code").unwrap_or(&Value::Null),
                o.get("msg").and_then(Value::as_str).unwrap_or("")
            ));
        }
        _ => return Err("klines answer is not an array".into()),
    };
    let mut out = Fetched::default();
    for row in rows {
        let field = |i: usize| row.get(i);
        let price = |i: usize| -> Option<f64> {
            match field(i)? {
                Value::String(s) => s.trim().parse().ok(),
                Value::Number(n) => n.as_f64(),
                _ => None,
            }
        };
        let ts = field(0).and_then(Value::as_i64).map(|ms| ms * 1000);
        let quote_volume = price(7);
        match (ts, price(1), price(2), price(3), price(4), price(5)) {
            (Some(ts), Some(open), Some(high), Some(low), Some(close), Some(volume)) => {
                out.bars.push(RawBar {
                    ts,
                    open,
                    high,
                    low,
                    close,
                    volume,
                    vwap: quote_volume.filter(|_| volume > 0.0).map(|q| q / volume),
                    trades: field(8).and_then(Value::as_i64),
                })
            }
            (ts, ..) => out.rejected.push(Rejected {
                ts,
                raw: row.to_string(),
                reason: "not a kline: needs open time and o, h, l, c, volume".into(),
            }),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Symbol;

    fn req() -> FetchRequest {
        FetchRequest::new(Symbol::new("ADA-BTC").unwrap(), Interval::M1, 0, 0)
    }

    /// The recorded ADABTC klines (CSV, the 12 fields in kline order) as the JSON the API
    /// sends: times and trades as numbers, decimals as strings.
    fn adabtc_json() -> Vec<u8> {
        let csv = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/providers/binance/nautilus_ADABTC-1m-2021-11-27.csv"
        ))
        .unwrap();
        let rows: Vec<Value> = csv
            .lines()
            .map(|line| {
                let f: Vec<&str> = line.split(',').collect();
                let mut row = Vec::new();
                for (i, x) in f.iter().enumerate() {
                    row.push(match i {
                        0 | 6 | 8 => Value::from(x.parse::<i64>().unwrap()),
                        _ => Value::from(*x),
                    });
                }
                Value::Array(row)
            })
            .collect();
        serde_json::to_vec(&rows).unwrap()
    }

    #[test]
    fn adabtc_klines() {
        let f = parse_klines(&adabtc_json(), &req()).unwrap();
        assert_eq!(f.bars.len(), 10);
        let b = &f.bars[0];
        assert_eq!(b.ts, 1_637_971_200_000_000);
        assert_eq!(
            [b.open, b.high, b.low, b.close, b.volume],
            [0.00002853, 0.00002854, 0.00002851, 0.00002854, 36304.2]
        );
        assert_eq!(b.trades, Some(79));
        assert!((b.vwap.unwrap() - 1.03547608 / 36304.2).abs() < 1e-15);
        assert_eq!(f.bars[9].ts - f.bars[0].ts, 9 * 60_000_000);
    }

    #[test]
    fn docs_example_and_errors() {
        let body = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/providers/binance/nautilus_spot_klines_response_docs_example.json"
        ))
        .unwrap();
        let f = parse_klines(&body, &req()).unwrap();
        assert_eq!(f.bars[0].ts, 1_499_040_000_000_000);
        assert_eq!(f.bars[0].high, 0.8);
        assert_eq!(f.bars[0].trades, Some(308));
        let err = parse_klines(br#"{"code":-1121,"msg":"Invalid symbol."}"#, &req()).unwrap_err();
        assert!(err.contains("Invalid symbol"), "{err}");
        let f = parse_klines(br#"[[60000,"1","2","0.5","NaN","3",119999,"3",1]]"#, &req()).unwrap();
        assert!(f.bars[0].close.is_nan());
        assert_eq!(binance_symbol("btc-usdt"), "BTCUSDT");
    }
}
