#!/usr/bin/env node
require('../dist/cli/main.js').run(['migrate', ...process.argv.slice(2)], 'des-migrate')
