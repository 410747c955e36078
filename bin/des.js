#!/usr/bin/env node
require('../dist/cli/main.js').run(process.argv.slice(2))
