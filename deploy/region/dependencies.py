"""Prints the third-party requirements of every Regio package, one per line, for the
region image's dependency layer (deploy/region/Dockerfile)."""
import tomllib
from pathlib import Path

PACKAGES = ["libs/common", "services/controlpanel", "services/builder", "services/controller",
            "services/runner-agent", "services/ingress", "deploy/cli"]

requirements = set()
for package in PACKAGES:
    project = tomllib.loads((Path(package) / "pyproject.toml").read_text())["project"]
    requirements.update(r for r in project.get("dependencies", []) if not r.startswith("regio-"))
print("\n".join(sorted(requirements)))
