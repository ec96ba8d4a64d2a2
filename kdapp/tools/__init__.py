"""Tooling around the lab: benchmarks, the load test, the reproduction of published tables, the
int8 and continual-learning studies, the robustness check on redrawn digits (each a `python -m kdapp`
subcommand), and helpers shared by them and the tests (re-drawn digits, a served app). Not imported
by the app."""
