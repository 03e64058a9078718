"""A new user's first hour (issue 16): the commands as people type them, output for pipes, the schema,
listing, exit codes and messages, the notes a user needs, and the CI example."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import regfp, regfp_json
from project import make_project

pytest_plugins = ["registry_fixtures"]

ROLLOUTS = """\
rollouts:
  channel: stable
  keep: 3
  cohorts: {buckets: 4, canary: 25%}
environments:
  - {location: us-east, environment: prod, delta: 1}
  - {location: us-east, environment: staging, delta: 0}
"""


def piped_env(**extra: str) -> dict[str, str]:
    """The environment of a run whose stdout is a pipe, as in ``regfp ... | grep``: no $COLUMNS to go by."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "REGFP_RECIPE")}
    env.update(extra)
    return env


def rollout_project(tmp: Path, *, name: str = "hello"):  # type: ignore[no-untyped-def]
    repo = make_project(tmp)
    recipe = tmp / "recipe.yaml"
    text = recipe.read_text().replace("output: {layout: out}\n", ROLLOUTS + "output: {layout: out}\n")
    recipe.write_text(text.replace("name: hello\n", f"name: {name}\n"))
    return repo


def names_in(layout: Path) -> dict[str, str]:
    index = json.loads((layout / "index.json").read_text())
    return {m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"] for m in index["manifests"]}


def moved_recipe(tmp: Path, where: str) -> str:
    """The project recipe's text with its paths made relative to ``tmp/where`` (one directory down)."""
    text = (tmp / "recipe.yaml").read_text()
    assert where.count("/") == 0
    return (text.replace("git: src", "git: ../src").replace("dir:bases/", "dir:../bases/")
            .replace("layout: out", "layout: ../out"))


# -- item 2: finding the recipe as compose/skaffold users expect ---------------------------------------------
def test_the_recipe_is_found_without_being_named(tmp_path: Path) -> None:
    make_project(tmp_path)
    env = piped_env()
    none = regfp("plan", "--json", cwd=tmp_path, env=env, check=False)
    assert none.returncode == 2
    assert "no recipe given and none found" in none.stderr and "REGFP_RECIPE" in none.stderr
    assert "Traceback" not in none.stderr

    # $REGFP_RECIPE, from anywhere
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shown = regfp("plan", "--json", cwd=elsewhere, env=piped_env(REGFP_RECIPE=str(tmp_path / "recipe.yaml")))
    assert json.loads(shown.stdout)["recipe"] == str(tmp_path / "recipe.yaml")
    assert f"recipe: {tmp_path / 'recipe.yaml'} (from $REGFP_RECIPE)" in shown.stderr

    # the only recipes/*.yaml
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "app.yaml").write_text(moved_recipe(tmp_path, "recipes"))
    one = regfp("plan", "--json", cwd=tmp_path, env=env)
    assert json.loads(one.stdout)["recipe"] == str(tmp_path / "recipes" / "app.yaml")
    assert "recipe: recipes/app.yaml (the only recipe in recipes/)" in one.stderr

    # several: an error naming them
    (tmp_path / "recipes" / "other.yaml").write_text(moved_recipe(tmp_path, "recipes"))
    several = regfp("plan", cwd=tmp_path, env=env, check=False)
    assert several.returncode == 2
    assert "several recipes in recipes/ (recipes/app.yaml, recipes/other.yaml)" in several.stderr
    assert "-f FILE" in several.stderr

    # regfp.yaml in the current directory comes before recipes/
    (tmp_path / "regfp.yaml").write_text((tmp_path / "recipe.yaml").read_text())
    default = regfp("plan", "--json", cwd=tmp_path, env=env)
    assert json.loads(default.stdout)["recipe"] == str(tmp_path / "regfp.yaml")
    assert "recipe: regfp.yaml (regfp.yaml in the current directory)" in default.stderr

    # given: -f or the argument, and then nothing is announced
    for args in (["-f", "recipes/other.yaml"], ["--recipe", "recipes/other.yaml"], ["recipes/other.yaml"]):
        given = regfp("plan", *args, "--json", cwd=tmp_path, env=env)
        assert json.loads(given.stdout)["recipe"] == str(tmp_path / "recipes" / "other.yaml")
        assert "recipe:" not in given.stderr
    both = regfp("plan", "recipes/app.yaml", "-f", "recipes/other.yaml", cwd=tmp_path, env=env, check=False)
    assert both.returncode == 2 and "two recipes given" in both.stderr


def test_every_recipe_command_finds_the_recipe(tmp_path: Path) -> None:
    rollout_project(tmp_path)
    (tmp_path / "regfp.yaml").write_text((tmp_path / "recipe.yaml").read_text())
    key = tmp_path / "id.pub"
    key.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHv2GcFZWvJzMvEiA4oD6EDt6vH2cRu1WZnsy2xWb4sB dev@x\n")
    note = "recipe: regfp.yaml (regfp.yaml in the current directory)"
    env = piped_env()
    for args in (["build", "--only", "build"], ["patch", "--channel", "stable"], ["plan"], ["rollout"],
                 ["rollout", "--status"], ["cohort", "client-1"]):
        proc = regfp(*args, cwd=tmp_path, env=env)
        assert note in proc.stderr, args
    # The recipe has no debug section and no tools image: debug-image gets past finding the recipe and
    # fails on the recipe itself.
    debug = regfp("debug-image", "--ssh-key", str(key), cwd=tmp_path, env=env, check=False)
    assert note in debug.stderr and "Missing argument" not in debug.stderr
    assert debug.returncode == 2, debug.stderr


def test_rollout_delta_alone_shows_what_n_minus_delta_is_and_cuts_nothing(tmp_path: Path) -> None:
    repo = rollout_project(tmp_path)
    (tmp_path / "regfp.yaml").write_text((tmp_path / "recipe.yaml").read_text())
    env = piped_env()
    first = regfp_json("rollout", cwd=tmp_path, env=env)
    repo.write("app/main.txt", "version 2\n")
    repo.commit("v2")
    second = regfp_json("rollout", cwd=tmp_path, env=env)
    assert (first["cut"]["release"], second["cut"]["release"]) == (1, 2)  # type: ignore[index]
    r1 = names_in(tmp_path / "out")["rollouts/hello:r1"]
    # A new commit waits on the stable channel: a question about n-1 must not cut r3.
    repo.write("app/main.txt", "version 3\n")
    repo.commit("v3")
    before = (tmp_path / "out" / "index.json").read_bytes()
    shown = regfp("rollout", "--delta", "1", cwd=tmp_path, env=env)
    assert (tmp_path / "out" / "index.json").read_bytes() == before
    lines = shown.stdout.splitlines()
    assert lines[0].split() == ["environment", "delta", "release", "digest"]
    assert [line.split() for line in lines[1:]] == [["us-east.prod", "n-1", "r1", r1],
                                                    ["us-east.staging", "n-1", "r1", r1]]
    one = regfp("rollout", "--delta", "0", "--env", "us-east.prod", cwd=tmp_path, env=env)
    assert [line.split() for line in one.stdout.splitlines()[1:]] == [
        ["us-east.prod", "n-0", "r2", names_in(tmp_path / "out")["rollouts/hello:r2"]]]
    doc = regfp_json("rollout", "--delta", "1", cwd=tmp_path, env=env)
    assert "cut" not in doc and {e["digest"] for e in doc["environments"]} == {r1}  # type: ignore[index]
    nothing = regfp("rollout", "--delta", "5", cwd=tmp_path, env=env)
    assert "n-5 names no release yet" in nothing.stderr
    assert [line.split()[2:] for line in nothing.stdout.splitlines()[1:]] == [["-", "-"], ["-", "-"]]
    assert (tmp_path / "out" / "index.json").read_bytes() == before


# -- item 7: output for pipes ------------------------------------------------------------------------------
LONG_NAME = "a-rather-long-application-name-that-fills-a-terminal-line-on-its-own-and-more"


def test_piped_rollout_status_is_one_full_record_per_line(tmp_path: Path) -> None:
    repo = rollout_project(tmp_path, name=LONG_NAME)
    recipe = str(tmp_path / "recipe.yaml")
    revisions = [repo.git("rev-parse", "HEAD")]
    regfp("rollout", recipe, env=piped_env())
    repo.write("app/main.txt", "version 2\n")
    revisions.append(repo.commit("v2"))
    regfp("rollout", recipe, env=piped_env())
    status = regfp("rollout", recipe, "--status", env=piped_env())
    found = names_in(tmp_path / "out")
    lines = status.stdout.splitlines()
    for n, revision in ((1, revisions[0]), (2, revisions[1])):
        digest = found[f"rollouts/{LONG_NAME}:r{n}"]
        record = [line for line in lines if line.startswith(f"r{n} ")]
        assert len(record) == 1, status.stdout
        assert digest in record[0] and revision in record[0], record
    assert not any(set(line.strip()) <= set("─━│┃╇┡ ") and line.strip() for line in lines)  # no rules, no boxes
    grepped = [line for line in lines if found[f"rollouts/{LONG_NAME}:r1"] in line]
    assert len(grepped) == 1 and grepped[0].split()[-1] == "n-1,cohort-1..3"


def test_piped_plan_lines_are_not_wrapped(tmp_path: Path) -> None:
    rollout_project(tmp_path, name=LONG_NAME)
    recipe = str(tmp_path / "recipe.yaml")
    doc = regfp_json("plan", recipe, env=piped_env())
    text = regfp("plan", recipe, env=piped_env()).stdout
    for node in doc["nodes"]:  # type: ignore[index]
        if node["key"] and node["names"]:
            names = ", ".join(node["names"])
            assert any(names in line and node["key"][:12] in line and node["state"] in line
                       for line in text.splitlines()), (node, text)
    assert max(len(line) for line in text.splitlines()) > 80


# -- item 10: the schema describes every key, and every recipe in the repository is valid by it -------------
SIGNATURE = re.compile(r"^\w+\(.*:.*\)$")  # what dataclass() writes when a class has no docstring


def test_schema_describes_every_key_in_words() -> None:
    schema = json.loads(regfp("schema").stdout)
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(schema)
    missing = []
    for name, entry in schema["$defs"].items():
        if not entry.get("description") or SIGNATURE.match(entry["description"]):
            missing.append(f"{name}: {entry.get('description')!r}")
        for key, prop in entry["properties"].items():
            text = prop.get("description", "")
            if len(text.split()) < 2 or SIGNATURE.match(text):
                missing.append(f"{name}.{key}: {text!r}")
    assert not missing, missing
    assert schema["$defs"]["Debug"]["properties"]["ttl"]["description"].startswith("how long a debug image")


@pytest.mark.parametrize("recipe", sorted(p.name for p in (Path(__file__).parent.parent / "recipes").glob("*.yaml")))
def test_every_recipe_in_the_repository_is_valid_by_the_schema(recipe: str) -> None:
    import jsonschema
    import yaml

    schema = json.loads(regfp("schema").stdout)
    doc = yaml.safe_load((Path(__file__).parent.parent / "recipes" / recipe).read_text())
    jsonschema.Draft202012Validator(schema).validate(doc)
    # and the schema is not a rubber stamp: a misspelt key in a nested section fails
    broken = json.loads(json.dumps(doc))
    broken["build"]["rebuildafter"] = "90d"
    with pytest.raises(jsonschema.ValidationError, match="rebuildafter"):
        jsonschema.Draft202012Validator(schema).validate(broken)


# -- item 11: listing, and the manifest bytes as stored ------------------------------------------------------
def small_tree(root: Path, text: str) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "version").write_text(text)
    return root


def test_ls_and_inspect_raw_on_a_layout(tmp_path: Path) -> None:
    import hashlib

    layout = tmp_path / "out"
    made = {}
    for name, text in (("app/web:1", "one\n"), ("app/web:2", "two\n"), ("tools/debug:1", "dbg\n")):
        made[name] = regfp_json("copy", f"dir:{small_tree(tmp_path / name.replace('/', '_'), text)}",
                                f"oci:{layout}:{name}")["digest"]  # type: ignore[index]
    listed = regfp("ls", str(layout), env=piped_env())
    rows = [line.split() for line in listed.stdout.splitlines()]
    assert rows == [[n, made[n], "application/vnd.oci.image.manifest.v1+json"] for n in sorted(made)]
    doc = regfp_json("ls", f"oci:{layout}")
    assert [(e["name"], e["digest"]) for e in doc["entries"]] == sorted(made.items())  # type: ignore[index]
    assert all(e["size"] > 0 for e in doc["entries"])  # type: ignore[index]

    raw = subprocess_bytes("inspect", "--raw", f"oci:{layout}:app/web:2")
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == made["app/web:2"]
    assert raw == (layout / "blobs" / "sha256" / made["app/web:2"].split(":")[1]).read_bytes()

    one = regfp("ls", f"oci:{layout}:app/web:1", check=False)
    assert one.returncode == 2 and "ls lists a whole layout" in one.stderr
    missing = regfp("ls", str(tmp_path / "nope"), check=False)
    assert missing.returncode != 0 and "nope" in missing.stderr and "Traceback" not in missing.stderr
    both = regfp("inspect", "--raw", "--json", f"oci:{layout}:app/web:1", check=False)
    assert both.returncode == 2


def subprocess_bytes(*args: str) -> bytes:
    import sys

    proc = subprocess.run([sys.executable, "-m", "regctl_fp", *args], capture_output=True, timeout=120,
                          env=piped_env())
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_ls_and_inspect_raw_on_a_registry(registry, tmp_path: Path, tool_env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    import hashlib
    import uuid

    from conftest import need

    repo = f"{registry.host}/first-hour/ls-{uuid.uuid4().hex[:8]}"
    made = {}
    for tag, text in (("v2", "two\n"), ("v10", "ten\n"), ("latest", "ten\n")):
        made[tag] = regfp_json("copy", f"dir:{small_tree(tmp_path / tag, text)}", f"{repo}:{tag}")["digest"]  # type: ignore[index]
    assert made["latest"] == made["v10"]
    listed = regfp("ls", repo, env=piped_env())
    rows = [line.split() for line in listed.stdout.splitlines()]
    assert rows == [[t, made[t], "application/vnd.oci.image.manifest.v1+json"] for t in sorted(made)]
    doc = regfp_json("ls", repo)
    assert {e["reference"]: e["digest"] for e in doc["entries"]} == {  # type: ignore[index]
        f"{repo}:{t}": d for t, d in made.items()}

    raw = subprocess_bytes("inspect", "--raw", f"{repo}:v2")
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == made["v2"]
    theirs = subprocess.run([need("skopeo"), "inspect", "--raw", "--tls-verify=false", f"docker://{repo}:v2"],
                            env=tool_env, capture_output=True, check=True, timeout=60).stdout
    assert raw == theirs
    tagged = regfp("ls", f"{repo}:v2", check=False)
    assert tagged.returncode == 2 and "without a tag" in tagged.stderr


# -- item 12: exit codes and messages ------------------------------------------------------------------------
def test_diff_exits_like_cmp(tmp_path: Path) -> None:
    layout = tmp_path / "l"
    for name, text in (("a:1", "one\n"), ("a:2", "two\n")):
        regfp("copy", f"dir:{small_tree(tmp_path / name.replace(':', '_'), text)}", f"oci:{layout}:{name}")
    same = regfp("diff", f"oci:{layout}:a:1", f"oci:{layout}:a:1", env=piped_env(), check=False)
    assert same.returncode == 0 and "identical" in same.stdout
    different = regfp("diff", f"oci:{layout}:a:1", f"oci:{layout}:a:2", env=piped_env(), check=False)
    assert different.returncode == 1 and "etc/version" in different.stdout and different.stderr == ""
    as_json = regfp("diff", "--json", f"oci:{layout}:a:1", f"oci:{layout}:a:2", check=False)
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["identical"] is False
    for args in ([f"oci:{layout}:a:1", f"oci:{layout}:nope:1"], [f"oci:{layout}:a:1", f"oci:{tmp_path}/none:x"],
                 [f"oci:{layout}:a:1"], ["--bogus", "x", "y"]):
        trouble = regfp("diff", *args, check=False)
        assert trouble.returncode == 2, (args, trouble.returncode, trouble.stderr)
        assert trouble.stderr.startswith(("error:", "Usage:")) and "Traceback" not in trouble.stderr
    doc = regfp("diff", "--json", f"oci:{layout}:a:1", f"oci:{layout}:nope:1", check=False)
    assert doc.returncode == 2 and json.loads(doc.stdout)["error"]["exitCode"] == 2


def test_a_missing_channel_directory_is_a_recipe_error_with_its_line(tmp_path: Path) -> None:
    make_project(tmp_path)
    recipe = tmp_path / "recipe.yaml"
    text = recipe.read_text().replace("dir:bases/os-2", "dir:bases/os-9")
    recipe.write_text(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "os-9" in t)
    for command in ("build", "plan"):
        proc = regfp(command, str(recipe), check=False)
        assert proc.returncode == 2, proc.stderr
        assert f"{recipe}:{line}: " in proc.stderr and "bases/os-9" in proc.stderr
        assert "patch.channels.current" in proc.stderr
    assert not (tmp_path / "out").exists()
    (tmp_path / "bases" / "os-9").write_text("a file\n")
    proc = regfp("plan", str(recipe), check=False)
    assert proc.returncode == 2 and f"{recipe}:{line}: " in proc.stderr and "not a directory" in proc.stderr


def test_an_unknown_ref_suggests_a_branch_or_tag(tmp_path: Path) -> None:
    repo = make_project(tmp_path)
    repo.git("tag", "v1.0.0")
    repo.git("branch", "release-2")
    recipe = tmp_path / "recipe.yaml"
    text = recipe.read_text()
    for typo, meant in (("mian", "main"), ("v1.0.1", "v1.0.0"), ("relase-2", "release-2")):
        recipe.write_text(text.replace("ref: main", f"ref: {typo}"))
        proc = regfp("plan", str(recipe), check=False)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr == f"error: src: unknown ref {typo!r} (no such branch, tag or commit); did you mean " \
                              f"{meant!r}?\n"
    recipe.write_text(text.replace("ref: main", "ref: zzzzqqq"))
    far = regfp("plan", str(recipe), check=False)
    assert far.returncode == 2 and "did you mean" not in far.stderr and "unknown ref 'zzzzqqq'" in far.stderr


def test_copy_from_a_missing_name_lists_close_names(tmp_path: Path) -> None:
    layout = tmp_path / "l"
    for name in ("libs/base:1", "libs/base:2", "apps/web:1", "tools/debug:1"):
        regfp("copy", f"dir:{small_tree(tmp_path / name.replace('/', '_'), name)}", f"oci:{layout}:{name}")
    proc = regfp("copy", f"oci:{layout}:libs", f"oci:{tmp_path}/dst:x", check=False)
    assert proc.returncode != 0 and "name 'libs' not found" in proc.stderr
    assert "libs/base:1" in proc.stderr and "libs/base:2" in proc.stderr and "tools/debug" not in proc.stderr
    typo = regfp("copy", f"oci:{layout}:apps/wbe:1", f"oci:{tmp_path}/dst:x", check=False)
    assert "did you mean 'apps/web:1'?" in typo.stderr
    assert not (tmp_path / "dst").exists()


def test_yank_and_unyank_together_are_refused(tmp_path: Path) -> None:
    rollout_project(tmp_path)
    regfp("rollout", str(tmp_path / "recipe.yaml"))
    before = (tmp_path / "out" / "index.json").read_bytes()
    proc = regfp("rollout", str(tmp_path / "recipe.yaml"), "--yank", "r1", "--unyank", "r1", check=False)
    assert proc.returncode == 2 and "--yank and --unyank" in proc.stderr
    assert (tmp_path / "out" / "index.json").read_bytes() == before


@pytest.mark.parametrize("args, message", [
    (["build", "--jsn"], "error: no such option: --jsn (possible options: --json, --now)\n"),
    (["copy", "a"], "error: missing argument 'DST'\n"),
    (["bild"], "error: no such command 'bild'; did you mean 'build'?\n"),
    (["rollout", "--delta", "x"], "error: invalid value for '--delta': 'x' is not a valid integer\n"),
    (["copi", "--json"], "error: no such command 'copi'; did you mean 'copy'?\n"),
])
def test_usage_errors_read_like_the_other_errors(args: list[str], message: str) -> None:
    proc = regfp(*args, check=False)
    assert proc.returncode == 2
    assert proc.stderr.endswith(message), proc.stderr


def test_a_wrong_password_says_what_failed_once(tls_registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    host = tls_registry.registry.host
    env = {**piped_env(), "HOME": str(tmp_path / "home")}
    env.pop("REGFP_USERNAME", None)
    env.pop("REGFP_PASSWORD", None)
    proc = regfp("login", host, "-u", tls_registry.user, "--password-stdin", "--ca-file", str(tls_registry.ca),
                 input="wrong-pw-0c1d\n", env=env, check=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"{host}" in lines[0] and f"refused {tls_registry.user!r}" in lines[0], lines[0]
    assert "regfp login HOST" not in proc.stderr and "wrong-pw-0c1d" not in proc.stderr
    assert lines[0].lower().count("authentication required") <= 1 and lines[0].count("refused") == 1


def test_a_wrong_password_at_a_token_server_says_what_failed_once(token_registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    host = token_registry.registry.host
    env = {**piped_env(), "HOME": str(tmp_path / "home")}
    proc = regfp("login", host, "-u", "alice", "--password-stdin", input="wrong-pw-77e1\n", env=env, check=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "refused 'alice'" in lines[0], proc.stderr
    assert "regfp login HOST" not in proc.stderr and "wrong-pw-77e1" not in proc.stderr


def test_the_login_hint_names_the_host(tls_registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    host = tls_registry.registry.host
    env = {**piped_env(), "HOME": str(tmp_path / "home")}
    env.pop("REGFP_USERNAME", None)
    env.pop("REGFP_PASSWORD", None)
    proc = regfp("ls", f"{host}/x/y", "--ca-file", str(tls_registry.ca), env=env, check=False)
    assert proc.returncode == 1 and f"regfp login {host}" in proc.stderr and "regfp login HOST" not in proc.stderr


# -- item 15: uncommitted changes are ignored by design, and said so ----------------------------------------
def test_a_dirty_source_is_noted_once(tmp_path: Path) -> None:
    repo = make_project(tmp_path)
    recipe = str(tmp_path / "recipe.yaml")
    clean = regfp("plan", recipe, "--json", env=piped_env())
    assert "uncommitted" not in clean.stderr
    head = repo.git("rev-parse", "HEAD")
    repo.write("README.md", "outside the subdir: not the image's business\n")
    assert "uncommitted" not in regfp("plan", recipe, env=piped_env()).stderr
    repo.write("app/main.txt", "edited, not committed\n")
    repo.write("app/new.txt", "untracked\n")
    built = regfp("build", recipe, "--json", env=piped_env())
    notes = [line for line in built.stderr.splitlines() if "uncommitted" in line]
    assert notes == [f"note: src has uncommitted changes under app/ (app/main.txt, app/new.txt); regfp builds "
                     f"commit {head[:12]} (main), never the working tree: commit to include them"], built.stderr
    assert json.loads(built.stdout)["images"]  # the note is on stderr only: stdout stays one JSON document
    # A ref that is not what is checked out: the working tree is not what the user meant, no note.
    repo.git("tag", "v1")
    pinned = (tmp_path / "recipe.yaml").read_text().replace("ref: main", "ref: v1")
    (tmp_path / "pinned.yaml").write_text(pinned)
    assert "uncommitted" not in regfp("plan", str(tmp_path / "pinned.yaml"), env=piped_env()).stderr
    # Commands that do not read the source say nothing.
    assert "uncommitted" not in regfp("schema").stderr


# -- item 16: the GitHub Actions example is a file, shown verbatim in README, valid by GitHub's schema --------
ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / ".ci" / "github-actions-example.yml"


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    begin = "<!-- .ci/github-actions-example.yml (tests/test_first_hour.py checks they agree) -->\n```yaml\n"
    end = "```\n<!-- end of .ci/github-actions-example.yml -->"
    assert text.count(begin) == 1 and text.count(end) == 1
    return text.split(begin, 1)[1].split(end, 1)[0]


def check_workflow(path: Path) -> subprocess.CompletedProcess[str]:
    import sys

    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                           str(path)], capture_output=True, text=True, timeout=120)


def test_the_ci_example_in_readme_is_the_file_and_github_would_take_it(tmp_path: Path) -> None:
    import yaml

    assert readme_example() == EXAMPLE.read_text()
    checked = check_workflow(EXAMPLE)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    workflow = yaml.safe_load(EXAMPLE.read_text())
    assert workflow["permissions"] == {"contents": "read", "packages": "write"}
    for name, job in workflow["jobs"].items():
        uses = [step.get("uses", "").split("@")[0] for step in job["steps"]]
        runs = [step.get("run", "") for step in job["steps"]]
        assert uses.index("actions/setup-python") < runs.index("pip install ."), name
        assert not any("venv" in r or "sudo" in r for r in runs), name
    # The validator is not a rubber stamp: a permission GitHub does not know is refused.
    broken = tmp_path / "broken.yml"
    broken.write_text(EXAMPLE.read_text().replace("packages: write", "packages: writ"))
    refused = check_workflow(broken)
    assert refused.returncode == 1 and "permissions" in refused.stdout
