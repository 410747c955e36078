#!/usr/bin/env node
require('../dist/cli/main.js').run(['pack', ...process.argv.slice(2)], 'des-pack')
