"""pytest plugin for testing kumoclient policies (registered as the `kumoclient` pytest11
entry point). Being written; see docs/testing.md."""
