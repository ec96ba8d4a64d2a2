"""Tooling around the lab: benchmarks, the load test, the reproduction of published tables, and
helpers shared by them and the tests (re-drawn digits, a served app). Not imported by the app."""
