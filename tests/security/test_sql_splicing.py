"""A lint over ``src/memvault``: the SQL of every statement is built from constants only.

Every call that runs SQL (``execute``, ``executemany``, ``executescript``, the store's ``_query``
and ``read``, the migrations' ``_run_script``) must get SQL made of:

- string literals and f-strings / ``+`` / ``%``-free concatenations of safe parts;
- module-level constants whose value is safe (``_MEMORY_COLUMNS``), items of constant dicts,
  also when imported by name from another module of memvault (checked in that module);
- local names whose every assignment in the function is safe, loop variables over literal
  tuples, ``sep.join(parts)`` of safe lists, ``"?" * n`` placeholders;
- parameters of functions that are themselves SQL sinks (their callers are checked);
- results of the builders below, each with the reason it is trusted.

Anything else (a parameter, an attribute, a call) fails the test with file:line: a value that
came from a caller cannot reach SQL text without someone adding it here on purpose.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import memvault

SRC = Path(memvault.__file__).parent
SINKS = {
    "execute": 0,
    "executemany": 0,
    "executescript": 0,
    "_query": 0,
    "_run_script": 1,
    # the Postgres backend's helpers: their SQL parameter is checked at every call
    "_fetch": 0,
    "_all": 0,
    "_run": 1,
    "_filtered_rowids": 1,
    # memvault doctor's read-only query functions (every caller passes a constant)
    "read_only": 0,
}
STORE_SINKS = {"read": 0}  # only on a receiver named *store (file handles also have read())
TRUSTED_BUILDERS = {
    # The filter compiler: tests/unit/test_filter_sql.py proves its text is a function of the
    # filter's shape and never holds a key or value.
    "to_sql": "memvault/storage/sqlite/filter_sql.py",
    # Gives m.<name> for names of filters.COLUMNS only (the compiler's whitelist).
    "_column_sql": "memvault/storage/sqlite/store.py",
}
CHECKED_BUILDERS = {"_scope_sql", "_where"}  # their returns are linted like sinks
SAFE_STR_METHODS = {"split", "strip", "lower", "upper", "join", "encode"}


@dataclass
class Function:
    node: ast.FunctionDef | ast.AsyncFunctionDef
    assigned: dict[str, list[ast.AST]] = field(default_factory=dict)


def _function_assignments(func: ast.FunctionDef | ast.AsyncFunctionDef) -> Function:
    """Every expression bound to each local name, plus markers for unpacking and loops."""
    found = Function(func)
    for node in ast.walk(func):
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                _bind(found, target, node.value)
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            found.assigned.setdefault(node.target.id, []).append(node.value)
        elif isinstance(node, ast.For | ast.comprehension):
            _bind(found, node.target, ast.Tuple(elts=[ast.Starred(node.iter)]))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("append", "extend")
            and isinstance(node.func.value, ast.Name)
        ):
            marker = node.args[0] if node.func.attr == "append" else ast.Starred(node.args[0])
            found.assigned.setdefault(node.func.value.id, []).append(ast.List(elts=[marker]))
    return found


def _bind(found: Function, target: ast.AST, value: ast.AST | None) -> None:
    if value is None:
        return
    if isinstance(target, ast.Name):
        found.assigned.setdefault(target.id, []).append(value)
    elif isinstance(target, ast.Tuple | ast.List):
        for index, element in enumerate(target.elts):
            if isinstance(element, ast.Name):
                found.assigned.setdefault(element.id, []).append(
                    ast.Subscript(value=value, slice=ast.Constant(index))
                )


class Checker:
    def __init__(self, path: Path, tree: ast.Module) -> None:
        self.path = path
        self.module_values: dict[str, list[ast.AST]] = {}
        for node in tree.body:
            if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if isinstance(target, ast.Name):
                        self.module_values.setdefault(target.id, []).append(node.value)
        # from memvault.x import NAME: NAME's value is judged in memvault/x.py
        self.imported: dict[str, tuple[Path, str]] = {}
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("memvault."):
                module = SRC.parent.joinpath(*str(node.module).split("."))
                path = module.with_suffix(".py") if module.with_suffix(".py").exists() else None
                for alias in node.names:
                    if path is not None:
                        self.imported[alias.asname or alias.name] = (path, alias.name)

    def safe(
        self, expr: ast.AST, func: Function | None, seen: frozenset[str] = frozenset()
    ) -> bool:
        if isinstance(expr, ast.Constant):
            return isinstance(expr.value, str | int) and not isinstance(expr.value, bool)
        if isinstance(expr, ast.JoinedStr):
            return all(self.safe(part, func, seen) for part in expr.values)
        if isinstance(expr, ast.FormattedValue):
            return self.safe(expr.value, func, seen)
        if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
            return self.safe(expr.left, func, seen) and self.safe(expr.right, func, seen)
        if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Mult):
            # "?" * n: a constant text repeated
            return isinstance(expr.left, ast.Constant) and isinstance(expr.left.value, str)
        if isinstance(expr, ast.IfExp):
            return self.safe(expr.body, func, seen) and self.safe(expr.orelse, func, seen)
        if isinstance(expr, ast.Tuple | ast.List):
            return all(self.safe(e, func, seen) for e in expr.elts)
        if isinstance(expr, ast.Starred):
            return self.safe(expr.value, func, seen)
        if isinstance(expr, ast.Subscript):
            if isinstance(expr.value, ast.Call):  # sql, params = builder(...): item 0 only
                index = expr.slice
                return (
                    isinstance(index, ast.Constant)
                    and index.value == 0
                    and self.safe(expr.value, func, seen)
                )
            return self.safe(expr.value, func, seen)
        if isinstance(expr, ast.Dict):
            return all(v is not None and self.safe(v, func, seen) for v in expr.values)
        if isinstance(expr, ast.Name):
            return self.safe_name(expr.id, func, seen)
        if isinstance(expr, ast.Call):
            return self.safe_call(expr, func, seen)
        return False

    def safe_call(self, call: ast.Call, func: Function | None, seen: frozenset[str]) -> bool:
        target = call.func
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)
        if _composed_identifiers(call):
            return True
        if name in TRUSTED_BUILDERS or name in CHECKED_BUILDERS:
            return True
        if isinstance(target, ast.Attribute) and name in SAFE_STR_METHODS:
            return self.safe(target.value, func, seen) and all(
                self.safe(arg, func, seen) for arg in call.args
            )
        return name == "len" and isinstance(target, ast.Name)  # a number

    def safe_name(self, name: str, func: Function | None, seen: frozenset[str]) -> bool:
        if name in seen:
            return True  # a cycle (x += ...): decided by the other assignments
        seen = seen | {name}
        if func is not None:
            params = func.node.args
            names = [a.arg for a in (*params.posonlyargs, *params.args, *params.kwonlyargs)]
            if name in names:
                return func.node.name in SINKS or func.node.name in STORE_SINKS
            if name in func.assigned:
                return all(self.safe(v, func, seen) for v in func.assigned[name])
        if name in self.module_values:
            return all(self.safe(v, None, seen) for v in self.module_values[name])
        if name in self.imported:
            path, original = self.imported[name]
            other = _checker(path)
            values = other.module_values.get(original)
            return values is not None and all(other.safe(v, None, frozenset()) for v in values)
        return False


_CHECKERS: dict[Path, Checker] = {}


def _checker(path: Path) -> Checker:
    if path not in _CHECKERS:
        _CHECKERS[path] = Checker(path, ast.parse(path.read_text(), str(path)))
    return _CHECKERS[path]


def _composed_identifiers(call: ast.Call) -> bool:
    """psycopg's ``sql.SQL(<constant>).format(sql.Identifier(...), ...)``: the text is a
    constant and every piece put into it is an identifier, quoted by psycopg (a schema name or a
    channel from the configuration, never a value)."""
    target = call.func
    if not (isinstance(target, ast.Attribute) and target.attr == "format"):
        return False
    base = target.value
    if not (
        isinstance(base, ast.Call)
        and ast.unparse(base.func) == "sql.SQL"
        and len(base.args) == 1
        and isinstance(base.args[0], ast.Constant)
        and isinstance(base.args[0].value, str)
    ):
        return False
    return not call.keywords and all(
        isinstance(arg, ast.Call) and ast.unparse(arg.func) == "sql.Identifier" for arg in call.args
    )


def _functions(tree: ast.AST) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def _own_nodes(func: ast.FunctionDef | ast.AsyncFunctionDef) -> Iterator[ast.AST]:
    """The nodes of ``func``'s body but not of the functions defined in it: each of those is
    checked on its own, against its own parameters and assignments."""
    pending: list[ast.AST] = list(ast.iter_child_nodes(func))
    while pending:
        node = pending.pop()
        yield node
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            pending.extend(ast.iter_child_nodes(node))


def _sql_argument(call: ast.Call) -> ast.AST | None:
    target = call.func
    if isinstance(target, ast.Attribute):
        name = target.attr
        if name in STORE_SINKS:
            receiver = ast.unparse(target.value)
            if not receiver.lower().endswith("store"):
                return None
            index = STORE_SINKS[name]
        elif name in SINKS:
            index = SINKS[name]
        else:
            return None
    elif isinstance(target, ast.Name) and target.id in SINKS:
        index = SINKS[target.id]
    else:
        return None
    if len(call.args) > index:
        return call.args[index]
    return next((kw.value for kw in call.keywords if kw.arg in ("sql", "script")), None)


def scan() -> tuple[list[str], int]:
    problems: list[str] = []
    sinks = 0
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        checker = Checker(path, tree)
        where = path.relative_to(SRC.parent)
        for func_node in _functions(tree):
            func = _function_assignments(func_node)
            for node in _own_nodes(func_node):
                if isinstance(node, ast.Call) and (sql := _sql_argument(node)) is not None:
                    sinks += 1
                    if not checker.safe(sql, func):
                        problems.append(f"{where}:{node.lineno}: {ast.unparse(sql)[:80]}")
                if func_node.name in CHECKED_BUILDERS and isinstance(node, ast.Return):
                    value = node.value
                    first = value.elts[0] if isinstance(value, ast.Tuple) else value
                    if first is None or not checker.safe(first, func):
                        problems.append(f"{where}:{node.lineno}: builder returns unsafe SQL")
    return problems, sinks


def test_sql_text_is_built_from_constants_only() -> None:
    problems, sinks = scan()
    assert sinks > 50, "the lint found almost no SQL calls: did the sink names change?"
    assert not problems, "SQL built from a non-constant:\n" + "\n".join(problems)


def test_trusted_builders_still_exist() -> None:
    for name, file in TRUSTED_BUILDERS.items():
        tree = ast.parse((SRC.parent / file).read_text())
        assert any(f.name == name for f in _functions(tree)), (name, file)


def test_the_lint_catches_a_splice(tmp_path: Path) -> None:
    """The checker itself: the shapes of the bug it exists for are refused."""
    bad = """
PREFIX = "SELECT * FROM t WHERE "
def f(db, key, value):
    db.execute(f"SELECT json_extract(x, '$.{key}') FROM t")
    sql = PREFIX
    sql += key
    db.execute(sql)
    db.execute("SELECT 1 WHERE a = '" + value + "'")
    db.execute(PREFIX + "x = ?", (value,))
    for name in ("a", "b"):
        db.execute(f"SELECT {name} FROM t")
    self._store.read(value.strip())
    where, params = _where(value)
    db.execute(where, params)
    db.execute(params)
    db.execute(STATEMENTS[key])
    db.execute(UNSAFE[key])
"""
    tree = ast.parse(
        "from memvault.storage.base import COUNT_ROWS as STATEMENTS\n"
        "from memvault.storage.base import Cursor as UNSAFE\n" + bad
    )
    checker = Checker(tmp_path / "bad.py", tree)
    func_node = next(_functions(tree))
    func = _function_assignments(func_node)
    calls = sorted(
        (node for node in ast.walk(func_node) if isinstance(node, ast.Call)),
        key=lambda node: node.lineno,
    )
    verdicts = [checker.safe(sql, func) for node in calls if (sql := _sql_argument(node))]
    assert verdicts == [False, False, False, True, True, False, True, False, True, False]
