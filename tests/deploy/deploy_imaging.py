"""Build the images with the real tools, without pulling anything from an image registry.

- A Python base image from `debootstrap` (Debian bookworm, the machine's own apt mirror) plus
  python3 and python3-venv, imported with `buildah from scratch`; the rootfs and the image are
  cached under MODELLOOP_CI_CACHE (default /var/cache/modelloop-ci), keyed by a hash of what
  went into them.
- `buildah bud --isolation chroot --storage-driver vfs --layers` for the Dockerfile's targets
  (the host's CA bundle is mounted for pip, which reaches PyPI from inside the build).
- `run_image` runs an image's own entrypoint the way a pod with a read-only root filesystem
  would: the image is mounted, bind-mounted read-only in a private mount namespace, a data
  directory bind-mounted on MODELLOOP_HOME, a tmpfs on /tmp, and the entrypoint exec'd by
  `chroot --userspec` as the image's user, in the host's network namespace (so it can be
  reached on 127.0.0.1).

Run it by hand: `python tests/deploy/deploy_imaging.py` builds both images and prints their sizes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("MODELLOOP_CI_CACHE", "/var/cache/modelloop-ci"))
SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
IMAGE = "localhost/modelloop"


def log(msg: str) -> None:
    print(f"[deploy_imaging {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 or one-line sources)."""
    files = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for f in files:
        if not f.is_file():
            continue
        text = f.read_text()
        uris: list[str] = []
        if f.suffix == ".sources":
            for stanza in text.split("\n\n"):
                fields = dict(
                    line.split(":", 1)
                    for line in stanza.splitlines()
                    if ":" in line and not line.startswith("#") and not line.startswith(" ")
                )
                if "Suites" in fields and SUITE in fields["Suites"].split():
                    uris += fields.get("URIs", "").split()
        else:
            for line in text.splitlines():
                parts = line.split()
                if len(parts) >= 3 and parts[0] == "deb" and SUITE in parts:
                    uris.append(next(p for p in parts[1:] if "://" in p))
        for uri in uris:
            if "security" not in uri:
                return uri.rstrip("/")
    return "http://deb.debian.org/debian"


def buildah(*args: str, timeout: float = 1800, capture: bool = True) -> str:
    cmd = [
        "buildah",
        "--root",
        str(CACHE / "storage"),
        "--runroot",
        str(CACHE / "run"),
        "--storage-driver",
        "vfs",
        *args,
    ]
    out = subprocess.run(
        cmd,
        check=False,
        timeout=timeout,
        text=True,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE if capture else None,
    )
    if out.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr}\n{out.stdout}"
        )
    return out.stdout.strip() if capture else ""


@contextlib.contextmanager
def cache_lock() -> Iterator[None]:
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def image_exists(ref: str) -> bool:
    try:
        buildah("inspect", "--type", "image", ref, timeout=60)
    except RuntimeError:
        return False
    return True


def base_image() -> str:
    """The debootstrap Python base, built once per key and kept in the cache."""
    url = mirror()
    key = hashlib.sha256(
        json.dumps(
            {"suite": SUITE, "mirror": url, "packages": PACKAGES, "variant": "minbase", "v": 1}
        ).encode()
    ).hexdigest()[:16]
    ref = f"{IMAGE}-base:{key}"
    if image_exists(ref):
        log(f"base image {ref} (cached)")
        return ref
    rootfs = CACHE / f"rootfs-{key}"
    if not (rootfs / "usr/bin/python3").exists():
        tmp = CACHE / f"rootfs-{key}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        log(f"debootstrap {SUITE} from {url} (+ {', '.join(PACKAGES)})")
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                SUITE,
                str(tmp),
                url,
            ],
            check=True,
            timeout=1200,
            stdout=subprocess.DEVNULL,
        )
        for junk in (
            "var/cache/apt/archives",
            "var/lib/apt/lists",
            "usr/share/doc",
            "usr/share/man",
            "usr/share/info",
            "usr/share/locale",
        ):
            p = tmp / junk
            if p.is_dir():
                for child in p.iterdir():
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child)
                    elif child.name != "lock":
                        child.unlink()
        tmp.rename(rootfs)
    log(f"importing the rootfs as {ref}")
    ctr = buildah("from", "--name", f"modelloop-base-{key}-{os.getpid()}", "scratch")
    try:
        mnt = buildah("mount", ctr)
        subprocess.run(["cp", "-a", f"{rootfs}/.", mnt], check=True, timeout=600)
        buildah("umount", ctr)
        buildah(
            "config",
            "--env",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--env",
            "LANG=C.UTF-8",
            "--cmd",
            "python3",
            "--label",
            f"org.opencontainers.image.description=debian {SUITE} + python3 (ci)",
            ctr,
        )
        buildah("commit", "--rm", ctr, ref, timeout=1200)
    except BaseException:
        with contextlib.suppress(Exception):
            buildah("rm", ctr)
        raise
    return ref


def build(target: str, base: str) -> str:
    """Build one target of the Dockerfile; returns the image reference. The stages it copies
    from (`deps-<target>`: the dependencies' virtualenv; `app`: modelloop itself) are built
    and tagged first: a tag keeps their layers, the pip install of the dependencies above all,
    from `prune`, and so cached for the next run."""
    if target in ("serve", "worker"):
        build(f"deps-{target}", base)
        build("app", base)
    ref = f"{IMAGE}:{target}-ci"
    log(f"buildah bud --target {target}")
    buildah(
        "bud",
        "--isolation",
        "chroot",
        "--format",
        "docker",  # the OCI format has no HEALTHCHECK
        "--layers",
        "--force-rm",  # no working container left behind by a failed step
        "--pull-never",
        "--target",
        target,
        "--build-arg",
        f"BASE={base}",
        "--build-arg",
        f"PIP_CERT={CA_BUNDLE}",
        "--volume",
        f"{CA_BUNDLE}:{CA_BUNDLE}:ro",
        "-f",
        str(ROOT / "Dockerfile"),
        "-t",
        ref,
        str(ROOT),
        timeout=1800,
    )
    return ref


def prune() -> None:
    """Drop images no tag leads to any more (older builds), so the cache does not grow; the
    layers of the tagged images, which the next build reuses, stay."""
    try:
        buildah("rmi", "--prune", timeout=600)
    except RuntimeError as e:  # an image still used by a container: pruned next time
        log(f"prune: {str(e)[:500]}")


def image_size(ref: str) -> str:
    """As buildah reports it (uncompressed, e.g. "392 MB")."""
    out = buildah("images", "--json", ref, timeout=60)
    return str(json.loads(out)[0]["size"])


def image_config(ref: str) -> dict:
    """The image's Docker config: Env, Entrypoint, Cmd, User, WorkingDir, Healthcheck."""
    info = json.loads(buildah("inspect", "--type", "image", ref, timeout=60))
    return info["Docker"]["config"]


@contextlib.contextmanager
def mounted(ref: str) -> Iterator[Path]:
    """The image's root filesystem (a throwaway working container), removed afterwards."""
    ctr = buildah("from", "--pull-never", ref)
    try:
        yield Path(buildah("mount", ctr))
    finally:
        with contextlib.suppress(Exception):
            buildah("umount", ctr)
        with contextlib.suppress(Exception):
            buildah("rm", ctr)


def chroot_command(
    rootfs: Path,
    config: dict,
    data: Path,
    argv: Sequence[str] | None = None,
    env: dict[str, str] | None = None,
) -> list[str]:
    """A command that runs the image's entrypoint (or `argv`) as the image's user with the root
    filesystem read-only, `data` on the image's MODELLOOP_HOME and a tmpfs on /tmp."""
    image_env = dict(e.split("=", 1) for e in config.get("Env", []))
    image_env.update(env or {})
    home = image_env["MODELLOOP_HOME"]
    user = config.get("User") or "0:0"
    cmd = (
        list(argv)
        if argv is not None
        else [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
    )
    workdir = config.get("WorkingDir") or "/"
    script = (
        'set -e; R="$1"; D="$2"; H="$3"; W="$4"; U="$5"; shift 5\n'
        'mount --bind "$R" "$R"; mount -o remount,bind,ro "$R"\n'
        'mount --bind "$D" "$R$H"\n'
        'mount -t tmpfs -o size=64m,mode=1777 tmpfs "$R/tmp"\n'
        'mount -t proc proc "$R/proc"\n'
        'mount --rbind /dev "$R/dev"\n'
        'exec chroot --userspec="$U" "$R" /bin/sh -c \'cd "$0" && exec "$@"\' "$W" "$@"\n'
    )
    return [
        # no --fork: unshare, sh and chroot each exec the next, so the returned
        # process is the entrypoint itself and gets signals directly (the mount namespace
        # ends with it)
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "/bin/sh",
        "-c",
        script,
        "sh",
        str(rootfs),
        str(data),
        home,
        workdir,
        user,
        "env",
        "-i",
        *(f"{k}={v}" for k, v in image_env.items()),
        *cmd,
    ]


def build_all() -> dict:
    """Base, serve and worker, under the cache lock (one build at a time per machine), then
    prune. Returns refs, sizes and seconds."""
    with cache_lock():
        t0 = time.monotonic()
        base = base_image()
        t1 = time.monotonic()
        serve = build("serve", base)
        t2 = time.monotonic()
        worker = build("worker", base)
        t3 = time.monotonic()
        prune()
        t4 = time.monotonic()
    info = {
        "base": base,
        "serve": serve,
        "worker": worker,
        "sizes": {
            "base": image_size(base),
            "serve": image_size(serve),
            "worker": image_size(worker),
        },
        "seconds": {
            "base": round(t1 - t0, 1),
            "serve": round(t2 - t1, 1),
            "worker": round(t3 - t2, 1),
            "prune": round(t4 - t3, 1),
        },
    }
    log(f"built: {json.dumps(info)}")
    (CACHE / "last-build.json").write_text(json.dumps(info, indent=2))
    return info


def main() -> None:
    print(json.dumps(build_all(), indent=2))


if __name__ == "__main__":
    main()
