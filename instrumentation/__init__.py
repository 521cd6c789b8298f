"""What measures: the client mod, server-side timers, packet capture and the event log."""
