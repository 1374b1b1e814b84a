"""Entry point `pulumi up` runs (Pulumi.yaml: main: infra/)."""

import sys
from pathlib import Path

# Pulumi runs this file as a script from the project root's infra/ folder; make the repo root
# importable so that `infra` and `services` resolve as packages.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infra.program import define_stack

define_stack()
