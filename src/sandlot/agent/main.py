"""Entry point of the in-sandbox agent: ``main()`` with ``--socket PATH --config PATH``.

The runtime starts it with the template's own python3 (>= 3.9, -S, stdlib only) from the
in-sandbox tree, a package ``sandlot`` holding only agent/, protocol/{wire,contract}.py and kernels/
(see protocol/contract.py: agent_command); the same code runs from the host's package in tests.
"""

import os
import sys

USAGE = "usage: sandlot-agent --socket PATH [--config PATH]"


def _options(argv):
    opts = {"--socket": None, "--config": None}
    it = iter(argv)
    for arg in it:
        name, eq, value = arg.partition("=")
        if name not in opts:
            sys.exit("%s\nunknown argument: %s" % (USAGE, arg))
        opts[name] = value if eq else next(it, None)
    if not opts["--socket"]:
        sys.exit(USAGE)
    return opts["--socket"], opts["--config"]


def main(argv=None):
    socket_path, config_path = _options(sys.argv[1:] if argv is None else argv)
    import _signal as signal  # signal.py only adds enums to it (~5 ms of imports before ready)

    from . import config, loop, server

    if config_path:
        config.load(config_path)
    config.run_dir = os.path.dirname(os.path.abspath(socket_path))
    os.umask(0o022)
    # A signal writes its number to this pipe (set_wakeup_fd), which wakes the loop. As the
    # sandbox's pid 1 the agent sweeps the orphans it inherits at SIGCHLD, and handles no stopping
    # signal: the kernel then keeps every signal from inside the sandbox away from it (its users
    # cannot take it down), and the runtime ends it with SIGKILL. Elsewhere (tests on the host),
    # SIGTERM and SIGINT stop it.
    # An ignored signal is inherited through exec: a server started under nohup passes SIGHUP on
    # ignored, one started in the background by a script SIGINT and SIGQUIT. The sandbox's commands
    # must still get a hang-up (a closed terminal, a sudo shim gone) or an interrupt. As pid 1 the
    # agent itself takes no signal it has no handler for. SIGPIPE and SIGXFSZ are the
    # interpreter's own; children get them back as default when started (spawn.py).
    for sig in range(1, signal.NSIG):
        if sig not in (signal.SIGPIPE, signal.SIGXFSZ) and signal.getsignal(sig) == signal.SIG_IGN:
            signal.signal(sig, signal.SIG_DFL)
    # Whatever the agent inherited beyond its stdio is closed at exec: no command may get it
    # (spawn.py starts commands without a close list)
    for fd in map(int, os.listdir("/proc/self/fd")):
        if fd > 2:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass  # the listing's own fd
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    handled = (signal.SIGCHLD,) if os.getpid() == 1 else (signal.SIGTERM, signal.SIGINT)
    for sig in handled:
        signal.signal(sig, lambda *_: None)
    stop = loop.Future()

    def woken():
        from . import children

        for signum in os.read(wake_r, 512):
            if signum == signal.SIGCHLD:
                children.reap_orphans()
            elif not stop.done():
                stop.set_result(None)

    loop.add_reader(wake_r, woken)
    srv = server.Server(socket_path)
    srv.start()  # the socket is made while still root: /run/sandlot belongs to the sandbox's root
    # Ready first: the runtime's create goes on while the drop runs (~2 ms). Nothing of the
    # sandbox's runs before the drop: the loop below answers no request until it is done, and a
    # failed drop ends the agent, and with it the sandbox.
    _say_ready()
    _drop_privileges()
    # The first command's modules are loaded while its create is being answered (~10 ms from
    # here to its request): it would load them itself otherwise
    loop.call_soon(server.preload)
    try:
        loop.run_until(stop)
    finally:
        srv.close()
        # the sandbox is going away; leave nothing behind on a host
        for name in ("processes", "sessions"):
            module = sys.modules.get(__package__ + "." + name)
            if module is not None:
                module.kill_all()


def _say_ready():
    from . import config

    fd = config.settings.ready_fd
    if fd is None:
        return
    try:
        os.write(fd, b"1")  # the socket listens: the runtime's create can go on
        os.close(fd)
    except OSError:
        pass  # nobody waits (an adopted sandbox's agent, restarted by hand)


def _drop_privileges():
    from . import config

    if config.settings.root_caps is None and not config.settings.run_as_default_user:
        return  # not in a sandbox (host tests): nothing to drop
    from . import privileges, users

    if config.settings.root_caps is not None:
        privileges.limit_bounding_set(config.settings.root_caps)
    if config.settings.run_as_default_user and os.geteuid() == 0:
        user = users.lookup(None)
        if user.uid != 0:
            privileges.run_as(user.uid, user.gid)
