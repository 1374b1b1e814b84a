"""``python -m infra.engine build``: build and cache the Pulumi CLI, the Kubernetes provider
and helm (scripts/build-engine.sh). ``python -m infra.engine env``: the shell variables that
run that engine by hand (``eval "$(python -m infra.engine env)"; pulumi version``)."""

import argparse
import os
import shlex
import subprocess
import sys

from infra.engine.versions import paths
from infra.render import REPO_ROOT


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("command", choices=["build", "env"])
    command = parser.parse_args().command
    engine = paths()
    if command == "build":
        script = REPO_ROOT / "scripts" / "build-engine.sh"
        return subprocess.run(
            [str(script)], env={**os.environ, **engine.build_environment()}
        ).returncode
    for name, value in {
        "PATH": f"{engine.cli.parent}:{engine.helm.parent}:{os.environ.get('PATH', '')}",
        "PULUMI_HOME": str(engine.pulumi_home),
        "PULUMI_IGNORE_AMBIENT_PLUGINS": "true",
    }.items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
