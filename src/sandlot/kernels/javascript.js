"use strict";
// A javascript or typescript code context for sandlot's driver (kernels/driver.py), run by the
// template's node. State persists in this process's global scope between runs.
//
// stdin, one JSON object per line: {"id", "code", "typescript": bool, "silent": bool}
// stdout, one JSON object per line, for that id: {"type": "number_of_executions", ...},
//   {"type": "stdout"|"stderr", "text"}, {"type": "result", "text"}, {"type": "error", "name",
//   "value", "traceback"}, and last {"type": "done", "error": message?}. First of all: {"ready": true}.
// SIGINT interrupts the run in progress (a busy loop too) and leaves the context usable.

const vm = require("vm");
const util = require("util");
const path = require("path");
const readline = require("readline");
const { Console } = require("console");
const { Writable } = require("stream");
const Module = require("module");

const TYPESCRIPT = ["/usr/share/nodejs/typescript", "/usr/lib/node_modules/typescript", "typescript"];
const out = process.stdout;
// Globals the runner needs after a cell ran: enumerable ones a cell may delete or replace
// (`for (const k of Object.keys(globalThis)) delete globalThis[k]`), so kept here.
const { setImmediate } = globalThis;
let current = null; // the run in progress: {id, silent, interrupt}
let count = 0;
let ts = null;
// The driver reads lines of at most 16 MiB from us (and cuts a run's output to its own limit):
// output goes in pieces of PIECE characters, an error's or a result's text is cut to MAX_FIELD
// (a character takes up to 6 bytes in JSON).
const PIECE = 1 << 20;
const MAX_FIELD = 1 << 20;

function send(obj) {
  out.write(JSON.stringify(obj) + "\n");
}

function clip(text) {
  text = String(text);
  return text.length <= MAX_FIELD ? text
    : text.slice(0, MAX_FIELD) + `\n[sandlot: ${text.length - MAX_FIELD} characters cut]\n`;
}

function stream(type) {
  return new Writable({
    decodeStrings: false, // a huge console.log is not copied into a Buffer and back
    write(chunk, encoding, done) {
      if (current && !current.silent) {
        const text = chunk.toString();
        for (let i = 0; i < text.length;) {
          let end = Math.min(i + PIECE, text.length);
          const last = text.charCodeAt(end - 1);
          if (end < text.length && last >= 0xd800 && last <= 0xdbff) end -= 1; // not half a surrogate pair
          send({ id: current.id, type, text: text.slice(i, end) });
          i = end;
        }
      }
      done();
    },
  });
}

globalThis.console = new Console({ stdout: stream("stdout"), stderr: stream("stderr") });
globalThis.require = Module.createRequire(path.join(process.cwd(), "[sandlot]"));
globalThis.module = { exports: {} };
globalThis.exports = globalThis.module.exports;
globalThis.__dirname = process.cwd();

function reportError(err) {
  if (!current || current.silent) return;
  const e = err instanceof Error ? err : new Error(util.inspect(err));
  // the user's frames only: not this runner's, not node's vm machinery
  const stack = String(e.stack || e).split("\n")
    .filter((line, i) => i === 0 || !/node:vm|node:internal|\[sandlot\]|javascript\.js/.test(line));
  send({ id: current.id, type: "error", name: String(e.name || "Error").slice(0, 200),
         value: clip(e.message || String(err)), traceback: clip(stack.join("\n")) });
}

process.on("unhandledRejection", (err) => reportError(err));
process.on("uncaughtException", (err) => reportError(err));
process.on("SIGINT", () => {
  // reached when no synchronous code runs (breakOnSigint covers that): stop an awaited run
  if (current && current.interrupt) current.interrupt(new Error("Script execution was interrupted by `SIGINT`"));
});

function typescript() {
  if (ts === null) {
    for (const where of TYPESCRIPT) {
      try { ts = require(where); break; } catch (e) { /* next */ }
    }
    if (ts === null) throw new Error("TypeScript is not installed in this sandbox's template");
  }
  return ts;
}

function transpile(code) {
  const t = typescript();
  return t.transpileModule(code, { compilerOptions: {
    target: t.ScriptTarget.ES2022, module: t.ModuleKind.CommonJS, esModuleInterop: true,
  } }).outputText;
}

// Top-level await: run the cell as an async function. Its top-level declarations become globals
// (so later cells see them) and its last line, if it is an expression, is the result.
function asAsync(code) {
  const lines = code.replace(/\s+$/, "").split("\n");
  const hoisted = lines.map((l) => l.replace(/^(\s*)(?:const|let|var)\s+([A-Za-z_$][\w$]*)\s*=/, "$1globalThis.$2 ="));
  const last = hoisted.length ? hoisted[hoisted.length - 1].replace(/;\s*$/, "") : "";
  const body = hoisted.slice(0, -1).join("\n");
  for (const candidate of [`${body}\nreturn (${last});`, hoisted.join("\n")]) {
    try {
      return new vm.Script(`(async () => {\n${candidate}\n})()`, { filename: "cell.js" });
    } catch (e) { /* try the next form */ }
  }
  return new vm.Script(`(async () => {\n${code}\n})()`, { filename: "cell.js" }); // throws its SyntaxError
}

function compile(code, isTypescript) {
  let source = isTypescript ? transpile(code) : code;
  try {
    return { script: new vm.Script(source, { filename: "cell.js" }), async: false };
  } catch (err) {
    const message = String(err && err.message);
    if (!isTypescript && /import statement|export/.test(message)) {
      source = transpile(code); // ES module syntax: TypeScript turns it into require() calls
      try { return { script: new vm.Script(source, { filename: "cell.js" }), async: false }; } catch (e) { /* below */ }
    }
    if (/await/.test(message)) return { script: asAsync(source), async: true };
    throw err;
  }
}

async function run(req) {
  current = { id: req.id, silent: !!req.silent, interrupt: null };
  if (!req.silent) send({ id: req.id, type: "number_of_executions", execution_count: ++count });
  let error = null;
  try {
    const { script, async } = compile(String(req.code || ""), !!req.typescript);
    let value = script.runInThisContext({ breakOnSigint: true, displayErrors: false });
    if (async) {
      value = await new Promise((resolve, reject) => {
        current.interrupt = reject;
        value.then(resolve, reject);
      });
    }
    if (value !== undefined && !req.silent) {
      send({ id: req.id, type: "result", is_main_result: true, text: clip(util.inspect(value, { depth: 4 })) });
    }
  } catch (err) {
    error = err;
    reportError(err);
  }
  try {
    // let output written by callbacks of this run (console.log in a resolved promise) come first
    await new Promise((resolve) => setImmediate(resolve));
  } finally {
    send({ id: req.id, type: "done", error: error ? clip(error && error.message) : undefined });
    current = null;
  }
}

const input = readline.createInterface({ input: process.stdin, terminal: false });
let queue = Promise.resolve();
input.on("line", (line) => {
  let req;
  try { req = JSON.parse(line); } catch (e) { return; }
  queue = queue.then(() => run(req)).catch(() => {}); // one run failing never stops the next
});
input.on("close", () => process.exit(0));
send({ ready: true });
