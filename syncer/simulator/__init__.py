"""The built-in 360Learning API v2 simulator (aiohttp), as strict as the documented service.

    async with running_simulator(SimulatorSettings(op_seconds=0.05)) as sim:
        sim.base_url, sim.state, sim.add_faults([...]), sim.advance(1.0)

    with SimulatorThread(settings) as sim:   # for synchronous callers
        ...

See docs/simulator.md for the control API, the fault rules and every undocumented choice.
"""

from __future__ import annotations

from syncer.simulator.app import Exchange, add_observer, create_app, remove_observer
from syncer.simulator.faults import FaultRule, FaultRuleError, build_fault_rule
from syncer.simulator.server import (
    Simulator,
    SimulatorThread,
    load_users,
    running_simulator,
    serve_forever,
)
from syncer.simulator.settings import (
    ALL_SCOPES,
    DEMO_CLIENT,
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_COMPANY_ID,
    SimClient,
    SimulatorSettings,
)
from syncer.simulator.state import SimState

__all__ = [
    "ALL_SCOPES",
    "DEMO_CLIENT",
    "DEMO_CLIENT_ID",
    "DEMO_CLIENT_SECRET",
    "DEMO_COMPANY_ID",
    "Exchange",
    "FaultRule",
    "FaultRuleError",
    "SimClient",
    "SimState",
    "Simulator",
    "SimulatorSettings",
    "SimulatorThread",
    "add_observer",
    "build_fault_rule",
    "create_app",
    "load_users",
    "remove_observer",
    "running_simulator",
    "serve_forever",
]
