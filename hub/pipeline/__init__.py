"""The pipeline stages, in order. The worker runs them through :class:`hub.pipeline.runner.Runner`."""

from __future__ import annotations

from hub.pipeline.acknowledge import Acknowledge
from hub.pipeline.base import Stage, StageContext, StageResult
from hub.pipeline.deliver import Deliver
from hub.pipeline.route import Route
from hub.pipeline.validate import Validate
from hub.pipeline.verify import Verify

__all__ = ["STAGES", "Stage", "StageContext", "StageResult"]

#: verify → validate → route/map → deliver → acknowledge
STAGES: tuple[Stage, ...] = (Verify(), Validate(), Route(), Deliver(), Acknowledge())
