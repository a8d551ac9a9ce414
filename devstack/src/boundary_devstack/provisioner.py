"""A volume provisioner for the local stack: PersistentVolumeClaims would stay Pending forever
without one. It binds each pending claim to a new hostPath PersistentVolume made for it, and
removes volumes whose claim is gone. (The pod runner keeps the data itself, by claim uid.)"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

POLL_SECONDS = 1.0


def _kubectl(kubectl: list[str], *args: str, input_text: str | None = None) -> str:
    return subprocess.run(
        [*kubectl, *args],
        input=input_text,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout


def volume_for(claim: dict[str, Any]) -> dict[str, Any]:
    meta, spec = claim["metadata"], claim["spec"]
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": f"pv-{meta['uid']}",
            "labels": {"devstack.boundaryproject.io/provisioned": "true"},
        },
        "spec": {
            "capacity": {"storage": spec["resources"]["requests"]["storage"]},
            "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
            "storageClassName": spec.get("storageClassName") or "",
            "persistentVolumeReclaimPolicy": "Retain",
            "hostPath": {"path": f"/var/lib/devstack-volumes/{meta['uid']}"},
            "claimRef": {
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
            },
        },
    }


def sync_once(kubectl: list[str]) -> None:
    claims = json.loads(_kubectl(kubectl, "get", "pvc", "-A", "-o", "json"))["items"]
    for claim in claims:
        if claim.get("status", {}).get("phase") == "Pending" and not claim["spec"].get(
            "volumeName"
        ):
            _kubectl(kubectl, "apply", "-f", "-", input_text=json.dumps(volume_for(claim)))
    volumes = json.loads(
        _kubectl(
            kubectl,
            "get",
            "pv",
            "-l",
            "devstack.boundaryproject.io/provisioned=true",
            "-o",
            "json",
        )
    )["items"]
    for volume in volumes:
        if volume.get("status", {}).get("phase") == "Released":
            _kubectl(kubectl, "delete", "pv", volume["metadata"]["name"], "--wait=false")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m boundary_devstack.provisioner")
    parser.add_argument("--kubectl", required=True)
    parser.add_argument("--kubeconfig", required=True)
    args = parser.parse_args()
    kubectl = [args.kubectl, "--kubeconfig", args.kubeconfig]
    while True:
        try:
            sync_once(kubectl)
        except subprocess.CalledProcessError as exc:
            print(f"provisioner: {exc.stderr.strip()}", file=sys.stderr, flush=True)
        time.sleep(POLL_SECONDS)


if __name__ == "__main__":
    sys.exit(main())
