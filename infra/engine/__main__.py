"""``python -m infra.engine build``: build and cache the Pulumi CLI, the Kubernetes provider
and helm. ``python -m infra.engine env``: the shell variables that run that engine by hand
(``eval "$(python -m infra.engine env)"; pulumi version``)."""

import argparse
import sys

from infra.engine.build import build, shell_exports

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
parser.add_argument("command", choices=["build", "env"])
if parser.parse_args().command == "build":
    sys.exit(build())
print("\n".join(shell_exports()))
