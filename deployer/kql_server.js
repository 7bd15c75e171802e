// KQL checking service for deployer/kql.py: Microsoft's Kusto.Language parser and semantic
// analyzer (npm package @kusto/language-service-next, compiled from C# with Bridge.NET),
// driven over JSON lines.
//
// Usage: node kql_server.js <package-dir> [max-analysis-depth]
//   <package-dir> is the folder node_modules/@kusto/language-service-next.
//
// Protocol: one JSON object per line on stdin, one JSON object per line on stdout.
//   On start-up the server writes one line:
//     {"ready": true, "kusto_version": "12.4.1", "node_version": "20.x.y", "load_ms": 900}
//   or {"ready": false, "error": "..."} and exits with code 3.
//   Requests (every request carries an "id" that is echoed back):
//     {"id": 1, "op": "define_schema", "name": "asim", "tables": {"T": {"Col": "string"}}}
//       -> {"id": 1, "ok": true, "tables": 1, "columns": 1}
//     {"id": 2, "op": "check", "schema": "asim", "query": "T | take 1", "analyzers": false}
//       -> {"id": 2, "ok": true, "errors": [D...], "warnings": [D...]}
//          D = {"severity", "code", "category", "message", "start", "length"}; start and length
//          count Unicode code points (not UTF-16 units) so that they index a Python str.
//          "analyzers": true adds Kusto.Language's analyzer findings (e.g. KS508, join without
//          kind) to "warnings".
//     {"id": 3, "op": "ping"} -> {"id": 3, "ok": true}
//   A failed request answers {"id": n, "ok": false, "kind": "bad_request" | "internal",
//   "error": "..."}; the server keeps running. It exits when stdin closes.
"use strict";

const fs = require("fs");
const path = require("path");
const readline = require("readline");
const util = require("util");

// Anything printed by library code must not corrupt the protocol on stdout.
for (const name of ["log", "info", "warn", "debug", "error", "trace"]) {
    console[name] = (...args) => process.stderr.write(util.format(...args) + "\n");
}

function send(obj) {
    process.stdout.write(JSON.stringify(obj) + "\n");
}

const packageDir = process.argv[2];
const maxDepthArg = process.argv[3];
const loadStart = Date.now();
let kustoVersion = "unknown";
try {
    if (!packageDir) {
        throw new Error("usage: node kql_server.js <package-dir> [max-analysis-depth]");
    }
    // bridge.js is the Bridge.NET runtime: under Node it sets the global `Bridge` (and
    // `System`). Kusto.Language.Bridge.js is a plain script calling Bridge.assembly(...),
    // which defines the global `Kusto`. It exports nothing, so the globals are used below.
    require(path.resolve(packageDir, "bridge.js"));
    require(path.resolve(packageDir, "Kusto.Language.Bridge.js"));
    const meta = JSON.parse(fs.readFileSync(path.resolve(packageDir, "package.json"), "utf8"));
    kustoVersion = String(meta.version);
    if (typeof Kusto === "undefined" || !Kusto.Language || !Kusto.Language.KustoCode) {
        throw new Error("Kusto.Language did not define the global `Kusto.Language.KustoCode`");
    }
} catch (err) {
    send({ ready: false, error: String((err && err.stack) || err) });
    // exitCode rather than exit(): let the line above reach a pipe before the process ends.
    process.exitCode = 3;
}

const loaded = process.exitCode !== 3;
const K = loaded ? Kusto.Language : null;
const Sym = loaded ? K.Symbols : null;

let baseGlobals = loaded ? K.GlobalState.Default : null;
if (loaded && maxDepthArg) {
    // Kusto.Language skips semantic analysis (error KS245) for syntax trees deeper than this
    // GlobalState property; its default is 500.
    baseGlobals = baseGlobals.WithProperty(System.Int32, K.Properties.MaxAnalysisDepth,
        parseInt(maxDepthArg, 10));
}

const schemas = new Map(); // schema name -> GlobalState

class BadRequest extends Error {}

function scalarType(name, where) {
    if (typeof name !== "string") {
        throw new BadRequest(`type of ${where} must be a string, got ${JSON.stringify(name)}`);
    }
    const type = Sym.ScalarTypes.GetSymbol(name) || Sym.ScalarTypes.GetSymbol(name.toLowerCase());
    if (!type) {
        throw new BadRequest(`unknown Kusto scalar type ${JSON.stringify(name)} for ${where}`);
    }
    return type;
}

function defineSchema(req) {
    const name = req.name;
    const tables = req.tables;
    if (typeof name !== "string" || name === "") {
        throw new BadRequest("define_schema needs a non-empty string 'name'");
    }
    if (tables === null || typeof tables !== "object" || Array.isArray(tables)) {
        throw new BadRequest("define_schema needs an object 'tables'");
    }
    const tableSymbols = [];
    let columnCount = 0;
    for (const [tableName, columns] of Object.entries(tables)) {
        if (columns === null || typeof columns !== "object" || Array.isArray(columns)) {
            throw new BadRequest(`columns of table ${JSON.stringify(tableName)} must be an object`);
        }
        const columnSymbols = [];
        for (const [columnName, typeName] of Object.entries(columns)) {
            const type = scalarType(typeName, `column ${tableName}.${columnName}`);
            columnSymbols.push(new Sym.ColumnSymbol(columnName, type, null, null, null, null));
            columnCount += 1;
        }
        tableSymbols.push(new Sym.TableSymbol.$ctor4(tableName, columnSymbols));
    }
    const database = new Sym.DatabaseSymbol.ctor(name, tableSymbols);
    schemas.set(name, baseGlobals.WithDatabase(database));
    return { tables: tableSymbols.length, columns: columnCount };
}

// Kusto.Language positions are UTF-16 offsets (JavaScript string indices); Python indexes
// strings by code point, so positions are converted when the text has surrogate pairs.
function toCodePoints(text, offset) {
    return Array.from(text.slice(0, offset)).length;
}

function readDiagnostics(list, text, hasSurrogates, out) {
    const count = System.Array.getCount(list, K.Diagnostic);
    for (let i = 0; i < count; i++) {
        const d = System.Array.getItem(list, i, K.Diagnostic);
        let start = d.HasLocation ? d.Start : 0;
        let length = d.HasLocation ? d.Length : 0;
        if (hasSurrogates) {
            const end = toCodePoints(text, start + length);
            start = toCodePoints(text, start);
            length = end - start;
        }
        out.push({
            severity: String(d.Severity),
            code: String(d.Code),
            category: String(d.Category),
            message: String(d.Message),
            start: start,
            length: length,
        });
    }
}

function check(req) {
    const globals = schemas.get(req.schema);
    if (globals === undefined) {
        throw new BadRequest(`schema ${JSON.stringify(req.schema)} is not defined`);
    }
    if (typeof req.query !== "string") {
        throw new BadRequest("check needs a string 'query'");
    }
    const text = req.query;
    const hasSurrogates = /[\uD800-\uDFFF]/.test(text);
    const code = K.KustoCode.ParseAndAnalyze(text, globals);
    const all = [];
    readDiagnostics(code.GetDiagnostics(), text, hasSurrogates, all);
    if (req.analyzers) {
        const service = new K.Editor.KustoCodeService.ctor(code);
        readDiagnostics(service.GetAnalyzerDiagnostics(true), text, hasSurrogates, all);
    }
    return {
        errors: all.filter((d) => d.severity === "Error"),
        warnings: all.filter((d) => d.severity !== "Error"),
    };
}

function handle(line) {
    let req;
    try {
        req = JSON.parse(line);
    } catch (err) {
        send({ id: null, ok: false, kind: "bad_request", error: `not JSON: ${err.message}` });
        return;
    }
    const id = req && req.id !== undefined ? req.id : null;
    try {
        let result;
        if (req.op === "check") {
            result = check(req);
        } else if (req.op === "define_schema") {
            result = defineSchema(req);
        } else if (req.op === "ping") {
            result = {};
        } else {
            throw new BadRequest(`unknown op ${JSON.stringify(req.op)}`);
        }
        send(Object.assign({ id: id, ok: true }, result));
    } catch (err) {
        const kind = err instanceof BadRequest ? "bad_request" : "internal";
        const text = kind === "bad_request" ? err.message : String((err && err.stack) || err);
        send({ id: id, ok: false, kind: kind, error: text });
    }
}

if (loaded) {
    // The first analysis builds Kusto.Language's tables of built-in functions and operators
    // (about 0.5 s); do it now so that start-up, not the first check, pays for it.
    K.KustoCode.ParseAndAnalyze("print x = 1 | where x > 0", baseGlobals).GetDiagnostics();
    send({
        ready: true,
        kusto_version: kustoVersion,
        node_version: process.versions.node,
        load_ms: Date.now() - loadStart,
    });
    // The process ends by itself once stdin is closed and every answer is written.
    const input = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
    input.on("line", (line) => {
        if (line.trim() !== "") {
            handle(line);
        }
    });
}
