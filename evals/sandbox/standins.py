"""The ``scp``, ``rsync`` and ``ssh`` a bubblewrap sandbox puts on its PATH: there is no
network, so another host is a directory (``/net/<host>``, as an automounter would show it)
and these copy between the sample's root and it (``ssh HOST CMD`` runs CMD in a nested
sandbox whose root is that host's directory). Python 3 scripts, run by the sandbox's own
``/usr/bin/python3``; ``{NESTED}`` is replaced by the nested sandbox's bwrap arguments."""

from __future__ import annotations

COPY = r'''#!/usr/bin/python3
"""{tool}: copies between this host and /net/<host> (stand-in: there is no network)."""
import os, re, shutil, socket, sys

TOOL = "{tool}"
HOME = os.environ.get("HOME", "/home/agent")
VALUE_FLAGS = set("PiocFlSJ") if TOOL == "scp" else set("eBfT")


def die(msg, code=1):
    sys.stderr.write(msg + "\n")
    sys.exit(code)


def resolve(spec):
    m = re.fullmatch(r"(?:[^@/:]+@)?([A-Za-z0-9._-]+):(.*)", spec, re.S)
    if m is None or spec.startswith(("/", "./")):
        return os.path.abspath(spec)
    host, path = m.group(1), m.group(2) or HOME
    if not path.startswith("/"):
        path = HOME + "/" + path
    if host in (socket.gethostname(), "localhost", "127.0.0.1"):
        return path
    base = "/net/" + host
    if not os.path.isdir(base):
        if TOOL == "scp":
            die(f"ssh: Could not resolve hostname {host}: Name or service not known\r\n"
                "scp: Connection closed", 255)
        die(f"ssh: Could not resolve hostname {host}: Name or service not known\n"
            "rsync: connection unexpectedly closed (0 bytes received so far) [sender]\n"
            "rsync error: unexplained error (code 255) at io.c(232) [sender=3.2.7]", 255)
    return base + path


def main(argv):
    flags, rest, long_opts = set(), [], set()
    it = iter(argv)
    for a in it:
        if a.startswith("--"):
            name = a[2:].split("=", 1)[0]
            long_opts.add(name)
            if name in ("rsh", "exclude", "include", "chmod", "chown") and "=" not in a:
                next(it, None)
        elif a.startswith("-") and len(a) > 1:
            for i, c in enumerate(a[1:]):
                flags.add(c)
                if c in VALUE_FLAGS:
                    if i == len(a) - 2:
                        next(it, None)
                    break
        else:
            rest.append(a)
    if len(rest) < 2:
        if TOOL == "scp":
            die("usage: scp [-346ABCOpqRrsTv] [-c cipher] [-D sftp_server_path] [-F ssh_config]\n"
                "           [-i identity_file] [-J destination] [-l limit] [-o ssh_option]\n"
                "           [-P port] [-S program] [-X sftp_option] source ... target", 1)
        die("rsync: a source and a destination are needed (stand-in: no daemon mode)", 1)
    recursive = bool({"r", "R", "a"} & flags) or "recursive" in long_opts or "archive" in long_opts
    keep_mode = bool({"p", "a"} & flags) or "archive" in long_opts or "perms" in long_opts
    dst = resolve(rest[-1])
    status = 0
    for spec in rest[:-1]:
        src = resolve(spec)
        try:
            if not os.path.lexists(src):
                raise FileNotFoundError
            if os.path.isdir(src):
                if not recursive:
                    if TOOL == "scp":
                        sys.stderr.write(f"scp: {spec}: not a regular file\n")
                    else:
                        print(f"skipping directory {os.path.basename(src.rstrip('/'))}")
                    status = 1
                    continue
                contents = TOOL == "rsync" and spec.endswith("/")
                target = dst if contents or not os.path.isdir(dst) else os.path.join(
                    dst, os.path.basename(src.rstrip("/")))
                links = TOOL == "rsync" and bool({"l", "a"} & flags)
                shutil.copytree(src, target, symlinks=links, dirs_exist_ok=True,
                                copy_function=shutil.copy2 if keep_mode else shutil.copyfile)
            else:
                target = os.path.join(dst, os.path.basename(src)) if os.path.isdir(dst) else dst
                if dst.endswith("/") and not os.path.isdir(dst):
                    raise NotADirectoryError(dst)
                shutil.copyfile(src, target)
                if keep_mode:
                    shutil.copymode(src, target)
            if "remove-source-files" in long_opts and os.path.isfile(src):
                os.remove(src)
        except FileNotFoundError:
            status = 1
            if TOOL == "scp":
                sys.stderr.write(f"scp: {spec}: No such file or directory\n")
            else:
                sys.stderr.write(f'rsync: [sender] link_stat "{src}" failed: '
                                 "No such file or directory (2)\n")
        except PermissionError as exc:
            status = 1
            sys.stderr.write(f"{TOOL}: {exc.filename or spec}: Permission denied\n")
        except OSError as exc:
            status = 1
            sys.stderr.write(f"{TOOL}: {exc.filename or spec}: {exc.strerror}\n")
    if status and TOOL == "rsync":
        sys.stderr.write("rsync error: some files/attrs were not transferred (see previous errors)"
                         " (code 23) at main.c(1338) [sender=3.2.7]\n")
        status = 23
    sys.exit(status)


main(sys.argv[1:])
'''

SSH = r'''#!/usr/bin/python3
"""ssh: runs a command on /net/<host> in a nested sandbox (stand-in: there is no network)."""
import os, socket, subprocess, sys

NESTED = {NESTED}
VALUE_FLAGS = set("BbcDEeFIiJLlmOoPpQRSWw")

args, rest = sys.argv[1:], []
it = iter(args)
dest = None
for a in it:
    if dest is None and a.startswith("-") and len(a) > 1:
        for i, c in enumerate(a[1:]):
            if c in VALUE_FLAGS:
                if i == len(a) - 2:
                    next(it, None)
                break
        continue
    if dest is None:
        dest = a
    else:
        rest.append(a)
if dest is None:
    sys.stderr.write("usage: ssh [-46AaCfGgKkMNnqsTtVvXxYy] [-B bind_interface] [-b bind_address]\n"
                     "           [-c cipher_spec] [-D [bind_address:]port] [-E log_file]\n"
                     "           [-i identity_file] [-J destination] [-l login_name] [-o option]\n"
                     "           [-p port] destination [command [argument ...]]\n")
    sys.exit(255)
host = dest.split("@")[-1]
if host.startswith("ssh://"):
    host = host[6:]
host = host.split(":")[0]
command = " ".join(rest)
if not command:
    sys.stderr.write("Pseudo-terminal will not be allocated because stdin is not a terminal.\r\n")
if host in (socket.gethostname(), "localhost", "127.0.0.1"):
    sys.exit(subprocess.call(["/bin/bash", "-c", command] if command else ["/bin/bash"]))
root = "/net/" + host
if not os.path.isdir(root):
    sys.stderr.write(f"ssh: Could not resolve hostname {host}: Name or service not known\n")
    sys.exit(255)
argv = ["bwrap", "--hostname", host, "--bind", root, "/", *NESTED, "--chdir",
        os.environ.get("HOME", "/"), "/bin/bash"]
sys.exit(subprocess.call(argv + (["-c", command] if command else [])))
'''


def copy_script(tool: str) -> str:
    return COPY.replace("{tool}", tool)


def ssh_script(nested: list[str]) -> str:
    return SSH.replace("{NESTED}", repr(nested))
