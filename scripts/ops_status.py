"""`scripts/ops.sh status`: per deployment, its last runs and its next scheduled one (not
only the furthest scheduled runs, which is all `prefect flow-run ls` shows at first)."""

from __future__ import annotations

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowRunFilter, FlowRunFilterState
from prefect.client.schemas.filters import FlowRunFilterStateType
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort
from rich.console import Console
from rich.table import Table

RECENT = 3


def _when(run) -> str:
    moment = run.start_time or run.expected_start_time
    return moment.strftime("%m-%d %H:%M") if moment else "-"


def main() -> None:
    table = Table(title="deployments (times in UTC)")
    for column in ("deployment", "schedule", f"last {RECENT} runs (newest first)", "next"):
        table.add_column(column, overflow="fold")
    with get_client(sync_client=True) as client:
        for deployment in sorted(client.read_deployments(), key=lambda d: d.name):
            only = DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
            past = client.read_flow_runs(
                deployment_filter=only, sort=FlowRunSort.START_TIME_DESC, limit=RECENT,
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                    type=FlowRunFilterStateType(not_any_=[StateType.SCHEDULED]))),
            )
            upcoming = client.read_flow_runs(
                deployment_filter=only, sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=1,
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))),
            )
            schedules = ", ".join(
                getattr(s.schedule, "cron", None) or f"every {getattr(s.schedule, 'interval', '')}"
                for s in deployment.schedules
            ) or "manual"
            recent = "; ".join(f"{_when(r)} {r.state_name}" for r in past) or "none yet"
            table.add_row(deployment.name, schedules, recent, _when(upcoming[0]) if upcoming else "-")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
