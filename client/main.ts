#!/usr/bin/env node
import { hostname, userInfo } from 'node:os';
import { resolve } from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import pkg from '../package.json' with { type: 'json' };
import { DEFAULT_PORT, type FdMode, type FdSpec } from '../transport/protocol.ts';
import { connectAgent, serveAgent, startAgentProcess, stopAgent } from './agent.ts';
import { cliFds, cliIO, mirrorSignal, windowSize } from './cli-io.ts';
import { type DeviceConfig, loadConfig } from './config.ts';
import { connect, resolveDevice } from './connect.ts';
import { sendEnvFilter } from './env-rules.ts';
import { TetherError } from './errors.ts';
import { pair } from './pair.ts';
import { run } from './run.ts';
import { status } from './status.ts';
import { printLine, restoreBlocking } from './stdio.ts';
// tether: the host CLI. Runs programs on a device as if they ran here.
import { hiddenPaths, viewMounts } from './view-config.ts';

/**
 * Set by the launcher (bin/tether) to the fds it inherited, as "5:w,4:r":
 * Node marks every inherited fd close-on-exec at startup, after which they
 * cannot be told from its own. Started without the launcher, a run gets
 * fds 0-2 only.
 */
const INHERITED_ENV = 'TETHER_INHERITED_FDS';

function extraFds(): FdSpec[] {
  const out: FdSpec[] = [];
  for (const e of (process.env[INHERITED_ENV] ?? '').split(',')) {
    const m = /^(\d+):(r|w|rw)$/.exec(e);
    if (m && Number(m[1]) > 2) out.push({ fd: Number(m[1]), mode: m[2] as FdMode });
  }
  return out;
}

const collect = (v: string, prev: string[]) => [...prev, v];

interface RunFlags {
  device?: string;
  tty?: boolean;
  env: string[];
  unset: string[];
  cleanEnv?: boolean;
  cwd?: string;
  verbose?: boolean;
  agent: boolean;
  view?: boolean;
  root?: string;
  bind: string[];
}

const AGENT_IDLE_S = 600;

/** Through the device's agent when one runs (or 'agent auto' starts one), else directly. */
async function deviceConnection(device: DeviceConfig, useAgent: boolean) {
  if (!useAgent || device.agent === 'no') return connect(device);
  const viaAgent = await connectAgent(device.name);
  if (viaAgent) return viaAgent;
  if (device.agent === 'auto') {
    await startAgentProcess(device.name, AGENT_IDLE_S);
    const started = await connectAgent(device.name);
    if (started) return started;
  }
  return connect(device);
}

function buildEnv(flags: RunFlags, device: DeviceConfig): string[] {
  const env = new Map<string, string>();
  if (!flags.cleanEnv) {
    const send = sendEnvFilter(device.sendEnv);
    for (const [k, v] of Object.entries(process.env))
      if (v !== undefined && k !== INHERITED_ENV && send(k)) env.set(k, v);
  }
  for (const a of [...device.setenv, ...flags.env]) {
    const i = a.indexOf('=');
    if (i <= 0) throw new TetherError(`bad --env ${JSON.stringify(a)}: expected NAME=VALUE`);
    env.set(a.slice(0, i), a.slice(i + 1));
  }
  for (const k of flags.unset) env.delete(k);
  return [...env].map(([k, v]) => `${k}=${v}`);
}

async function runCommand(argv: string[], flags: RunFlags): Promise<void> {
  const cfg = loadConfig(DEFAULT_PORT);
  const device = resolveDevice(cfg, flags.device);
  const conn = await deviceConnection(device, flags.agent);
  const umask = process.umask();
  const tty = !!flags.tty;
  // A relative -C is relative to the caller's cwd, as cd's operand.
  const cwd = flags.cwd === undefined ? process.cwd() : resolve(flags.cwd);
  const outcome = await run(
    conn,
    {
      argv,
      env: buildEnv(flags, device),
      cwd,
      umask,
      tty: tty ? windowSize() : null,
      fds: cliFds(tty, extraFds()),
      verbose: !!flags.verbose,
      deviceName: device.name,
      view: viewMounts(device, { view: flags.view, root: flags.root, binds: flags.bind }, cwd),
      hide: hiddenPaths(device),
    },
    cliIO(tty),
  );
  conn.close();
  if ('code' in outcome) {
    restoreBlocking();
    process.exit(outcome.code);
  }
  if (flags.verbose && outcome.core) printLine(`tether: ${argv[0]} dumped core on ${device.name}`);
  mirrorSignal(outcome.signal);
}

const program = new Command('tether')
  .description('run programs on an embedded Linux device as if they ran on this host')
  .version(`tether ${pkg.version} (node ${process.version}, ${process.arch})`, '-V, --version')
  .enablePositionalOptions()
  .configureOutput({ outputError: (str, write) => write(`tether: ${str.replace(/^error: /, '')}`) })
  .exitOverride();

program
  .command('run')
  .description('run PROGRAM on the device with this argv, environment, cwd, stdio and fds')
  .argument('<program>', 'program to run (searched in the device PATH unless it has a /)')
  .argument('[args...]', 'its arguments')
  .option(
    '-d, --device <name>',
    'device from the config (default: $TETHER_DEVICE, the config default, or local)',
  )
  .option('-t, --tty', 'give the program a pseudo-terminal (default: none, isatty() is false)')
  .addOption(
    new Option('-e, --env <NAME=VALUE>', 'set a variable (repeatable)')
      .default([])
      .argParser(collect),
  )
  .addOption(
    new Option('-u, --unset <NAME>', 'remove a variable (repeatable)')
      .default([])
      .argParser(collect),
  )
  .option('--clean-env', 'start from an empty environment instead of this one')
  .option('-C, --cwd <dir>', 'working directory on the device (default: the current one)')
  .option('-v, --verbose', 'report the device pid and a core dump')
  .option('--no-agent', "connect directly even if the device's agent runs")
  .option('--view', "the program sees this host's files (the view), not the device's")
  .option('--no-view', "the program sees the device's own files")
  .option('--root <dir>', "host directory shown as the view's / (a target sysroot)")
  .addOption(
    new Option('--bind <dir>', 'host directory shown at its own path, writable (repeatable)')
      .default([])
      .argParser(collect),
  )
  .passThroughOptions()
  .action((prog: string, args: string[], flags: RunFlags) => runCommand([prog, ...args], flags));

program
  .command('agent')
  .description(
    "hold a connection to the device so later runs skip the handshake (like ssh's ControlMaster)",
  )
  .option('-d, --device <name>', 'device from the config')
  .option('--foreground', 'stay in the foreground instead of detaching')
  .option('--stop', "stop the device's agent")
  .addOption(
    new Option('--idle-timeout <seconds>', 'exit after this long without runs')
      .default(AGENT_IDLE_S)
      .argParser(Number),
  )
  .action(
    async (o: { device?: string; foreground?: boolean; stop?: boolean; idleTimeout: number }) => {
      const device = resolveDevice(loadConfig(DEFAULT_PORT), o.device);
      if (o.stop) {
        if (!stopAgent(device.name)) throw new TetherError(`no agent runs for ${device.name}`);
        return;
      }
      if (!(o.idleTimeout > 0))
        throw new TetherError('--idle-timeout needs a positive number of seconds');
      if (!o.foreground) {
        await startAgentProcess(device.name, o.idleTimeout);
        process.stderr.write(`tether: agent for ${device.name} started\n`);
        return;
      }
      // The starting parent reads "ready", then lets go of our stdio.
      process.stdout.on('error', () => {});
      process.stderr.on('error', () => {});
      await serveAgent(device, {
        idleTimeoutS: o.idleTimeout,
        onReady: () => process.stdout.write('ready\n'),
      });
    },
  );

program
  .command('pair')
  .description('pair with a device: check its fingerprint, send its one-time code, pin each other')
  .argument('<name>', 'name to give the device in the config')
  .argument('<address>', `HOST[:PORT] of tetherd (port ${DEFAULT_PORT} by default)`)
  .option('--code <code>', 'the code tetherd printed (asked on the terminal if missing)')
  .action((name: string, address: string, o: { code?: string }) =>
    pair(name, address, o.code, `${userInfo().username}@${hostname()}`, DEFAULT_PORT),
  );

program
  .command('status')
  .description("show what the device's tetherd is doing: version, kernel, cache, connections, runs")
  .argument(
    '[device]',
    'device from the config (default: $TETHER_DEVICE, the config default, or local)',
  )
  .option('--json', 'print the status API answers as JSON')
  .action((device: string | undefined, o: { json?: boolean }) =>
    status(resolveDevice(loadConfig(DEFAULT_PORT), device), !!o.json),
  );

program.parseAsync().catch((e: Error) => {
  if (e instanceof CommanderError) {
    process.exit(e.exitCode === 0 ? 0 : 255);
  }
  const code = e instanceof TetherError ? e.exitCode : 255;
  printLine(`tether: ${e.message}`);
  process.exit(code);
});
