-- Volume-weighted average price per symbol and UTC day from intraday bars. Uses a bar's own vwap
-- when the provider gave one, else its typical price (high + low + close) / 3.
CREATE VIEW daily_vwap AS
SELECT
    symbol,
    date_trunc('day', ts) AS day,
    sum(coalesce(vwap, (high + low + close) / 3) * volume) / nullif(sum(volume), 0) AS vwap,
    sum(volume) AS volume
FROM bars
WHERE timeframe IN ('1m', '5m', '15m', '30m', '1h', '4h')
GROUP BY symbol, date_trunc('day', ts);
