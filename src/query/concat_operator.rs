//! The string operator `a || b` planned as a function, so its results count against the query
//! memory like every function's (see `function_memory`).
//!
//! As an operator it escaped the count: `WITH b AS (SELECT s || s AS s FROM a), c AS (… b) …`
//! doubles a string per step past any limit. DataFusion itself plans `||` on arrays as
//! functions (`array_concat`); this does the same for strings. The function evaluates
//! DataFusion's own operator on its two operands, so the answer (types, nulls) is the
//! operator's, and it names its column as the operator does (`a || b`).

use std::sync::Arc;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::{DFSchema, Result, plan_err};
use datafusion::logical_expr::ExprSchemable;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::type_coercion::binary::BinaryTypeCoercer;
use datafusion::logical_expr::{
    ColumnarValue, Expr, Operator, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
use datafusion::sql::sqlparser::ast::BinaryOperator;

#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct ConcatOperator {
    signature: Signature,
}

impl ConcatOperator {
    pub(super) fn new() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

fn operands(types: &[DataType]) -> Result<(&DataType, &DataType)> {
    match types {
        [left, right] => Ok((left, right)),
        _ => plan_err!("|| takes two operands, not {}", types.len()),
    }
}

impl ScalarUDFImpl for ConcatOperator {
    fn name(&self) -> &str {
        "||"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let (left, right) = operands(arg_types)?;
        let (left, right) =
            BinaryTypeCoercer::new(left, &Operator::StringConcat, right).get_input_types()?;
        Ok(vec![left, right])
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let (left, right) = operands(arg_types)?;
        BinaryTypeCoercer::new(left, &Operator::StringConcat, right).get_result_type()
    }

    /// The operator's own column name.
    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        match args {
            [left, right] => Ok(format!("{} || {}", left.schema_name(), right.schema_name())),
            _ => plan_err!("|| takes two operands, not {}", args.len()),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        // DataFusion's operator over the operands: scalars as literals, arrays as columns.
        let mut fields = Vec::new();
        let mut columns = Vec::new();
        let mut operand = |value: &ColumnarValue| -> Arc<dyn PhysicalExpr> {
            match value {
                ColumnarValue::Scalar(s) => Arc::new(Literal::new(s.clone())),
                ColumnarValue::Array(a) => {
                    let name = format!("operand{}", columns.len());
                    fields.push(Field::new(&name, a.data_type().clone(), true));
                    columns.push(Arc::clone(a));
                    Arc::new(Column::new(&name, columns.len() - 1))
                }
            }
        };
        let [left, right] = args.args.as_slice() else {
            return plan_err!("|| takes two operands, not {}", args.args.len());
        };
        let expr = BinaryExpr::new(operand(left), Operator::StringConcat, operand(right));
        let batch = RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(args.number_rows)),
        )?;
        expr.evaluate(&batch)
    }
}

/// Plans `a || b` on strings as `function` (the counted [`ConcatOperator`]); lists and
/// everything else stay DataFusion's.
#[derive(Debug)]
pub(super) struct ConcatPlanner {
    pub function: Arc<ScalarUDF>,
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

impl ExprPlanner for ConcatPlanner {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        if expr.op != BinaryOperator::StringConcat {
            return Ok(PlannerResult::Original(expr));
        }
        let (Ok(left), Ok(right)) = (expr.left.get_type(schema), expr.right.get_type(schema))
        else {
            return Ok(PlannerResult::Original(expr));
        };
        let is_list = |t: &DataType| {
            matches!(
                t,
                DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..)
            )
        };
        // Text on at least one side, no list on either: the string operator.
        if is_list(&left) || is_list(&right) || !(is_text(&left) || is_text(&right)) {
            return Ok(PlannerResult::Original(expr));
        }
        Ok(PlannerResult::Planned(Expr::ScalarFunction(
            ScalarFunction::new_udf(Arc::clone(&self.function), vec![expr.left, expr.right]),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::common::ScalarValue;

    #[test]
    fn concatenates_like_the_operator_with_nulls() {
        let udf = ConcatOperator::new();
        let args = |l: Option<&str>, r: Option<&str>| ScalarFunctionArgs {
            args: vec![
                ColumnarValue::Scalar(ScalarValue::Utf8(l.map(Into::into))),
                ColumnarValue::Scalar(ScalarValue::Utf8(r.map(Into::into))),
            ],
            arg_fields: vec![
                Arc::new(Field::new("l", DataType::Utf8, true)),
                Arc::new(Field::new("r", DataType::Utf8, true)),
            ],
            number_rows: 1,
            return_field: Arc::new(Field::new("out", DataType::Utf8, true)),
            config_options: Arc::default(),
        };
        let value = |v: ColumnarValue| match v {
            ColumnarValue::Scalar(s) => s,
            ColumnarValue::Array(a) => ScalarValue::try_from_array(&a, 0).unwrap(),
        };
        assert_eq!(
            value(udf.invoke_with_args(args(Some("ab"), Some("cd"))).unwrap()),
            ScalarValue::Utf8(Some("abcd".into()))
        );
        // Unlike concat(), a null operand makes the result null.
        assert!(value(udf.invoke_with_args(args(Some("ab"), None)).unwrap()).is_null());
    }
}
