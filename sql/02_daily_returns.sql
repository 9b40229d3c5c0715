-- Close-to-close daily returns of daily (1d) bars: simple and log return per symbol and day.
CREATE VIEW daily_returns AS
SELECT
    symbol,
    ts AS day,
    close,
    close / lag(close) OVER (PARTITION BY symbol ORDER BY ts) - 1 AS simple_return,
    ln(close / lag(close) OVER (PARTITION BY symbol ORDER BY ts)) AS log_return
FROM bars
WHERE timeframe = '1d';
