"""The agent: engines on another host, registered in the metastore (``runner.py``),
with a small control API for their logs (``control.py``)."""
