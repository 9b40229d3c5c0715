//! The `timeframe` query parameter, which requests may still name `interval` (the column's name
//! before it was renamed).

use super::error::ApiError;
use crate::model::{Interval, either_timeframe};

/// The timeframe of `?timeframe=` or `?interval=`, parsed; both given and different is refused
/// (400), as is an unknown value. Errors name the parameter the client used.
pub(super) fn timeframe_param(
    timeframe: Option<&str>,
    interval: Option<&str>,
) -> Result<Option<Interval>, ApiError> {
    let name = if timeframe.is_none() && interval.is_some() {
        "interval"
    } else {
        "timeframe"
    };
    either_timeframe(timeframe, interval)
        .map_err(|e| ApiError::bad_param("timeframe", e))?
        .map(|v| v.parse().map_err(|e| ApiError::bad_param(name, e)))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn either_name_is_read_and_a_disagreement_refused() {
        assert_eq!(
            timeframe_param(Some("1m"), None).unwrap(),
            Some(Interval::M1)
        );
        assert_eq!(
            timeframe_param(None, Some("1d")).unwrap(),
            Some(Interval::D1)
        );
        assert_eq!(timeframe_param(None, None).unwrap(), None);
        let e = timeframe_param(Some("1m"), Some("1d")).unwrap_err();
        assert!(
            e.message
                .starts_with("timeframe: timeframe \"1m\" and interval \"1d\" disagree"),
            "{}",
            e.message
        );
        let e = timeframe_param(None, Some("2d")).unwrap_err();
        assert!(
            e.message.starts_with("interval: unknown timeframe \"2d\""),
            "{}",
            e.message
        );
        let e = timeframe_param(Some("2d"), None).unwrap_err();
        assert!(
            e.message.starts_with("timeframe: unknown timeframe \"2d\""),
            "{}",
            e.message
        );
    }
}
