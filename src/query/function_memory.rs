//! Scalar function results counted against the query memory pool.
//!
//! DataFusion's memory pool sees what sorts, joins and aggregations hold, not what scalar
//! functions return: `length(repeat('x', 2000000000))` under a 256 MiB limit built a 2 GB
//! string (7.5 GB of RSS with its copies) and, being one call inside planning, could not be
//! cancelled. Every function of the session is therefore wrapped:
//!
//! - before the call, functions whose output size is set by an argument's value rather than by
//!   the size of their inputs (`repeat(s, n)`, `lpad`, `range`, …: [`estimate`]) reserve the
//!   size their arguments ask for, so an oversized call is refused before it allocates;
//! - after the call, every function's result is reserved, so results of any other function
//!   (`concat`, `upper`, …, which can only grow in proportion to their inputs) are refused once
//!   they pass what the pool has left.
//!
//! A refused call fails the query with "Resources exhausted", as a sort over the limit does.
//! The reservation lasts for the call: it checks that the result fits beside everything else
//! running, it does not hold the result's memory for as long as the result lives. Without a
//! limit (the CLI) the pool is unbounded and nothing is refused.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Result, ScalarValue};
use datafusion::config::ConfigOptions;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool};
use datafusion::logical_expr::interval_arithmetic::Interval;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature,
};

/// Functions DataFusion recognises by their type (struct access, `log`/`power` rewrites, async
/// functions): a wrapper would hide them from those rewrites. None of them returns more than
/// its inputs hold.
const RECOGNISED_BY_TYPE: [&str; 5] = ["get_field", "named_struct", "struct", "log", "power"];

/// `udf` with its results counted against `pool`, or `udf` itself if DataFusion needs to see
/// its type.
pub(super) fn wrap(udf: Arc<ScalarUDF>, pool: &Arc<dyn MemoryPool>) -> Option<ScalarUDF> {
    if RECOGNISED_BY_TYPE.contains(&udf.name()) || udf.as_async().is_some() {
        return None;
    }
    Some(ScalarUDF::new_from_impl(CountedOutput {
        inner: udf,
        pool: Arc::clone(pool),
    }))
}

#[derive(Debug)]
struct CountedOutput {
    inner: Arc<ScalarUDF>,
    pool: Arc<dyn MemoryPool>,
}

impl PartialEq for CountedOutput {
    fn eq(&self, other: &Self) -> bool {
        self.inner == other.inner
    }
}

impl Eq for CountedOutput {}

impl Hash for CountedOutput {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.hash(state);
    }
}

/// Bytes a value holds.
fn value_bytes(value: &ColumnarValue) -> usize {
    match value {
        ColumnarValue::Array(a) => a.get_array_memory_size(),
        ColumnarValue::Scalar(s) => s.size(),
    }
}

impl ScalarUDFImpl for CountedOutput {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn display_name(&self, args: &[Expr]) -> Result<String> {
        #[expect(deprecated)]
        self.inner.inner().display_name(args)
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        self.inner.inner().schema_name(args)
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.inner().return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.inner().return_field_from_args(args)
    }

    fn is_nullable(&self, args: &[Expr], schema: &dyn datafusion::common::ExprSchema) -> bool {
        #[expect(deprecated)]
        self.inner.inner().is_nullable(args, schema)
    }

    fn is_strict(&self) -> bool {
        self.inner.inner().is_strict()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let name = self.inner.name();
        let reservation =
            MemoryConsumer::new(format!("scalar function {name}")).register(&self.pool);
        if let Some(bytes) = estimate(name, &args.args, args.number_rows) {
            reservation.try_grow(bytes)?;
        }
        let output = self.inner.invoke_with_args(args)?;
        reservation.try_resize(value_bytes(&output))?;
        Ok(output)
    }

    fn with_updated_config(&self, config: &ConfigOptions) -> Option<ScalarUDF> {
        let updated = self.inner.inner().with_updated_config(config)?;
        wrap(Arc::new(updated), &self.pool)
    }

    /// Simplifying can compute a result too (`concat` joins literal arguments itself), so
    /// the literals it produces are counted like a call's result.
    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        let simplified = self.inner.inner().simplify(args, info)?;
        if let ExprSimplifyResult::Simplified(expr) = &simplified {
            let mut bytes = 0usize;
            expr.apply(|e| {
                if let Expr::Literal(value, _) = e {
                    bytes = bytes.saturating_add(value.size());
                }
                Ok(TreeNodeRecursion::Continue)
            })?;
            MemoryConsumer::new(format!("scalar function {}", self.inner.name()))
                .register(&self.pool)
                .try_grow(bytes)?;
        }
        Ok(simplified)
    }

    fn preimage(
        &self,
        args: &[Expr],
        lit_expr: &Expr,
        info: &SimplifyContext,
    ) -> Result<datafusion::logical_expr::preimage::PreimageResult> {
        self.inner.inner().preimage(args, lit_expr, info)
    }

    fn conditional_arguments<'a>(
        &self,
        args: &'a [Expr],
    ) -> Option<(Vec<&'a Expr>, Vec<&'a Expr>)> {
        self.inner.inner().conditional_arguments(args)
    }

    fn short_circuits(&self) -> bool {
        self.inner.inner().short_circuits()
    }

    fn evaluate_bounds(&self, input: &[&Interval]) -> Result<Interval> {
        self.inner.inner().evaluate_bounds(input)
    }

    fn propagate_constraints(
        &self,
        interval: &Interval,
        inputs: &[&Interval],
    ) -> Result<Option<Vec<Interval>>> {
        self.inner.inner().propagate_constraints(interval, inputs)
    }

    fn output_ordering(&self, inputs: &[ExprProperties]) -> Result<SortProperties> {
        self.inner.inner().output_ordering(inputs)
    }

    fn preserves_lex_ordering(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.inner.inner().preserves_lex_ordering(inputs)
    }

    fn strictly_order_preserving(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.inner.inner().strictly_order_preserving(inputs)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.inner().coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

/// The bytes a call of `name` will produce when an argument's value, not the size of its
/// inputs, sets that size; `None` for every other function. An upper bound where the exact
/// size is not known before the call (4 bytes for every padded character); saturating, so an
/// absurd argument asks for `usize::MAX`.
pub(super) fn estimate(name: &str, args: &[ColumnarValue], rows: usize) -> Option<usize> {
    // An empty batch (a `latest` table with no live rows) produces nothing, and its arrays have
    // no row to read. Calls with only scalar arguments come with one row.
    if rows == 0 {
        return None;
    }
    let total = match name {
        // repeat(s, n): len(s) × n per row.
        "repeat" => per_row(rows, |row| {
            Some(text_len(args.first()?, row)?.saturating_mul(count(args.get(1)?, row)?))
        }),
        // lpad/rpad(s, n [, fill]): n characters per row.
        "lpad" | "rpad" => per_row(rows, |row| {
            Some(count(args.get(1)?, row)?.saturating_mul(4))
        }),
        // replace(s, from, to): every match of `from` becomes `to`; an empty `from` matches
        // between every two characters.
        "replace" => per_row(rows, |row| {
            let s = text_len(args.first()?, row)?;
            let from = text_len(args.get(1)?, row)?;
            let to = text_len(args.get(2)?, row)?;
            Some(s.saturating_add((s / from.max(1) + 1).saturating_mul(to)))
        }),
        // array_repeat(element, n): n copies of the element per row.
        "array_repeat" => per_row(rows, |row| {
            let element = element_bytes(args.first()?, rows);
            Some(element.saturating_mul(count(args.get(1)?, row)?))
        }),
        // array_resize(array, size [, value]): `size` elements per row.
        "array_resize" => per_row(rows, |row| {
            let element = element_bytes(args.get(2).or(args.first())?, rows).max(8);
            Some(element.saturating_mul(count(args.get(1)?, row)?))
        }),
        // range/generate_series(start, stop [, step]) over integers: (stop - start) / step
        // elements of 8 bytes per row. Dates and timestamps step by intervals and are
        // counted once their result exists.
        "range" | "generate_series" => per_row(rows, |row| {
            let (start, stop) = match args {
                [stop] => (0, integer(stop, row)?),
                [start, stop, ..] => (integer(start, row)?, integer(stop, row)?),
                [] => return None,
            };
            let step = args.get(2).map_or(Some(1), |s| integer(s, row))?;
            let span = (i128::from(stop) - i128::from(start)).unsigned_abs();
            let elements = span / i128::from(step).unsigned_abs().max(1) + 1;
            Some(usize::try_from(elements.saturating_mul(8)).unwrap_or(usize::MAX))
        }),
        // array_to_string(array, delimiter [, null]): a delimiter between every two elements.
        "array_to_string" => {
            let elements = match args.first()? {
                ColumnarValue::Array(a) => list_values(a),
                ColumnarValue::Scalar(s) => list_values(&s.to_array().ok()?),
            };
            let delimiter = per_row(rows, |row| text_len(args.get(1)?, row))? / rows;
            Some(elements.saturating_mul(delimiter.saturating_add(24)))
        }
        _ => None,
    }?;
    Some(total)
}

/// The sum over rows of `f`, saturating; `None` if any row gives no answer.
fn per_row(rows: usize, f: impl Fn(usize) -> Option<usize>) -> Option<usize> {
    (0..rows).try_fold(0usize, |sum, row| Some(sum.saturating_add(f(row)?)))
}

/// The value of an argument at `row` (a scalar is the same on every row).
fn scalar_at(value: &ColumnarValue, row: usize) -> Option<ScalarValue> {
    match value {
        ColumnarValue::Scalar(s) => Some(s.clone()),
        ColumnarValue::Array(a) => ScalarValue::try_from_array(a, row).ok(),
    }
}

/// An integer argument at `row`; nulls and non-integers give no answer (the function itself
/// decides what they mean).
fn integer(value: &ColumnarValue, row: usize) -> Option<i64> {
    match scalar_at(value, row)? {
        ScalarValue::Int8(Some(v)) => Some(v.into()),
        ScalarValue::Int16(Some(v)) => Some(v.into()),
        ScalarValue::Int32(Some(v)) => Some(v.into()),
        ScalarValue::Int64(Some(v)) => Some(v),
        ScalarValue::UInt8(Some(v)) => Some(v.into()),
        ScalarValue::UInt16(Some(v)) => Some(v.into()),
        ScalarValue::UInt32(Some(v)) => Some(v.into()),
        ScalarValue::UInt64(Some(v)) => Some(i64::try_from(v).unwrap_or(i64::MAX)),
        _ => None,
    }
}

/// A count argument: negative counts produce nothing; a null produces a null.
fn count(value: &ColumnarValue, row: usize) -> Option<usize> {
    if let Some(v) = integer(value, row) {
        return Some(usize::try_from(v.max(0)).unwrap_or(usize::MAX));
    }
    scalar_at(value, row)?.is_null().then_some(0)
}

/// The byte length of a string argument at `row`; a null is empty.
fn text_len(value: &ColumnarValue, row: usize) -> Option<usize> {
    match value {
        ColumnarValue::Scalar(s) => match s {
            ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) | ScalarValue::Utf8View(v) => {
                Some(v.as_ref().map_or(0, String::len))
            }
            s if s.is_null() => Some(0),
            _ => None,
        },
        ColumnarValue::Array(a) => {
            if a.is_null(row) {
                return Some(0);
            }
            match a.data_type() {
                DataType::Utf8 => Some(a.as_string::<i32>().value(row).len()),
                DataType::LargeUtf8 => Some(a.as_string::<i64>().value(row).len()),
                DataType::Utf8View => Some(a.as_string_view().value(row).len()),
                DataType::Null => Some(0),
                _ => None,
            }
        }
    }
}

/// The average bytes of one value of an argument.
fn element_bytes(value: &ColumnarValue, rows: usize) -> usize {
    match value {
        ColumnarValue::Scalar(s) => s.size(),
        ColumnarValue::Array(a) => a.get_array_memory_size() / rows.max(1),
    }
}

/// The number of elements a list array holds across its rows.
fn list_values(array: &ArrayRef) -> usize {
    match array.data_type() {
        DataType::List(_) => array.as_list::<i32>().values().len(),
        DataType::LargeList(_) => array.as_list::<i64>().values().len(),
        DataType::FixedSizeList(..) => array.as_fixed_size_list().values().len(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(v: i64) -> ColumnarValue {
        ColumnarValue::Scalar(ScalarValue::Int64(Some(v)))
    }

    fn text(s: &str) -> ColumnarValue {
        ColumnarValue::Scalar(ScalarValue::Utf8(Some(s.into())))
    }

    #[test]
    fn amplifying_calls_are_estimated_from_their_arguments() {
        assert_eq!(
            estimate("repeat", &[text("x"), int(2_000_000_000)], 1),
            Some(2_000_000_000)
        );
        assert_eq!(estimate("repeat", &[text("ab"), int(-5)], 1), Some(0));
        assert_eq!(
            estimate("lpad", &[text("x"), int(1_000)], 3),
            Some(3 * 4_000)
        );
        assert_eq!(
            estimate("range", &[int(0), int(1_000_000), int(10)], 1),
            Some((100_000 + 1) * 8)
        );
        assert_eq!(
            estimate("generate_series", &[int(i64::MIN), int(i64::MAX)], 1),
            Some(usize::MAX)
        );
        assert_eq!(estimate("upper", &[text("x")], 1), None);
        // An empty `from` inserts `to` between every two characters.
        assert_eq!(
            estimate("replace", &[text("abcd"), text(""), text("xyz")], 1),
            Some(4 + 5 * 3)
        );
        // Per row, over an array argument.
        let counts: ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![1, 2, 3]));
        assert_eq!(
            estimate("repeat", &[text("ab"), ColumnarValue::Array(counts)], 3),
            Some(2 + 4 + 6)
        );
    }

    /// `SELECT repeat(symbol, 2) FROM latest` with no live rows calls the function on a batch of
    /// none: nothing to estimate, and no row 0 to read.
    #[test]
    fn an_empty_batch_is_estimated_without_reading_a_row() {
        let none: ArrayRef = Arc::new(arrow::array::StringArray::from(Vec::<&str>::new()));
        for name in ["repeat", "replace", "lpad"] {
            let args = [ColumnarValue::Array(Arc::clone(&none)), int(2), text("x")];
            assert_eq!(estimate(name, &args, 0), None, "{name}");
        }
    }
}
