//! `GET /v1/corporate-actions`: the splits and dividends the store holds.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use serde::Deserialize;

use super::App;
use super::error::ApiError;
use super::extract::Query;
use super::output::{QuerySlot, parse_format, stream_response};
use crate::actions::sql;
use crate::model::Symbol;

#[derive(Debug, Deserialize)]
pub(super) struct ActionsParams {
    symbols: Option<String>,
    format: Option<String>,
}

/// `GET /v1/corporate-actions?symbols=AAPL,MSFT&format=`: the events of these symbols (of every
/// symbol without `symbols`), by symbol, ex-date and kind, in the columns of the SQL table.
pub(super) async fn list(
    State(app): State<App>,
    Query(params): Query<ActionsParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let format = parse_format(params.format.as_deref(), &headers)?;
    let symbols = params
        .symbols
        .as_deref()
        .map(|list| {
            let mut symbols = list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    Symbol::new(s)
                        .map_err(|e| ApiError::bad_param("symbols", format!("{s:?}: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if symbols.is_empty() {
                return Err(ApiError::bad_param(
                    "symbols",
                    "empty: give one or more symbols (symbols=AAPL,MSFT), or leave it out for all",
                ));
            }
            symbols.sort();
            symbols.dedup();
            Ok(symbols)
        })
        .transpose()?;
    let store = app.store()?;
    // Commits of other processes (a CLI import beside this server) show at once.
    let set = store
        .actions()
        .refresh()
        .await
        .map_err(|e| ApiError::from(crate::Error::from(e)))?;
    let batch = match &symbols {
        Some(symbols) => sql::batch(symbols.iter().flat_map(|s| set.for_symbol(s))),
        None => sql::batch(set.iter()),
    };
    let slot = QuerySlot::acquire(&app)?;
    stream_response(slot, format, async move {
        let stream =
            RecordBatchStreamAdapter::new(sql::schema(), futures::stream::iter([Ok(batch)]));
        Ok((Box::pin(stream) as _, None))
    })
    .await
}
