"""The pieces of the simulated engine (``python -m modelfleet.engines.simulator``).

prompt   tokenisation, image parts, block hashes
cache    the LRU prefix cache over block hashes
slots    ``--max-num-seqs`` running slots and the bounded FIFO queue
metrics  counters, histograms and their Prometheus text (``GET /metrics``)
faults   injected errors, stalls and crashes
wire     the JSON shapes the engine answers with
engine   the timing model and the generation routes that tie them together
app      the aiohttp application and its stateless routes
job      a request in flight
"""
