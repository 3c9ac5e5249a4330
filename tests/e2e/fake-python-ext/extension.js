// The subset of ms-python.python's exported API that Gradpath uses, backed by a setting.
"use strict";
const vscode = require("vscode");

function activate(context) {
  const paths = vscode.workspace.getConfiguration("fakePython").get("paths", []);
  let current = 0;
  const changed = new vscode.EventEmitter();
  const envPath = () => ({ id: paths[current], path: paths[current] });
  context.subscriptions.push(
    vscode.commands.registerCommand("fakePython.switch", () => {
      current = (current + 1) % paths.length;
      changed.fire({ ...envPath(), resource: undefined });
    }),
  );
  return {
    ready: Promise.resolve(),
    environments: {
      getActiveEnvironmentPath: () => envPath(),
      resolveEnvironment: async (env) => {
        const p = typeof env === "string" ? env : env.path;
        return { id: p, path: p, executable: { uri: vscode.Uri.file(p) } };
      },
      onDidChangeActiveEnvironmentPath: changed.event,
    },
  };
}

module.exports = { activate, deactivate() {} };
