"""What differs between the languages of code contexts, as data: names, per-run environment
variables and a context's initial variables, each as code in the context's own language."""

import json

from failure import Failure
from spawn import KERNELS

ALIASES = {"": "python", "py": "python", "python3": "python", "ipython": "python", "sh": "bash",
           "js": "javascript", "ts": "typescript"}
NODE_LANGUAGES = ("javascript", "typescript")  # kernels/javascript.js on the template's node

# Per-run environment variables: set before the run, restored after it (state is per context).
# The earlier values are kept outside the user's namespace (on the os module, under a symbol), and
# the restore walks the run's own keys: a run that clears its namespace (%reset -f, delete
# globalThis...) loses at worst the earlier values, never leaves its own behind.
ENV_CODE = {
    "python": (
        "import os as _sl_os\n_sl_os._sandlot_saved_env = {k: _sl_os.environ.get(k) for k in %(keys)s}\n"
        "_sl_os.environ.update(%(envs)s)\ndel _sl_os\n",
        "import os as _sl_os\n_sl_saved = _sl_os.__dict__.pop('_sandlot_saved_env', None) or {}\n"
        "for _sl_k in %(keys)s:\n"
        "    _sl_v = _sl_saved.get(_sl_k)\n"
        "    _sl_os.environ.pop(_sl_k, None) if _sl_v is None else _sl_os.environ.__setitem__(_sl_k, _sl_v)\n"
        "del _sl_os, _sl_saved, _sl_k, _sl_v\n"),
    "bash": ("_sl_saved_env=$(declare -p %(names)s 2>/dev/null); export %(assign)s\n",
             "unset %(names)s; eval \"$_sl_saved_env\"; unset _sl_saved_env\n"),
    "javascript": (
        "globalThis[Symbol.for('sandlot.savedEnv')] = Object.fromEntries(%(keys_json)s.map((k) => [k, process.env[k]]));\n"
        "Object.assign(process.env, %(envs_json)s);\n",
        "{ const saved = globalThis[Symbol.for('sandlot.savedEnv')] || {};\n"
        "  for (const k of %(keys_json)s) { const v = saved[k];\n"
        "    if (v === undefined) delete process.env[k]; else process.env[k] = v; }\n"
        "  delete globalThis[Symbol.for('sandlot.savedEnv')]; }\n"),
}
ENV_CODE["typescript"] = ENV_CODE["javascript"]


def normalise(language):
    language = (language or "").strip().lower()
    language = ALIASES.get(language, language)
    if language not in KERNELS and language not in NODE_LANGUAGES:
        raise Failure("invalid_argument", "unsupported language %r: known languages are %s"
                      % (language, ", ".join(sorted([*KERNELS, *NODE_LANGUAGES]))))
    return language


def env_code(language, envs, restore):
    """Code that sets `envs` for one run (restore False), or puts back what was there (True)."""
    template = ENV_CODE[language][1 if restore else 0]
    return template % {"keys": repr(list(envs)), "envs": repr(dict(envs)), "names": " ".join(envs),
                       "keys_json": json.dumps(list(envs)), "envs_json": json.dumps(dict(envs)),
                       "assign": " ".join("%s=%s" % (k, shell_quote(v)) for k, v in envs.items())}


def variables_code(language, variables):
    """Code that defines a context's initial variables (JSON values) in its namespace."""
    if language in NODE_LANGUAGES:
        return "Object.assign(globalThis, JSON.parse(%s));" % json.dumps(json.dumps(variables))
    if language == "python":
        return "import json as _sl_j\nglobals().update(_sl_j.loads(%r))\ndel _sl_j\n" % json.dumps(variables)
    return "\n".join("%s=%s" % (k, shell_quote(v if isinstance(v, str) else json.dumps(v)))
                     for k, v in variables.items())


def shell_quote(value):
    return "'" + str(value).replace("'", "'\\''") + "'"
