"""Per-block latency tables: measure, store, predict, validate."""
from .measure import Settings, measure_table, time_network, validate_table
from .table import EngineTables, LatencyTable

__all__ = ["EngineTables", "LatencyTable", "Settings", "measure_table", "time_network", "validate_table"]
