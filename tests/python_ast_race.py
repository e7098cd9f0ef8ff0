"""One thread at a time in ``ast.parse``, in the test process, on Pythons before 3.13.

CPython keeps the depth counter of its tree-to-objects conversion per interpreter, not per
thread (python/cpython#106905): two threads that parse at once (a tour's browser is served
by several HTTP threads, each reading manifests with ``ast.literal_eval``) can make one of
them fail with ``SystemError: AST constructor recursion depth mismatch``. On this project's
CI (CPython 3.11.7) that failed a POS tour now and then, a failure of the interpreter, not
of the code under test. A lock around ``ast.parse`` makes the conversions one at a time.
Imported first by ``tests/__init__.py``, so only test runs get it.
"""

import ast
import functools
import sys
import threading

if sys.version_info < (3, 13) and not getattr(ast.parse, "_one_thread_at_a_time", False):
    _lock = threading.RLock()
    _parse = ast.parse

    @functools.wraps(_parse)
    def _parse_one_thread_at_a_time(*args, **kwargs):
        with _lock:
            return _parse(*args, **kwargs)

    _parse_one_thread_at_a_time._one_thread_at_a_time = True
    ast.parse = _parse_one_thread_at_a_time
