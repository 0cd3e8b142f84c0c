#!/usr/bin/python3 -S
"""sudo for sandlot sandboxes (bind-mounted at /usr/bin/sudo): passwordless, run by the agent.

no_new_privs is set in a sandbox, so no setuid program can raise privileges. Instead this asks
the sandbox agent (root inside the sandbox) to run the command, handing it this process's stdin,
stdout and stderr (SCM_RIGHTS) so the command uses the caller's terminal or pipes directly. Signals
this process gets are forwarded; it exits with the command's status. Stdlib only, python3 >= 3.9.
"""

import json
import os
import pwd
import signal
import socket
import struct
import sys

SOCKET = os.environ.get("SANDLOT_AGENT_SOCKET", "/run/sandlot/agent.sock")
USAGE = """usage: sudo [-EHinS] [-u user] [--] [VAR=value] command [args...]
       sudo -i | -s [command]
       sudo -v | -k | -K | -l | -V | -h"""
# What survives sudo's env_reset (sudoers' env_keep defaults, more or less).
KEPT_VARS = ("TERM", "COLORTERM", "COLORS", "DISPLAY", "LANG", "LANGUAGE", "LC_ALL", "LS_COLORS", "TZ",
             "XAUTHORITY")
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
             signal.SIGWINCH, signal.SIGCONT)


def fail(message, code=1):
    sys.stderr.write("sudo: %s\n" % message)
    sys.exit(code)


def parse(argv):
    """Options -> (settings dict, command list)."""
    opts = {"user": "root", "preserve_env": False, "login": False, "shell": False, "only": None}
    with_value = {"-u": "user", "--user": "user"}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            if name in with_value:
                if not eq:
                    i += 1
                    if i == len(argv):
                        fail("option requires an argument -- '%s'\n%s" % (name, USAGE))
                    value = argv[i]
                opts[with_value[name]] = value
            elif name in ("--preserve-env", "--login", "--shell", "--non-interactive", "--set-home",
                          "--stdin", "--validate", "--reset-timestamp", "--remove-timestamp",
                          "--list", "--version", "--help"):
                _flag(opts, {"--preserve-env": "E", "--login": "i", "--shell": "s",
                             "--non-interactive": "n", "--set-home": "H", "--stdin": "S",
                             "--validate": "v", "--reset-timestamp": "k", "--remove-timestamp": "K",
                             "--list": "l", "--version": "V", "--help": "h"}[name])
            else:
                fail("unrecognized option '%s'\n%s" % (arg, USAGE))
            i += 1
            continue
        j = 1
        while j < len(arg):
            letter = arg[j]
            if "-" + letter in with_value:
                value = arg[j + 1:]
                if not value:
                    i += 1
                    if i == len(argv):
                        fail("option requires an argument -- '%s'\n%s" % (letter, USAGE))
                    value = argv[i]
                opts[with_value["-" + letter]] = value
                break
            _flag(opts, letter)
            j += 1
        i += 1
    return opts, argv[i:]


def _flag(opts, letter):
    if letter == "E":
        opts["preserve_env"] = True
    elif letter == "i":
        opts["login"] = True
    elif letter == "s":
        opts["shell"] = True
    elif letter in "nHS":
        pass  # no password is ever asked
    elif letter in "vkKlVh":
        opts["only"] = opts["only"] or letter  # -k/-K (no timestamps to reset) may go with a command
    else:
        fail("invalid option -- '%s'\n%s" % (letter, USAGE))


def command(opts, args):
    """The argv to run and its cwd, following sudo's -i and -s rules."""
    env = {}
    while args and "=" in args[0] and not args[0].startswith("="):
        name, _, value = args[0].partition("=")
        if not name.replace("_", "a").isalnum():
            break
        env[name] = value
        args = args[1:]
    cwd = os.getcwd() if os.path.isdir(".") else "/"
    if opts["login"] or opts["shell"]:
        try:
            target = pwd.getpwnam(opts["user"])
        except KeyError:
            fail("unknown user %s" % opts["user"])
        shell = (os.environ.get("SHELL") if opts["shell"] and not opts["login"] else None) or target.pw_shell
        shell = shell or "/bin/sh"
        argv = [shell, "-l"] if opts["login"] else [shell]
        if args:
            argv += ["-c", " ".join(_quote(a) for a in args)]
        if opts["login"]:
            cwd = target.pw_dir or "/"
        return argv, cwd, env
    if not args:
        fail(USAGE)
    return args, cwd, env


def _quote(arg):
    # sudo -i/-s escape every non-alphanumeric character of the command with a backslash
    return "".join(c if c.isalnum() or c in "_-$" else "\\" + c for c in arg)


def environment(opts, extra):
    if opts["preserve_env"]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("HOME", "USER", "LOGNAME", "SHELL", "PATH", "MAIL")}
    else:
        env = {k: v for k, v in os.environ.items() if k in KEPT_VARS or k.startswith("LC_")}
    env.update(extra)
    return env


def frame(obj):
    data = json.dumps(obj).encode()
    return struct.pack(">cI", b"J", len(data)) + data


def read_frame(sock):
    head = _read_exactly(sock, 5)
    if head is None:
        return None
    kind, length = struct.unpack(">cI", head)
    payload = _read_exactly(sock, length)
    return json.loads(payload) if kind == b"J" and payload is not None else None


def _read_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def main(argv):
    opts, args = parse(argv)
    only = opts["only"]
    if only in ("v", "K") or (only == "k" and not args):
        return 0
    if only == "h":
        print(USAGE)
        return 0
    if only == "V":
        print("sandlot sudo shim")
        return 0
    if only == "l":
        print("User %s may run the following commands:\n    (ALL : ALL) NOPASSWD: ALL"
              % pwd.getpwuid(os.getuid()).pw_name)
        return 0
    argv, cwd, extra = command(opts, args)
    request = {"op": "sudo", "argv": argv, "user": opts["user"], "cwd": cwd,
               "envs": environment(opts, extra)}
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:  # closed by the caller: the command gets /dev/null there
            os.dup2(os.open(os.devnull, os.O_RDWR), fd)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(SOCKET)
        socket.send_fds(sock, [frame(request)], [0, 1, 2])
    except OSError as e:
        fail("cannot reach the sandbox agent at %s: %s" % (SOCKET, e.strerror or e))

    def forward(sig, _):
        try:
            sock.sendall(frame({"signal": sig}))
        except OSError:
            pass

    for sig in FORWARDED:
        signal.signal(sig, forward)
    reply = read_frame(sock)
    if reply is None:
        fail("the sandbox agent closed the connection")
    if "error" in reply:
        fail(reply["error"].get("message", "failed"))
    sig = reply.get("signal", 0)
    if sig:
        # Die of the same signal, as sudo does, so the caller's shell reports it the same way.
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        return 128 + sig
    return reply.get("exit_code", 1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
