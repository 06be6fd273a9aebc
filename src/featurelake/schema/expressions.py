"""Composite feature expressions: parsed once, compiled to a Spark column and a Python callable.

An expression is Spark SQL over other features (`amount_sum_30d / NULLIF(tenure_days, 0)`,
`CASE WHEN orders_count_7d > 3 THEN 1 ELSE 0 END`, `customer_profile.age * 2`). Only this
small language is accepted, so that the offline (Spark) and online (Python) evaluations agree:

- numbers, `TRUE`/`FALSE`, `NULL`, feature references (`feature` or `group.feature`);
- `+ - * / %`, unary minus, comparisons (`= <> != < <= > >=`), `AND`, `OR`, `NOT`,
  `IS [NOT] NULL`;
- `CASE WHEN ... THEN ... [ELSE ...] END`, `IF(c, a, b)`, `COALESCE`, `NULLIF`;
- the math functions `ABS`, `SQRT`, `LN`/`LOG`, `LOG10`, `EXP`, `POW`/`POWER`, `FLOOR`,
  `CEIL`, `ROUND(x, digits)`, `SIGN`, `GREATEST`, `LEAST`.

Anything else (other functions, strings, subqueries, aggregates, casts) is a
`SchemaValidationError` naming the offending part. Numbers are doubles on both sides. Division
and `%` by zero give null. SQL null logic holds everywhere: arithmetic with a null is null,
`AND`/`OR` are three-valued, a null `CASE` condition is false, `GREATEST`/`LEAST` skip nulls.
The Python side follows Spark where plain Python differs: NaN equals NaN and is greater than
every number, `LN`/`LOG` of a non-positive number is null, `SQRT` of a negative number and
`POW` outside its domain are NaN, overflow is infinity, `ROUND` rounds half up. Arithmetic,
comparisons and the control functions give bit-identical results on both sides; `LN`, `LOG`,
`EXP` and `POW` use each platform's math library and agree to within one unit in the last place.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import TYPE_CHECKING, Any

from featurelake.errors import SchemaValidationError

if TYPE_CHECKING:
    from pyspark.sql import Column

NUMBER = "double"
BOOLEAN = "boolean"
_NULL = "null"

ALLOWED_FUNCTIONS = (
    "ABS",
    "SQRT",
    "LN",
    "LOG",
    "LOG10",
    "EXP",
    "POW",
    "POWER",
    "FLOOR",
    "CEIL",
    "ROUND",
    "SIGN",
    "GREATEST",
    "LEAST",
    "COALESCE",
    "NULLIF",
    "IF",
)

SparkResolver = Callable[[str], "Column"]
"""Maps a reference (`feature` or `group.feature`) to the Spark column holding it."""


@dataclass(frozen=True)
class _Node:
    kind: str  # NUMBER, BOOLEAN or _NULL
    spark: Callable[[SparkResolver], Column]
    python: Callable[[Mapping[str, Any]], Any]


@dataclass(frozen=True)
class CompiledExpression:
    """A checked expression: its references, result type, Spark and Python forms."""

    text: str
    references: tuple[str, ...]
    """Feature references in order of first use: `feature` or `group.feature`."""
    result_type: str
    """`double` or `boolean`."""
    _root: _Node

    def to_spark(self, resolve: SparkResolver) -> Column:
        """The Spark column; `resolve(ref)` gives the column of each reference."""
        from pyspark.sql import functions as F

        column = self._root.spark(resolve)
        if self._root.kind == _NULL:
            return F.lit(None).cast(self.result_type)
        return column

    def evaluate(self, values: Mapping[str, Any]) -> Any:
        """The value for one row; `values[ref]` holds each reference's value (None for null)."""
        return self._root.python(values)


def parse_spark_sql(text: Any, part: str, of: str, *, empty_fix: str, invalid_fix: str) -> Any:
    """The sqlglot tree of one Spark SQL snippet: "The `part` of `of`" (e.g. "The filter of
    the aggregation ...") is empty or not valid SQL is a SchemaValidationError."""
    import sqlglot
    from sqlglot.errors import ParseError

    if not isinstance(text, str) or not text.strip():
        raise SchemaValidationError(f"The {part} of {of} is empty.", fix=empty_fix)
    try:
        return sqlglot.parse_one(text, read="spark")
    except ParseError as error:
        first = str(error).strip().splitlines()[0]
        raise SchemaValidationError(
            f"The {part} '{text}' of {of} is not valid SQL: {first}", fix=invalid_fix
        ) from None


def compile_expression(text: str, *, what: str = "the expression") -> CompiledExpression:
    """Parse and check `text`; `what` names it in errors (e.g. "composite feature 'x'")."""
    from sqlglot import exp

    tree = parse_spark_sql(
        text,
        "expression",
        what,
        empty_fix="write a Spark SQL expression over other features, e.g. 'a / NULLIF(b, 0)'.",
        invalid_fix="write a single Spark SQL expression such as 'a / NULLIF(b, 0)'.",
    )
    if not isinstance(tree, exp.Expression) or isinstance(tree, exp.Query):
        raise _forbidden(text, what, tree)
    references: list[str] = []
    root = _Compiler(text, what, references).node(tree)
    kind = BOOLEAN if root.kind == BOOLEAN else NUMBER
    return CompiledExpression(text, tuple(references), kind, root)


def _forbidden(text: str, what: str, part: Any, why: str = "") -> SchemaValidationError:
    sql = part.sql(dialect="spark") if hasattr(part, "sql") else str(part)
    reason = why or f"{type(part).__name__.upper()} is not allowed"
    return SchemaValidationError(
        f"The expression '{text}' of {what} uses '{sql}': {reason}.",
        fix="use only numbers, feature references, + - * / %, comparisons, AND/OR/NOT, "
        "IS NULL, CASE, IF, COALESCE, NULLIF and " + ", ".join(ALLOWED_FUNCTIONS[:14]) + ".",
    )


class _Compiler:
    def __init__(self, text: str, what: str, references: list[str]) -> None:
        self.text = text
        self.what = what
        self.references = references

    def fail(self, part: Any, why: str = "") -> SchemaValidationError:
        return _forbidden(self.text, self.what, part, why)

    def number(self, part: Any) -> _Node:
        node = self.node(part)
        if node.kind == BOOLEAN:
            raise self.fail(part, "a true/false value is used where a number is needed")
        return node

    def boolean(self, part: Any) -> _Node:
        node = self.node(part)
        if node.kind == NUMBER:
            raise self.fail(part, "a number is used where a condition is needed")
        return node

    def node(self, part: Any) -> _Node:
        from sqlglot import exp

        if isinstance(part, exp.Paren):
            return self.node(part.this)
        if isinstance(part, exp.Column):
            return self.reference(part)
        if isinstance(part, exp.Literal):
            if part.is_string:
                raise self.fail(part, "text literals are not allowed (numbers only)")
            return _constant(NUMBER, float(part.this))
        if isinstance(part, exp.Boolean):
            return _constant(BOOLEAN, bool(part.this))
        if isinstance(part, exp.Null):
            return _Node(_NULL, lambda r: _lit(None), lambda row: None)
        if isinstance(part, exp.Neg):
            inner = self.number(part.this)
            return _Node(
                NUMBER, lambda r: -_typed(inner, NUMBER, r), lambda row: _neg(inner.python(row))
            )
        if isinstance(part, exp.Add | exp.Sub | exp.Mul | exp.Div | exp.Mod):
            return self.arithmetic(part)
        if isinstance(part, exp.EQ | exp.NEQ | exp.GT | exp.GTE | exp.LT | exp.LTE):
            return self.comparison(part)
        if isinstance(part, exp.And | exp.Or):
            return self.logical(part)
        if isinstance(part, exp.Not):
            inner = self.boolean(part.this)
            return _Node(
                BOOLEAN,
                lambda r: ~_typed(inner, BOOLEAN, r),
                lambda row: _not(inner.python(row)),
            )
        if isinstance(part, exp.Is):
            if not isinstance(part.expression, exp.Null):
                raise self.fail(part, "only IS NULL and IS NOT NULL are allowed")
            inner = self.node(part.this)
            return _Node(
                BOOLEAN, lambda r: inner.spark(r).isNull(), lambda row: inner.python(row) is None
            )
        if isinstance(part, exp.Case):
            if part.this is not None:
                raise self.fail(part, "write CASE WHEN condition THEN ... (not CASE x WHEN ...)")
            branches = [(self.boolean(i.this), self.node(i.args["true"])) for i in part.args["ifs"]]
            default = self.node(part.args["default"]) if part.args.get("default") else None
            return self.case(part, branches, default)
        if isinstance(part, exp.If):
            branch = (self.boolean(part.this), self.node(part.args["true"]))
            default = self.node(part.args["false"]) if part.args.get("false") else None
            return self.case(part, [branch], default)
        if isinstance(part, exp.Coalesce):
            return self.coalesce(part, [part.this, *part.expressions])
        if isinstance(part, exp.Nullif):
            return self.nullif(part)
        if isinstance(part, exp.Greatest | exp.Least):
            return self.extreme(part)
        if isinstance(part, exp.Func):
            return self.function(part)
        raise self.fail(part)

    def reference(self, part: Any) -> _Node:
        if part.args.get("db") is not None or part.args.get("catalog") is not None:
            raise self.fail(part, "write a feature as 'feature' or 'group.feature'")
        name = part.name
        if not name or name == "*":
            raise self.fail(part, "name one feature")
        ref = f"{part.table}.{name}" if part.table else name
        if ref not in self.references:
            self.references.append(ref)
        return _reference(ref)

    def arithmetic(self, part: Any) -> _Node:
        from sqlglot import exp

        left, right = self.number(part.this), self.number(part.expression)
        if isinstance(part, exp.Add):
            return _binary(left, right, lambda a, b: a + b, lambda a, b: a + b)
        if isinstance(part, exp.Sub):
            return _binary(left, right, lambda a, b: a - b, lambda a, b: a - b)
        if isinstance(part, exp.Mul):
            return _binary(left, right, lambda a, b: a * b, lambda a, b: a * b)
        if isinstance(part, exp.Div):
            return _binary(left, right, _spark_divide, _divide)
        return _binary(left, right, _spark_modulo, _modulo)

    def comparison(self, part: Any) -> _Node:
        from sqlglot import exp

        left, right = self.number(part.this), self.number(part.expression)
        test: Callable[[int], bool]
        if isinstance(part, exp.EQ):
            operator, test = "==", lambda c: c == 0
        elif isinstance(part, exp.NEQ):
            operator, test = "!=", lambda c: c != 0
        elif isinstance(part, exp.GT):
            operator, test = ">", lambda c: c > 0
        elif isinstance(part, exp.GTE):
            operator, test = ">=", lambda c: c >= 0
        elif isinstance(part, exp.LT):
            operator, test = "<", lambda c: c < 0
        else:
            operator, test = "<=", lambda c: c <= 0

        def spark(r: SparkResolver) -> Column:
            a, b = _typed(left, NUMBER, r), _typed(right, NUMBER, r)
            return {
                "==": a == b,
                "!=": a != b,
                ">": a > b,
                ">=": a >= b,
                "<": a < b,
                "<=": a <= b,
            }[operator]

        def python(row: Mapping[str, Any]) -> bool | None:
            a, b = left.python(row), right.python(row)
            if a is None or b is None:
                return None
            return test(_compare(a, b))

        return _Node(BOOLEAN, spark, python)

    def logical(self, part: Any) -> _Node:
        from sqlglot import exp

        left, right = self.boolean(part.this), self.boolean(part.expression)
        is_or = not isinstance(part, exp.And)
        combine = operator.or_ if is_or else operator.and_
        return _Node(
            BOOLEAN,
            lambda r: combine(_typed(left, BOOLEAN, r), _typed(right, BOOLEAN, r)),
            lambda row: _logical(left.python(row), right.python(row), is_or),
        )

    def case(self, part: Any, branches: list[tuple[_Node, _Node]], default: _Node | None) -> _Node:
        kind = self.common_kind(part, [v for _, v in branches] + ([default] if default else []))

        def spark(r: SparkResolver) -> Column:
            from pyspark.sql import functions as F

            column = None
            for condition, value in branches:
                v = _typed(value, kind, r)
                column = (
                    F.when(_typed(condition, BOOLEAN, r), v)
                    if column is None
                    else column.when(_typed(condition, BOOLEAN, r), v)
                )
            assert column is not None
            return column.otherwise(_typed(default, kind, r)) if default else column

        def python(row: Mapping[str, Any]) -> Any:
            for condition, value in branches:
                if condition.python(row) is True:
                    return value.python(row)
            return default.python(row) if default else None

        return _Node(kind, spark, python)

    def coalesce(self, part: Any, items: list[Any]) -> _Node:
        nodes = [self.node(i) for i in items]
        kind = self.common_kind(part, nodes)

        def spark(r: SparkResolver) -> Column:
            from pyspark.sql import functions as F

            return F.coalesce(*[_typed(n, kind, r) for n in nodes])

        def python(row: Mapping[str, Any]) -> Any:
            for n in nodes:
                value = n.python(row)
                if value is not None:
                    return value
            return None

        return _Node(kind, spark, python)

    def nullif(self, part: Any) -> _Node:
        left, right = self.number(part.this), self.number(part.expression)

        def spark(r: SparkResolver) -> Column:
            from pyspark.sql import functions as F

            return F.nullif(_typed(left, NUMBER, r), _typed(right, NUMBER, r))

        def python(row: Mapping[str, Any]) -> Any:
            a, b = left.python(row), right.python(row)
            if a is not None and b is not None and _compare(a, b) == 0:
                return None
            return a

        return _Node(NUMBER, spark, python)

    def extreme(self, part: Any) -> _Node:
        from sqlglot import exp

        nodes = [self.number(i) for i in [part.this, *part.expressions]]
        greatest = isinstance(part, exp.Greatest)

        def spark(r: SparkResolver) -> Column:
            from pyspark.sql import functions as F

            columns = [_typed(n, NUMBER, r) for n in nodes]
            if len(columns) == 1:
                return columns[0]
            return F.greatest(*columns) if greatest else F.least(*columns)

        def python(row: Mapping[str, Any]) -> Any:
            best = None
            for n in nodes:
                value = n.python(row)
                if value is None:
                    continue
                if best is None or _compare(value, best) == (1 if greatest else -1):
                    best = value
            return best

        return _Node(NUMBER, spark, python)

    def function(self, part: Any) -> _Node:
        from sqlglot import exp

        if isinstance(part, exp.Round):
            digits = part.args.get("decimals")
            places = 0
            if digits is not None:
                if not (isinstance(digits, exp.Literal) and not digits.is_string):
                    raise self.fail(part, "ROUND takes a whole number of digits as a literal")
                places = int(float(digits.this))
            inner = self.number(part.this)
            return _Node(
                NUMBER,
                lambda r: _spark_round(inner.spark(r), places),
                lambda row: _round(inner.python(row), places),
            )
        if isinstance(part, exp.Log):
            if part.expression is None:
                return self.unary(part.this, _spark_ln, _ln)
            base, value = self.number(part.this), self.number(part.expression)
            return _binary(base, value, _spark_log, _log)
        if isinstance(part, exp.Pow):
            return _binary(self.number(part.this), self.number(part.expression), _spark_pow, _pow)
        table: dict[type, tuple[Callable[[Column], Column], Callable[[float], Any]]] = {
            exp.Abs: (lambda c: _f().abs(c), abs),
            exp.Sqrt: (lambda c: _f().sqrt(c), _sqrt),
            exp.Ln: (_spark_ln, _ln),
            exp.Exp: (lambda c: _f().exp(c), _exp),
            exp.Floor: (lambda c: _spark_integral(c, "floor"), _floor),
            exp.Ceil: (lambda c: _spark_integral(c, "ceil"), _ceil),
            exp.Sign: (lambda c: _f().signum(c), _sign),
        }
        entry = next((v for k, v in table.items() if isinstance(part, k)), None)
        if entry is None:
            raise self.fail(part)
        extra = [a for k, a in part.args.items() if k != "this" and a is not None]
        if extra:
            raise self.fail(part, f"{type(part).__name__.upper()} takes one argument")
        return self.unary(part.this, *entry)

    def unary(
        self,
        argument: Any,
        spark: Callable[[Column], Column],
        python: Callable[[float], Any],
    ) -> _Node:
        inner = self.number(argument)

        def evaluate(row: Mapping[str, Any]) -> Any:
            value = inner.python(row)
            return None if value is None else python(value)

        return _Node(NUMBER, lambda r: spark(inner.spark(r)), evaluate)

    def common_kind(self, part: Any, nodes: list[_Node]) -> str:
        kinds = {n.kind for n in nodes} - {_NULL}
        if len(kinds) > 1:
            raise self.fail(part, "its branches mix numbers and true/false values")
        return kinds.pop() if kinds else _NULL


# -- the shared semantics, once per side --------------------------------------------------------


def _f() -> Any:
    from pyspark.sql import functions as F

    return F


def _constant(kind: str, value: Any) -> _Node:
    return _Node(kind, lambda r: _lit(value), lambda row: value)


def _reference(ref: str) -> _Node:
    return _Node(NUMBER, lambda r: r(ref).cast("double"), lambda row: _as_float(row.get(ref)))


def _lit(value: Any) -> Column:
    from pyspark.sql import functions as F

    if isinstance(value, float):
        return F.lit(value).cast("double")
    return F.lit(value)


def _typed(node: _Node | None, kind: str, resolve: SparkResolver) -> Column:
    """A branch as a column of the common type (a bare NULL gets that type)."""
    from pyspark.sql import functions as F

    if node is None:
        return F.lit(None).cast(NUMBER if kind == _NULL else kind)
    column = node.spark(resolve)
    if node.kind == _NULL:
        return column.cast(NUMBER if kind == _NULL else kind)
    return column


def _binary(
    left: _Node,
    right: _Node,
    spark: Callable[[Column, Column], Column],
    python: Callable[[float, float], Any],
) -> _Node:
    def evaluate(row: Mapping[str, Any]) -> Any:
        a, b = left.python(row), right.python(row)
        if a is None or b is None:
            return None
        return python(a, b)

    return _Node(
        NUMBER, lambda r: spark(_typed(left, NUMBER, r), _typed(right, NUMBER, r)), evaluate
    )


def _as_float(value: Any) -> float | None:
    if value is None or type(value).__name__ in ("NAType", "NaTType"):
        return None
    return float(value)


def _neg(value: float | None) -> float | None:
    return None if value is None else -value


def _not(value: bool | None) -> bool | None:
    return None if value is None else not value


def _logical(a: bool | None, b: bool | None, is_or: bool) -> bool | None:
    """SQL's OR (`is_or`) or AND over true, false and null: true (OR) or false (AND) on
    either side decides; otherwise null when either side is null."""
    if a is is_or or b is is_or:
        return is_or
    if a is None or b is None:
        return None
    return not is_or


def _compare(a: float, b: float) -> int:
    """Spark's double ordering: NaN equals NaN and is greater than every other value."""
    a_nan, b_nan = a != a, b != b
    if a_nan or b_nan:
        return int(a_nan) - int(b_nan)
    return (a > b) - (a < b)


def _spark_divide(a: Column, b: Column) -> Column:
    from pyspark.sql import functions as F

    return F.when(b != F.lit(0.0), a / b)


def _divide(a: float, b: float) -> float | None:
    if b == 0:
        return None
    try:
        return a / b
    except OverflowError:
        return math.copysign(math.inf, a) * math.copysign(1.0, b)


def _spark_modulo(a: Column, b: Column) -> Column:
    from pyspark.sql import functions as F

    return F.when(b != F.lit(0.0), a % b)


def _modulo(a: float, b: float) -> float | None:
    if b == 0:
        return None
    if math.isinf(a) or a != a or b != b:
        return math.nan
    return math.fmod(a, b)


def _spark_ln(c: Column) -> Column:
    from pyspark.sql import functions as F

    return F.log(c)  # null for x <= 0


def _ln(value: float) -> float | None:
    if value != value:
        return math.nan
    if value <= 0:
        return None
    return math.log(value)


def _spark_log(base: Column, value: Column) -> Column:
    from pyspark.sql import functions as F

    return F.call_function("log", base, value)  # null when either is <= 0, like LN


def _log(base: float, value: float) -> float | None:
    if base != base or value != value:
        return math.nan
    if base <= 0 or value <= 0:
        return None
    denominator = math.log(base)
    if denominator == 0:
        numerator = math.log(value)
        return math.nan if numerator == 0 else math.copysign(math.inf, numerator)
    return math.log(value) / denominator


def _sqrt(value: float) -> float:
    return math.sqrt(value) if value >= 0 else math.nan


def _exp(value: float) -> float:
    try:
        return math.exp(value)
    except OverflowError:
        return math.inf


def _spark_pow(a: Column, b: Column) -> Column:
    from pyspark.sql import functions as F

    return F.pow(a, b)


def _pow(base: float, exponent: float) -> float:
    """Java's Math.pow, where C's differs (NaN exponents, |base| = 1 with infinite exponents)."""
    if exponent != exponent:
        return math.nan
    if abs(base) == 1 and math.isinf(exponent):
        return math.nan
    try:
        return math.pow(base, exponent)
    except OverflowError:
        odd = exponent == int(exponent) and int(exponent) % 2 == 1
        return -math.inf if base < 0 and odd else math.inf
    except ValueError:
        if base == 0:
            odd = exponent == int(exponent) and int(exponent) % 2 == 1
            return math.copysign(math.inf, base) if odd else math.inf
        return math.nan


_EXACT_ABOVE = 2.0**52  # doubles this large are whole numbers already


def _spark_integral(c: Column, how: str) -> Column:
    from pyspark.sql import functions as F

    rounded = (F.floor(c) if how == "floor" else F.ceil(c)).cast("double")
    return F.when(F.isnan(c) | (F.abs(c) >= F.lit(_EXACT_ABOVE)), c).otherwise(rounded)


def _floor(value: float) -> float:
    if value != value or abs(value) >= _EXACT_ABOVE:
        return value
    return float(math.floor(value))


def _ceil(value: float) -> float:
    if value != value or abs(value) >= _EXACT_ABOVE:
        return value
    return float(math.ceil(value))


def _sign(value: float) -> float:
    if value == 0 or value != value:
        return value
    return 1.0 if value > 0 else -1.0


def _spark_round(c: Column, places: int) -> Column:
    from pyspark.sql import functions as F

    return F.round(c, places)


def _round(value: float | None, places: int) -> float | None:
    """Half up on the shortest decimal form of the double, as Spark's ROUND on doubles."""
    if value is None:
        return None
    if value != value or math.isinf(value):
        return value
    exponent = Decimal(1).scaleb(-places)
    exact = Context(prec=800)  # every double's digits fit: no rounding but the one asked for
    return float(Decimal(repr(value)).quantize(exponent, rounding=ROUND_HALF_UP, context=exact))
