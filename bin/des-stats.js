#!/usr/bin/env node
require('../dist/cli/main.js').run(['stats', ...process.argv.slice(2)], 'des-stats')
