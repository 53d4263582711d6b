"""Synthetic engram input with planted, known structure, for tests and benchmarks.

Real agent logs cannot tell us whether the marts find the right answer, so this module
writes input-contract-conforming `patterns.jsonl` / `events.jsonl` in which the answers
are planted on purpose (per-topic best patterns, patterns that improve or decline over
time, files that travel together, task texts that repeat) and records them in
`truth.json`. Output is a pure function of the arguments, and it streams: events are
drawn per chunk with numpy and written line by line, so 10M events fit in bounded memory.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import numpy as np
import orjson

__all__ = ["TOPICS", "Family", "GenerationSummary", "Topic", "generate", "render_contexts"]


# --------------------------------------------------------------------------- templates


@dataclass(frozen=True, slots=True)
class Family:
    """One concrete approach to a topic's problem; its paraphrases embed close together."""

    key: str
    pattern_type: str
    paraphrases: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Topic:
    """A kind of coding-agent work: its approaches, task texts, files, tools and projects.

    `{x}` in a paraphrase or task is filled from `slots`. `hot_pairs` are the planted
    co-travelling files; `files` is the rest of the pool. `unseen` are task phrasings that
    never occur as an event context, for testing prediction on new text.
    """

    slug: str
    name: str
    projects: tuple[str, ...]
    tools: tuple[str, ...]
    slots: tuple[str, ...]
    hot_pairs: tuple[tuple[str, str], tuple[str, str]]
    files: tuple[str, ...]
    families: tuple[Family, ...]
    tasks: tuple[str, ...]
    unseen: tuple[str, ...]


TOPICS: tuple[Topic, ...] = (
    Topic(
        slug="rust-async",
        name="Rust async errors",
        projects=("tokio-gateway", "ledger-rs"),
        tools=("cargo", "rustc", "git", "grep", "rust-analyzer"),
        slots=(
            "gateway",
            "scheduler",
            "billing",
            "ingest",
            "auth",
            "notifier",
            "indexer",
            "metrics",
        ),
        hot_pairs=(
            ("src/runtime/executor.rs", "src/runtime/task.rs"),
            ("src/net/conn.rs", "src/net/pool.rs"),
        ),
        files=(
            "Cargo.toml",
            "src/main.rs",
            "src/lib.rs",
            "src/handlers/mod.rs",
            "src/handlers/upload.rs",
            "src/db/client.rs",
            "src/tree/walk.rs",
            "src/state.rs",
            "src/config.rs",
            "tests/integration.rs",
            "src/sync/lock.rs",
            "benches/load.rs",
        ),
        families=(
            Family(
                "missing-await",
                "fix",
                (
                    "Add the missing .await to the async function call so the future is actually "
                    "polled.",
                    "The future was never awaited: put .await after the async call in {x} and the "
                    "value resolves.",
                    "Append .await to the call; an un-awaited future does nothing and the compiler "
                    "warns about an unused future.",
                    "Await the future returned by the async fn in {x}: the missing .await left a "
                    "Future where a value was expected.",
                    "An unused future warning means the async call lacks .await; add .await so the "
                    "future runs.",
                ),
            ),
            Family(
                "send-mutexguard",
                "fix",
                (
                    "Do not hold a std::sync::MutexGuard across an .await point; drop the guard in "
                    "an inner block so the future is Send.",
                    "The future is not Send because a MutexGuard lives across .await in {x}; "
                    "release the lock before awaiting.",
                    "To fix 'future cannot be sent between threads safely', scope the MutexGuard so "
                    "it is dropped before the next .await.",
                    "Replace std::sync::Mutex with tokio::sync::Mutex in {x} when the lock must be "
                    "held across an .await, making the spawned future Send.",
                    "Move the mutex lock guard into a short block and clone the data out, so no "
                    "non-Send guard is held while awaiting.",
                ),
            ),
            Family(
                "spawn-blocking",
                "fix",
                (
                    "Move blocking file or network IO out of the async task with "
                    "tokio::task::spawn_blocking so the runtime threads are not stalled.",
                    "Wrap the blocking call in tokio::task::spawn_blocking in {x}; synchronous IO "
                    "inside async code starves the executor.",
                    "The executor hangs because std::fs and blocking reads run on a runtime worker; "
                    "run them via spawn_blocking and await the JoinHandle.",
                    "Offload CPU-heavy or blocking work to spawn_blocking instead of calling it "
                    "directly inside the async fn.",
                    "To unblock the tokio runtime, put the blocking database client call of {x} "
                    "inside spawn_blocking.",
                ),
            ),
            Family(
                "box-pin-recursion",
                "refactor",
                (
                    "Box::pin the recursive async call, since an async fn cannot recurse without "
                    "indirection.",
                    "Return Pin<Box<dyn Future<Output = T> + Send>> from the recursive async "
                    "function in {x} to give the future a known size.",
                    "Fix the 'recursion in an async fn requires boxing' error by wrapping the "
                    "recursive call in Box::pin.",
                    "Use the async-recursion crate or Box::pin(async move { ... }) for the "
                    "self-calling async fn in {x}.",
                    "Recursive async functions need boxing: box and pin the inner recursive "
                    "future so it has a finite size.",
                ),
            ),
        ),
        tasks=(
            "cargo build fails with 'future cannot be sent between threads safely' in {x}",
            "tokio::spawn rejects the future in the {x} crate: MutexGuard is not Send",
            "warning: unused implementer of Future that must be used in {x}",
            "async handler in {x} returns a Future instead of the value",
            "tokio runtime stalls under load in the {x} service",
            "requests hang when {x} reads a file inside an async fn",
            "error[E0733]: recursion in an async fn requires boxing in {x}",
            "compile error: async fn walk_tree has infinite size",
            "the {x} worker never runs its async task",
            "all tokio worker threads busy, latency spikes",
        ),
        unseen=(
            "Rust compiler complains the spawned task's future is not Send because of a lock guard",
            "my async Rust function compiles but the request is never sent",
            "Tokio app freezes when doing synchronous disk reads in a handler",
            "how do I call an async function recursively in Rust",
            "async block keeps a lock across an await point and tokio refuses to spawn it",
        ),
    ),
    Topic(
        slug="rust-borrow",
        name="Rust borrow checker errors",
        projects=("ledger-rs", "edge-agent"),
        tools=("cargo", "rustc", "clippy", "git", "rust-analyzer"),
        slots=("lexer", "cache", "router", "inventory", "graph", "session", "planner", "codec"),
        hot_pairs=(
            ("src/graph/edge.rs", "src/graph/node.rs"),
            ("src/parser/lexer.rs", "src/parser/token.rs"),
        ),
        files=(
            "Cargo.toml",
            "src/lib.rs",
            "src/main.rs",
            "src/cache/lru.rs",
            "src/router/table.rs",
            "src/session/store.rs",
            "src/codec/frame.rs",
            "src/inventory/item.rs",
            "src/util.rs",
            "tests/graph_test.rs",
            "src/planner/plan.rs",
            "src/config.rs",
        ),
        families=(
            Family(
                "end-shared-borrow",
                "fix",
                (
                    "Resolve E0502 by ending the shared borrow first: read the value into a local "
                    "variable, then take the &mut borrow.",
                    "Cannot borrow as mutable because it is also borrowed as immutable: copy the "
                    "key into a local before calling the &mut method in {x}.",
                    "Split the statement so the immutable borrow ends before the mutable borrow "
                    "starts; store the intermediate result in a local binding.",
                    "To fix the E0502 borrow conflict in {x}, compute the index from the shared "
                    "reference first and mutate afterwards.",
                    "The shared and mutable borrows overlap; restructure the code so the immutable "
                    "reference is dropped before mutation.",
                ),
            ),
            Family(
                "lifetime-annotation",
                "fix",
                (
                    "Add an explicit lifetime parameter 'a so the returned &str is tied to the input "
                    "it borrows from (E0106 missing lifetime specifier).",
                    "Annotate the function signature in {x} with <'a> and use &'a on both the "
                    "argument and the returned reference.",
                    "Missing lifetime specifier: declare a named lifetime and link the output "
                    "reference to the borrowed parameter.",
                    "Give the struct field holding a reference a lifetime parameter, struct "
                    "Parser<'a>, and propagate the lifetime to the impl blocks of {x}.",
                    "Name the lifetime of the borrowed input and return a reference with that same "
                    "lifetime to satisfy the missing lifetime specifier error.",
                ),
            ),
            Family(
                "return-owned",
                "refactor",
                (
                    "Return an owned String instead of &str because the function returns a "
                    "reference to a local variable that is dropped (E0515).",
                    "Cannot return reference to local data in {x}: change the return type to an "
                    "owned Vec or String and move the value out.",
                    "The local value is dropped at the end of the function, so return it by value "
                    "rather than returning a reference to it.",
                    "Fix E0515 by returning the owned buffer and letting the caller borrow it, "
                    "instead of returning a dangling reference.",
                    "Switch the signature from -> &str to -> String and return the owned formatted "
                    "string directly from {x}.",
                ),
            ),
            Family(
                "rc-refcell",
                "refactor",
                (
                    "Wrap the shared node in Rc<RefCell<Node>> so several owners can mutate it, and "
                    "call borrow_mut() where needed.",
                    "Replace the tangle of &mut references in the {x} graph with Rc<RefCell<T>> for "
                    "shared interior mutability.",
                    "Use interior mutability: store the children as Rc<RefCell<Node>> and mutate "
                    "through borrow_mut instead of holding two &mut.",
                    "For shared mutable ownership across threads in {x}, use Arc<Mutex<T>>; within "
                    "one thread Rc<RefCell<T>> is enough.",
                    "Two parts of the tree need to mutate the same node: give it shared ownership "
                    "with Rc and interior mutability with RefCell.",
                ),
            ),
        ),
        tasks=(
            "error[E0502]: cannot borrow `self.items` as mutable because it is also borrowed "
            "as immutable in {x}",
            "borrow checker rejects pushing to a Vec while iterating over it in {x}",
            "error[E0106]: missing lifetime specifier in the {x} module",
            "struct holding a &str in {x} will not compile without a lifetime",
            "error[E0515]: cannot return reference to local variable in {x}",
            "returns a value referencing data owned by the current function",
            "doubly linked list in {x} needs two mutable references to a node",
            "cannot borrow as mutable more than once at a time in the {x} graph",
            "cargo check fails with borrowed value does not live long enough",
            "closure may outlive the current function, but it borrows a local",
        ),
        unseen=(
            "Rust borrow checker won't let me mutate a HashMap while I hold a reference to a value",
            "how to store a borrowed string slice inside a struct in Rust",
            "Rust function that builds a String and hands back a &str slice of it won't compile",
            "tree nodes in Rust need to point to their parent and be mutated",
            "the Rust compiler says my temporary value is freed while still in use",
        ),
    ),
    Topic(
        slug="python-import",
        name="Python import errors",
        projects=("ml-pipeline", "webshop"),
        tools=("python", "pip", "pytest", "git", "grep"),
        slots=("billing", "reports", "etl", "api", "auth", "utils", "models", "scheduler"),
        hot_pairs=(
            ("src/app/__init__.py", "src/app/config.py"),
            ("src/app/models.py", "src/app/services.py"),
        ),
        files=(
            "pyproject.toml",
            "requirements.txt",
            "setup.cfg",
            "tests/test_services.py",
            "src/app/cli.py",
            "src/app/utils.py",
            "scripts/run_job.py",
            "src/app/db.py",
            "notebooks/explore.ipynb",
            "Makefile",
            "src/app/reports.py",
            "tests/test_cli.py",
        ),
        families=(
            Family(
                "break-circular-import",
                "refactor",
                (
                    "Break the circular import by moving the shared helper into a separate module "
                    "that both files import.",
                    "ImportError from a partially initialized module means an import cycle; move "
                    "the common code out of {x} into a new module.",
                    "Resolve the circular dependency between the two modules by importing inside "
                    "the function instead of at module top level.",
                    "To fix the import cycle, extract the shared classes from {x} into a third "
                    "module so neither module imports the other at load time.",
                    "Circular import: defer one import to function scope or use TYPE_CHECKING-only "
                    "imports for annotations.",
                ),
            ),
            Family(
                "install-into-venv",
                "fix",
                (
                    "ModuleNotFoundError: the package is not installed in the active virtualenv; "
                    "activate .venv and pip install it.",
                    "Install the missing dependency into the same interpreter that runs the code: "
                    "python -m pip install, not a global pip.",
                    "The script runs with the system Python instead of the project venv; point the "
                    "interpreter at .venv/bin/python and reinstall requirements.",
                    "Add the missing package to requirements.txt and install it into the virtual "
                    "environment so {x} can import it.",
                    "Check which python and which pip are used; the module is installed in a "
                    "different environment from the one running {x}.",
                ),
            ),
            Family(
                "package-layout",
                "config",
                (
                    "Install the project in editable mode with pip install -e . so the src-layout "
                    "package {x} is importable in tests.",
                    "Add the missing __init__.py to the {x} directory so Python treats it as a "
                    "package and relative imports work.",
                    "Relative import with no known parent package: run the module with python -m "
                    "package.module from the project root instead of as a script.",
                    "Fix the package layout: configure pyproject.toml to find packages under src/ "
                    "and reinstall the project in editable mode.",
                    "Do not append to sys.path; make {x} a proper package with __init__.py and an "
                    "editable install.",
                ),
            ),
            Family(
                "shadowed-module",
                "diagnose",
                (
                    "A local file named like a stdlib module (random.py, email.py) shadows it; "
                    "rename the file and delete stale .pyc caches.",
                    "Diagnose the shadowing: print module.__file__ to see that {x} imports a local "
                    "file instead of the installed library.",
                    "The import picks up a same-named module from the working directory; rename the "
                    "local module and remove __pycache__.",
                    "module has no attribute comes from a local module shadowing the real package; "
                    "rename the local file that has the same name.",
                    "Check sys.path order and module.__file__; a stray file in the repo root "
                    "shadows the library of the same name.",
                ),
            ),
        ),
        tasks=(
            "ModuleNotFoundError: No module named '{x}' when running the tests",
            "ImportError: cannot import name 'Config' from partially initialized module '{x}'",
            "attempted relative import with no known parent package in {x}",
            "pytest cannot import {x} but python can",
            "AttributeError: module 'random' has no attribute 'randint'",
            "import works in the notebook but fails in the {x} cron job",
            "circular import between {x}.models and {x}.services",
            "No module named 'yaml' although pyyaml is installed",
            "ImportError after moving the code to a src/ layout",
            "python -m {x}.cli fails with No module named {x}",
        ),
        unseen=(
            "Python says my package can't be found even though I just pip installed it",
            "two of my Python modules import each other and now startup crashes",
            "pytest raises ModuleNotFoundError for our own package after restructuring folders",
            "import json in Python gives a module without loads, as if the wrong file was imported",
            "running a script inside a subfolder breaks its relative imports",
        ),
    ),
    Topic(
        slug="flaky-pytest",
        name="Flaky pytest tests",
        projects=("webshop", "ml-pipeline"),
        tools=("pytest", "python", "git", "grep", "tox"),
        slots=(
            "test_checkout",
            "test_login",
            "test_export",
            "test_sync",
            "test_search",
            "test_upload",
            "test_notify",
            "test_refund",
        ),
        hot_pairs=(
            ("tests/fixtures/clock.py", "tests/test_scheduler.py"),
            ("tests/fixtures/database.py", "tests/test_orders.py"),
        ),
        files=(
            "pytest.ini",
            "tests/test_checkout.py",
            "tests/test_login.py",
            "tests/test_export.py",
            "tests/test_sync.py",
            "tests/helpers.py",
            "src/app/worker.py",
            "src/app/cache.py",
            "src/app/clock.py",
            "tests/test_search.py",
            "tox.ini",
            ".github/workflows/tests.yml",
        ),
        families=(
            Family(
                "freeze-time",
                "fix",
                (
                    "Freeze the clock in the test with freezegun or time-machine so assertions on "
                    "datetime.now() stop flaking.",
                    "The test fails around midnight and in other time zones; inject a fixed clock "
                    "instead of calling datetime.now() in {x}.",
                    "Make the time-dependent test deterministic by freezing time at a fixed instant "
                    "with freezegun.",
                    "To stop the flaky date assertion in {x}, pass the current time as a parameter "
                    "and use a fixed timestamp in tests.",
                    "Replace real time in the test with a frozen clock; the flakiness came from "
                    "comparing against the wall clock.",
                ),
            ),
            Family(
                "isolate-shared-state",
                "fix",
                (
                    "The test depends on state leaked by another test; reset the global cache in a "
                    "fixture and run with pytest-randomly to confirm.",
                    "Order-dependent failure: {x} passes alone but fails in the full suite; isolate "
                    "shared module state with a function-scoped fixture.",
                    "Use tmp_path and a fresh database per test instead of a shared session-scoped "
                    "fixture that leaks rows between tests.",
                    "Find the polluting test by randomizing test order and bisecting, then clean up "
                    "the global singleton in teardown.",
                    "To fix the test order dependence, stop mutating module-level globals in tests; "
                    "use monkeypatch so changes are undone.",
                ),
            ),
            Family(
                "seed-randomness",
                "fix",
                (
                    "Seed the random generator in the test (random.seed, numpy default_rng with a "
                    "fixed seed) so generated data is reproducible.",
                    "The flaky {x} uses random inputs; pass a seeded rng fixture and print the seed "
                    "on failure.",
                    "Nondeterministic test data: fix the seed for random, numpy and faker so "
                    "failures reproduce.",
                    "Make the property-based test reproducible by pinning the hypothesis seed and "
                    "saving the failing example.",
                    "To stop random flakiness in {x}, replace unseeded random.choice calls with a "
                    "seeded Random instance.",
                ),
            ),
            Family(
                "wait-for-condition",
                "fix",
                (
                    "Replace time.sleep in the test with polling until the condition holds, with a "
                    "timeout, so slow CI machines do not flake.",
                    "The race in {x} comes from a fixed sleep before the assertion; wait for the "
                    "background thread or event explicitly.",
                    "Use an explicit wait: join the worker thread or await the future instead of "
                    "sleeping a fixed amount in the test.",
                    "Flaky async test: await the task and use asyncio.wait_for rather than "
                    "asyncio.sleep before asserting.",
                    "Poll for the expected state with a deadline instead of a hard-coded sleep, "
                    "removing the timing race in {x}.",
                ),
            ),
        ),
        tasks=(
            "{x} fails intermittently on CI but passes locally",
            "{x} fails only when run with the whole suite",
            "{x} fails about one run in twenty",
            "test suite red every night after midnight UTC",
            "{x} passes alone, fails after test_setup_db",
            "assertion on generated data in {x} randomly fails",
            "flaky test: expected 3 messages, got 2 in {x}",
            "pytest-xdist parallel run makes {x} flaky",
            "rerunning the CI job makes the failing test pass",
            "timing-dependent failure in the background worker test",
        ),
        unseen=(
            "a unit test randomly goes red on the build server and green on retry",
            "tests pass individually but break when the whole suite runs in a different order",
            "the date assertion in my test is flaky and fails at the end of each month",
            "my test sometimes fails because the worker thread hasn't finished yet",
            "random test fixtures produce a failure I can't reproduce",
        ),
    ),
    Topic(
        slug="sql-migration",
        name="SQL migration failures",
        projects=("webshop", "payments-java"),
        tools=("alembic", "psql", "python", "git", "pytest"),
        slots=(
            "orders",
            "users",
            "invoices",
            "payments",
            "events",
            "accounts",
            "products",
            "carts",
        ),
        hot_pairs=(
            ("alembic.ini", "migrations/env.py"),
            ("app/models/order.py", "migrations/versions/0042_add_order_status.py"),
        ),
        files=(
            "migrations/versions/0041_create_payments.py",
            "migrations/versions/0043_merge_heads.py",
            "app/models/user.py",
            "app/models/invoice.py",
            "app/db/session.py",
            "scripts/backfill.py",
            "app/config.py",
            "docker-compose.yml",
            "tests/test_migrations.py",
            "app/models/product.py",
            "README.md",
            "Makefile",
        ),
        families=(
            Family(
                "backfill-before-not-null",
                "fix",
                (
                    "Add the column as nullable, backfill existing rows, then add the NOT NULL "
                    "constraint in a separate migration.",
                    "The migration fails because existing rows violate NOT NULL; backfill {x} with "
                    "a default value before setting the constraint.",
                    "Split the schema change: add a nullable column, run an UPDATE backfill, then "
                    "ALTER COLUMN SET NOT NULL.",
                    "To add a required column to the {x} table safely, give it a server default or "
                    "backfill first, then tighten it to NOT NULL.",
                    "Column contains null values: backfill the nulls in a data migration and only "
                    "then enforce NOT NULL.",
                ),
            ),
            Family(
                "repair-revision-chain",
                "fix",
                (
                    "Alembic reports multiple heads; create a merge revision so the migration "
                    "history is linear again.",
                    "Fix the down_revision pointer so the new migration for {x} depends on the "
                    "latest head, then run alembic upgrade head.",
                    "Two branches added migrations with the same parent revision; merge the heads "
                    "with alembic merge and rerun the upgrade.",
                    "The migration runs before the table it references exists; reorder the "
                    "revision dependencies so the {x} table is created first.",
                    "Repair the broken migration revision chain: set the correct parent revision "
                    "and generate a merge migration.",
                ),
            ),
            Family(
                "concurrent-index-lock-timeout",
                "fix",
                (
                    "Create the index with CREATE INDEX CONCURRENTLY outside a transaction so the "
                    "migration does not lock the {x} table.",
                    "The migration times out waiting for a lock on a busy table; set lock_timeout "
                    "and build the index concurrently.",
                    "Avoid locking the large {x} table during deploy: add the index concurrently "
                    "and disable the transaction for that migration.",
                    "ALTER TABLE blocks writes on the hot table; split it into smaller steps and "
                    "use CONCURRENTLY for the index.",
                    "Set a short lock_timeout and retry the migration, building indexes "
                    "concurrently so production writes are not blocked.",
                ),
            ),
            Family(
                "dedupe-before-unique",
                "diagnose",
                (
                    "Adding the unique constraint fails on duplicate rows; find them with GROUP BY "
                    "HAVING count(*) > 1 and dedupe first.",
                    "Query the duplicate keys in {x} before adding the UNIQUE index, delete or "
                    "merge them, then rerun the migration.",
                    "Could not create unique index: deduplicate existing data in a data migration, "
                    "keeping the newest row per key.",
                    "Diagnose the unique violation by selecting duplicate keys from {x}; clean them "
                    "up before enforcing uniqueness.",
                    "Dedupe the table first, keeping the lowest id per key, and then create the "
                    "unique constraint.",
                ),
            ),
        ),
        tasks=(
            'alembic upgrade head fails: column "status" of relation "{x}" contains null values',
            "migration adding a NOT NULL column to {x} fails in production",
            "alembic: Multiple head revisions are present",
            'relation "{x}" does not exist during migration',
            "deploy migration hangs waiting for a lock on {x}",
            "canceling statement due to lock timeout while altering {x}",
            "could not create unique index on {x}: key is duplicated",
            "Django migrate fails with IntegrityError on {x}",
            "migration works on the empty dev database but fails on staging",
            "downgrade of the last migration fails",
        ),
        unseen=(
            "adding a required field to a big existing table breaks the schema upgrade",
            "the alembic migration history has two heads after merging two branches",
            "schema change freezes writes to the production database during release",
            "can't add a uniqueness rule because the table already has repeated emails",
            "database upgrade script errors because a referenced table isn't created yet",
        ),
    ),
    Topic(
        slug="react-hydration",
        name="React hydration mismatch",
        projects=("dashboard-ui", "webshop"),
        tools=("npm", "node", "next", "git", "eslint"),
        slots=(
            "Header",
            "PriceTag",
            "Clock",
            "CartBadge",
            "UserMenu",
            "Footer",
            "ProductCard",
            "Banner",
        ),
        hot_pairs=(
            ("components/Header.tsx", "components/ThemeToggle.tsx"),
            ("pages/_app.tsx", "pages/_document.tsx"),
        ),
        files=(
            "components/PriceTag.tsx",
            "components/Clock.tsx",
            "components/CartBadge.tsx",
            "components/UserMenu.tsx",
            "components/Footer.tsx",
            "components/ProductCard.tsx",
            "hooks/useMounted.ts",
            "lib/format.ts",
            "next.config.js",
            "package.json",
            "styles/globals.css",
            "pages/index.tsx",
        ),
        families=(
            Family(
                "client-only-effect",
                "fix",
                (
                    "Move window and localStorage reads into useEffect so the server and the first "
                    "client render produce the same HTML.",
                    "Hydration mismatch in {x}: render a stable placeholder on the server and set "
                    "the browser-only value in useEffect after mount.",
                    "Use a mounted flag set in useEffect and render the client-only part of {x} "
                    "only after hydration.",
                    "Do not read localStorage during render; read it in an effect so the initial "
                    "markup matches the server output.",
                    "To fix text content does not match, defer browser-specific state to useEffect "
                    "and keep the first render deterministic.",
                ),
            ),
            Family(
                "deterministic-render-values",
                "fix",
                (
                    "Do not call Date.now() or Math.random() during render; compute the value on "
                    "the server and pass it as a prop.",
                    "The timestamp in {x} differs between server and client; format dates with a "
                    "fixed time zone and locale.",
                    "Use useId instead of Math.random for element ids so the server and client "
                    "markup match.",
                    "Render times in UTC with an explicit locale in {x}, since the server and "
                    "browser time zones differ.",
                    "Nondeterministic values in render cause the mismatch; generate them once on "
                    "the server and serialize them.",
                ),
            ),
            Family(
                "dynamic-no-ssr",
                "workaround",
                (
                    "Load the browser-only widget with next/dynamic and ssr: false so it is not "
                    "server-rendered.",
                    "Wrap {x} in a dynamic import with ssr disabled because it depends on window "
                    "and cannot render on the server.",
                    "Disable server-side rendering for the third-party chart component via dynamic "
                    "import with ssr false.",
                    "Render {x} only on the client with a NoSSR wrapper, as the library touches "
                    "document at import time.",
                    "Use next/dynamic with ssr false for the component that needs the browser, "
                    "removing it from the server HTML.",
                ),
            ),
            Family(
                "valid-html-nesting",
                "fix",
                (
                    "Fix invalid HTML nesting such as a div inside a p, which the browser rewrites "
                    "and which breaks hydration.",
                    "The markup in {x} nests a <div> inside <p>; change the outer element to a div "
                    "so the DOM matches React's tree.",
                    "Hydration failed because the browser repaired invalid nesting; do not put "
                    "block elements inside <p> or <a> inside <a>.",
                    "Validate the HTML structure of {x}: nested anchors and tables without tbody "
                    "make the client DOM differ.",
                    "Replace the <p> wrapper with a <div> so the server markup is valid HTML and "
                    "hydration succeeds.",
                ),
            ),
        ),
        tasks=(
            'Warning: Text content did not match. Server: "12:01" Client: "12:02" in {x}',
            "Hydration failed because the initial UI does not match what was rendered on the "
            "server",
            "{x} flickers and shows a hydration error in the console",
            "ReferenceError: window is not defined when rendering {x}",
            "timestamp in {x} is different on server and client",
            "Next.js page throws hydration mismatch only in production",
            "In HTML, <div> cannot be a descendant of <p> in {x}",
            "Expected server HTML to contain a matching <div> in {x}",
            "chart library crashes during SSR with document is not defined",
            "dark mode toggle in {x} causes a hydration warning",
        ),
        unseen=(
            "server-rendered page and client render disagree about the text of a component",
            "my Next.js component reads localStorage and the console shows a mismatch error",
            "the time shown on the page jumps after load and React logs a warning",
            "a paragraph wrapping a div makes React hydration fail after page load",
            "a map widget that needs the browser breaks server rendering",
        ),
    ),
    Topic(
        slug="docker-build-cache",
        name="Docker build cache misses",
        projects=("platform-infra", "webshop"),
        tools=("docker", "buildx", "git", "make"),
        slots=("api", "worker", "frontend", "scheduler", "gateway", "ingest", "billing", "search"),
        hot_pairs=(
            (".dockerignore", "Dockerfile"),
            ("docker/bake.hcl", "docker/buildkitd.toml"),
        ),
        files=(
            "docker-compose.yml",
            "requirements.txt",
            "package.json",
            "package-lock.json",
            ".github/workflows/docker.yml",
            "Makefile",
            "docker/entrypoint.sh",
            "Cargo.lock",
            "scripts/build_image.sh",
            "poetry.lock",
            "docker/api.Dockerfile",
            "docker/worker.Dockerfile",
        ),
        families=(
            Family(
                "copy-manifests-first",
                "fix",
                (
                    "Copy only the dependency manifests (requirements.txt, package.json) before "
                    "COPY . . so the install layer stays cached.",
                    "Reorder the Dockerfile for {x}: COPY the lockfile and run the install step "
                    "before copying the source tree.",
                    "The dependency install reruns on every code change because COPY . . comes "
                    "first; copy the manifests first, then the rest.",
                    "To keep the pip install layer cached, copy requirements.txt alone, install, "
                    "and only afterwards copy the application code.",
                    "Order Dockerfile layers from least to most frequently changing, with "
                    "dependency installation before the source copy.",
                ),
            ),
            Family(
                "dockerignore",
                "fix",
                (
                    "Add a .dockerignore excluding .git, node_modules and build outputs so the "
                    "build context does not change on every run.",
                    "The cache busts because the build context for {x} includes .git and logs; "
                    "exclude them in .dockerignore.",
                    "Shrink the build context with .dockerignore; untracked files and the .git "
                    "directory invalidate the COPY layer.",
                    "Create .dockerignore entries for node_modules, __pycache__ and dist so the "
                    "COPY layer stays cacheable.",
                    "Exclude volatile files from the docker build context of {x} with "
                    ".dockerignore; they were changing the COPY checksum.",
                ),
            ),
            Family(
                "buildkit-cache-mount",
                "fix",
                (
                    "Use a BuildKit cache mount (RUN --mount=type=cache,target=/root/.cache/pip) so "
                    "package downloads are reused.",
                    "Enable BuildKit and mount a cache for the package manager in the {x} "
                    "Dockerfile to avoid re-downloading dependencies.",
                    "Add --mount=type=cache for the cargo registry and target directory so "
                    "compilation artifacts survive between builds.",
                    "Speed up the {x} image build with BuildKit cache mounts for the npm and pip "
                    "caches.",
                    "Persist the package manager cache across builds with RUN --mount=type=cache "
                    "instead of a plain RUN install.",
                ),
            ),
            Family(
                "registry-cache",
                "config",
                (
                    "CI runners start with an empty cache; push the build cache to the registry "
                    "with --cache-to and pull it with --cache-from.",
                    "Use docker buildx build --cache-from type=registry for {x} so ephemeral CI "
                    "machines reuse layers.",
                    "Export the layer cache to the registry with mode=max in CI and import it in "
                    "the next pipeline run.",
                    "Configure the GitHub Actions cache backend (type=gha) for buildx so {x} "
                    "builds stop starting from scratch.",
                    "Every CI build rebuilds all layers because there is no shared cache; add "
                    "cache-from and cache-to to the buildx step.",
                ),
            ),
        ),
        tasks=(
            "docker build reinstalls all dependencies for {x} on every code change",
            "pip install layer never cached in the {x} image",
            "docker build context is 2GB and slow to send",
            "CI docker build of {x} takes 20 minutes every time",
            "npm ci runs on every build even when package.json did not change",
            "buildx cache not used in GitHub Actions for {x}",
            "cargo rebuilds all crates inside docker for {x}",
            "COPY . . invalidates the cache after touching README",
            "Sending build context to Docker daemon takes minutes",
            "image layers for {x} rebuilt after every commit",
        ),
        unseen=(
            "container image build starts from scratch every time on the CI server",
            "changing one source file causes the whole dependency install step to rerun in Docker",
            "docker seems to upload my entire repository including node_modules before building",
            "how do I stop docker from downloading Python packages again on each build",
            "build cache never hits in our pipeline's image build",
        ),
    ),
    Topic(
        slug="go-memory-leak",
        name="Memory leak in Go service",
        projects=("edge-agent", "platform-infra"),
        tools=("go", "pprof", "git", "grep", "kubectl"),
        slots=(
            "ingestor",
            "router",
            "poller",
            "notifier",
            "cache",
            "exporter",
            "indexer",
            "broker",
        ),
        hot_pairs=(
            ("internal/worker/job.go", "internal/worker/pool.go"),
            ("internal/cache/cache.go", "internal/cache/lru.go"),
        ),
        files=(
            "cmd/server/main.go",
            "internal/http/client.go",
            "internal/http/handler.go",
            "internal/poller/poller.go",
            "go.mod",
            "go.sum",
            "internal/metrics/metrics.go",
            "internal/broker/consumer.go",
            "deploy/values.yaml",
            "internal/config/config.go",
            "internal/notifier/notify.go",
            "Makefile",
        ),
        families=(
            Family(
                "goroutine-exit-on-cancel",
                "fix",
                (
                    "Goroutines leak because they block forever on a channel; pass a context and "
                    "return when ctx.Done() is closed.",
                    "Stop the goroutine leak in {x} by selecting on ctx.Done() alongside the "
                    "channel send so workers exit on cancel.",
                    "The goroutine count grows without bound; cancel the context on shutdown and "
                    "make every worker loop honor it.",
                    "Use a buffered channel or a select with ctx.Done() so the sender goroutine in "
                    "{x} is not stuck when nobody reads.",
                    "Fix leaked goroutines: every goroutine needs an exit path tied to context "
                    "cancellation.",
                ),
            ),
            Family(
                "pprof-heap-diff",
                "diagnose",
                (
                    "Capture heap profiles with net/http/pprof and compare two snapshots with go "
                    "tool pprof -base to find the growing allocation.",
                    "Profile {x} with pprof: take inuse_space heap profiles an hour apart and diff "
                    "them to locate the leak.",
                    "Diagnose the memory growth by exposing /debug/pprof and inspecting the top "
                    "allocations with go tool pprof.",
                    "Use go tool pprof on heap and goroutine profiles from {x} to see which call "
                    "sites retain memory.",
                    "Compare heap profiles over time with pprof -base to find the allocation site "
                    "that keeps growing.",
                ),
            ),
            Family(
                "bound-the-cache",
                "fix",
                (
                    "The in-memory map cache grows forever; add an LRU with a size limit or TTL "
                    "eviction.",
                    "Bound the cache in {x}: replace the global map with an LRU cache that evicts "
                    "old entries.",
                    "Memory keeps growing because entries are never deleted from the map; add "
                    "expiry and a periodic cleanup of the cache.",
                    "Use a size-capped LRU (hashicorp/golang-lru) instead of an unbounded map for "
                    "the {x} cache.",
                    "Add TTL-based eviction to the in-process cache so memory stays flat under "
                    "load.",
                ),
            ),
            Family(
                "close-bodies-stop-tickers",
                "fix",
                (
                    "Always defer resp.Body.Close() after http requests; unclosed bodies keep "
                    "connections and buffers alive.",
                    "Stop the time.Ticker with defer ticker.Stop() and close HTTP response bodies "
                    "in {x} to release resources.",
                    "The leak comes from time.After in a hot loop and unclosed response bodies; use "
                    "a reusable timer and close the bodies.",
                    "Drain and close resp.Body in {x} so the HTTP client can reuse connections "
                    "instead of leaking them.",
                    "Release resources explicitly: defer Close on response bodies and Stop on "
                    "tickers created in loops.",
                ),
            ),
        ),
        tasks=(
            "{x} RSS grows steadily until OOMKilled",
            "goroutine count in {x} climbs to 100k",
            "memory usage of the {x} service never goes down after a traffic spike",
            "Go service leaking memory, heap grows 50MB per hour",
            "runtime: out of memory in {x} after two days",
            "too many open files and growing memory in {x}",
            "pprof shows millions of goroutines blocked on chan send",
            "map cache in {x} uses 8GB",
            "container for {x} restarts nightly due to the memory limit",
            "http client in {x} leaks connections",
        ),
        unseen=(
            "our Go microservice slowly eats all available RAM over a week",
            "number of goroutines keeps rising and never drops",
            "how to find what is holding memory in a long-running Go process",
            "Go program's in-memory lookup table keeps expanding without limit",
            "Go HTTP calls leave connections open and memory rises",
        ),
    ),
    Topic(
        slug="typescript-types",
        name="TypeScript type errors",
        projects=("dashboard-ui", "webshop"),
        tools=("tsc", "npm", "node", "eslint", "git"),
        slots=(
            "UserProfile",
            "OrderForm",
            "ApiClient",
            "SearchBar",
            "Cart",
            "Invoice",
            "Settings",
            "Dashboard",
        ),
        hot_pairs=(
            ("src/api/client.ts", "src/api/types.ts"),
            ("src/components/UserProfile.tsx", "src/hooks/useUser.ts"),
        ),
        files=(
            "tsconfig.json",
            "package.json",
            "src/components/OrderForm.tsx",
            "src/components/SearchBar.tsx",
            "src/components/Cart.tsx",
            "src/store/cart.ts",
            "src/utils/guards.ts",
            "src/schemas/user.ts",
            "src/pages/Dashboard.tsx",
            "src/components/Settings.tsx",
            ".eslintrc.json",
            "src/index.ts",
        ),
        families=(
            Family(
                "narrow-undefined",
                "fix",
                (
                    "Narrow the possibly undefined value with an explicit check or optional "
                    "chaining before using it (TS2532).",
                    "Object is possibly 'undefined' in {x}: add a guard clause or use ?. and ?? "
                    "instead of a non-null assertion.",
                    "Handle the undefined case: check the value before access so strictNullChecks "
                    "is satisfied.",
                    "To fix TS18048, narrow the optional property in {x} with an if statement or a "
                    "default value.",
                    "Use optional chaining and nullish coalescing to narrow the possibly undefined "
                    "field.",
                ),
            ),
            Family(
                "narrow-union",
                "fix",
                (
                    "Write a user-defined type guard (value is Foo) to narrow the union type before "
                    "accessing member-specific fields.",
                    "Use a discriminated union with a kind field in {x} and switch on it so "
                    "TypeScript narrows each case.",
                    "Property does not exist on a union type: narrow with 'in' checks or a type "
                    "predicate function.",
                    "Add a discriminant tag to the union members and narrow with a switch, with an "
                    "exhaustive never check.",
                    "To access the variant-specific property in {x}, narrow the union with a type "
                    "predicate first.",
                ),
            ),
            Family(
                "explicit-generic",
                "refactor",
                (
                    "Add an explicit generic type argument so inference does not widen to unknown, "
                    "e.g. useState<User | null>(null).",
                    "The generic in {x} infers never[] from an empty array; annotate the type "
                    "parameter explicitly.",
                    "Constrain the generic with extends keyof T so the indexed access type checks.",
                    "Provide the type argument to the generic function call because TypeScript "
                    "inferred a too-narrow literal type.",
                    "Annotate the initial state in {x}: an empty array literal is inferred as "
                    "never[] and later pushes fail.",
                ),
            ),
            Family(
                "validate-api-response",
                "refactor",
                (
                    "Type the API response: parse the fetch JSON with a zod schema instead of "
                    "casting unknown to the interface.",
                    "Replace the as any cast in {x} with a runtime-validated type from a schema, so "
                    "the types match the real payload.",
                    "Generate TypeScript types from the OpenAPI spec so the client types match the "
                    "server response.",
                    "Validate the unknown JSON response with zod and infer the TypeScript type from "
                    "the schema.",
                    "Stop casting response.json() to the interface in {x}; validate the response "
                    "and handle the error case.",
                ),
            ),
        ),
        tasks=(
            "TS2532: Object is possibly 'undefined' in {x}",
            "Property 'email' does not exist on type 'Guest | Member' in {x}",
            "Argument of type 'string' is not assignable to parameter of type 'never' in {x}",
            "tsc --noEmit fails after enabling strict mode",
            "Type 'unknown' is not assignable to type '{x}Props'",
            "TS2345 in {x} after upgrading TypeScript",
            "runtime crash even though {x} type-checks: the API returned null",
            "Element implicitly has an 'any' type because expression of type 'string' can't be "
            "used to index",
            "useState([]) infers never[] in {x}",
            "Type 'null' is not assignable to type 'User' in {x}",
        ),
        unseen=(
            "TypeScript complains a field might not exist on one of the union members",
            "compiler says value could be undefined even though I know it's set",
            "empty array state variable rejects pushing items in TypeScript",
            "TypeScript types the JSON from my REST call as any and type errors slip through",
            "strict null checking broke a hundred places in our frontend",
        ),
    ),
    Topic(
        slug="ci-timeouts",
        name="CI timeouts",
        projects=("platform-infra", "webshop", "ml-pipeline"),
        tools=("gh", "pytest", "git", "docker", "npm"),
        slots=(
            "unit-tests",
            "integration",
            "e2e",
            "lint",
            "build",
            "docker-publish",
            "docs",
            "benchmarks",
        ),
        hot_pairs=(
            (".github/actions/setup/action.yml", ".github/workflows/ci.yml"),
            ("ci/split_tests.py", "ci/test_timings.json"),
        ),
        files=(
            ".gitlab-ci.yml",
            "pytest.ini",
            "tox.ini",
            "docker-compose.ci.yml",
            "scripts/wait_for_db.sh",
            "Makefile",
            "package-lock.json",
            "requirements-dev.txt",
            "conftest.py",
            "ci/run_e2e.sh",
            "noxfile.py",
            "jest.config.js",
        ),
        families=(
            Family(
                "cache-dependencies",
                "fix",
                (
                    "Cache the dependency directory between CI runs (actions/cache keyed on the "
                    "lockfile hash) so installs stop eating the timeout.",
                    "The {x} job spends most of its time downloading packages; add a dependency "
                    "cache keyed on the lockfile.",
                    "Restore the pip, npm and cargo caches in the pipeline to cut the job time "
                    "below the limit.",
                    "Use the setup action's built-in cache option so {x} does not reinstall "
                    "dependencies on every run.",
                    "Add a CI cache for dependencies keyed by the lockfile checksum to stop the "
                    "job from timing out.",
                ),
            ),
            Family(
                "shard-tests",
                "fix",
                (
                    "Split the test suite across parallel runners with a matrix and pytest-xdist so "
                    "each shard finishes within the timeout.",
                    "Shard {x} into four parallel jobs by test timing so no single job hits the "
                    "time limit.",
                    "Run the tests in parallel with -n auto and split them across a CI matrix.",
                    "Parallelize the slow suite: split the tests by historical timings across "
                    "several runners.",
                    "To fix the timeout in {x}, fan out the tests over matrix shards and merge the "
                    "reports.",
                ),
            ),
            Family(
                "find-hanging-test",
                "diagnose",
                (
                    "A single test hangs; add pytest-timeout with a per-test limit and print stack "
                    "traces to find which one.",
                    "Diagnose the stuck {x} job: enable per-test timeouts and faulthandler to dump "
                    "the hung test's stack.",
                    "The job does not get slow, it hangs; run with --durations and a per-test "
                    "timeout to identify the hanging test.",
                    "Use a timeout with a stack dump (py-spy dump or faulthandler) to find the "
                    "deadlocked test in {x}.",
                    "Add a per-test timeout so the hang fails fast with a traceback instead of "
                    "hitting the job timeout.",
                ),
            ),
            Family(
                "service-readiness",
                "fix",
                (
                    "The job waits forever for the database service; add a health check and a "
                    "wait-for script with bounded retries.",
                    "Configure health checks on the service containers in {x} so steps start only "
                    "when postgres is ready.",
                    "Replace the unbounded wait loop for the test database with a readiness probe "
                    "and a short timeout.",
                    "The integration job stalls because the service container never becomes "
                    "healthy; fix its health command and port.",
                    "Wait for the dependent service with a bounded retry loop in {x} rather than "
                    "waiting indefinitely.",
                ),
            ),
        ),
        tasks=(
            "{x} job exceeded the maximum execution time of 60 minutes",
            "GitHub Actions {x} cancelled after timeout",
            "CI pipeline got slower, {x} now takes 55 minutes",
            "{x} hangs at 'Waiting for postgres'",
            "The job running on runner has exceeded the maximum execution time",
            "{x} stuck with no output for 10 minutes",
            "npm install takes 15 minutes in CI",
            "integration tests time out only in CI",
            "{x} timed out after the dependency upgrade",
            "pipeline killed: no output received for 600 seconds",
        ),
        unseen=(
            "our build server job runs out of time before the tests finish",
            "continuous integration job freezes without printing anything and gets cancelled",
            "pipeline spends half an hour installing packages every time",
            "end-to-end suite is too slow for the per-job time budget",
            "tests in the workflow wait endlessly for the database container",
        ),
    ),
    Topic(
        slug="git-merge-conflicts",
        name="Git merge conflicts",
        projects=("webshop", "dashboard-ui", "ledger-rs"),
        tools=("git", "gh", "grep"),
        slots=(
            "feature/checkout",
            "release/2.4",
            "hotfix/login",
            "feature/search",
            "develop",
            "feature/api-v2",
            "refactor/models",
            "feature/billing",
        ),
        hot_pairs=(
            ("frontend/package.json", "frontend/yarn.lock"),
            ("app/settings.py", "app/urls.py"),
        ),
        files=(
            ".gitattributes",
            ".gitignore",
            "CHANGELOG.md",
            "README.md",
            "poetry.lock",
            "src/api/routes.py",
            "src/models/user.py",
            "src/models/order.py",
            "docs/index.md",
            "VERSION",
            "setup.py",
            "Cargo.lock",
        ),
        families=(
            Family(
                "rebase-onto-main",
                "fix",
                (
                    "Rebase the feature branch onto the latest main and resolve conflicts commit by "
                    "commit, then force-push with --force-with-lease.",
                    "Resolve the conflicts by rebasing {x} on origin/main and fixing each "
                    "conflicting commit before continuing.",
                    "Run git fetch and git rebase origin/main, fix the conflicted hunks, git add "
                    "and git rebase --continue.",
                    "Keep {x} short-lived and rebase it onto main often so merge conflicts stay "
                    "small.",
                    "Use git rebase onto the updated main branch and push with --force-with-lease "
                    "after resolving the conflicts.",
                ),
            ),
            Family(
                "regenerate-lockfile",
                "fix",
                (
                    "Do not hand-merge lockfiles; take either side and regenerate package-lock.json "
                    "or poetry.lock with the package manager.",
                    "For the lockfile conflict on {x}, check out main's version of the lockfile and "
                    "rerun npm install to regenerate it.",
                    "Resolve lockfile conflicts by regenerating: git checkout --theirs the "
                    "lockfile, then reinstall to update it.",
                    "Regenerate the conflicted Cargo.lock or yarn.lock instead of editing the "
                    "conflict markers manually.",
                    "Lockfile merge conflict: accept one side and let the package manager rebuild "
                    "the lockfile.",
                ),
            ),
            Family(
                "rerere-three-way",
                "tool",
                (
                    "Enable git rerere so repeated conflict resolutions are recorded and replayed "
                    "automatically.",
                    "Use git mergetool with a three-way diff to see base, ours and theirs when "
                    "merging {x}.",
                    "Turn on rerere.enabled and resolve with a three-way merge view; the same "
                    "conflicts then resolve themselves.",
                    "Set merge.conflictstyle to zdiff3 to see the common ancestor in the conflict "
                    "markers and resolve {x} correctly.",
                    "Use a three-way merge tool and the diff3 conflict style to understand both "
                    "changes before choosing.",
                ),
            ),
            Family(
                "abort-and-cherry-pick",
                "workaround",
                (
                    "Abort the messy merge with git merge --abort and cherry-pick only the needed "
                    "commits onto a fresh branch.",
                    "Instead of merging the whole of {x}, create a new branch from main and "
                    "cherry-pick the relevant commits.",
                    "Back out of the conflicted state with git merge --abort, then split the change "
                    "into smaller pull requests.",
                    "Reset to the pre-merge state and cherry-pick the few commits you need, "
                    "avoiding the large conflicting merge.",
                    "Use git merge --abort or git rebase --abort to get back to a clean tree, then "
                    "cherry-pick the changes selectively.",
                ),
            ),
        ),
        tasks=(
            "CONFLICT (content): Merge conflict in yarn.lock while merging {x}",
            "git rebase of {x} onto main stops with conflicts in 30 files",
            "pull request for {x} has conflicts that must be resolved",
            "Automatic merge failed; fix conflicts and then commit the result",
            "the same conflict keeps reappearing when rebasing {x}",
            "conflict markers committed by mistake in {x}",
            "merge of {x} into main conflicts in settings.py",
            "CONFLICT (modify/delete) while merging {x}",
            "git pull says you have divergent branches",
            "cannot rebase: you have unstaged changes",
        ),
        unseen=(
            "two teammates edited the same lines and now my branch won't merge",
            "the dependency lock file is full of <<<<<<< markers after a merge",
            "I keep resolving the exact same conflicts every time I update my branch",
            "my long-running branch is hopelessly out of date with trunk",
            "merging the release branch back produces hundreds of conflicting hunks",
        ),
    ),
    Topic(
        slug="k8s-crashloop",
        name="Kubernetes pod crash loops",
        projects=("platform-infra", "payments-java"),
        tools=("kubectl", "helm", "docker", "k9s", "git"),
        slots=(
            "api",
            "worker",
            "payments",
            "frontend",
            "redis-proxy",
            "scheduler",
            "search",
            "auth",
        ),
        hot_pairs=(
            ("deploy/k8s/configmap.yaml", "deploy/k8s/deployment.yaml"),
            ("charts/app/templates/deployment.yaml", "charts/app/values.yaml"),
        ),
        files=(
            "deploy/k8s/secret.yaml",
            "deploy/k8s/service.yaml",
            "Dockerfile.prod",
            "docker/entrypoint.prod.sh",
            "charts/app/Chart.yaml",
            "deploy/k8s/hpa.yaml",
            "src/health.py",
            "config/settings.yaml",
            "kustomization.yaml",
            "deploy/k8s/ingress.yaml",
            "Makefile",
            "README.md",
        ),
        families=(
            Family(
                "startup-probe",
                "fix",
                (
                    "The liveness probe kills the pod before the app finishes starting; add a "
                    "startupProbe or raise initialDelaySeconds.",
                    "Tune the probes for {x}: a startup probe with a generous failureThreshold "
                    "stops restarts during a slow boot.",
                    "Liveness probe failed with status 503; point it at a lightweight health "
                    "endpoint and relax the probe timeout.",
                    "Separate readiness from liveness and give {x} a startupProbe so slow "
                    "migrations at boot do not trigger restarts.",
                    "Increase the liveness probe timeoutSeconds and failureThreshold; the pod was "
                    "killed while still healthy.",
                ),
            ),
            Family(
                "memory-limit",
                "fix",
                (
                    "The container is OOMKilled (exit code 137); raise the memory limit or reduce "
                    "the heap size so it fits.",
                    "Set the JVM or Node heap below the container memory limit of {x} to stop the "
                    "OOMKilled restarts.",
                    "Check kubectl describe pod for Last State OOMKilled and increase "
                    "resources.limits.memory accordingly.",
                    "Exit code 137 in {x} means the memory limit is hit; right-size the memory "
                    "requests and limits from real usage.",
                    "Lower the process memory use or give the container a higher memory limit; it "
                    "is killed by the OOM killer.",
                ),
            ),
            Family(
                "missing-config-secret",
                "fix",
                (
                    "The container exits at startup because an environment variable from a missing "
                    "Secret or ConfigMap is not set; create it.",
                    "Read the previous container logs with kubectl logs --previous: {x} crashes on "
                    "a missing config value.",
                    "CreateContainerConfigError or a crash on boot: the referenced secret key does "
                    "not exist; fix the secretKeyRef.",
                    "Mount the missing ConfigMap for {x} and validate the required environment "
                    "variables at startup.",
                    "Use kubectl logs -p to read why the app exits, then supply the missing secret "
                    "or config setting.",
                ),
            ),
            Family(
                "fix-entrypoint",
                "fix",
                (
                    "The container command is wrong or the entrypoint script is not executable; fix "
                    "the command and chmod +x the script.",
                    "exec format error in {x}: the image was built for arm64; build a multi-arch "
                    "or amd64 image.",
                    "Crash loop with exit code 126 or 127: the entrypoint path is wrong or lacks "
                    "execute permission.",
                    "Run the image locally with docker run to reproduce the immediate exit of {x} "
                    "and fix the CMD.",
                    "Fix the Dockerfile ENTRYPOINT: the binary path changed, so the container "
                    "exits immediately.",
                ),
            ),
        ),
        tasks=(
            "pod {x} in CrashLoopBackOff after deploy",
            "Back-off restarting failed container {x}",
            "{x} OOMKilled with exit code 137",
            "Liveness probe failed: Get http://10.0.0.12:8080/healthz: context deadline exceeded",
            "{x} restarts every 30 seconds during startup",
            'CreateContainerConfigError: secret "{x}-env" not found',
            "exec /app/entrypoint.sh: exec format error in {x}",
            "{x} exits with code 1 right after start",
            "helm upgrade leaves {x} pods crash looping",
            "kubectl get pods shows RESTARTS 57",
        ),
        unseen=(
            "kubernetes keeps restarting my container a few seconds after it starts",
            "pods get killed during a slow application boot",
            "Kubernetes pod is OOM killed for exceeding its memory limit, again and again",
            "pod crashes on startup because a Kubernetes secret with an environment variable "
            "is missing",
            "image built on my Mac fails to start on the cluster nodes",
        ),
    ),
    Topic(
        slug="java-npe",
        name="NullPointerException in Java",
        projects=("payments-java", "webshop"),
        tools=("mvn", "gradle", "java", "jdb", "git"),
        slots=(
            "OrderService",
            "UserRepository",
            "InvoiceMapper",
            "PaymentController",
            "CartService",
            "ReportJob",
            "AuthFilter",
            "ShippingClient",
        ),
        hot_pairs=(
            (
                "src/main/java/com/acme/order/OrderRepository.java",
                "src/main/java/com/acme/order/OrderService.java",
            ),
            (
                "src/main/java/com/acme/dto/CustomerDto.java",
                "src/main/java/com/acme/mapper/CustomerMapper.java",
            ),
        ),
        files=(
            "pom.xml",
            "build.gradle",
            "src/main/java/com/acme/web/PaymentController.java",
            "src/main/java/com/acme/cart/CartService.java",
            "src/main/java/com/acme/report/ReportJob.java",
            "src/main/java/com/acme/security/AuthFilter.java",
            "src/main/java/com/acme/shipping/ShippingClient.java",
            "src/main/resources/application.yml",
            "src/test/java/com/acme/order/OrderServiceTest.java",
            "src/main/java/com/acme/config/AppConfig.java",
            "src/main/java/com/acme/user/UserRepository.java",
            "src/main/java/com/acme/invoice/InvoiceMapper.java",
        ),
        families=(
            Family(
                "optional-null-check",
                "fix",
                (
                    "Guard the nullable return value with Optional or an explicit null check before "
                    "dereferencing it.",
                    "The repository in {x} returns null when nothing is found; return Optional and "
                    "handle the empty case.",
                    "Use Optional.ofNullable(...).map(...).orElse(...) instead of chaining calls on "
                    "a possibly null object.",
                    "Add a null check before calling methods on the lookup result in {x}, and log "
                    "the missing key.",
                    "Replace the null return with Optional so callers must handle the absent value "
                    "explicitly.",
                ),
            ),
            Family(
                "helpful-npe-message",
                "diagnose",
                (
                    "Read the helpful NullPointerException message (JDK 14+) to see exactly which "
                    "variable was null in the chained call.",
                    "Enable -XX:+ShowCodeDetailsInExceptionMessages and inspect the stack trace to "
                    "find the null field in {x}.",
                    "Split the long method chain in {x} into local variables so the stack trace "
                    "line identifies the null reference.",
                    "Diagnose the NPE from the stack trace: the message names the null receiver, "
                    "e.g. because getUser() returned null.",
                    "Break up the chained getters and use the helpful NPE message to locate the "
                    "null value.",
                ),
            ),
            Family(
                "constructor-injection",
                "fix",
                (
                    "The @Autowired field is null because the object was created with new; let "
                    "Spring inject it via constructor injection.",
                    "{x} is instantiated manually so its dependencies are never injected; make it a "
                    "@Component and use constructor injection.",
                    "Switch from field injection to constructor injection so missing beans fail at "
                    "startup instead of as a NullPointerException.",
                    "The Spring bean is null in a static context; inject it through the "
                    "constructor instead of a static field.",
                    "Do not call new on Spring-managed classes like {x}; obtain them by dependency "
                    "injection from the application context.",
                ),
            ),
            Family(
                "empty-collections",
                "fix",
                (
                    "Initialize collection fields to empty lists at declaration so the getter never "
                    "returns null.",
                    "The list field in {x} is null for entities loaded without that column; "
                    "initialize it to new ArrayList<>().",
                    "Jackson leaves the missing JSON array null; default the collection field to an "
                    "empty list.",
                    "Return Collections.emptyList() instead of null from {x} so callers can iterate "
                    "safely.",
                    "Use empty collections instead of null for absent lists in DTOs and entities.",
                ),
            ),
        ),
        tasks=(
            "java.lang.NullPointerException at {x}.process line 87",
            'Cannot invoke "String.length()" because "name" is null in {x}',
            "@Autowired repository is null in {x}",
            "NPE in {x} only for customers without an address",
            "NullPointerException when iterating items in {x}",
            "intermittent NPE in production from {x}",
            "Spring Boot test fails with NullPointerException in the mocked service",
            'Cannot invoke "java.util.List.size()" because the return value is null',
            "NPE after mapping the JSON request to a DTO in {x}",
            "null pointer when the cache misses in {x}",
        ),
        unseen=(
            "Java service crashes because a lookup returned nothing and we called a method on it",
            "an injected Spring dependency is empty when I create the class myself",
            "deserialized request object has a missing list that blows up the loop",
            "long getter chain throws an exception and I can't tell which part is null",
            "JVM stack trace says cannot invoke a method because a value is null",
        ),
    ),
    Topic(
        slug="cors-errors",
        name="CORS errors in the browser",
        projects=("dashboard-ui", "webshop"),
        tools=("curl", "npm", "node", "git", "devtools"),
        slots=(
            "/api/login",
            "/api/orders",
            "/api/upload",
            "/graphql",
            "/api/search",
            "/auth/token",
            "/api/profile",
            "/api/reports",
        ),
        hot_pairs=(
            ("server/app.js", "server/middleware/cors.js"),
            ("src/api/http.ts", "vite.config.ts"),
        ),
        files=(
            "server/routes/auth.js",
            "server/routes/orders.js",
            "nginx/default.conf",
            "src/api/auth.ts",
            "src/pages/Login.tsx",
            ".env.development",
            "server/config.js",
            "package.json",
            "src/setupProxy.js",
            "next.config.js",
            "server/routes/upload.js",
            "docker-compose.yml",
        ),
        families=(
            Family(
                "server-allow-origin",
                "fix",
                (
                    "Configure the API server to send Access-Control-Allow-Origin for the frontend "
                    "origin, using the framework's CORS middleware.",
                    "Add the frontend origin to the allowed origins of the CORS middleware so {x} "
                    "responses carry Access-Control-Allow-Origin.",
                    "No Access-Control-Allow-Origin header: enable CORS on the backend for the "
                    "exact origin instead of patching the client.",
                    "Install and configure the CORS middleware (flask-cors, cors for express) with "
                    "the list of allowed origins.",
                    "Set the Access-Control-Allow-Origin response header on {x} for the web app's "
                    "origin.",
                ),
            ),
            Family(
                "answer-preflight",
                "fix",
                (
                    "Handle the OPTIONS preflight request: return 204 with "
                    "Access-Control-Allow-Methods and Access-Control-Allow-Headers.",
                    "The preflight for {x} fails because the custom Authorization header is not "
                    "listed in Access-Control-Allow-Headers.",
                    "Make the server answer the OPTIONS preflight without requiring auth, and allow "
                    "the Content-Type and Authorization headers.",
                    "Response to preflight request fails the access control check: route OPTIONS to "
                    "the CORS handler before authentication.",
                    "Allow the PUT and DELETE methods and the custom headers in the preflight "
                    "response for {x}.",
                ),
            ),
            Family(
                "credentials-exact-origin",
                "fix",
                (
                    "With credentials: 'include' the server must not use *; echo the specific "
                    "origin and set Access-Control-Allow-Credentials: true.",
                    "Cookies are not sent to {x} cross-origin; set credentials include on fetch and "
                    "allow credentials with an explicit origin.",
                    "The wildcard origin is rejected when credentials are included; list the exact "
                    "origin and allow credentials.",
                    "Set SameSite=None; Secure on the session cookie and "
                    "Access-Control-Allow-Credentials for the cross-site API.",
                    "Replace Access-Control-Allow-Origin: * with the allowed request origin when {x} "
                    "needs cookies.",
                ),
            ),
            Family(
                "dev-server-proxy",
                "workaround",
                (
                    "In development, proxy API calls through the dev server (Vite or webpack "
                    "devServer proxy) so requests are same-origin.",
                    "Configure the Vite server.proxy for {x} so the browser talks to the same origin "
                    "during local development.",
                    "Use the create-react-app proxy setting or a Next.js rewrite to avoid "
                    "cross-origin calls locally.",
                    "Route /api through the frontend dev server proxy instead of calling the "
                    "backend port directly.",
                    "Avoid cross-origin calls in local development by proxying {x} through the dev "
                    "server.",
                ),
            ),
        ),
        tasks=(
            "blocked by CORS policy: No 'Access-Control-Allow-Origin' header is present on {x}",
            "Response to preflight request doesn't pass access control check for {x}",
            "Request header field authorization is not allowed by Access-Control-Allow-Headers",
            "The value of the 'Access-Control-Allow-Origin' header must not be the wildcard '*' "
            "when the request's credentials mode is 'include'",
            "fetch to {x} works in Postman but fails in the browser",
            "cookies not sent on cross-origin request to {x}",
            "CORS error only on PUT requests to {x}",
            "localhost:3000 cannot call localhost:8000{x}",
            "OPTIONS {x} returns 401",
            "CORS error after moving the API to a subdomain",
        ),
        unseen=(
            "browser refuses the response from our backend because of missing origin headers",
            "frontend on one port can't talk to the API on another port during development",
            "login cookie isn't included when calling the API from the web app",
            "the browser's preflight check fails when I add an auth header",
            "API calls succeed with curl but the web page shows a cross-origin error",
        ),
    ),
    Topic(
        slug="c-segfault",
        name="Segfaults in C and C++ code",
        projects=("edge-agent", "tokio-gateway"),
        tools=("gdb", "gcc", "valgrind", "make", "clang"),
        slots=(
            "parser.c",
            "buffer.c",
            "hashmap.c",
            "net.c",
            "render.cpp",
            "codec.c",
            "alloc.c",
            "list.c",
        ),
        hot_pairs=(
            ("src/buffer.c", "src/buffer.h"),
            ("src/lexer.c", "src/parser.c"),
        ),
        files=(
            "src/hashmap.c",
            "src/net.c",
            "src/render.cpp",
            "src/codec.c",
            "src/alloc.c",
            "src/list.c",
            "CMakeLists.txt",
            "Makefile",
            "include/common.h",
            "tests/test_parser.c",
            "src/main.c",
            "cmake/sanitizers.cmake",
        ),
        families=(
            Family(
                "address-sanitizer",
                "diagnose",
                (
                    "Rebuild with -fsanitize=address -g and rerun; AddressSanitizer reports the "
                    "exact out-of-bounds or use-after-free access.",
                    "Compile {x} with AddressSanitizer to pinpoint the heap-buffer-overflow instead "
                    "of guessing from the crash.",
                    "Use ASan and UBSan builds to catch the invalid memory access at its source "
                    "line.",
                    "Turn on -fsanitize=address,undefined in the debug build; the sanitizer report "
                    "shows where the freed memory was used.",
                    "Run the failing input under an AddressSanitizer build of {x} to locate the "
                    "memory error.",
                ),
            ),
            Family(
                "gdb-backtrace",
                "diagnose",
                (
                    "Run the program under gdb, reproduce the crash, and use bt to get the "
                    "backtrace of the segmentation fault.",
                    "Load the core dump with gdb and print the backtrace and locals of the crashing "
                    "frame in {x}.",
                    "Enable core dumps with ulimit -c unlimited and inspect the crash in gdb with "
                    "bt full.",
                    "Use gdb to catch SIGSEGV in {x} and examine the pointer values in the faulting "
                    "frame.",
                    "Get a backtrace from the core file in gdb to see which pointer dereference "
                    "crashed.",
                ),
            ),
            Family(
                "fix-ownership-use-after-free",
                "fix",
                (
                    "Set the pointer to NULL after free and fix the ownership so the buffer is not "
                    "used after it is freed.",
                    "The crash in {x} is a use-after-free: the caller keeps a pointer into a buffer "
                    "that realloc moved.",
                    "Do not keep pointers into a vector or buffer across realloc or push_back; "
                    "store indices instead.",
                    "Fix the double free by giving the struct a single owner responsible for "
                    "freeing it.",
                    "Use std::unique_ptr for ownership in {x} so the object is not freed twice or "
                    "used after deletion.",
                ),
            ),
            Family(
                "bounds-check",
                "fix",
                (
                    "Add bounds checks: the loop writes one past the end of the array (off-by-one "
                    "with <= instead of <).",
                    "The buffer in {x} is too small for the terminating NUL; allocate len + 1 and "
                    "use snprintf instead of strcpy.",
                    "Replace strcpy and sprintf with bounded snprintf and strncpy and check the "
                    "string lengths.",
                    "An off-by-one in the index loop overflows the stack buffer in {x}; use < size "
                    "and validate input lengths.",
                    "Validate the length field from the input before memcpy so it cannot overflow "
                    "the destination buffer.",
                ),
            ),
        ),
        tasks=(
            "Segmentation fault (core dumped) in {x}",
            "SIGSEGV when parsing large input in {x}",
            "double free or corruption (fasttop) in {x}",
            "program crashes only in the release build",
            "free(): invalid pointer after resizing the buffer in {x}",
            "*** stack smashing detected *** in {x}",
            "random crashes in {x} under load",
            "heap corruption reported by glibc malloc",
            "crash in {x} disappears when adding printf",
            "valgrind reports Invalid write of size 8 in {x}",
        ),
        unseen=(
            "my C program dies with a memory access violation on long input lines",
            "a native C extension segfaults the Python interpreter with signal 11",
            "C++ program segfaults after a std::vector grows and an old pointer is dereferenced",
            "how do I find where a segfault happens in a program that crashed in production",
            "string copy into a fixed-size char array corrupts the stack",
        ),
    ),
    Topic(
        slug="dependency-conflicts",
        name="Dependency version conflicts",
        projects=("ml-pipeline", "dashboard-ui"),
        tools=("pip", "npm", "poetry", "pipdeptree", "git"),
        slots=(
            "requests",
            "numpy",
            "pydantic",
            "urllib3",
            "protobuf",
            "react",
            "webpack",
            "eslint",
        ),
        hot_pairs=(
            ("requirements/base.in", "requirements/base.txt"),
            ("web/package-lock.json", "web/package.json"),
        ),
        files=(
            "constraints.txt",
            "pyproject.toml",
            "poetry.lock",
            "setup.cfg",
            "web/.npmrc",
            "tox.ini",
            "requirements-dev.txt",
            "Pipfile",
            "Pipfile.lock",
            "web/yarn.lock",
            "noxfile.py",
            ".github/dependabot.yml",
        ),
        families=(
            Family(
                "pin-compatible-version",
                "fix",
                (
                    "Pin {x} to a version compatible with all dependents in the constraints file "
                    "and reinstall.",
                    "The resolver cannot satisfy both requirements; pin the shared dependency {x} "
                    "to the highest version both accept.",
                    "Add an upper bound for the incompatible package in requirements so the "
                    "resolver picks a working version.",
                    "Use a constraints.txt to pin the transitive dependency {x} that broke after a "
                    "new major release.",
                    "Pin the transitive dependency to the last compatible release until upstream "
                    "supports the new major version.",
                ),
            ),
            Family(
                "upgrade-the-dependent",
                "fix",
                (
                    "Upgrade the package that has the outdated upper bound so it accepts the newer "
                    "{x}.",
                    "Instead of pinning down, bump the dependent library to a release that supports "
                    "the new major version of {x}.",
                    "Update the library whose requirement conflicts; its newer release relaxes the "
                    "version bound.",
                    "Upgrade the plugin to a version whose peerDependencies allow the new {x}, "
                    "which clears the ERESOLVE error.",
                    "Move both packages to versions with overlapping requirements by upgrading the "
                    "stale one.",
                ),
            ),
            Family(
                "inspect-dependency-tree",
                "diagnose",
                (
                    "Inspect the dependency tree with pipdeptree or npm ls {x} to see which "
                    "packages require conflicting versions.",
                    "Use npm explain or pip show to find which package pulls in the conflicting {x} "
                    "version.",
                    "Run pipdeptree -r -p {x} to see the reverse dependencies that force the "
                    "incompatible version.",
                    "Diagnose the conflict with npm ls: it shows duplicated and invalid versions in "
                    "the dependency tree.",
                    "List the reverse dependencies of the conflicting package to find the "
                    "requirement that needs changing.",
                ),
            ),
            Family(
                "force-single-version",
                "workaround",
                (
                    "Use npm overrides (or yarn resolutions) to force a single version of the "
                    "transitive dependency {x}.",
                    "Force one version of {x} across the tree with package.json overrides and "
                    "reinstall from a clean lockfile.",
                    "Override the nested dependency version in package.json so npm installs one "
                    "copy of {x} for every package in the tree.",
                    "Add a resolutions entry for the nested dependency so every package uses the "
                    "same patched version.",
                    "Set yarn resolutions or npm overrides for the conflicting transitive package "
                    "to force the same version everywhere.",
                ),
            ),
        ),
        tasks=(
            "pip: ResolutionImpossible: conflicting dependencies on {x}",
            "npm ERR! ERESOLVE unable to resolve dependency tree ({x})",
            "ImportError after {x} released a new major version",
            "poetry lock fails: incompatible versions of {x}",
            "AttributeError: module '{x}' has no attribute after the upgrade",
            "two libraries require different versions of {x}",
            "peer dependency conflict on {x} after upgrading",
            "pip check reports broken requirements",
            "CI broke overnight due to a transitive dependency update",
            "A module that was compiled using NumPy 1.x cannot be run in NumPy 2.x",
        ),
        unseen=(
            "package installer can't find a set of versions that satisfies all my libraries",
            "a library update pulled in a new major version of something and the app breaks",
            "node package manager refuses to install because of peer requirements",
            "how do I see which package is requiring the old version",
            "a transitive npm package is installed in two incompatible versions in the tree",
        ),
    ),
)

# Generic wrappers that vary a description's wording without moving it between families.
_PREFIXES: tuple[str, ...] = ("", "", "", "Fix: ", "What worked: ", "Approach: ", "Recipe: ")
_SUFFIXES: tuple[str, ...] = (
    "",
    "",
    "",
    " Then rerun the tests.",
    " Verified with a clean rebuild.",
    " Confirmed in CI afterwards.",
)

# --------------------------------------------------------------------------- quality model

NORMAL, BEST, IMPROVING, DECLINING, POOR = range(5)
ROLE_NAMES: tuple[str, ...] = ("normal", "best", "improving", "declining", "poor")
# Which special roles a topic with m patterns gets, in order of priority.
_ROLE_ORDER: tuple[int, ...] = (BEST, IMPROVING, DECLINING, BEST, IMPROVING, DECLINING, POOR)
_EXTRA_POOR_AT, _EXTRA_BEST_AT = 50, 100  # patterns per topic
# Share of a topic's pattern draws that each special pattern receives. Trending patterns
# get more at small sizes, so that each has about TREND_MIN_EVENTS events to regress on.
BEST_SHARE, POOR_SHARE = 0.08, 0.02
TREND_SHARE = (0.05, 0.10)
TREND_MIN_EVENTS = 36

OWN_TOPIC_SHARE = 0.85  # events that use a pattern of the session's own topic
CROSS_TOPIC_CAP = 0.4  # a pattern used off-topic is mediocre at best
BEST_BASE = (0.85, 0.9)
NORMAL_BASE = (0.3, 0.65)
POOR_BASE = (0.12, 0.18)
IMPROVING_LINE = (0.25, 0.85)  # quality at the start and the end of the period
DECLINING_LINE = (0.85, 0.25)
PAIR_TREND = (-0.2, 0.2)  # added to events carrying an improving hot pair
NOISE_SD = 0.1
HOT_PAIR_SHARE = 0.4  # of a topic's events carry hot pair 0, and as many carry hot pair 1
SESSION_LENGTH = (1, 8)
FIRST_SEEN_BEFORE_DAYS = 180  # patterns were first seen up to this long before `start`

_CHUNK = 50_000  # events (and patterns) drawn and written per batch
_MAX_EXTRA_FILES = 4


@dataclass(frozen=True)
class GenerationSummary:
    """What `generate` wrote, for the CLI to report."""

    outdir: Path
    n_patterns: int
    n_events: int
    n_distinct_contexts: int
    seconds: float


def render_contexts(topic: Topic) -> list[str]:
    """Every context string a topic can produce: each task with each slot value."""
    out: list[str] = []
    for task in topic.tasks:
        if "{x}" in task:
            out.extend(task.replace("{x}", slot) for slot in topic.slots)
        else:
            out.append(task)
    return out


# --------------------------------------------------------------------------- lookup tables


@dataclass(frozen=True)
class _Tables:
    """Flattened, index-addressable views of TOPICS, so per-chunk draws can be vectorized."""

    n_topics: int
    family_ids: list[str]  # global family index -> "topic/family"
    family_types: list[str]
    family_offset: np.ndarray  # topic -> first global family index
    family_count: np.ndarray  # topic -> number of families
    renderings: list[list[str]]  # global family -> paraphrases rendered with every slot
    contexts: list[str]  # global context code -> text
    template_start: np.ndarray  # topic x template -> first context code (padded)
    template_count: np.ndarray  # topic x template -> number of renderings (padded with 1)
    template_cum: np.ndarray  # topic x template -> cumulative choice probability (padded 2.0)
    pool_names: list[list[str]]  # topic -> non-hot files
    pool_size: np.ndarray
    hot_names: list[tuple[tuple[str, str], tuple[str, str]]]
    tool_combos: list[list[list[str]]]  # topic -> list of tool subsets of size 1..3
    projects: list[tuple[str, ...]]


def _build_tables() -> _Tables:
    n_topics = len(TOPICS)
    family_ids: list[str] = []
    family_types: list[str] = []
    renderings: list[list[str]] = []
    family_offset = np.zeros(n_topics, dtype=np.int64)
    family_count = np.zeros(n_topics, dtype=np.int64)
    contexts: list[str] = []
    max_tasks = max(len(t.tasks) for t in TOPICS)
    template_start = np.zeros((n_topics, max_tasks), dtype=np.int64)
    template_count = np.ones((n_topics, max_tasks), dtype=np.int64)
    template_cum = np.full((n_topics, max_tasks), 2.0)
    for t, topic in enumerate(TOPICS):
        family_offset[t] = len(family_ids)
        family_count[t] = len(topic.families)
        for family in topic.families:
            family_ids.append(f"{topic.slug}/{family.key}")
            family_types.append(family.pattern_type)
            rendered: list[str] = []
            for text in family.paraphrases:
                # every paraphrase gets len(slots) entries, so a uniform index is unbiased
                rendered.extend(text.replace("{x}", slot) for slot in topic.slots)
            renderings.append(rendered)
        # Zipf-like task popularity: a few tasks dominate, as in real logs.
        weights = 1.0 / np.arange(1, len(topic.tasks) + 1) ** 0.8
        template_cum[t, : len(topic.tasks)] = np.cumsum(weights / weights.sum())
        template_cum[t, len(topic.tasks) - 1] = 1.0
        for k, task in enumerate(topic.tasks):
            template_start[t, k] = len(contexts)
            if "{x}" in task:
                contexts.extend(task.replace("{x}", slot) for slot in topic.slots)
                template_count[t, k] = len(topic.slots)
            else:
                contexts.append(task)
    tool_combos = [
        [list(c) for r in (1, 2, 3) for c in itertools.combinations(topic.tools, r)]
        for topic in TOPICS
    ]
    return _Tables(
        n_topics=n_topics,
        family_ids=family_ids,
        family_types=family_types,
        family_offset=family_offset,
        family_count=family_count,
        renderings=renderings,
        contexts=contexts,
        template_start=template_start,
        template_count=template_count,
        template_cum=template_cum,
        pool_names=[list(topic.files) for topic in TOPICS],
        pool_size=np.array([len(topic.files) for topic in TOPICS], dtype=np.int64),
        hot_names=[topic.hot_pairs for topic in TOPICS],
        tool_combos=tool_combos,
        projects=[topic.projects for topic in TOPICS],
    )


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class _Plan:
    """Per-pattern assignments (numpy, O(n_patterns)) and per-topic sampling tables."""

    topic: np.ndarray  # int16, pattern -> topic
    family: np.ndarray  # int32, pattern -> global family index
    role: np.ndarray  # int8
    base: np.ndarray  # float32 base quality (unused for improving/declining)
    active: np.ndarray  # topics that have at least one pattern
    special_ids: np.ndarray  # topic x slot -> pattern index (-1 padded)
    special_count: np.ndarray  # topic -> number of special patterns
    special_cum: np.ndarray  # topic x slot -> cumulative share (2.0 padded)
    normal_ids: np.ndarray  # normal patterns grouped by topic
    normal_start: np.ndarray
    normal_count: np.ndarray
    improving_pair: np.ndarray  # topic x 2 -> bool
    role_share: dict[int, float]  # special role -> share of its topic's pattern draws


def _roles_for(m: int) -> list[int]:
    roles = list(_ROLE_ORDER)
    if m >= _EXTRA_POOR_AT:
        roles.append(POOR)
    if m >= _EXTRA_BEST_AT:
        roles.append(BEST)
    return roles[:m]


def _role_shares(n_events: int, n_active: int) -> dict[int, float]:
    """Draw share per special role; trend patterns get enough events to show their slope."""
    per_topic = n_events / n_active
    low, high = TREND_SHARE
    trend = high if per_topic <= 0 else min(high, max(low, TREND_MIN_EVENTS / per_topic))
    return {BEST: BEST_SHARE, IMPROVING: trend, DECLINING: trend, POOR: POOR_SHARE}


def _make_plan(n_patterns: int, n_events: int, tables: _Tables, rng: np.random.Generator) -> _Plan:
    n_topics = tables.n_topics
    role_share = _role_shares(n_events, min(n_patterns, n_topics))
    topic = np.empty(n_patterns, dtype=np.int16)
    topic[rng.permutation(n_patterns)] = np.arange(n_patterns) % n_topics
    fam_local = (rng.random(n_patterns) * tables.family_count[topic]).astype(np.int32)
    family = (tables.family_offset[topic] + fam_local).astype(np.int32)
    role = np.zeros(n_patterns, dtype=np.int8)
    base = rng.uniform(*NORMAL_BASE, size=n_patterns).astype(np.float32)

    by_topic = np.argsort(topic, kind="stable")
    counts = np.bincount(topic, minlength=n_topics)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    max_special = len(_ROLE_ORDER) + 2
    special_ids = np.full((n_topics, max_special), -1, dtype=np.int64)
    special_cum = np.full((n_topics, max_special), 2.0)
    special_count = np.zeros(n_topics, dtype=np.int64)
    for t in range(n_topics):
        members = by_topic[starts[t] : starts[t] + counts[t]]
        roles = _roles_for(len(members))
        if not roles:
            continue
        chosen = rng.choice(members, size=len(roles), replace=False)
        shares = np.array([role_share[r] for r in roles])
        if len(members) == len(roles):  # no normal patterns left: specials take all draws
            shares = shares / shares.sum()
        for pid, r in zip(chosen, roles, strict=True):
            role[pid] = r
            if r == BEST:
                family[pid] = tables.family_offset[t]  # the topic's canonical approach
                base[pid] = rng.uniform(*BEST_BASE)
            elif r == POOR:
                base[pid] = rng.uniform(*POOR_BASE)
            elif r in (IMPROVING, DECLINING):
                base[pid] = float(np.mean(IMPROVING_LINE))
        special_ids[t, : len(roles)] = chosen
        special_cum[t, : len(roles)] = np.cumsum(shares)
        if len(members) == len(roles):
            special_cum[t, len(roles) - 1] = 1.0
        special_count[t] = len(roles)

    normal_ids = by_topic[role[by_topic] == NORMAL]
    normal_count = np.bincount(topic[normal_ids], minlength=n_topics)
    normal_start = np.concatenate(([0], np.cumsum(normal_count)[:-1]))
    active = np.flatnonzero(counts > 0)
    improving_pair = np.zeros((n_topics, 2), dtype=bool)
    chosen_topics = rng.choice(active, size=(len(active) + 1) // 2, replace=False)
    improving_pair[chosen_topics, rng.integers(0, 2, size=len(chosen_topics))] = True
    return _Plan(
        topic=topic,
        family=family,
        role=role,
        base=base,
        active=active,
        special_ids=special_ids,
        special_count=special_count,
        special_cum=special_cum,
        normal_ids=normal_ids,
        normal_start=normal_start,
        normal_count=normal_count,
        improving_pair=improving_pair,
        role_share=role_share,
    )


# --------------------------------------------------------------------------- writers


def _iso(base: np.datetime64, seconds: np.ndarray) -> list[str]:
    stamps = np.datetime_as_string(base + seconds.astype("timedelta64[s]"), unit="s")
    return [s + "Z" for s in stamps.tolist()]


def _write_patterns(
    path: Path, plan: _Plan, tables: _Tables, start: date, rng: np.random.Generator
) -> None:
    n = len(plan.topic)
    width = max(7, len(str(n - 1)))
    base_time = np.datetime64(datetime(start.year, start.month, start.day), "s")
    max_before = FIRST_SEEN_BEFORE_DAYS * 86_400
    dumps = orjson.dumps
    with path.open("wb", buffering=1 << 20) as out:
        write = out.write
        for lo in range(0, n, _CHUNK):
            hi = min(n, lo + _CHUNK)
            m = hi - lo
            fam = plan.family[lo:hi].tolist()
            role = plan.role[lo:hi].tolist()
            topic = plan.topic[lo:hi].tolist()
            variant = rng.random(m).tolist()
            prefix = rng.integers(0, len(_PREFIXES), size=m).tolist()
            suffix = rng.integers(0, len(_SUFFIXES), size=m).tolist()
            first_seen = _iso(base_time, -rng.integers(1, max_before, size=m))
            for k in range(m):
                f = fam[k]
                options = tables.renderings[f]
                text = options[int(variant[k] * len(options))]
                record = {
                    "pattern_id": f"p{lo + k:0{width}d}",
                    "description": _PREFIXES[prefix[k]] + text + _SUFFIXES[suffix[k]],
                    "pattern_type": tables.family_types[f],
                    "first_seen": first_seen[k],
                    "metadata": {
                        "topic": TOPICS[topic[k]].slug,
                        "family": tables.family_ids[f],
                        "role": ROLE_NAMES[role[k]],
                    },
                }
                # one write per line: orjson's output buffers are oversized, so collecting
                # a chunk's lines would hold ~4 KB per line
                write(dumps(record, option=orjson.OPT_APPEND_NEWLINE))


def _pick_patterns(
    plan: _Plan, session_topic: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Pattern per event: mostly from the event's topic, with per-role shares; returns
    (pattern index, the topic the pattern was drawn from)."""
    n = len(session_topic)
    n_active = len(plan.active)
    source = session_topic.astype(np.int64)
    if n_active > 1:
        position = np.searchsorted(plan.active, source)
        other = plan.active[(position + rng.integers(1, n_active, size=n)) % n_active]
        source = np.where(rng.random(n) < OWN_TOPIC_SHARE, source, other)
    r = rng.random(n)
    slot = (r[:, None] >= plan.special_cum[source]).sum(axis=1)
    is_special = slot < plan.special_count[source]
    special = plan.special_ids[source, np.minimum(slot, plan.special_ids.shape[1] - 1)]
    count = plan.normal_count[source]
    offset = (rng.random(n) * np.maximum(count, 1)).astype(np.int64)
    normal_pos = np.minimum(plan.normal_start[source] + offset, max(len(plan.normal_ids) - 1, 0))
    normal = plan.normal_ids[normal_pos] if len(plan.normal_ids) else np.zeros(n, np.int64)
    return np.where(is_special, special, normal), source


def _write_events(
    path: Path,
    n_events: int,
    plan: _Plan,
    tables: _Tables,
    weeks: int,
    start: date,
    rng: np.random.Generator,
    progress: Callable[[int], None] | None,
) -> np.ndarray:
    """Stream the events; returns which context codes were used (for the distinct count)."""
    used = np.zeros(len(tables.contexts), dtype=bool)
    period = weeks * 7 * 86_400
    base_time = np.datetime64(datetime(start.year, start.month, start.day), "s")
    p_width = max(7, len(str(len(plan.topic) - 1)))
    e_width = max(8, len(str(n_events)))
    low_len, high_len = SESSION_LENGTH
    max_pool = int(tables.pool_size.max())
    pool_mask = np.arange(max_pool)[None, :] >= tables.pool_size[:, None]  # topic x slot
    n_projects = np.array([len(p) for p in tables.projects])
    n_combos = np.array([len(c) for c in tables.tool_combos])
    written = 0
    session_no = 0
    with path.open("wb", buffering=1 << 20) as out:
        while written < n_events:
            n = min(_CHUNK, n_events - written)
            # sessions: 1..8 consecutive events sharing topic, project and task text
            lengths = rng.integers(low_len, high_len + 1, size=n)
            ends = np.cumsum(lengths)
            n_sessions = int(np.searchsorted(ends, n)) + 1
            lengths = lengths[:n_sessions].copy()
            lengths[-1] -= int(ends[n_sessions - 1]) - n
            firsts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
            s_topic = plan.active[rng.integers(0, len(plan.active), size=n_sessions)]
            s_project = (rng.random(n_sessions) * n_projects[s_topic]).astype(np.int64)
            s_template = (rng.random(n_sessions)[:, None] >= tables.template_cum[s_topic]).sum(1)
            s_slot = rng.random(n_sessions) * tables.template_count[s_topic, s_template]
            s_context = tables.template_start[s_topic, s_template] + s_slot.astype(np.int64)
            used[s_context] = True
            centre = (written + firsts + 0.5) / n_events * period
            s_time = np.clip(centre + rng.normal(0.0, 6 * 3600, n_sessions), 0, period - 1)
            sess = np.repeat(np.arange(n_sessions), lengths)
            gaps = rng.integers(60, 1200, size=n)
            gaps[firsts] = 0
            walked = np.cumsum(gaps)
            seconds = np.minimum(
                s_time.astype(np.int64)[sess] + walked - walked[firsts][sess], period - 1
            )
            frac = seconds / period
            topic = s_topic[sess]

            pattern, source = _pick_patterns(plan, topic, rng)
            role = plan.role[pattern]
            quality = np.where(
                source == topic, plan.base[pattern], np.minimum(plan.base[pattern], CROSS_TOPIC_CAP)
            ).astype(np.float64)
            quality = np.where(
                role == IMPROVING,
                IMPROVING_LINE[0] + (IMPROVING_LINE[1] - IMPROVING_LINE[0]) * frac,
                quality,
            )
            quality = np.where(
                role == DECLINING,
                DECLINING_LINE[0] + (DECLINING_LINE[1] - DECLINING_LINE[0]) * frac,
                quality,
            )
            # files: maybe one hot pair (never split), plus distinct files from the pool
            u = rng.random(n)
            hot = np.where(u < HOT_PAIR_SHARE, 0, np.where(u < 2 * HOT_PAIR_SHARE, 1, -1))
            has_hot = hot >= 0
            trend = PAIR_TREND[0] + (PAIR_TREND[1] - PAIR_TREND[0]) * frac
            rising = has_hot & plan.improving_pair[topic, np.maximum(hot, 0)]
            quality = quality + np.where(rising, trend, 0.0) + rng.normal(0.0, NOISE_SD, n)
            quality = np.round(np.clip(quality, 0.0, 1.0), 3)
            n_extra = np.where(
                has_hot,
                rng.integers(0, _MAX_EXTRA_FILES + 1, size=n),
                rng.integers(1, _MAX_EXTRA_FILES + 1, size=n),
            )
            keys = rng.random((n, max_pool))
            keys[pool_mask[topic]] = 2.0
            order = np.argsort(keys, axis=1)[:, :_MAX_EXTRA_FILES]
            combo = (rng.random(n) * n_combos[topic]).astype(np.int64)

            _write_event_lines(
                out.write,
                written,
                session_no,
                sess,
                topic,
                pattern,
                seconds,
                base_time,
                quality,
                hot,
                n_extra,
                order,
                combo,
                s_topic,
                s_project,
                s_context,
                tables,
                p_width,
                e_width,
            )
            written += n
            session_no += n_sessions
            if progress is not None:
                progress(n)
    return used


def _write_event_lines(
    write: Callable[[bytes], object],
    first: int,
    first_session: int,
    sess: np.ndarray,
    topic: np.ndarray,
    pattern: np.ndarray,
    seconds: np.ndarray,
    base_time: np.datetime64,
    quality: np.ndarray,
    hot: np.ndarray,
    n_extra: np.ndarray,
    order: np.ndarray,
    combo: np.ndarray,
    s_topic: np.ndarray,
    s_project: np.ndarray,
    s_context: np.ndarray,
    tables: _Tables,
    p_width: int,
    e_width: int,
) -> None:
    """Encode one chunk of events as JSON lines (the only per-event Python loop).

    Each line is written at once: orjson's output buffers are oversized, so collecting a
    chunk's lines before writing would hold ~4 KB per line.
    """
    stamps = _iso(base_time, seconds)
    session_ids = [f"s{first_session + s + 1:0{e_width}d}" for s in range(len(s_topic))]
    projects = [
        tables.projects[t][p] for t, p in zip(s_topic.tolist(), s_project.tolist(), strict=True)
    ]
    contexts = [tables.contexts[c] for c in s_context.tolist()]
    dumps = orjson.dumps
    for k, (s, t, p, q, h, x, row, c) in enumerate(
        zip(
            sess.tolist(),
            topic.tolist(),
            pattern.tolist(),
            quality.tolist(),
            hot.tolist(),
            n_extra.tolist(),
            order.tolist(),
            combo.tolist(),
            strict=True,
        )
    ):
        pool = tables.pool_names[t]
        files = list(tables.hot_names[t][h]) if h >= 0 else []
        files.extend(pool[j] for j in row[:x])
        record = {
            "event_id": f"e{first + k + 1:0{e_width}d}",
            "pattern_id": f"p{p:0{p_width}d}",
            "session_id": session_ids[s],
            "timestamp": stamps[k],
            "outcome_quality": q,
            "files_involved": files,
            "tools_used": tables.tool_combos[t][c],
            "context": contexts[s],
            "project_id": projects[s],
        }
        write(dumps(record, option=orjson.OPT_APPEND_NEWLINE))


def _truth(
    plan: _Plan,
    tables: _Tables,
    n_patterns: int,
    n_events: int,
    seed: int,
    weeks: int,
    start: date,
    n_distinct: int,
) -> dict[str, object]:
    width = max(7, len(str(n_patterns - 1)))

    def ids(where: np.ndarray) -> list[str]:
        return [f"p{int(i):0{width}d}" for i in np.flatnonzero(where)]

    topics = []
    hot_pairs: list[list[str]] = []
    improving_pairs: list[list[str]] = []
    for t in plan.active.tolist():
        topic = TOPICS[t]
        in_topic = plan.topic == t
        pairs = [sorted(pair) for pair in topic.hot_pairs]
        hot_pairs.extend(pairs)
        improving_pairs.extend(p for k, p in enumerate(pairs) if plan.improving_pair[t, k])
        topics.append(
            {
                "slug": topic.slug,
                "name": topic.name,
                "n_patterns": int(in_topic.sum()),
                "best_family": tables.family_ids[int(tables.family_offset[t])],
                "families": [f"{topic.slug}/{f.key}" for f in topic.families],
                "best_pattern_ids": ids(in_topic & (plan.role == BEST)),
                "improving_pattern_ids": ids(in_topic & (plan.role == IMPROVING)),
                "declining_pattern_ids": ids(in_topic & (plan.role == DECLINING)),
                "poor_pattern_ids": ids(in_topic & (plan.role == POOR)),
                "hot_file_pairs": pairs,
                "improving_file_pairs": [
                    p for k, p in enumerate(pairs) if plan.improving_pair[t, k]
                ],
                "projects": list(topic.projects),
                "unseen_tasks": list(topic.unseen),
            }
        )
    return {
        "topics": topics,
        "best_pattern_ids": ids(plan.role == BEST),
        "improving_pattern_ids": ids(plan.role == IMPROVING),
        "declining_pattern_ids": ids(plan.role == DECLINING),
        "poor_pattern_ids": ids(plan.role == POOR),
        "hot_file_pairs": hot_pairs,
        "improving_file_pairs": improving_pairs,
        "n_distinct_contexts": n_distinct,
        "quality_model": {
            "own_topic_share": OWN_TOPIC_SHARE,
            "cross_topic_cap": CROSS_TOPIC_CAP,
            "best_base": list(BEST_BASE),
            "normal_base": list(NORMAL_BASE),
            "poor_base": list(POOR_BASE),
            "improving_line": list(IMPROVING_LINE),
            "declining_line": list(DECLINING_LINE),
            "improving_pair_trend": list(PAIR_TREND),
            "noise_sd": NOISE_SD,
            "hot_pair_share": HOT_PAIR_SHARE,
            "role_share": {ROLE_NAMES[r]: s for r, s in plan.role_share.items()},
        },
        "params": {
            "n_patterns": n_patterns,
            "n_events": n_events,
            "seed": seed,
            "weeks": weeks,
            "start": start.isoformat(),
        },
    }


# --------------------------------------------------------------------------- entry point


def generate(
    outdir: Path,
    n_patterns: int,
    n_events: int,
    seed: int = 0,
    *,
    weeks: int = 52,
    start: date = date(2025, 1, 6),
    progress: Callable[[int], None] | None = None,
) -> GenerationSummary:
    """Write patterns.jsonl, events.jsonl and truth.json into `outdir`.

    Deterministic in (n_patterns, n_events, seed, weeks, start); patterns.jsonl depends on
    (n_patterns, seed, start) only. `progress(n)` gets the events written since its last
    call, once per chunk. Files are written under temporary names and renamed at the end,
    so a reader never sees a half-written file under the final name.
    """
    if isinstance(n_patterns, bool) or not isinstance(n_patterns, int) or n_patterns < 1:
        raise ValueError(f"n_patterns must be an integer >= 1, got {n_patterns!r}")
    if isinstance(n_events, bool) or not isinstance(n_events, int) or n_events < 0:
        raise ValueError(f"n_events must be an integer >= 0, got {n_events!r}")
    if isinstance(weeks, bool) or not isinstance(weeks, int) or weeks < 1:
        raise ValueError(f"weeks must be an integer >= 1, got {weeks!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(start, date):
        raise ValueError(f"start must be a datetime.date, got {start!r}")
    started = time.perf_counter()
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    plan_seq, pattern_seq, event_seq = np.random.SeedSequence(seed).spawn(3)
    tables = _build_tables()
    plan = _make_plan(n_patterns, n_events, tables, np.random.default_rng(plan_seq))

    targets = {name: outdir / name for name in ("patterns.jsonl", "events.jsonl", "truth.json")}
    partial = {name: path.with_name(path.name + ".partial") for name, path in targets.items()}
    try:
        _write_patterns(
            partial["patterns.jsonl"], plan, tables, start, np.random.default_rng(pattern_seq)
        )
        used = _write_events(
            partial["events.jsonl"],
            n_events,
            plan,
            tables,
            weeks,
            start,
            np.random.default_rng(event_seq),
            progress,
        )
        n_distinct = int(used.sum())
        truth = _truth(plan, tables, n_patterns, n_events, seed, weeks, start, n_distinct)
        partial["truth.json"].write_bytes(
            orjson.dumps(truth, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
        )
        for name, path in targets.items():
            os.replace(partial[name], path)
    finally:
        for path in partial.values():
            path.unlink(missing_ok=True)
    return GenerationSummary(
        outdir=outdir,
        n_patterns=n_patterns,
        n_events=n_events,
        n_distinct_contexts=n_distinct,
        seconds=time.perf_counter() - started,
    )
