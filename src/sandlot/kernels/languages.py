"""What differs between the languages of code contexts, as data: names, per-run environment
variables and a context's initial variables, each as code in the context's own language."""

import json

from failure import Failure
from spawn import KERNELS

ALIASES = {"": "python", "py": "python", "python3": "python", "ipython": "python", "sh": "bash",
           "js": "javascript", "ts": "typescript"}
NODE_LANGUAGES = ("javascript", "typescript")  # kernels/javascript.js on the template's node
RUNNER_LANGUAGES = (*NODE_LANGUAGES, "java")  # runners.py

# Per-run environment variables: set before the run, restored after it (state is per context).
# The earlier values are kept outside the user's namespace (on the os module, under a symbol, in
# R's options), and the restore walks the run's own keys: a run that clears its namespace
# (%reset -f, delete globalThis, rm(list = ls())...) loses at worst the earlier values, never
# leaves its own behind. java: the runner does it itself (runners.JavaContext).
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
    "r": (
        "options(sandlot.saved_env = Sys.getenv(%(keys_r)s, unset = NA, names = TRUE))\n"
        "do.call(Sys.setenv, as.list(setNames(%(values_r)s, %(keys_r)s)))\n",
        "local({ saved <- getOption('sandlot.saved_env'); options(sandlot.saved_env = NULL)\n"
        "  for (k in %(keys_r)s) { v <- if (is.null(saved)) NA else saved[k]\n"
        "    if (is.na(v)) Sys.unsetenv(k) else do.call(Sys.setenv, setNames(list(unname(v)), k)) } })\n"),
}
ENV_CODE["typescript"] = ENV_CODE["javascript"]


def normalise(language):
    language = (language or "").strip().lower()
    language = ALIASES.get(language, language)
    if language not in KERNELS and language not in RUNNER_LANGUAGES:
        raise Failure("invalid_argument", "unsupported language %r: known languages are %s"
                      % (language, ", ".join(sorted([*KERNELS, *RUNNER_LANGUAGES]))))
    return language


def env_code(language, envs, restore):
    """Code that sets `envs` for one run (restore False), or puts back what was there (True)."""
    template = ENV_CODE[language][1 if restore else 0]
    return template % {"keys": repr(list(envs)), "envs": repr(dict(envs)), "names": " ".join(envs),
                       "keys_json": json.dumps(list(envs)), "envs_json": json.dumps(dict(envs)),
                       "assign": " ".join("%s=%s" % (k, shell_quote(v)) for k, v in envs.items()),
                       "keys_r": r_vector(envs), "values_r": r_vector(envs.values())}


def variables_code(language, variables):
    """Code that defines a context's initial variables (JSON values) in its namespace."""
    if language in NODE_LANGUAGES:
        return "Object.assign(globalThis, JSON.parse(%s));" % json.dumps(json.dumps(variables))
    if language == "python":
        return "import json as _sl_j\nglobals().update(_sl_j.loads(%r))\ndel _sl_j\n" % json.dumps(variables)
    if language == "r":
        return ("local({ v <- jsonlite::fromJSON(%s, simplifyVector = TRUE)\n"
                "  for (k in names(v)) assign(k, v[[k]], envir = globalenv()) })\n" % r_string(json.dumps(variables)))
    if language == "java":
        return "\n".join("Object %s = null;" % k if v is None else "var %s = %s;" % (k, java_literal(v))
                         for k, v in variables.items())
    return "\n".join("%s=%s" % (k, shell_quote(v if isinstance(v, str) else json.dumps(v)))
                     for k, v in variables.items())


def shell_quote(value):
    return "'" + str(value).replace("'", "'\\''") + "'"


def r_string(value):
    # a JSON string without \u escapes (but for control characters) is an R string literal
    return json.dumps(str(value), ensure_ascii=False)


def r_vector(values):
    return "c(%s)" % ", ".join(map(r_string, values))


def java_literal(value):
    """A JSON value as a Java expression: strings, numbers and booleans as themselves, anything
    else as its JSON text (a String)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return "%dL" % value if not -2**31 <= value < 2**31 else str(value)
    if isinstance(value, float):
        if value != value:
            return "Double.NaN"
        return {float("inf"): "Double.POSITIVE_INFINITY", float("-inf"): "Double.NEGATIVE_INFINITY"}.get(value, repr(value))
    if not isinstance(value, str):
        value = json.dumps(value)
    # a JSON string without \u escapes (but for control characters, never a line break) is a Java
    # string literal; Java reads \u escapes before it lexes, so \u000a would end the literal
    return json.dumps(value, ensure_ascii=False)
