# jobworkerp tasks. Run `just --list` to see them. Tools come from the project's .venv.

set dotenv-load := false

export PATH := justfile_directory() + "/.venv/bin:" + env_var('PATH')

# List the recipes
default:
    @just --list

# Create .venv and install the project with its dev tools
install:
    test -x .venv/bin/python || python3 -m venv .venv
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[dev]'

# Start the all-in-one server (Standalone: SQLite + in-memory queues) on GRPC_ADDR
run-all-in-one:
    python -m jobworkerp all-in-one

# Run the whole test suite (needs Redis and MariaDB running; see README)
test *ARGS:
    python -m pytest -n 2 --dist loadfile -q -rs {{ARGS}}

# Regenerate jobworkerp/proto/ from proto/*.proto
proto:
    python scripts/gen_proto.py

# Lint and type-check (mypy settings: [tool.mypy] in pyproject.toml)
lint:
    ruff check .
    mypy

# Performance table vs grpc echo, arq, dramatiq, taskiq (--quick, --only COLS, --seconds N, --json PATH; README: Performance)
bench *ARGS:
    python bench/perf.py {{ARGS}}

# arq for `just bench`, in its own venv (.venv-arq): arq pins redis<6, this project redis 8.1.0
bench-arq-venv:
    test -x .venv-arq/bin/python || python3 -m venv .venv-arq
    .venv-arq/bin/pip install -q 'arq==0.28.0'

# DIRECT round trip and NO_RESULT throughput of one all-in-one server, per runner (hello, command)
bench-all-in-one *ARGS:
    python bench/bench_all_in_one.py {{ARGS}}

# Memory: server RSS over rounds of DIRECT / LISTEN_AFTER / NO_RESULT jobs (should level off)
bench-memory *ARGS:
    python bench/bench_memory.py {{ARGS}}

# Dashboard screenshots for the README: 100 000 stored results and a mixed load (--results N, --load-seconds S)
dashboard-screens *ARGS:
    python bench/dashboard_screens.py {{ARGS}}

# Invariant soak: random operation sequences against real servers (--seconds N, --mode standalone|scalable|both, --seed N)
soak *ARGS:
    python bench/soak.py {{ARGS}}

# Chaos table: Redis restart / connection cut, kill -9 of workers and fronts under load (--jobs N, --only NAME)
chaos *ARGS:
    python bench/chaos.py {{ARGS}}
