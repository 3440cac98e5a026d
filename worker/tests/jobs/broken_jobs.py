"""A job module that fails to import (registry error tests)."""

raise RuntimeError("broken_jobs cannot be imported")
