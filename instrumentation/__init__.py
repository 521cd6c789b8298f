"""What measures: client mod, injection, timers, capture, clocks, system, event log."""
