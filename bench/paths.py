"""Where the benchmark writes: artifacts/ and docs/ of the checkout it runs from."""

from ingest.warehouse import CHECKOUT_ROOT

PROJECT_ROOT = CHECKOUT_ROOT
