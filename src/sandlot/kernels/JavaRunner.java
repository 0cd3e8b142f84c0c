// A java code context for sandlot's driver (kernels/java_context.py), run by the template's JDK as a
// single source file (`java JavaRunner.java`). A JShell in this same JVM (the "local" execution
// engine: no second JVM to start) keeps a context's state between runs.
//
// The protocol is javascript.js's. stdin, one JSON object per line: {"id", "code", "silent": bool,
// "envs": {name: value}}.
// stdout, one JSON object per line, for that id: {"type": "number_of_executions", ...},
//   {"type": "stdout"|"stderr", "text"}, {"type": "result", "text"}, {"type": "error", "name",
//   "value", "traceback"}, and last {"type": "done", "error": message?}. First of all: {"ready": true}.
// SIGINT stops the run in progress (a busy loop too) and leaves the context usable.
//
// As IJava (E2B's java kernel): a cell is split into snippets that run in turn; the first that fails
// ends the run; the result is the value of the last snippet if it is an expression, shown as
// String.valueOf of it. Errors are named as IJava names them: CompilationException,
// IncompleteSourceException, EvalException (the exception's own class heads the traceback),
// UnresolvedReferenceException; a stopped run is EvaluationInterruptedException.
//
// Environment variables are system properties too (System.getProperty), as in E2B's java contexts:
// the process's at start, and a run's `envs` for that run (a JVM's environment cannot change).
//
// One file of ~500 lines, the JSON it needs included: `java FILE.java` (JDK 11+) runs a single
// source file, so the runner needs no build step and no class files in the sandbox's tree.

import java.io.BufferedReader;
import java.io.ByteArrayOutputStream;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;

import jdk.jshell.Diag;
import jdk.jshell.EvalException;
import jdk.jshell.ExpressionSnippet;
import jdk.jshell.JShell;
import jdk.jshell.JShellException;
import jdk.jshell.Snippet;
import jdk.jshell.SnippetEvent;
import jdk.jshell.SourceCodeAnalysis;
import jdk.jshell.VarSnippet;

class JavaRunner {
    // The driver reads lines of at most 16 MiB: output goes in pieces of PIECE characters, an error's
    // or a result's text is cut to MAX_FIELD (a character takes up to 6 bytes in JSON).
    static final int PIECE = 1 << 20;
    static final int MAX_FIELD = 1 << 20;

    static final PrintStream protocol = new PrintStream(new FileOutputStream(FileDescriptor.out), false,
                                                        StandardCharsets.UTF_8);
    static volatile Run current; // the run in progress
    static int count = 0;

    static final class Run {
        final Object id;
        final boolean silent;
        volatile boolean stopped;

        Run(Object id, boolean silent) {
            this.id = id;
            this.silent = silent;
        }
    }

    public static void main(String[] args) throws Exception {
        // the user's System.out and System.err become output lines of the run in progress
        System.setOut(new PrintStream(new Capture("stdout"), true, StandardCharsets.UTF_8));
        System.setErr(new PrintStream(new Capture("stderr"), true, StandardCharsets.UTF_8));
        System.getenv().forEach((name, value) -> {
            if (System.getProperty(name) == null) {
                System.setProperty(name, value);
            }
        });
        JShell shell = JShell.builder().executionEngine("local").build();
        sun.misc.Signal.handle(new sun.misc.Signal("INT"), signal -> {
            Run run = current;
            if (run != null) {
                run.stopped = true;
                shell.stop();
            }
        });
        shell.eval("1"); // the compiler's first use costs ~1 s: paid now, not by the first run
        send(Map.of("ready", true));
        BufferedReader input = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        for (String line; (line = input.readLine()) != null; ) {
            Map<String, Object> req;
            try {
                req = Json.object(line);
            } catch (RuntimeException e) {
                continue;
            }
            run(shell, req);
        }
        System.exit(0); // the JShell's threads would keep the JVM alive
    }

    static void run(JShell shell, Map<String, Object> req) {
        Run run = new Run(req.get("id"), Boolean.TRUE.equals(req.get("silent")));
        current = run;
        if (!run.silent) {
            send(line(run, "type", "number_of_executions", "execution_count", ++count));
        }
        String error = null;
        Map<String, String> saved = new LinkedHashMap<>(); // the run's env vars: the values before it
        try {
            if (req.get("envs") instanceof Map) {
                for (Map.Entry<?, ?> e : ((Map<?, ?>) req.get("envs")).entrySet()) {
                    String name = String.valueOf(e.getKey());
                    saved.putIfAbsent(name, System.getProperty(name));
                    System.setProperty(name, String.valueOf(e.getValue()));
                }
            }
            String result = eval(shell, String.valueOf(req.getOrDefault("code", "")), run);
            if (result != null && !run.silent) {
                send(line(run, "type", "result", "is_main_result", true, "text", clip(result)));
            }
        } catch (Failure f) {
            error = f.value.isEmpty() ? f.name : f.value;
            if (!run.silent) {
                send(line(run, "type", "error", "name", f.name, "value", clip(f.value), "traceback", clip(f.traceback)));
            }
        } catch (RuntimeException e) {
            error = String.valueOf(e);
            if (!run.silent) {
                send(line(run, "type", "error", "name", e.getClass().getSimpleName(), "value", clip(error),
                          "traceback", ""));
            }
        } finally {
            System.out.flush();
            System.err.flush();
            saved.forEach((name, value) -> {
                if (value == null) {
                    System.clearProperty(name);
                } else {
                    System.setProperty(name, value);
                }
            });
            current = null;
            Map<String, Object> done = line(run, "type", "done");
            if (error != null) {
                done.put("error", clip(error));
            }
            send(done);
        }
    }

    /** Runs `code` snippet by snippet; the value of the last one if it is an expression. */
    static String eval(JShell shell, String code, Run run) throws Failure {
        SourceCodeAnalysis analysis = shell.sourceCodeAnalysis();
        String result = null;
        SourceCodeAnalysis.CompletionInfo info = analysis.analyzeCompletion(code);
        for (; info.completeness().isComplete(); info = analysis.analyzeCompletion(info.remaining())) {
            result = null;
            for (SnippetEvent event : shell.eval(info.source())) {
                if (event.causeSnippet() != null) {
                    continue; // an update of an earlier snippet that this one caused
                }
                if (run.stopped) {
                    throw new Failure("EvaluationInterruptedException", "the run was interrupted", "");
                }
                JShellException e = event.exception();
                if (e != null) {
                    throw new Failure(e.getClass().getSimpleName(), String.valueOf(e.getMessage()), trace(e));
                }
                if (!event.status().isDefined()) {
                    throw compilationFailure(shell, event.snippet());
                }
                result = value(event);
            }
        }
        if (info.completeness() != SourceCodeAnalysis.Completeness.EMPTY) {
            throw new Failure("IncompleteSourceException", info.remaining().trim(), "Incomplete input:\n" + info.remaining().trim());
        }
        return result;
    }

    static String value(SnippetEvent event) {
        Snippet snippet = event.snippet();
        switch (snippet.subKind()) {
            case VAR_VALUE_SUBKIND:
            case OTHER_EXPRESSION_SUBKIND:
            case TEMP_VAR_EXPRESSION_SUBKIND:
                break;
            default:
                return null;
        }
        String value = event.value();
        if (value == null) {
            return null;
        }
        // JShell quotes and escapes a String's value; IJava shows the string itself
        String type = snippet instanceof VarSnippet ? ((VarSnippet) snippet).typeName()
                : snippet instanceof ExpressionSnippet ? ((ExpressionSnippet) snippet).typeName() : "";
        if ("String".equals(type) && value.length() >= 2 && value.startsWith("\"") && value.endsWith("\"")) {
            return unescape(value.substring(1, value.length() - 1));
        }
        return value;
    }

    static Failure compilationFailure(JShell shell, Snippet snippet) {
        List<Diag> diags = shell.diagnostics(snippet).collect(Collectors.toList());
        String message = diags.stream().map(d -> d.getMessage(null)).collect(Collectors.joining("\n"));
        StringBuilder traceback = new StringBuilder();
        for (Diag d : diags) {
            traceback.append(snippet.source().strip()).append('\n').append(d.getMessage(null)).append('\n');
        }
        if (diags.isEmpty()) {
            List<String> missing = snippet instanceof jdk.jshell.DeclarationSnippet
                    ? shell.unresolvedDependencies((jdk.jshell.DeclarationSnippet) snippet).collect(Collectors.toList())
                    : List.of();
            message = missing.isEmpty() ? "the snippet was rejected" : "unresolved: " + String.join(", ", missing);
            traceback.append(snippet.source().strip()).append('\n').append(message);
        }
        return new Failure("CompilationException", message, traceback.toString().strip());
    }

    static String trace(JShellException e) {
        String name = e instanceof EvalException ? ((EvalException) e).getExceptionClassName() : e.getClass().getName();
        StringBuilder out = new StringBuilder(name);
        if (e.getMessage() != null) {
            out.append(": ").append(e.getMessage());
        }
        for (StackTraceElement frame : e.getStackTrace()) {
            out.append("\n\tat ").append(frame);
        }
        return out.toString();
    }

    static String unescape(String s) {
        StringBuilder out = new StringBuilder(s.length());
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c != '\\' || i + 1 == s.length()) {
                out.append(c);
                continue;
            }
            char n = s.charAt(++i);
            switch (n) {
                case 'n': out.append('\n'); break;
                case 't': out.append('\t'); break;
                case 'r': out.append('\r'); break;
                case 'b': out.append('\b'); break;
                case 'f': out.append('\f'); break;
                case '0': out.append('\0'); break;
                case 'u':
                    if (i + 4 < s.length()) {
                        out.append((char) Integer.parseInt(s.substring(i + 1, i + 5), 16));
                        i += 4;
                        break;
                    }
                    // fall through
                default: out.append(n);
            }
        }
        return out.toString();
    }

    static String clip(String text) {
        return text.length() <= MAX_FIELD ? text
                : text.substring(0, MAX_FIELD) + "\n[sandlot: " + (text.length() - MAX_FIELD) + " characters cut]\n";
    }

    static Map<String, Object> line(Run run, Object... pairs) {
        Map<String, Object> obj = new LinkedHashMap<>();
        obj.put("id", run.id);
        for (int i = 0; i < pairs.length; i += 2) {
            obj.put((String) pairs[i], pairs[i + 1]);
        }
        return obj;
    }

    static void send(Map<String, Object> obj) {
        String text = Json.write(obj) + "\n";
        synchronized (protocol) {
            protocol.print(text);
            protocol.flush();
        }
    }

    static final class Failure extends Exception {
        final String name, value, traceback;

        Failure(String name, String value, String traceback) {
            super(value, null, false, false);
            this.name = name;
            this.value = value;
            this.traceback = traceback;
        }
    }

    /** System.out or System.err of the user's code: its text goes out as lines of the run in progress
     * (none between runs), cut in pieces, never half a UTF-8 sequence or surrogate pair. */
    static final class Capture extends OutputStream {
        final String type;
        final ByteArrayOutputStream pending = new ByteArrayOutputStream();

        Capture(String type) {
            this.type = type;
        }

        @Override
        public synchronized void write(int b) {
            pending.write(b);
        }

        @Override
        public synchronized void write(byte[] b, int off, int len) {
            pending.write(b, off, len);
            if (pending.size() > PIECE) {
                flush();
            }
        }

        @Override
        public synchronized void flush() {
            byte[] bytes = pending.toByteArray();
            int end = bytes.length;
            int lead = end - 1; // keep an incomplete UTF-8 sequence at the end for the next flush
            while (lead >= 0 && lead > end - 4 && (bytes[lead] & 0xC0) == 0x80) {
                lead--;
            }
            if (lead >= 0 && (bytes[lead] & 0x80) != 0) {
                int size = (bytes[lead] & 0xE0) == 0xC0 ? 2 : (bytes[lead] & 0xF0) == 0xE0 ? 3 : 4;
                if (end - lead < size) {
                    end = lead;
                }
            }
            pending.reset();
            pending.write(bytes, end, bytes.length - end);
            Run run = current;
            if (end == 0 || run == null || run.silent) {
                return;
            }
            String text = new String(bytes, 0, end, StandardCharsets.UTF_8);
            for (int i = 0; i < text.length(); ) {
                int stop = Math.min(i + PIECE, text.length());
                if (stop < text.length() && Character.isHighSurrogate(text.charAt(stop - 1))) {
                    stop--;
                }
                send(line(run, "type", type, "text", text.substring(i, stop)));
                i = stop;
            }
        }
    }

    /** The little JSON this protocol needs: flat requests in, lines of strings, numbers and booleans out. */
    static final class Json {
        final String s;
        int i;

        Json(String s) {
            this.s = s;
        }

        @SuppressWarnings("unchecked")
        static Map<String, Object> object(String text) {
            Json p = new Json(text);
            Object value = p.value();
            p.space();
            if (!(value instanceof Map) || p.i != text.length()) {
                throw new IllegalArgumentException("not a JSON object");
            }
            return (Map<String, Object>) value;
        }

        void space() {
            while (i < s.length() && Character.isWhitespace(s.charAt(i))) {
                i++;
            }
        }

        Object value() {
            space();
            char c = s.charAt(i);
            if (c == '{') {
                Map<String, Object> map = new LinkedHashMap<>();
                i++;
                space();
                if (s.charAt(i) == '}') {
                    i++;
                    return map;
                }
                while (true) {
                    space();
                    String key = string();
                    space();
                    expect(':');
                    map.put(key, value());
                    space();
                    if (s.charAt(i++) == '}') {
                        return map;
                    }
                    if (s.charAt(i - 1) != ',') {
                        throw new IllegalArgumentException("bad object");
                    }
                }
            }
            if (c == '[') {
                List<Object> list = new ArrayList<>();
                i++;
                space();
                if (s.charAt(i) == ']') {
                    i++;
                    return list;
                }
                while (true) {
                    list.add(value());
                    space();
                    if (s.charAt(i++) == ']') {
                        return list;
                    }
                    if (s.charAt(i - 1) != ',') {
                        throw new IllegalArgumentException("bad array");
                    }
                }
            }
            if (c == '"') {
                return string();
            }
            for (String word : new String[] {"true", "false", "null"}) {
                if (s.startsWith(word, i)) {
                    i += word.length();
                    return word.equals("null") ? null : Boolean.valueOf(word.equals("true"));
                }
            }
            int start = i;
            while (i < s.length() && "+-0123456789.eE".indexOf(s.charAt(i)) >= 0) {
                i++;
            }
            String number = s.substring(start, i);
            if (number.isEmpty()) {
                throw new IllegalArgumentException("bad value");
            }
            return number.matches("-?\\d+") ? (Object) Long.valueOf(number) : (Object) Double.valueOf(number);
        }

        void expect(char c) {
            if (s.charAt(i++) != c) {
                throw new IllegalArgumentException("expected " + c);
            }
        }

        String string() {
            expect('"');
            StringBuilder out = new StringBuilder();
            while (true) {
                char c = s.charAt(i++);
                if (c == '"') {
                    return out.toString();
                }
                if (c != '\\') {
                    out.append(c);
                    continue;
                }
                char e = s.charAt(i++);
                switch (e) {
                    case 'n': out.append('\n'); break;
                    case 't': out.append('\t'); break;
                    case 'r': out.append('\r'); break;
                    case 'b': out.append('\b'); break;
                    case 'f': out.append('\f'); break;
                    case 'u': out.append((char) Integer.parseInt(s.substring(i, i + 4), 16)); i += 4; break;
                    default: out.append(e); // " \ /
                }
            }
        }

        static String write(Object value) {
            if (value == null) {
                return "null";
            }
            if (value instanceof Boolean || value instanceof Number) {
                return value.toString();
            }
            if (value instanceof Map) {
                StringBuilder out = new StringBuilder("{");
                for (Map.Entry<?, ?> e : ((Map<?, ?>) value).entrySet()) {
                    if (out.length() > 1) {
                        out.append(',');
                    }
                    out.append(write(String.valueOf(e.getKey()))).append(':').append(write(e.getValue()));
                }
                return out.append('}').toString();
            }
            String text = value.toString();
            StringBuilder out = new StringBuilder(text.length() + 2).append('"');
            for (int k = 0; k < text.length(); k++) {
                char c = text.charAt(k);
                if (c == '"' || c == '\\') {
                    out.append('\\').append(c);
                } else if (c == '\n') {
                    out.append("\\n");
                } else if (c < 0x20 || Character.isSurrogate(c)) {
                    // a lone surrogate cannot be written as UTF-8: escaped, as pairs are too
                    out.append(String.format("\\u%04x", (int) c));
                } else {
                    out.append(c);
                }
            }
            return out.append('"').toString();
        }
    }
}
