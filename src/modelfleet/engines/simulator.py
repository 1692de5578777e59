"""A simulated engine: a real process speaking the OpenAI protocol, no model.

``python -m modelfleet.engines.simulator --port P [--served-model-name N] [flags]``
(or ``--uds PATH`` instead of ``--port``: listen on that Unix socket, as engines started
by hand for seed 000 do)

It answers chat and completions (streaming or not), embeddings and ``/tokenize``
with deterministic text ("alpha bravo charlie ...", exactly ``max_tokens`` words,
finish_reason "length") on a timing model with slots, a queue and a prefix
cache; it exposes vLLM-style ``GET /metrics``, can play a role in disaggregated
serving, and injects faults on demand. Users see it only when a config declares
``engine: simulator``. The pieces live in ``modelfleet.engines.sim``.

Flags::

    --host H / --port P / --uds PATH / --served-model-name N / --model M (ignored)
    --max-tokens-default 16      max_tokens when a request names none
    --prefill-ms-per-token 0     per uncached prompt token
    --decode-ms-per-token 0      per output token
    --max-num-seqs 8             requests running at once
    --max-queue N                requests waiting beyond those (default unbounded;
                                 0 = none); past it: 503 code QUEUE_FULL
    --prefix-cache-blocks 1024   LRU prefix cache size in blocks (0 = off); also the
                                 block pool behind vllm:kv_cache_usage_perc
    --block-size 16              tokens per block
    --role pd|encode|prefill|decode
    --encode-ms-per-image 0      per image part that is encoded here
    --error-rate 0 --error-status 500   answer that fraction with that status
    --stall-first-byte-s 0       before taking a slot
    --stall-mid-stream-s 0       once, halfway through a stream
    --crash-after 0              exit(70) on request N+1
    --seed 0                     for --error-rate

Timing: wait for a slot (FIFO), then ``encode-ms-per-image`` × images encoded
here + ``prefill-ms-per-token`` × prompt tokens neither cached nor transferred,
then one ``decode-ms-per-token`` step per output token (the first included).
Tokens are whitespace words (see ``sim/prompt.py``; an image part is one token);
usage counts them the same way and reports ``prompt_tokens_details.cached_tokens``
(prefix-cache hits plus KV transferred from a prefill, as vLLM counts them). At
least the last prompt token is always computed.

Disaggregated serving (vLLM's P/D proxy protocol, NixlConnector field names):

* prefill: a request with ``"kv_transfer_params": {"do_remote_decode": true, ...}``
  (the proxy also sets ``max_tokens: 1, stream: false``) is prefilled and answered
  as a normal completion plus a top-level ``"kv_transfer_params":
  {"do_remote_prefill": true, "do_remote_decode": false, "remote_engine_id": ID,
  "remote_block_ids": [ceil(prompt/block) ids], "remote_host": H, "remote_port": P,
  "remote_request_id": RID, "tp_size": 1}``. Without the flag it serves the
  request whole, like pd.
* decode: a request whose ``kv_transfer_params.do_remote_prefill`` is true skips
  prefill for the tokens the handle covers (``len(remote_block_ids)`` × block
  size, or the whole prompt if it names no blocks, less the last token) and counts
  them in ``kv_transferred_tokens``; no KV is shared, the handle only stands for
  it. Without the handle it prefills itself and counts ``kv_missing``.
* encode: ``POST /v1/chat/completions`` with ``image_url`` parts waits
  ``encode-ms-per-image`` × images and answers ``{"id": "encode-…", "object":
  "encode", "created": T, "model": N, "mm_hashes": [sha256 hex of each image URL,
  in order], "num_images": n, "encode_ms": total}``; a request without images is
  a 400. Other roles encode image parts themselves unless the request carries a
  top-level ``"mm_hashes": [...]`` from an encode step listing them (counted in
  ``mm_hashes_reused``); a decode with a prefill handle encodes nothing.
* pd: everything; kv_transfer_params are ignored (vLLM without a connector).

Other routes: ``GET /health``, ``GET /v1/models``, ``GET /stats`` (role, running,
waiting, completed, aborted, rejected, prompt_tokens_total,
generation_tokens_total, prefix_cache_queries/hits (tokens), prefix_cache_blocks,
kv_transferred_tokens, kv_missing, images, images_encoded, mm_hashes_reused,
requests_by_role {pd, encode, prefill, decode}, profiles_started/stopped),
``GET /metrics``, ``POST /abort_requests {"request_ids": [...]}`` (vLLM's, which
it exposes in tokens-only/dev mode; ids are response ids or their X-Request-Id;
answers ``{"aborted": [ids found]}``; the request ends with finish_reason
"abort"), ``POST /start_profile`` and ``/stop_profile`` (``{}``, counted).
"""

from __future__ import annotations

import argparse
import os
import threading
import time

from aiohttp import web

from modelfleet.engines.sim.app import build_app
from modelfleet.engines.sim.engine import ROLES, Simulator

__all__ = ["Simulator", "build_app", "main", "parse_args"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The simulator's flags (see the module docstring)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--uds", default=None, help="listen on this Unix socket, not a port")
    parser.add_argument("--served-model-name", default="simulator")
    parser.add_argument("--model", default="simulator")
    parser.add_argument("--prefill-ms-per-token", type=float, default=0.0)
    parser.add_argument("--decode-ms-per-token", type=float, default=0.0)
    parser.add_argument("--max-tokens-default", type=int, default=16)
    parser.add_argument("--max-model-len", "--n-ctx", "--ctx-size", type=int, default=None,
                        help="context length (vLLM's and llama.cpp's names); none: no limit")
    parser.add_argument("--max-num-seqs", type=int, default=8)
    parser.add_argument("--max-queue", type=int, default=None,
                        help="waiting requests allowed (default: unbounded)")
    parser.add_argument("--prefix-cache-blocks", type=int, default=1024)
    parser.add_argument("--block-size", type=int, default=16)
    parser.add_argument("--role", choices=ROLES, default="pd")
    parser.add_argument("--encode-ms-per-image", type=float, default=0.0)
    parser.add_argument("--error-rate", type=float, default=0.0, help="fraction answered with "
                        "--error-status")
    parser.add_argument("--error-status", type=int, default=500)
    parser.add_argument("--stall-first-byte-s", type=float, default=0.0)
    parser.add_argument("--stall-mid-stream-s", type=float, default=0.0)
    parser.add_argument("--crash-after", type=int, default=0, help="exit after N requests")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.max_num_seqs < 1 or args.block_size < 1:
        parser.error("--max-num-seqs and --block-size must be at least 1")
    if (args.port is None) == (args.uds is None):
        parser.error("give one of --port and --uds")
    return args


def _exit_with_parent() -> None:
    """Leave when the process that launched us is gone (even after its SIGKILL)."""
    parent = int(os.environ.get("MODELFLEET_PARENT_PID", "0") or 0)
    if not parent:
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    _exit_with_parent()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    where = args.uds or f"{args.host}:{args.port}"
    print(f"simulator {args.served_model_name} ({args.role}) on {where}", flush=True)
    # handler_cancellation: a client that goes away aborts its request, as in vLLM.
    # With a path, run_app serves a web.UnixSite on it instead of a TCP site.
    place = {"path": args.uds} if args.uds else {"host": args.host, "port": args.port}
    web.run_app(build_app(args), **place, print=None, access_log=None,
                shutdown_timeout=2, handler_cancellation=True)


if __name__ == "__main__":
    main()
