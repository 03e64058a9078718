"""Recipe language: strict parsing, file:line errors, exit 2 with nothing written, and the schema."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, regfp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regctl_fp.errors import RecipeError, RegfpError
from regctl_fp.recipe.load import load_recipe, recipe_schema

GOOD = """\
regfp: 1
name: hello
source: {git: src, ref: main, subdir: app}
build:
  base: stable
  rebuildAfter: 90d
  copy: [{from: ., to: /app}]
patch:
  channels: {stable: "dir:bases/os-1", current: "dir:bases/os-2"}
output: {layout: out}
"""

# (description, recipe text, line the error must name, words the message must contain)
BAD = [
    ("unknown top-level key", GOOD + "bulid: {}\n", 11, "unknown key 'bulid'; did you mean 'build'?"),
    ("unknown nested key", GOOD.replace("  rebuildAfter", "  rebuildafter"), 6, "did you mean 'rebuildAfter'?"),
    ("wrong format version", GOOD.replace("regfp: 1", "regfp: 2"), 1, "unsupported recipe format 2"),
    ("missing version", GOOD.replace("regfp: 1\n", ""), 1, "missing 'regfp: 1'"),
    ("bad duration", GOOD.replace("90d", "90 days"), 6, "not a duration"),
    ("zero duration", GOOD.replace("90d", "0d"), 6, "not a duration"),
    ("missing source", GOOD.replace("source: {git: src, ref: main, subdir: app}\n", ""), 1,
     "missing required key 'source'"),
    ("source without git", GOOD.replace("{git: src, ref: main, subdir: app}", "{ref: main}"), 3,
     "missing required key 'git'"),
    ("name of wrong type", GOOD.replace("name: hello", "name: [hello]"), 2, "must be a string"),
    ("uppercase name", GOOD.replace("name: hello", "name: Hello"), 2, "not a valid name"),
    ("copy not a list", GOOD.replace("copy: [{from: ., to: /app}]", "copy: {from: ., to: /app}"), 7,
     "must be a list"),
    ("relative copy target", GOOD.replace("to: /app", "to: app"), 7, "must be an absolute path"),
    ("copy source escapes the tree", GOOD.replace("from: .", "from: ../../etc"), 7, "escapes the source tree"),
    ("subdir escapes the repository", GOOD.replace("subdir: app", "subdir: ../.."), 3, "escapes the source tree"),
    ("unknown channel", GOOD.replace("base: stable", "base: stabel"), 5, "did you mean 'stable'?"),
    ("cyclic channels", GOOD.replace('current: "dir:bases/os-2"', "current: next, next: current"), 9, "cyclic"),
    ("bad image reference", GOOD.replace('"dir:bases/os-1"', '"oci:"'), 9, "layout path"),
    ("duplicate key", GOOD.replace("name: hello\n", "name: hello\nname: again\n"), 3, "duplicate key 'name'"),
    ("broken YAML", GOOD.replace("copy: [{from: ., to: /app}]", "copy: [{from: ., to: /app}"), 8,
     "not valid YAML"),
    ("not a mapping", "- just\n- a list\n", 1, "must be a mapping"),
    ("boolean where a list is needed", GOOD.replace("copy: [{from: ., to: /app}]", "copy: yes"), 7,
     "must be a list, not a boolean"),
    ("negative delta", GOOD + "environments: [{location: us, environment: prod, delta: -1}]\n", 11,
     "delta must be 0 or more"),
    ("duplicate environment", GOOD + "environments: [{location: us, environment: prod},"
     " {location: us, environment: prod}]\n", 11, "listed twice"),
    ("port out of shape", GOOD.replace("  rebuildAfter: 90d\n", "  rebuildAfter: 90d\n  ports: [http]\n"), 7,
     "is not a port"),
    ("build without copy or run", GOOD.replace("  copy: [{from: ., to: /app}]\n", ""), 4,
     "at least one 'copy' rule"),
]


@pytest.mark.parametrize(("what", "text", "line", "words"), BAD, ids=[b[0] for b in BAD])
def test_bad_recipes_fail_with_file_and_line(tmp_path: Path, what: str, text: str, line: int, words: str) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    out = tmp_path / "out"
    out.mkdir()
    (out / "marker").write_text("untouched")
    proc = regfp("build", str(recipe), check=False)
    assert proc.returncode == 2, proc.stderr
    assert f"{recipe}:{line}:" in proc.stderr, proc.stderr
    assert words in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert sorted(p.name for p in out.iterdir()) == ["marker"]


def test_at_least_fifteen_bad_recipes() -> None:
    assert len(BAD) >= 15


def test_good_recipe_loads(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(GOOD)
    lr = load_recipe(recipe)
    assert lr.recipe.build.rebuild_after == "90d"
    assert lr.output_layout == tmp_path / "out"
    assert lr.base_ref() == "dir:bases/os-1"


def test_numbers_meant_as_strings_keep_their_text(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(GOOD.replace("ref: main", "ref: 0123456789012345678901234567890123456789"))
    assert load_recipe(recipe).recipe.source.ref == "0123456789012345678901234567890123456789"


def test_missing_file_and_directory(tmp_path: Path) -> None:
    missing = regfp("build", str(tmp_path / "nope.yaml"), check=False)
    assert missing.returncode == 2 and "no such file" in missing.stderr
    isdir = regfp("plan", str(tmp_path), check=False)
    assert isdir.returncode == 2 and "is a directory" in isdir.stderr


def test_billion_laughs_is_refused(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("\n".join(lines) + "\n")
    with pytest.raises(RecipeError, match="too large"):
        load_recipe(recipe)


def test_schema_is_generated_from_the_model_and_validates_the_demo() -> None:
    proc = regfp("schema")
    schema = json.loads(proc.stdout)
    assert schema == json.loads(json.dumps(recipe_schema()))
    build = schema["$defs"]["Build"]
    assert build["additionalProperties"] is False
    assert "rebuildAfter" in build["properties"] and "base" in build["required"]
    import jsonschema

    demo = yaml.safe_load((ROOT / "recipes" / "app.yaml").read_text())
    jsonschema.validate(demo, schema)
    broken = dict(demo, bulid={})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


# ---- no input, however odd, makes the loader crash ------------------------------------------------

yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
yaml_values = st.recursive(yaml_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=20)
keys = st.sampled_from(["regfp", "name", "source", "build", "patch", "rollouts", "environments", "debug",
                        "output", "push", "git", "ref", "base", "copy", "from", "to", "channels", "env"])
recipe_like = st.dictionaries(keys, yaml_values, max_size=8).map(lambda d: {"regfp": 1, **d})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=recipe_like)
def test_arbitrary_recipe_structures_only_raise_recipe_errors(tmp_path: Path, doc: dict) -> None:
    recipe = tmp_path / "fuzz.yaml"
    recipe.write_text(yaml.safe_dump(doc))
    try:
        load_recipe(recipe)
    except RecipeError as e:
        assert re.match(rf"{re.escape(str(recipe))}(:\d+)?: ", str(e))
    except RegfpError as e:  # pragma: no cover - would be a wrongly typed error
        pytest.fail(f"non-recipe error {type(e).__name__}: {e}")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_arbitrary_text_only_raises_recipe_errors(tmp_path: Path, text: str) -> None:
    recipe = tmp_path / "fuzz.yaml"
    recipe.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_recipe(recipe)
    except RecipeError:
        pass
