"""A Debian laptop in a container, for the agent's install test in the kind journey: systemd as
PID 1, systemd-resolved as the system resolver (its stub in /etc/resolv.conf, Docker's embedded
DNS as its uplink), on kind's network, from which it reaches the worker's node port and the
controller on the engine's bridge. The agent goes in by the README's own commands, read from
README.md ("Installing the agent on a laptop") and run as root in a copy of the checkout."""

from __future__ import annotations

import hashlib
import io
import re
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from kind_harness import REPO, Engine, run

from boundary_devstack.stack import wait_for

CONTAINERFILE = REPO / "tools" / "images" / "laptop.Containerfile"
README_SECTION = "### Installing the agent on a laptop"
USER = "alice"
"""The laptop's user (made by the Containerfile), who logs in and uses the aliases."""
UPLINK_NAME = "laptop.uplink.test"
"""A name only the uplink answers (the container's network alias, from Docker's embedded DNS):
names outside the alias domains must keep resolving there."""
STUB_RESOLV_CONF = "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n"
"""/etc/resolv.conf as systemd-resolved's package leaves it (its stub-resolv.conf)."""
CHECKOUT = "/root/boundary-k8s"
BOOT_TIMEOUT = 90.0


def image(engine: Engine, base_image: str) -> str:
    """The laptop image, built from CONTAINERFILE on base_image unless it exists; its tag."""
    key = hashlib.sha256(CONTAINERFILE.read_bytes() + base_image.encode()).hexdigest()[:16]
    tag = f"boundary-k8s/laptop:bookworm-{key}"
    if subprocess.run(
        ["docker", "image", "inspect", tag], env=engine.env(), capture_output=True, check=False
    ).returncode:
        engine.docker(
            *("build", "--quiet", "--file", str(CONTAINERFILE)),
            *("--build-arg", f"BASE_IMAGE={base_image}", "--tag", tag, str(CONTAINERFILE.parent)),
            timeout=900,
        )
    return tag


@dataclass(frozen=True)
class ReadmeSteps:
    install: str
    """The install commands, run as root in a checkout."""
    login: str
    """The user's `boundary-agent login` line, with the README's example values."""
    user_commands: list[str]
    """The user's other commands, comments dropped."""


def readme_steps() -> ReadmeSteps:
    """The two shell blocks of README.md's laptop section, as a user reads them."""
    text = (REPO / "README.md").read_text()
    assert README_SECTION in text, f"README.md has no {README_SECTION!r}"
    section = text.split(README_SECTION, 1)[1].split("\n#", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert len(blocks) == 2, f"{README_SECTION}: expected two sh blocks, found {len(blocks)}"
    lines = [line.split("  #", 1)[0].strip() for line in blocks[1].splitlines()]
    (login,) = [line for line in lines if line.startswith("boundary-agent login ")]
    return ReadmeSteps(
        install=blocks[0],
        login=login,
        user_commands=[line for line in lines if line and line != login],
    )


def with_values(login: str, addr: str, auth_method_id: str, login_name: str) -> str:
    """The README's login line with a real controller's values in place of its examples."""
    examples = {
        "https://boundary.example.com": addr,
        "ampw_...": auth_method_id,
        "-login-name me": f"-login-name {login_name}",
    }
    for example, value in examples.items():
        assert example in login, f"README.md's login line lost its example {example!r}: {login}"
        login = login.replace(example, value)
    return login


def checkout_tar(*paths: str) -> bytes:
    """What a clone has under paths (tracked and new files, not ignored ones), as a tar of
    CHECKOUT owned by root."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *paths],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in sorted(n for n in listed.split("\0") if n and (REPO / n).is_file()):
            info = tar.gettarinfo(str(REPO / name), arcname=f"{CHECKOUT.lstrip('/')}/{name}")
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            with (REPO / name).open("rb") as handle:
                tar.addfile(info, handle)
    return buffer.getvalue()


@dataclass
class Laptop:
    engine: Engine
    name: str

    def start(self, image: str, network: str, resolv_conf: Path) -> None:
        """Boot the container as systemd containers run here (privileged, the host's cgroups:
        see ../shared/reference/real-stack.md) with the stub resolv.conf, and wait for it."""
        resolv_conf.write_text(STUB_RESOLV_CONF)
        self.engine.docker(
            *("run", "--detach", "--name", self.name, "--hostname", "laptop"),
            *("--privileged", "--cgroupns=host", "--volume", "/sys/fs/cgroup:/sys/fs/cgroup:rw"),
            *("--tmpfs", "/run", "--tmpfs", "/run/lock"),
            *("--network", network, "--network-alias", UPLINK_NAME),
            *("--mount", f"type=bind,src={resolv_conf},dst=/etc/resolv.conf,readonly"),
            image,
        )
        self.wait_booted()

    def wait_booted(self) -> None:
        def booted() -> bool:
            state = self.sh("systemctl is-system-running --wait", check=False).stdout.strip()
            return state in ("running", "degraded")

        assert wait_for(booted, BOOT_TIMEOUT, 1), (
            f"{self.name} did not boot within {BOOT_TIMEOUT:.0f} s: "
            f"{self.sh('systemctl --failed --no-pager', check=False).stdout}"
        )

    def reboot(self) -> float:
        """`docker restart` (systemd shuts down in order: the image's STOPSIGNAL), then wait
        for the boot; the seconds it took."""
        started = time.monotonic()
        self.engine.docker("restart", "--time", "30", self.name, timeout=120)
        self.wait_booted()
        return time.monotonic() - started

    def copy_checkout(self, *paths: str) -> None:
        result = subprocess.run(
            ["docker", "cp", "-", f"{self.name}:/"],
            input=checkout_tar(*paths),
            env=self.engine.env(),
            capture_output=True,
            check=False,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr.decode()

    def sh(
        self,
        script: str,
        *,
        user: str = "root",
        workdir: str = "",
        env: dict[str, str] | None = None,
        check: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """bash -c script in the laptop, as user, in workdir (else /)."""
        argv = ["docker", "exec", "--user", user]
        if workdir:
            argv += ["--workdir", workdir]
        for name, value in (env or {}).items():
            argv += ["--env", f"{name}={value}"]
        result = subprocess.run(
            [*argv, self.name, "bash", "-eu", "-o", "pipefail", "-c", script],
            env=self.engine.env(),
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"in {self.name} as {user}: {script!r} exited {result.returncode}:\n"
                f"{result.stderr[-3000:]}\n{result.stdout[-2000:]}"
            )
        return result

    def journal(self, unit: str, lines: int = 40) -> str:
        return self.sh(
            f"journalctl --no-pager -o short-monotonic -n {lines} -u {unit}", check=False
        ).stdout

    def remove(self) -> None:
        run("docker", "rm", "--force", "--volumes", self.name, env=self.engine.env())
