#!/usr/bin/env node
// The qimg command line; the code lives in dist/src/cli/main.js (built by `npm run build`).
// Started through a link named qemu-img or qemu-io, it answers as that tool.
import { basename } from 'node:path'
import { main } from '../dist/src/cli/main.js'

process.exitCode = await main(process.argv.slice(2), basename(process.argv[1] ?? 'qimg', '.js'))
