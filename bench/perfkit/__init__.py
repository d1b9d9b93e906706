"""The parts of `bench/perf.py`: load generation and drivers (run as subprocesses, in whichever
interpreter has the library under test), process accounting from /proc, the columns (how each
system under test is started) and the report."""
