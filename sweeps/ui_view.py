"""A saved MLflow UI view per sweep and profile: its points as curves, one line per configuration.

MLflow's URL carries the search filter and the chart mode, but not "Group by"; a *shared view*
carries both. MLflow 3 reads it from the experiment tag ``mlflow.sharedViewState.<key>`` (the
JSON of its search facets and UI state) when the page is opened with ``?viewStateShareKey=<key>``.
`publish_views` writes one such view for each (experiment, profile) holding sweep points:
filtered to that profile's points, grouped by their ``dqt.config`` tag (the configuration
without the seed, `sweeps.runner.point_tags`) with the mean over seeds and a min-max band.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

VIEW_TAG = "mlflow.sharedViewState."
CONFIG_TAG = "dqt.config"
_SEED = re.compile(r"\s*seed=\d+$")


@dataclass(frozen=True)
class SweepView:
    experiment: str
    experiment_id: str
    profile: str
    points: int
    key: str

    def url(self, base: str) -> str:
        return f"{base.rstrip('/')}/#/experiments/{self.experiment_id}/runs?viewStateShareKey={self.key}&compareRunsMode=CHART"


def view_state(profile: str) -> dict[str, Any]:
    """The shared-view JSON: the profile's points, grouped by configuration, empty charts hidden."""
    return {"searchFilter": f"tags.profile = '{profile}' and tags.`dqt.role` = 'point'",
            "orderByKey": "attributes.start_time", "orderByAsc": False,
            "groupBy": {"aggregateFunction": "average", "groupByKeys": [{"mode": "tag", "groupByData": CONFIG_TAG}]},
            "useGroupedValuesInCharts": True, "hideEmptyCharts": True}


def publish_views(client: Any) -> list[SweepView]:
    """Write the view of every (experiment, profile) with sweep points; returns them.

    Points logged before the ``dqt.config`` tag existed get it here, from
    their run name (the configuration's name followed by ``seed=N``), so they group too."""
    views = []
    for exp in sorted(client.search_experiments(), key=lambda e: e.name):
        points: dict[str, int] = {}
        for run in client.search_runs([exp.experiment_id], "tags.`dqt.role` = 'point'", max_results=50_000):
            profile = run.data.tags.get("profile", "")
            points[profile] = points.get(profile, 0) + 1
            if CONFIG_TAG not in run.data.tags:
                name = _SEED.sub("", run.info.run_name or "") or run.data.tags.get("config_hash", "")
                client.set_tag(run.info.run_id, CONFIG_TAG, name)
        for profile, n in sorted(points.items()):
            key = "dqt-" + (re.sub(r"[^A-Za-z0-9_-]", "-", profile) or "default")
            client.set_experiment_tag(exp.experiment_id, VIEW_TAG + key, json.dumps(view_state(profile)))
            views.append(SweepView(exp.name, exp.experiment_id, profile, n, key))
    return views
