-- Daily OHLCV resampled from intraday bars: one row per symbol, source interval and UTC day.
-- Filter on symbol to prune files; filter on day through ts in your own query for speed.
CREATE VIEW bars_daily AS
SELECT
    symbol,
    "interval" AS source_interval,
    date_trunc('day', ts) AS day,
    first_value(open ORDER BY ts) AS open,
    max(high) AS high,
    min(low) AS low,
    last_value(close ORDER BY ts) AS close,
    sum(volume) AS volume,
    sum(coalesce(vwap, (high + low + close) / 3) * volume) / nullif(sum(volume), 0) AS vwap,
    count(*) AS bars
FROM bars
WHERE "interval" IN ('1m', '5m', '15m', '30m', '1h', '4h')
GROUP BY symbol, "interval", date_trunc('day', ts);
