"""The recipe's ``attest:`` key: every build, patch and environment image gets a signed SPDX SBOM and a
SLSA provenance as OCI referrers; ``verify --attestations`` checks them; checked by independent tools
(spdx-tools, securesystemslib, oras-py) and against the real registry."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import regfp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from registry_support import Registry
from test_environment import NOW, env_project

from regctl_fp.attest.dsse import IN_TOTO, sign
from regctl_fp.attest.keys import SigningKey
from regctl_fp.oci import annotation_keys as A
from regctl_fp.oci.referrer import artifact
from regctl_fp.stores.layout import LayoutStore
from regctl_fp.stores.referrers import write_artifact

pytest_plugins = ["registry_fixtures"]

PASSWORD = "attest-pw-7f3a91"
SPDX = "https://spdx.dev/Document/v2.3"
SLSA = "https://slsa.dev/provenance/v1"
KINDS = ("build", "patch", "environment")


def add_key(root: Path, *, ed: bool = False) -> tuple[Path, bytes]:
    """An encrypted signing key beside the recipe, ``attest:`` in the recipe; the public key's path and
    the private PEM body (to look for leaks)."""
    key = ed25519.Ed25519PrivateKey.generate() if ed else ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.BestAvailableEncryption(PASSWORD.encode()))
    (root / "attest.key").write_bytes(pem)
    (root / "attest.key").chmod(0o600)
    (root / "attest.pub").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    recipe = root / "recipe.yaml"
    recipe.write_text(recipe.read_text() + "attest: {key: attest.key, keyPasswordEnv: ATTEST_PW}\n")
    plain = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    return root / "attest.pub", b"".join(plain.splitlines()[1:-1])


def env(**more: str) -> dict[str, str]:
    return {**os.environ, "ATTEST_PW": PASSWORD, **more}


def build(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return regfp("build", str(root / "recipe.yaml"), "--json", "--now", NOW, *args, env=env(), check=check)


def attestations(layout: Path) -> dict[tuple[str, str], str]:
    """(subject digest, predicate type) -> attestation manifest digest, from index.json."""
    doc = json.loads((layout / "index.json").read_text())
    return {(m["annotations"][A.SUBJECT], m["annotations"][A.PREDICATE_TYPE]): m["digest"]
            for m in doc["manifests"] if m.get("artifactType") == IN_TOTO}


def blob(layout: Path, digest: str) -> Path:
    return layout / "blobs" / "sha256" / digest.split(":", 1)[1]


def envelope_of(layout: Path, manifest_digest: str) -> tuple[Path, dict]:  # type: ignore[type-arg]
    manifest = json.loads(blob(layout, manifest_digest).read_text())
    path = blob(layout, manifest["layers"][0]["digest"])
    return path, json.loads(path.read_bytes())


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("attested")
    env_project(root)
    pub, body = add_key(root)
    first = build(root)
    return {"root": root, "pub": pub, "body": body, "first": first,
            "images": json.loads(first.stdout)["images"]}


def test_every_image_has_a_valid_sbom_and_a_provenance_signed_with_the_key(built: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import SSlibKey

    root: Path = built["root"]
    layout = root / "out"
    found = attestations(layout)
    images = {i["digest"]: i for i in built["images"] if i["stage"] in KINDS}
    assert {i["stage"] for i in images.values()} == set(KINDS)
    keyid = next(iter(json.loads((layout / "index.json").read_text())["manifests"]))["annotations"][A.ATTEST_KEYID]
    public = serialization.load_pem_public_key(Path(built["pub"]).read_bytes())
    verifier = SSlibKey.from_crypto(public, keyid=keyid)  # type: ignore[arg-type]
    for digest, image in images.items():
        for predicate in (SPDX, SLSA):
            _, doc = envelope_of(layout, found[(digest, predicate)])
            envelope = Envelope.from_dict(doc)
            assert envelope.verify([verifier], 1)  # an independent DSSE implementation agrees
            statement = json.loads(base64.b64decode(doc["payload"]))
            assert statement["subject"][0]["digest"] == {"sha256": digest.split(":")[1]}
            assert statement["predicateType"] == predicate
            if predicate == SPDX:
                sbom = tmp_path / f"{digest[7:19]}.spdx.json"
                sbom.write_text(json.dumps(statement["predicate"]))
                checked = subprocess.run([sys.executable, "-m", "spdx_tools.spdx.clitools.pyspdxtools", "-i",
                                          str(sbom)], capture_output=True, text=True, timeout=120)
                assert checked.returncode == 0, checked.stdout + checked.stderr
                names = {p["name"] for p in statement["predicate"]["packages"]}
                assert "dep" in names  # from the recipe's requirements.lock
                assert "tls.key" not in json.dumps(statement)  # an identity's key file is never listed
            else:
                build_def = statement["predicate"]["buildDefinition"]
                assert build_def["externalParameters"]["stage"]["kind"] == image["stage"]
                manifest = json.loads(blob(layout, digest).read_text())
                assert build_def["externalParameters"]["stage"]["key"] == manifest["annotations"][A.KEY]
                deps = {v for d in build_def["resolvedDependencies"] for v in d["digest"].values()}
                if image["stage"] == "patch":  # the channel by the reference it stood for
                    assert any(d["name"].startswith("channel:dir:bases/os-") for d in build_def["resolvedDependencies"])
                commit = manifest["annotations"]["org.opencontainers.image.revision"]
                assert commit in deps
                if "org.opencontainers.image.base.digest" in manifest["annotations"]:
                    assert manifest["annotations"]["org.opencontainers.image.base.digest"][7:] in deps


def test_verify_passes_and_fails_after_one_flipped_byte_in_either_attestation(built: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    root: Path = tmp_path / "copy"
    shutil.copytree(built["root"], root, symlinks=True)
    layout = root / "out"
    image = next(i for i in built["images"] if i["stage"] == "environment")
    ref = f"oci:{layout}:{image['name']}"
    ok = regfp("verify", ref, "--attestations", "--key", str(built["pub"]), "--json")
    shown = json.loads(ok.stdout)
    assert shown["ok"] and {a["predicate"] for a in shown["attestations"]} == {"sbom", "provenance"}
    for predicate in (SPDX, SLSA):
        path, _ = envelope_of(layout, attestations(layout)[(image["digest"], predicate)])
        good = path.read_bytes()
        payload = bytearray(good)
        at = good.index(b'"payload":"') + 40
        payload[at] = ord("A") if payload[at] != ord("A") else ord("B")
        path.unlink()  # replaced, not written into: blobs may be hard links shared with other layouts
        path.write_bytes(bytes(payload))
        bad = regfp("verify", ref, "--attestations", "--key", str(built["pub"]), check=False)
        assert bad.returncode == 1, bad.stdout + bad.stderr
        assert ("sbom" if predicate == SPDX else "provenance") in bad.stderr
        path.unlink()
        path.write_bytes(good)
    assert regfp("verify", ref, "--attestations", "--key", str(built["pub"])).returncode == 0


def test_an_attestation_signed_by_another_key_or_about_another_image_fails(built: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    root: Path = tmp_path / "copy"
    shutil.copytree(built["root"], root, symlinks=True)
    layout = root / "out"
    image = next(i for i in built["images"] if i["stage"] == "build")
    other = next(i for i in built["images"] if i["stage"] == "patch")
    store = LayoutStore.open(layout)
    subject = store.resolve(image["name"])
    # A valid envelope (digests all right), but by another key; then one by no key about another image.
    stranger = SigningKey(ec.generate_private_key(ec.SECP256R1()))
    statement = json.dumps({"_type": "https://in-toto.io/Statement/v1", "predicateType": SLSA, "predicate": {},
                            "subject": [{"name": "x", "digest": {"sha256": other["digest"][7:]}}]}).encode()
    art = artifact(subject, IN_TOTO, sign(statement, stranger).to_json(), "application/vnd.dsse.envelope.v1+json",
                   {A.PREDICATE_TYPE: SLSA, A.ATTEST_KEYID: stranger.keyid})
    store.add_referrers([write_artifact(store, art)])
    store.close()
    bad = regfp("verify", f"oci:{layout}:{image['name']}", "--attestations", "--key", str(built["pub"]), "--json",
                check=False)
    assert bad.returncode == 1
    problems = [a for a in json.loads(bad.stdout)["attestations"] if not a["ok"]]
    assert len(problems) == 1 and "no signature by key" in problems[0]["problem"]
    # The stranger's own key accepts its signature, but the statement is about another image.
    pub = tmp_path / "stranger.pub"
    pub.write_bytes(stranger.public.pem)
    bad = regfp("verify", f"oci:{layout}:{image['name']}", "--attestations", "--key", str(pub), "--json",
                check=False)
    problems = [a["problem"] for a in json.loads(bad.stdout)["attestations"] if not a["ok"]]
    assert any(f"not {image['digest']}" in p for p in problems)


def test_a_warm_run_makes_no_attestation_and_the_key_never_shows(built: dict) -> None:  # type: ignore[type-arg]
    root: Path = built["root"]
    layout = root / "out"
    before = {p.name: p.stat().st_mtime_ns for p in (layout / "blobs/sha256").iterdir()}
    index = (layout / "index.json").read_bytes()
    again = build(root)
    assert all(i["cached"] for i in json.loads(again.stdout)["images"])
    assert (layout / "index.json").read_bytes() == index
    assert {p.name: p.stat().st_mtime_ns for p in (layout / "blobs/sha256").iterdir()} == before
    first: subprocess.CompletedProcess[str] = built["first"]
    body: bytes = built["body"]
    encrypted = (root / "attest.key").read_bytes()
    secrets = [body[:40], PASSWORD.encode(), b"".join(encrypted.splitlines()[1:-1])[:40]]
    for out in (first.stdout, first.stderr, again.stdout, again.stderr):
        assert not any(s in out.encode() for s in secrets)
    for path in layout.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(s in data for s in secrets), path


def test_two_clones_give_the_same_attestations(built: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    root: Path = built["root"]
    clone = tmp_path / "clone"
    shutil.copytree(root, clone, symlinks=True, ignore=shutil.ignore_patterns("out", "src"))
    subprocess.run(["git", "clone", "-q", str(root / "src"), str(clone / "src")], check=True)
    (clone / "attest.key").chmod(0o600)
    build(clone)
    assert attestations(clone / "out") == attestations(root / "out")
    assert len(attestations(root / "out")) >= 2 * len({i["digest"] for i in built["images"] if i["stage"] in KINDS})


def test_a_bad_key_or_missing_password_fails_before_anything_is_written(tmp_path: Path) -> None:
    env_project(tmp_path)
    add_key(tmp_path)
    missing = regfp("build", str(tmp_path / "recipe.yaml"), "--now", NOW, check=False,
                    env={k: v for k, v in os.environ.items() if k != "ATTEST_PW"})
    assert missing.returncode == 2 and "ATTEST_PW" in missing.stderr and "Traceback" not in missing.stderr
    assert f"{tmp_path / 'recipe.yaml'}:" in missing.stderr or "recipe.yaml:" in missing.stderr  # file:line
    wrong = regfp("build", str(tmp_path / "recipe.yaml"), "--now", NOW, check=False, env=env(ATTEST_PW="nope"))
    assert wrong.returncode == 2 and "nope" not in wrong.stderr + wrong.stdout
    assert not (tmp_path / "out").exists()
    usage = regfp("verify", "oci:x:y", "--attestations", check=False)
    assert usage.returncode == 2 and "--key" in usage.stderr


def test_push_carries_the_attestations_and_oras_pulls_one_by_digest(built: dict, registry: Registry,  # type: ignore[type-arg]
                                                                    tmp_path: Path) -> None:
    oras_client = pytest.importorskip("oras.client")
    root: Path = tmp_path / "copy"
    shutil.copytree(built["root"], root, symlinks=True)
    recipe = root / "recipe.yaml"
    prefix = f"{registry.host}/attest{os.getpid()}"
    push = f'push: {{prefix: "{prefix}", private: true}}\n'
    recipe.write_text(recipe.read_text().replace("output: {layout: out}\n", push + "output: {layout: out}\n"))
    pushed = json.loads(build(root, "--push").stdout)
    image = next(i for i in pushed["images"] if i["stage"] == "build")
    ref = f"{prefix}/{image['name'].rpartition(':')[0]}@{image['digest']}"
    shown = json.loads(regfp("verify", ref, "--attestations", "--key", str(built["pub"]), "--json").stdout)
    assert shown["ok"] and {a["predicate"] for a in shown["attestations"]} == {"sbom", "provenance"}
    attestation = attestations(root / "out")[(image["digest"], SLSA)]
    client = oras_client.OrasClient(insecure=True)
    repo = ref.rpartition("@")[0]
    manifest = client.get_manifest(f"{repo}@{attestation}")
    assert manifest["subject"]["digest"] == image["digest"] and manifest["artifactType"] == IN_TOTO
    files = client.pull(target=f"{repo}@{attestation}", outdir=str(tmp_path / "oras"))
    pulled = json.loads(Path(files[0]).read_bytes())
    assert json.loads(base64.b64decode(pulled["payload"]))["predicateType"] == SLSA


UNITS = """\
regfp: 1
name: units
{platforms}matrix:
  - name: grid
    axes:
      base: {{os: "dir:m/os"}}
      runtime: {{r1: "dir:m/rt1", r2: "dir:m/rt2"}}
work:
  - {{name: jobs, root: items, items: ["*.txt"], chunks: 2, base: "dir:m/os"}}
output: {{layout: out}}
"""


@pytest.mark.parametrize("platforms", ["", "platforms: [linux/amd64, linux/arm64]\n"])
def test_matrix_cells_and_work_chunks_are_attested_on_one_platform_or_several(tmp_path: Path,
                                                                                 platforms: str) -> None:
    for part, text in (("m/os/etc/os-release", "ID=units-os\n"), ("m/rt1/opt/rt", "r1\n"),
                       ("m/rt2/opt/rt", "r2\n"), ("items/a.txt", "a\n"), ("items/b.txt", "b\n")):
        (tmp_path / part).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / part).write_text(text)
    (tmp_path / "recipe.yaml").write_text(UNITS.format(platforms=platforms))
    pub, _ = add_key(tmp_path, ed=True)
    images = json.loads(build(tmp_path).stdout)["images"]
    assert {i["stage"] for i in images} == {"matrix", "work"} and len(images) == 4
    for image in images:
        shown = json.loads(regfp("verify", f"oci:{tmp_path / 'out'}:{image['name']}", "--attestations", "--key",
                                 str(pub), "--json").stdout)
        predicates = sorted(a["predicate"] for a in shown["attestations"])
        # One platform: an SBOM and a provenance; two: those of each platform's image and the index's provenance.
        assert predicates == (["provenance", "sbom"] if not platforms else ["provenance"] * 3 + ["sbom"] * 2)
        assert shown["ok"]
    cell = next(i for i in images if i["stage"] == "matrix")
    _, doc = envelope_of(tmp_path / "out", attestations(tmp_path / "out")[(cell["digest"], SLSA)])
    deps = json.loads(base64.b64decode(doc["payload"]))["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert any(d["name"].startswith("image:runtime") for d in deps)  # each axis's image, by the axis name
    assert any(d["name"].startswith("base:base") for d in deps)


def test_rebuild_from_the_provenance_passes_on_a_clean_checkout_and_names_what_changed(built: dict,  # type: ignore[type-arg]
                                                                                        tmp_path: Path) -> None:
    root: Path = tmp_path / "copy"
    shutil.copytree(built["root"], root, symlinks=True)
    layout, recipe = root / "out", root / "recipe.yaml"
    pub = str(built["pub"])
    images = {i["stage"]: i for i in built["images"]}
    # A new commit on the branch after the build: the rebuild is pinned to the provenance's commit.
    subprocess.run(["git", "-C", str(root / "src"), "commit", "-q", "--allow-empty", "-m", "later"], check=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t"})
    before = {p.name for p in (layout / "blobs/sha256").iterdir()}
    for stage in ("build", "patch"):
        image = images[stage]
        ok = json.loads(regfp("verify", f"oci:{layout}:{image['name']}", "--rebuild", "--recipe", str(recipe),
                              "--key", pub, "--json", "--now", NOW).stdout)
        assert ok["ok"] and ok["rebuild"]["digest"] == image["digest"] and ok["rebuild"]["kind"] == stage
    assert {p.name for p in (layout / "blobs/sha256").iterdir()} == before  # made in a scratch layout only

    def rebuild(name: str) -> dict:  # type: ignore[type-arg]
        proc = regfp("verify", f"oci:{layout}:{name}", "--rebuild", "--recipe", str(recipe), "--key", pub, "--json",
                     "--now", NOW, check=False)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        return json.loads(proc.stdout)["rebuild"]  # type: ignore[no-any-return]

    # The recipe changed after the build: another key, and the provenance says which part.
    recipe.write_text(recipe.read_text().replace("GREETING: hi", "GREETING: hello"))
    changed = rebuild(images["build"]["name"])
    assert not changed["ok"] and changed["digest"] != images["build"]["digest"]
    assert any(d.startswith("fragment.build.env") for d in changed["differences"]), changed
    recipe.write_text(recipe.read_text().replace("GREETING: hello", "GREETING: hi"))
    # A base changed after the build.
    (root / "bases/os-1/etc/os-release").write_text("ID=test-os-1-moved\n")
    moved = rebuild(images["build"]["name"])
    assert any(d.startswith("inputs.base.digest") for d in moved["differences"]), moved
    usage = regfp("verify", f"oci:{layout}:{images['build']['name']}", "--rebuild", "--key", pub, check=False)
    assert usage.returncode == 2 and "--recipe" in usage.stderr
    env_image = regfp("verify", f"oci:{layout}:{images['environment']['name']}", "--rebuild", "--recipe", str(recipe),
                      "--key", pub, check=False)
    assert env_image.returncode == 2 and "not environment images" in env_image.stderr


def test_a_statement_signed_by_the_key_but_malformed_fails_cleanly(built: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    from regctl_fp.attest.keys import load_signing_key

    root: Path = tmp_path / "copy"
    shutil.copytree(built["root"], root, symlinks=True)
    layout = root / "out"
    image = next(i for i in built["images"] if i["stage"] == "build")
    key = load_signing_key(root / "attest.key", PASSWORD)
    store = LayoutStore.open(layout)
    subject = store.resolve(image["name"])
    shapes = (json.dumps({"subject": [{"digest": "not-an-object"}]}).encode(), json.dumps({"subject": 7}).encode(),
              b"[" * 100_000 + b"]" * 100_000)  # the last nests deeper than Python's parser recurses
    for n, statement in enumerate(shapes):
        art = artifact(subject, IN_TOTO, sign(statement, key).to_json(), "application/vnd.dsse.envelope.v1+json",
                       {A.PREDICATE_TYPE: SLSA, A.ATTEST_KEYID: key.keyid, "n": str(n)})
        store.add_referrers([write_artifact(store, art)])
    store.close()
    bad = regfp("verify", f"oci:{layout}:{image['name']}", "--attestations", "--key", str(built["pub"]), "--json",
                check=False)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr, bad.stderr
    problems = [a["problem"] for a in json.loads(bad.stdout)["attestations"] if not a["ok"]]
    assert len(problems) == 3


def test_a_provenance_whose_parameters_do_not_hash_to_its_stage_key_fails(built: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    """Signed by the right key, about the right image, naming the right key and dependencies, but stating
    other key inputs (another base): the stated parameters must be what the stage key is the hash of."""
    from regctl_fp.attest.keys import load_signing_key

    root: Path = tmp_path / "copy"
    shutil.copytree(built["root"], root, symlinks=True)
    layout = root / "out"
    image = next(i for i in built["images"] if i["stage"] == "build")
    _, doc = envelope_of(layout, attestations(layout)[(image["digest"], SLSA)])
    statement = json.loads(base64.b64decode(doc["payload"]))
    statement["predicate"]["buildDefinition"]["internalParameters"]["inputs"]["base"]["digest"] = "sha256:" + "0" * 64
    key = load_signing_key(root / "attest.key", PASSWORD)
    store = LayoutStore.open(layout)
    art = artifact(store.resolve(image["name"]), IN_TOTO, sign(json.dumps(statement).encode(), key).to_json(),
                   "application/vnd.dsse.envelope.v1+json", {A.PREDICATE_TYPE: SLSA, A.ATTEST_KEYID: key.keyid})
    store.add_referrers([write_artifact(store, art)])
    store.close()
    bad = regfp("verify", f"oci:{layout}:{image['name']}", "--attestations", "--key", str(built["pub"]), "--json",
                check=False)
    assert bad.returncode == 1
    problems = [a["problem"] for a in json.loads(bad.stdout)["attestations"] if not a["ok"]]
    assert len(problems) == 1 and "hash to stage key" in problems[0], problems


def test_the_sbom_reads_no_layer_the_run_wrote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Each layer a run writes is scanned from what it was written from, as it is written: the SBOM reads
    back (one streaming pass) only layers the run did not write. Here every layer is new (dir: bases
    included), so no blob is read back; the SBOMs still list what the scan while writing found."""
    import regctl_fp.engine.attest as engine_attest
    from regctl_fp.cli import main

    env_project(tmp_path)
    add_key(tmp_path)
    monkeypatch.setenv("ATTEST_PW", PASSWORD)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    read_back: list[str] = []
    real = engine_attest.scan_layer

    def counting(layer, *a, **k):  # type: ignore[no-untyped-def]
        read_back.append(layer.digest.text)
        return real(layer, *a, **k)

    monkeypatch.setattr(engine_attest, "scan_layer", counting)
    with pytest.raises(SystemExit) as done:
        main(["build", str(tmp_path / "recipe.yaml"), "--json", "--now", NOW])
    assert done.value.code in (0, None), capsys.readouterr().err
    made = attestations(tmp_path / "out")
    assert {p for _, p in made} == {SPDX, SLSA}
    assert read_back == []
    sboms = [envelope_of(tmp_path / "out", d)[1] for (_, p), d in made.items() if p == SPDX]
    packages = {pkg["name"] for e in sboms
                for pkg in json.loads(base64.b64decode(e["payload"]))["predicate"].get("packages", [])}
    assert packages, "the SBOMs list packages found while the layers were written"


def test_two_concurrent_pushes_list_every_attestation_in_the_fallback_index(built: dict, registry: Registry,  # type: ignore[type-arg]
                                                                             tmp_path: Path) -> None:
    """Two CI jobs push the same images at once, each with its own signing key (so each image gets two
    different SBOMs and provenances): distribution 2.8 has no referrers API, and the referrers tag of
    every image lists all four attestations afterwards."""
    prefix = f"{registry.host}/conc{os.getpid()}"
    roots = []
    for side in ("a", "b"):
        root = tmp_path / side
        shutil.copytree(built["root"], root, symlinks=True)
        shutil.rmtree(root / "out")
        recipe = root / "recipe.yaml"
        text = recipe.read_text().replace("attest: {key: attest.key, keyPasswordEnv: ATTEST_PW}\n", "")
        recipe.write_text(text.replace("output: {layout: out}\n",
                                       f'push: {{prefix: "{prefix}", private: true}}\noutput: {{layout: out}}\n'))
        add_key(root, ed=side == "b")
        build(root)  # made first: the pushes below are what runs at once
        roots.append(root)
    procs = [subprocess.Popen([sys.executable, "-m", "regctl_fp", "build", str(root / "recipe.yaml"), "--push",
                               "--json", "--now", NOW], env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for root in roots]
    results = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in results]
    images = [i for i in json.loads(results[0][0])["images"] if i["stage"] in KINDS]
    second = {(s, p + " (b)"): d for (s, p), d in attestations(roots[1] / "out").items()}
    made = {**attestations(roots[0] / "out"), **second}
    for image in images:
        want = {d for (s, _), d in made.items() if s == image["digest"]}
        assert len(want) == 4  # two keys, two predicates
        repo = f"{prefix}/{image['name'].rpartition(':')[0]}"
        listed = json.loads(regfp("ls", repo, "--json").stdout)
        entry = next(e for e in listed["entries"] if e["digest"] == image["digest"])
        assert {r["digest"] for r in entry["referrers"]} >= want, image["name"]
