"""What goes to a runner host pickles the same way whichever pickler `_framing.pickled` picks: a
call of an importable function travels by name, and whatever a host could not import by name
(lambdas, closures, classes made at run time) still travels by value."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap

import cloudpickle

from actors._framing import pickled
from tests.actors import pool_funcs


def test_a_call_of_an_importable_function_pickles_as_cloudpickle_would() -> None:
    call = (7, pool_funcs.add, (1, b"x", "y", None, 2.5, True), {"k": [b"v"]}, False)
    assert pickled(call) == cloudpickle.dumps(call, protocol=cloudpickle.DEFAULT_PROTOCOL)


def test_closures_and_run_time_classes_travel_by_value() -> None:
    offset = 40

    def add_offset(x: int) -> int:
        return x + offset

    made = type("Made", (), {"answer": lambda self: 42})
    fn, instance = pickle.loads(pickled((add_offset, made())))
    assert fn(2) == 42
    assert instance.answer() == 42


def test_a_function_of_the_parents_main_module_reaches_a_process_that_has_another_main() -> None:
    """The parent's `__main__` is not the host's: a function defined there must go by value.
    A by-name reference would name a function the child's `__main__` does not have."""
    parent = textwrap.dedent("""
        import sys
        from actors._framing import pickled

        def triple(x):
            return 3 * x

        sys.stdout.buffer.write(pickled((triple, 14)))
    """)
    child = "import pickle, sys; fn, arg = pickle.loads(sys.stdin.buffer.read()); print(fn(arg))"
    payload = subprocess.run([sys.executable, "-c", parent], capture_output=True, check=True).stdout
    answer = subprocess.run([sys.executable, "-c", child], input=payload, capture_output=True, check=True)
    assert answer.stdout.strip() == b"42"
