// Every `des` subcommand, registered in one place.

import type { Argv } from 'yargs'
import * as locate from './locate'
import * as shard from './shard'
import * as serve from './serve'
import * as pack from './pack'
import * as migrate from './migrate'
import * as stats from './stats'
import * as convert from './convert'
import * as verify from './verify'

export const commands: Array<{ register(y: Argv): Argv }> = [locate, shard, verify, serve, pack, migrate, stats, convert]
