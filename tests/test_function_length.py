"""No function in keras_pvc/ is over 120 lines (the review standard).

A function's length runs from its `def` line to its last line as `ast`
numbers them: the docstring counts, decorator lines do not.
"""

import ast
import os

MAX_LINES = 120
PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "keras_pvc")


def long_functions(source, filename, max_lines=MAX_LINES):
    """`file:function:length` for each function of `source` over `max_lines`."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > max_lines:
                found.append(f"{filename}:{node.name}:{length}")
    return found


def test_the_check_counts_from_def_to_the_last_line():
    # A hand-made case: `def` + docstring + body lines, nested functions too.
    def source(body_lines):
        return "def f():\n    '''Doc.'''\n" + "    x = 1\n" * body_lines

    assert long_functions(source(MAX_LINES - 2), "a.py") == []
    assert long_functions(source(MAX_LINES - 1), "a.py") == [f"a.py:f:{MAX_LINES + 1}"]
    nested = "class C:\n    def g(self):\n" + "        y = 2\n" * MAX_LINES
    assert long_functions(nested, "b.py") == [f"b.py:g:{MAX_LINES + 1}"]


def test_no_function_in_the_package_is_over_120_lines():
    found = []
    files = 0
    for folder, _, names in os.walk(PACKAGE):
        for name in sorted(names):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as handle:
                    source = handle.read()
                files += 1
                found += long_functions(source, os.path.relpath(path, os.path.dirname(PACKAGE)))
    assert files > 10, f"found only {files} files under {PACKAGE}"
    assert not found, (
        f"Functions over {MAX_LINES} lines (split them into helpers): " + ", ".join(found)
    )
