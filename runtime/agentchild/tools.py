"""The tool registry: safe, side-effect-free functions an agent may be given.

Importable without Django or AutoGen: the API lists TOOLS, the sandboxed child builds
AutoGen FunctionTools from the same functions.
"""
import ast
import math
import operator
from datetime import datetime, timezone

_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCS = {"sqrt": math.sqrt, "abs": abs, "round": round, "min": min, "max": max, "log": math.log, "exp": math.exp}
_CONSTS = {"pi": math.pi, "e": math.e}


def _eval(node):
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 1000:
            raise ValueError("exponent too large")
        return _BINOPS[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.Name) and node.id in _CONSTS:
        return _CONSTS[node.id]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS and not node.keywords:
        return _FUNCS[node.func.id](*[_eval(a) for a in node.args])
    raise ValueError("unsupported expression")


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression (+ - * / // % **, parentheses, sqrt, abs, round, min, max, log, exp, pi, e)."""
    if len(expression) > 500:
        return "error: expression too long"
    try:
        value = _eval(ast.parse(expression, mode="eval"))
    except (SyntaxError, ValueError, TypeError, ZeroDivisionError, OverflowError) as exc:
        return f"error: {exc}"
    return str(value)


def current_utc_time() -> str:
    """The current date and time in UTC, ISO 8601."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def word_count(text: str) -> str:
    """Count the words and characters of a text."""
    return f"{len(text.split())} words, {len(text)} characters"


TOOLS = {
    "calculator": {
        "function": calculator,
        "description": "Evaluate an arithmetic expression and return the result.",
        "parameters": {"expression": "string"},
    },
    "current_utc_time": {
        "function": current_utc_time,
        "description": "Return the current date and time in UTC (ISO 8601).",
        "parameters": {},
    },
    "word_count": {
        "function": word_count,
        "description": "Count the words and characters of a text.",
        "parameters": {"text": "string"},
    },
}


def tool_names() -> list[str]:
    return sorted(TOOLS)


def tool_catalog() -> list[dict]:
    return [{"name": n, "description": TOOLS[n]["description"], "parameters": TOOLS[n]["parameters"]} for n in tool_names()]
