"""Entry point the Pulumi CLI runs for ``pulumi preview --policy-pack infra/policy``."""

import sys
from pathlib import Path

# The CLI runs this file from infra/policy; make the repo root importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pulumi_policy import PolicyPack

from infra.policy.rules import POLICIES

PolicyPack(name="kafka-tasks-platform", policies=POLICIES)
