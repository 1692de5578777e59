"""``GET /api/fleet``: this gateway's view of the fleet shared through the metastore.

``node`` is this gateway's id; ``metastore`` says which backend, whether it is
reachable now and how many records it refused as invalid; ``nodes`` are the
live gateways and agents; ``instances`` every live instance record (model,
role, address, node, load, state). While the metastore is unreachable this is
the last view, which is also what requests are routed on.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from modelfleet.api.core import CoreDep

router = APIRouter(tags=["fleet"])


@router.get("/api/fleet")
@router.get("/api/v1/fleet", include_in_schema=False)
async def fleet_view(core: CoreDep) -> dict[str, Any]:
    coordinator = core.coordinator
    store = coordinator.metastore
    return {
        "node": coordinator.node_id,
        "metastore": {"backend": store.name, "available": store.available,
                      "bad_records": store.bad_records, "shared": coordinator.shared},
        "nodes": [n.model_dump(mode="json") for n in coordinator.nodes.values()],
        "instances": [r.model_dump(mode="json") for r in coordinator.records.values()],
    }
