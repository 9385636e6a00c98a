"""Arithmetic in block params, `"${width * 4}"`: a tiny recursive-descent parser over numbers and names, never eval.

    expression := term (("+" | "-") term)*
    term       := unary (("*" | "/" | "//") unary)*
    unary      := ("-" | "+") unary | atom
    atom       := NUMBER | NAME | "(" expression ")"

`/` divides exactly and gives an integer where the division comes out even (`${filters / 2}` stays a filter
count), a float otherwise; `//` rounds down, as in Python. Names are the block's params; a param used in arithmetic
must hold a number.
"""

from __future__ import annotations

import math
import re

MAX_LENGTH = 500   # an expression is a few characters; a longer one is a mistake
MAX_NESTING = 32   # parentheses: the parser recurses once per level

_TOKEN = re.compile(r"\s*(?:(?P<number>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)|(?P<name>[A-Za-z_]\w*)|"
                    r"(?P<op>//|[-+*/()])|(?P<bad>\S))")
_NAME = re.compile(r"\s*([A-Za-z_]\w*)\s*")


class ExpressionError(Exception):
    """What is wrong with an expression, with a hint; `name` is the param whose value is at fault, if one is."""

    def __init__(self, message: str, hint: str, name: str | None = None):
        super().__init__(message)
        self.message, self.hint, self.name = message, hint, name


def bare_name(text: str) -> str | None:
    """The param named by an expression that is just a name (`${filters}`): its value is used as it is, any type."""
    found = _NAME.fullmatch(text)
    return found.group(1) if found else None


def names_in(text: str) -> list[str]:
    """The names an expression uses, in order of first use."""
    found = [m.group("name") for m in _TOKEN.finditer(text) if m.group("name")]
    return list(dict.fromkeys(found))


def evaluate(text: str, values: dict):
    """The value of the expression `text` with names from `values` (all of them known: see `names_in`)."""
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"the expression is {len(text)} characters long", f"keep it under {MAX_LENGTH}")
    try:
        result = _Parser(text, values).parse()
    except OverflowError:
        raise ExpressionError(f"'{text.strip()}' is too large a number", "keep the numbers in range") from None
    if isinstance(result, float) and not math.isfinite(result):
        raise ExpressionError(f"'{text.strip()}' is {result}", "keep the numbers in range")
    return result


class _Parser:
    def __init__(self, text: str, values: dict):
        self.text = text
        self.values = values
        self.tokens = [(kind, m.group(kind)) for m in _TOKEN.finditer(text) for kind in ("number", "name", "op", "bad")
                       if m.group(kind) is not None]
        self.at = 0
        self.depth = 0

    def parse(self):
        if not self.tokens:
            raise ExpressionError("the expression is empty", "write a param name or a sum, e.g. ${filters * 2}")
        value = self.expression()
        if self.at < len(self.tokens):
            raise self.unexpected("an operator (+ - * / //)")
        return value

    def peek(self) -> str | None:
        return self.tokens[self.at][1] if self.at < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        self.at += 1
        return self.tokens[self.at - 1]

    def expression(self):
        value = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()[1]
            value = _apply(op, value, self.term())
        return value

    def term(self):
        value = self.unary()
        while self.peek() in ("*", "/", "//"):
            op = self.take()[1]
            value = _apply(op, value, self.unary())
        return value

    def unary(self):
        if self.peek() in ("-", "+"):
            sign = self.take()[1]
            value = self.unary()
            return -value if sign == "-" else value
        return self.atom()

    def atom(self):
        if self.at >= len(self.tokens):
            raise ExpressionError(f"'{self.text.strip()}' ends too soon", "finish it with a number or a param")
        kind, token = self.tokens[self.at]
        if kind == "number":
            self.at += 1
            return float(token) if any(c in token for c in ".eE") else int(token)
        if kind == "name":
            self.at += 1
            return self.number(token)
        if token == "(":
            return self.group()
        raise self.unexpected("a number, a param or '('")

    def group(self):
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise ExpressionError(f"parentheses nested deeper than {MAX_NESTING}", "write a simpler expression")
        self.take()
        value = self.expression()
        if self.peek() != ")":
            raise self.unexpected("')'")
        self.take()
        self.depth -= 1
        return value

    def number(self, name: str):
        value = self.values[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ExpressionError(f"param '{name}' is {_describe(value)}, and arithmetic needs a number",
                                  f"give '{name}' a number, or use it alone as \"${{{name}}}\"", name)
        return value

    def unexpected(self, wanted: str) -> ExpressionError:
        found = "the end" if self.at >= len(self.tokens) else f"'{self.tokens[self.at][1]}'"
        return ExpressionError(f"cannot read '{self.text.strip()}': expected {wanted}, found {found}",
                               "use numbers, params, + - * / // and parentheses")


def _apply(op: str, a, b):
    if op in ("/", "//") and b == 0:
        raise ExpressionError("division by zero", "check the params this expression divides by")
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "//":
        return a // b
    if isinstance(a, int) and isinstance(b, int) and a % b == 0:
        return a // b  # an exact quotient stays an integer: a count of filters or units
    return a / b


def _describe(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"the string '{value}'"
    kind = {bool: "boolean", list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)
    return f"{kind} {value}" if isinstance(value, bool) else kind
