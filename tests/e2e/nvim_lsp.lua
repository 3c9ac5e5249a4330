-- Neovim's built-in LSP client, headless: starts `gradpath serve`, opens each file, waits for its
-- textDocument/publishDiagnostics, and writes what the client holds as JSON.
-- Environment: GP_PYTHON (interpreter), GP_FILES (files, separated by newlines), GP_OUT (JSON file),
-- GP_ROOT (workspace root), GP_TIMEOUT_MS.
-- Works with Neovim 0.7 (Debian bookworm: vim.lsp.start_client + buf_attach_client) and later.
local python = os.getenv("GP_PYTHON")
local out_path = os.getenv("GP_OUT")
local root = os.getenv("GP_ROOT")
local timeout = tonumber(os.getenv("GP_TIMEOUT_MS") or "30000")
local files = vim.split(os.getenv("GP_FILES") or "", "\n", { trimempty = true })

local report = { nvim = tostring(vim.version().major) .. "." .. tostring(vim.version().minor) .. "." .. tostring(vim.version().patch), files = {}, errors = {} }
local published = {}
local stopping = false

local function finish(code)
  local f = io.open(out_path, "w")
  f:write(vim.fn.json_encode(report))
  f:close()
  vim.cmd(code == 0 and "qa!" or "cq!")
end

local default_publish = vim.lsp.handlers["textDocument/publishDiagnostics"]
local client_id = vim.lsp.start_client({
  name = "gradpath",
  cmd = { python, "-m", "gradpath", "serve" },
  root_dir = root,
  init_options = { trusted = false },
  handlers = {
    ["textDocument/publishDiagnostics"] = function(err, result, ctx, config)
      published[result.uri] = (published[result.uri] or 0) + 1
      return default_publish(err, result, ctx, config)
    end,
  },
  on_exit = function(code, signal)
    if not stopping then
      table.insert(report.errors, "server exited: " .. tostring(code) .. " " .. tostring(signal))
    end
  end,
})
if not client_id then
  table.insert(report.errors, "start_client failed")
  finish(1)
end

-- Open every file (each didOpen goes to the server), then wait for every file's diagnostics.
local bufs = {}
for _, file in ipairs(files) do
  vim.cmd("edit " .. vim.fn.fnameescape(file))
  local bufnr = vim.api.nvim_get_current_buf()
  vim.bo[bufnr].filetype = "python"
  vim.lsp.buf_attach_client(bufnr, client_id)
  table.insert(bufs, { file = file, bufnr = bufnr, uri = vim.uri_from_bufnr(bufnr) })
end
local function all_received()
  for _, b in ipairs(bufs) do
    if (published[b.uri] or 0) == 0 then
      return false
    end
  end
  return true
end
local function total()
  local n = 0
  for _, c in pairs(published) do
    n = n + c
  end
  return n
end
local t0 = vim.loop.now()
report.all_received = vim.wait(timeout, all_received, 20)
report.first_publish_all_ms = vim.loop.now() - t0
-- Settle: a later pass (jedi) may republish; wait until 500 ms pass with no new publish (<= 10 s).
local settle_until = vim.loop.now() + 10000
while vim.loop.now() < settle_until do
  local seen = total()
  vim.wait(500, function() return total() ~= seen end, 20)
  if total() == seen then
    break
  end
end
for _, b in ipairs(bufs) do
  local entry = { file = b.file, uri = b.uri, received = (published[b.uri] or 0) > 0, diagnostics = {} }
  for _, d in ipairs(vim.diagnostic.get(b.bufnr)) do
    table.insert(entry.diagnostics, {
      code = d.code or (d.user_data and d.user_data.lsp and d.user_data.lsp.code),
      line = d.lnum + 1,
      column = d.col + 1,
      end_line = d.end_lnum + 1,
      end_column = d.end_col + 1,
      severity = d.severity,
      source = d.source,
      message = d.message,
    })
  end
  table.insert(report.files, entry)
end

local client = vim.lsp.get_client_by_id(client_id)
report.server_name = client and client.server_capabilities and "gradpath" or nil
report.capabilities = client and client.server_capabilities and {
  hover = client.server_capabilities.hoverProvider and true or false,
  codeAction = client.server_capabilities.codeActionProvider and true or false,
} or {}
stopping = true
if client then
  client.stop()
end
vim.wait(2000, function() return vim.lsp.get_client_by_id(client_id) == nil end, 50)
finish(0)
