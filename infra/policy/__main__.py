"""Entry point of the policy pack."""

import sys
from pathlib import Path

_here = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if p not in ("", _here)]
sys.path.insert(0, str(Path(_here).parents[1]))

from pulumi_policy import EnforcementLevel, PolicyPack  # noqa: E402

from infra.policy.policies import POLICIES  # noqa: E402

PolicyPack(name="testbed-policies", enforcement_level=EnforcementLevel.MANDATORY, policies=POLICIES)
