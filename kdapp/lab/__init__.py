"""The lab: the facade the UI and CLI call, its fair queue, the SQLite run store and the worker process."""
