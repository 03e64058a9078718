"""A small test project: a real Git repository with an app, OS bases as directories, and a recipe."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import make_busybox_rootfs, regfp_json
from gitrepo import GitRepo

RECIPE = """\
regfp: 1
name: hello
source: {{git: src, ref: {ref}, subdir: app}}
build:
  base: stable
  rebuildAfter: 90d
  dependencies: [requirements.lock, vendor]
  copy: [{{from: ., to: /app}}]
  workdir: /app
  entrypoint: [/bin/sh, /app/run.sh]
  env: {{PORT: "8080", GREETING: hi}}
  ports: ["8080"]
patch:
  channels: {{stable: "dir:bases/os-1", current: "dir:bases/os-2", next: "dir:bases/os-3"}}
output: {{layout: out}}
"""

# The golden digest of the test project below (linux/amd64 dir: bases, gzip via isal 1.9.1). If an
# intended change to the output format alters it, bump plan.FORMAT_VERSION and update it here.
GOLDEN = "sha256:05bab498a75db0c613afebd48ea36caf8234df4a2d85a005f9509df9fe2a620d"


def make_project(root: Path, *, ref: str = "main", runnable: bool = False) -> GitRepo:
    repo = GitRepo.init(root / "src")
    repo.write("app/run.sh", "#!/bin/sh\necho \"hello $GREETING on $(cat /etc/os-release | head -1)\"\nenv\n",
               0o755)
    repo.write("app/main.txt", "application code v1\n")
    repo.write("app/requirements.lock", "dep==1.0\n")
    repo.write("app/vendor/dep/lib.sh", "dep() { :; }\n")
    repo.write("README.md", "not copied (outside subdir)\n")
    repo.commit("first")
    for n in (1, 2, 3):
        base = root / "bases" / f"os-{n}"
        if runnable:
            make_busybox_rootfs(base)
        else:
            (base / "etc").mkdir(parents=True)
        (base / "etc" / "os-release").write_text(f"ID=test-os-{n}\n")
        for p in [base, *base.rglob("*")]:
            if p.is_dir() and not p.is_symlink():
                os.chmod(p, 0o1777 if p.name == "tmp" else 0o755)
            elif p.is_file() and not p.is_symlink():
                os.chmod(p, 0o755 if p.name == "busybox" else 0o644)
    (root / "recipe.yaml").write_text(RECIPE.format(ref=ref))
    return repo


def build(root: Path, *args: str, recipe: str = "recipe.yaml") -> dict:
    return regfp_json("build", str(root / recipe), *args)  # type: ignore[return-value]


def layers(layout: Path, name: str) -> list[str]:
    shown = regfp_json("inspect", f"oci:{layout}:{name}")
    return [la["digest"] for la in shown["layers"]]  # type: ignore[index]


def blob_files(layout: Path) -> set[str]:
    return {p.name for p in (layout / "blobs" / "sha256").iterdir()}


