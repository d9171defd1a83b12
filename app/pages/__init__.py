"""One module per page: each exposes `build(...)` that lays out its tab and wires its events."""
