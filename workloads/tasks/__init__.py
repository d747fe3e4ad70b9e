"""The task behind each training template, by template name."""

from workloads.tasks.base import Dataset, Task, split
from workloads.tasks.defect import DefectInspection
from workloads.tasks.maintenance import PredictiveMaintenance
from workloads.tasks.power import PowerForecast
from workloads.tasks.tabular import TabularQuality

TASKS: dict[str, Task] = {
    t.name: t for t in (DefectInspection(), PredictiveMaintenance(), PowerForecast(), TabularQuality())
}


def get_task(template: str) -> Task:
    try:
        return TASKS[template]
    except KeyError:
        raise KeyError(f"no training task for template {template!r}; known: {', '.join(TASKS)}") from None


__all__ = ["TASKS", "Dataset", "Task", "get_task", "split"]
