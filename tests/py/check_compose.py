#!/usr/bin/env python3
"""Checks docker-compose.yaml without a Docker engine: the services the
product needs exist, every build context, Dockerfile, build target and
bind-mounted path exists in the repository, named volumes are declared,
images are pinned, and the Dockerfile only COPYs paths that exist.

    check_compose.py REPO_ROOT      (exit 1 listing every problem)
"""

import pathlib
import re
import sys

import yaml

root = pathlib.Path(sys.argv[1])
compose = yaml.safe_load((root / "docker-compose.yaml").read_text())
problems = []
services = compose.get("services", {})
for needed in ("kafka", "stream", "airflow"):
    if needed not in services:
        problems.append(f"service {needed} is missing")
declared = set((compose.get("volumes") or {}).keys())
for name, svc in services.items():
    image, build = svc.get("image"), svc.get("build")
    if not image and not build:
        problems.append(f"{name}: neither image nor build")
    if image and (":" not in image or image.endswith(":latest")):
        problems.append(f"{name}: image {image} is not pinned to a version")
    if build:
        context = root / build.get("context", ".")
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        if not context.is_dir():
            problems.append(f"{name}: build context {context} does not exist")
        elif not dockerfile.is_file():
            problems.append(f"{name}: {dockerfile} does not exist")
        else:
            stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", dockerfile.read_text(), re.M | re.I)
            if build.get("target") and build["target"] not in stages:
                problems.append(f"{name}: target {build['target']} is not a stage of {dockerfile} ({stages})")
    for vol in svc.get("volumes", []):
        source = vol.split(":")[0]
        if source.startswith((".", "/")):
            if not (root / source).exists():
                problems.append(f"{name}: bind mount {source} does not exist")
        elif source not in declared:
            problems.append(f"{name}: volume {source} is not declared")
    for dep in svc.get("depends_on", {}):
        if dep not in services:
            problems.append(f"{name}: depends on unknown service {dep}")

for line in (root / "Dockerfile").read_text().splitlines():
    m = re.match(r"^COPY\s+(?!--from)(.+)\s+\S+$", line.strip())
    if m:
        for src in m.group(1).split():
            if not (root / src).exists():
                problems.append(f"Dockerfile: COPY source {src} does not exist")

if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f"docker-compose.yaml: {len(services)} services OK")
