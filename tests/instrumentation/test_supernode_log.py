from instrumentation.supernode_log import supernode_log_events

LINES = [
    (100, "\x1b[92mINFO \x1b[0m:      [RUN 352]"),
    (110, "\x1b[92mINFO \x1b[0m:      Receiving: train message (ID: a76acc)"),
    (250, "\x1b[92mINFO \x1b[0m:      Received successfully"),
    (260, "\x1b[92mINFO \x1b[0m:      Start `flwr-clientapp` process"),
    (900, "\x1b[92mINFO \x1b[0m:      Sending: train message (ID: 358b6e)"),
    (990, "\x1b[92mINFO \x1b[0m:      Sent successfully"),
    (995, "INFO:     Uvicorn running on http://127.0.0.1:9094"),
]


def test_supernode_log_lines_become_instants() -> None:
    events = supernode_log_events(LINES, "pi01")
    assert [(e["kind"], e["at_ns"]) for e in events] == [
        ("receive_start", 110),
        ("receive_end", 250),
        ("clientapp_start", 260),
        ("send_start", 900),
        ("send_end", 990),
    ]
    assert events[1]["message_id"] == "a76acc" and events[1]["message_type"] == "train"
    assert events[4]["message_id"] == "358b6e"
    assert all(e["node"] == "pi01" for e in events)
