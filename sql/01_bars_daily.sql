-- Daily OHLCV resampled from intraday bars: one row per symbol, source timeframe and UTC day.
-- Filter on symbol to prune files; filter on day through ts in your own query for speed.
CREATE VIEW bars_daily AS
SELECT
    symbol,
    timeframe AS source_timeframe,
    date_trunc('day', ts) AS day,
    first_value(open ORDER BY ts) AS open,
    max(high) AS high,
    min(low) AS low,
    last_value(close ORDER BY ts) AS close,
    sum(volume) AS volume,
    sum(coalesce(vwap, (high + low + close) / 3) * volume) / nullif(sum(volume), 0) AS vwap,
    count(*) AS bars
FROM bars
WHERE timeframe IN ('1m', '5m', '15m', '30m', '1h', '4h')
GROUP BY symbol, timeframe, date_trunc('day', ts);
