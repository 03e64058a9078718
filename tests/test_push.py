"""`regfp build --push` to the real registry, and the images that must never reach a public target."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
from conftest import need, regfp, regfp_json
from pki import make_ca
from project import make_project
from registry_support import Registry

from regctl_fp.stores.base import read_image, write_image
from regctl_fp.stores.layout import LayoutStore

pytest_plugins = ["registry_fixtures"]

EXTRA = """\
rollouts: {{channel: stable}}
environments:
  - {{location: us-east, environment: prod, env: {{LOG_LEVEL: info}},
     identity: {{ca: pki/ca.pem, key: pki/ca.key}},
     push: {{prefix: "{host}/prod", private: {private}}}}}
  - {{location: eu-west, environment: dev, env: {{LOG_LEVEL: debug}}}}
push: {{prefix: "{host}/acme"}}
"""


def push_project(tmp: Path, host: str, private: bool) -> None:
    make_project(tmp)
    make_ca(tmp / "pki", "ca")
    recipe = tmp / "recipe.yaml"
    extra = EXTRA.format(host=host, private="true" if private else "false")
    recipe.write_text(recipe.read_text().replace("output: {layout: out}\n", extra + "output: {layout: out}\n"))


def tags(reg: Registry, repo: str) -> list[str]:
    resp = httpx.get(f"http://{reg.host}/v2/{repo}/tags/list", timeout=10)
    return sorted(resp.json()["tags"] or []) if resp.status_code == 200 else []


def test_build_push_sends_every_image_to_its_prefix(tmp_path: Path, make_registry, tool_env) -> None:  # type: ignore[no-untyped-def]
    reg = make_registry()
    push_project(tmp_path, reg.host, private=True)
    result = regfp_json("build", str(tmp_path / "recipe.yaml"), "--push")
    pushed = set(result["pushed"])
    sha = subprocess.run(["git", "-C", str(tmp_path / "src"), "rev-parse", "HEAD"], capture_output=True,
                         text=True).stdout.strip()
    assert f"{reg.host}/acme/build/src:{sha}" in pushed
    assert f"{reg.host}/acme/patch/src/{sha}:next" in pushed
    assert f"{reg.host}/acme/rollouts/hello:n-0" in pushed
    assert f"{reg.host}/prod/app/hello:live" in pushed  # the environment's own registry prefix
    assert f"{reg.host}/acme/eu-west.dev/app/hello:live" in pushed
    assert tags(reg, "prod/app/hello") == ["live", "r1"]
    layout = {i["name"]: i["digest"] for i in result["images"]}
    shown = subprocess.run([need("skopeo"), "inspect", "--tls-verify=false",
                            f"docker://{reg.host}/acme/build/src:{sha}"], env=tool_env, capture_output=True,
                           text=True, check=True)
    assert json.loads(shown.stdout)["Digest"] == layout[f"build/src:{sha}"]
    again = regfp_json("build", str(tmp_path / "recipe.yaml"), "--push")
    assert set(again["pushed"]) == pushed and all(i["cached"] for i in again["images"])


def test_secrets_never_go_to_a_public_target(tmp_path: Path, make_registry) -> None:  # type: ignore[no-untyped-def]
    reg = make_registry()
    push_project(tmp_path, reg.host, private=False)
    proc = regfp("build", str(tmp_path / "recipe.yaml"), "--push", check=False)
    assert proc.returncode == 2 and "carries a private key" in proc.stderr and "not marked private" in proc.stderr
    assert tags(reg, "acme/rollouts/hello") == [] and tags(reg, "prod/app/hello") == []  # nothing was sent
    layout = tmp_path / "out"
    env_image = f"oci:{layout}:us-east.prod/app/hello:live"
    copy = regfp("copy", env_image, f"{reg.host}/public/app:1", check=False)
    assert copy.returncode == 2 and "--private" in copy.stderr
    assert tags(reg, "public/app") == []
    assert regfp("copy", env_image, f"{reg.host}/private/app:1", "--private").returncode == 0
    assert tags(reg, "private/app") == ["1"]


def test_debug_images_never_leave_ad_hoc_names(tmp_path: Path, make_registry) -> None:  # type: ignore[no-untyped-def]
    reg = make_registry()
    make_project(tmp_path)
    regfp("build", str(tmp_path / "recipe.yaml"), "--only", "build")
    store = LayoutStore.open(tmp_path / "out")
    name = next(n for n in store.names() if n.startswith("build/"))
    image = read_image(store, store.resolve(name)).with_annotations({"dev.regfp.debug": "true"})
    store.set_names({"ad-hoc/src/x:stable": write_image(store, image)})
    src = f"oci:{tmp_path / 'out'}:ad-hoc/src/x:stable"
    refused = regfp("copy", src, f"{reg.host}/acme/app:1", check=False)
    assert refused.returncode == 2 and "debug image" in refused.stderr
    assert tags(reg, "acme/app") == []
    assert regfp("copy", src, f"{reg.host}/acme/ad-hoc/app:1").returncode == 0


def test_push_never_rewrites_a_diverged_release_stream(tmp_path: Path, make_registry) -> None:  # type: ignore[no-untyped-def]
    reg = make_registry()
    a, b = tmp_path / "a", tmp_path / "b"
    repo_a = make_project(a)
    repo_b = make_project(b)
    for root in (a, b):
        recipe = root / "recipe.yaml"
        extra = f'rollouts: {{channel: stable}}\npush: {{prefix: "{reg.host}/acme"}}\n'
        recipe.write_text(recipe.read_text().replace("output: {layout: out}\n", extra + "output: {layout: out}\n"))
    regfp_json("build", str(a / "recipe.yaml"), "--push")
    repo_b.write("app/main.txt", "a different history\n")
    repo_b.commit("diverge")
    refused = regfp("build", str(b / "recipe.yaml"), "--push", check=False)
    assert refused.returncode == 1 and "another machine cut them" in refused.stderr
    ledger = regfp_json("inspect", f"{reg.host}/acme/rollouts/hello:ledger")
    assert ledger["digest"] == regfp_json("inspect", f"oci:{a / 'out'}:rollouts/hello:ledger")["digest"]
    repo_a.write("app/main.txt", "the next release\n")
    repo_a.commit("v2")
    moved = regfp_json("build", str(a / "recipe.yaml"), "--push")  # extending the stream is fine
    assert moved["rollout"] == {"release": 2, "cut": True}


def test_a_yank_reaches_the_registry_with_the_next_push(tmp_path: Path, make_registry) -> None:  # type: ignore[no-untyped-def]
    """After a yank, build --push moves :live, n-<k> and the rollout's names on the registry to what the
    layout holds now, and --json reports exactly what the layout and the registry hold."""
    reg = make_registry()
    repo = make_project(tmp_path)
    make_ca(tmp_path / "pki", "ca")
    recipe = tmp_path / "recipe.yaml"
    extra = EXTRA.format(host=reg.host, private="true")
    recipe.write_text(recipe.read_text().replace("output: {layout: out}\n", extra + "output: {layout: out}\n"))
    for i in range(3):  # r1, r2, r3
        repo.write("app/main.txt", f"v{i}\n")
        repo.commit(f"v{i}")
        regfp_json("build", str(recipe), "--push")
    layout = LayoutStore.open(tmp_path / "out")
    before = {n: d.digest.text for n, d in layout.names().items()}
    regfp("rollout", str(recipe), "--yank", "r3")
    result = regfp_json("build", str(recipe), "--push")
    after = {n: d.digest.text for n, d in LayoutStore.open(tmp_path / "out").names().items()}
    assert after["us-east.prod/app/hello:live"] == before["us-east.prod/app/hello:r2"]
    assert after["rollouts/hello:n-0"] == before["rollouts/hello:r2"]
    for image in result["images"]:  # the report is what the layout holds
        assert after[image["name"]] == image["digest"], image

    def remote(repo_tag: str) -> str:
        repo_name, tag = repo_tag.rsplit(":", 1)
        resp = httpx.head(f"http://{reg.host}/v2/{repo_name}/manifests/{tag}", timeout=10,
                          headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert resp.status_code == 200, repo_tag
        return resp.headers["Docker-Content-Digest"]

    assert remote("prod/app/hello:live") == after["us-east.prod/app/hello:live"]
    assert remote("acme/rollouts/hello:n-0") == after["rollouts/hello:n-0"]
    assert remote("acme/eu-west.dev/app/hello:live") == after["eu-west.dev/app/hello:live"]
