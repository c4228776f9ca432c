"""Test hosts on one machine: network namespaces on a bridge, each with its own address.

``Hosts`` makes a bridge in the root namespace (the tests' own address on it is ``.1``) and
one namespace per host, joined to the bridge by a veth pair; each host gets ``.11``,
``.12``, ... and a default route through the bridge. Processes started with ``run``/``popen``
live in that host's network namespace; ``kill_all`` kills every process in one (what a lost
machine looks like to the others). It needs root and iproute2, as CI has.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any


def available() -> str | None:
    """None when namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    probe = f"fwprobe{os.getpid() % 10000}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


@dataclass
class Host:
    name: str  # the namespace
    address: str

    def command(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(argv), text=True, capture_output=True, **kwargs)

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[str]:
        return subprocess.Popen(self.command(argv), text=True, **kwargs)

    def pids(self) -> list[int]:
        done = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True)
        return [int(p) for p in done.stdout.split()]

    def kill_all(self) -> int:
        """SIGKILL every process in this host's namespace; return how many there were."""
        pids = self.pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(pids)


@dataclass
class Hosts:
    names: list[str]
    tag: str = field(default_factory=lambda: f"{random.randrange(16**4):04x}")
    hosts: dict[str, Host] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.subnet = f"10.{random.randrange(100, 250)}.{random.randrange(1, 250)}"
        self.bridge = f"fwbr{self.tag}"
        self.gateway = f"{self.subnet}.1"

    def __enter__(self) -> Hosts:
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for i, name in enumerate(self.names):
                ns, veth = f"fw{self.tag}{name}", f"fwv{self.tag}{i}"
                address = f"{self.subnet}.{11 + i}"
                _ip("netns", "add", ns)
                _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
                _ip("link", "set", veth, "master", self.bridge, "up")
                _ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
                _ip("-n", ns, "link", "set", "lo", "up")
                _ip("-n", ns, "route", "add", "default", "via", self.gateway)
                self.hosts[name] = Host(ns, address)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def __exit__(self, *_: object) -> None:
        for host in self.hosts.values():
            host.kill_all()
        time.sleep(0.5)
        for host in self.hosts.values():
            subprocess.run(["ip", "netns", "del", host.name], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
