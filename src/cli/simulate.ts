import { Command, Option } from 'commander';
import { integer } from './args.js';
import { loadChannels } from '../audio/load.js';
import { CallmoodError, ErrorCodes } from '../errors.js';
import type { CallmoodEvent } from '../stream/events.js';
import { eventsUrlFor, followEvents, simulateCall } from '../telephony/simulator.js';


/** One line per event, for people; `--json` prints the events themselves. */
export function formatEvent(e: CallmoodEvent): string {
  const t = `${(e.timeMs / 1000).toFixed(2).padStart(7)} s`;
  const who = `${e.callSid.slice(0, 10)}…`;
  switch (e.type) {
    case 'emotion':
      return `${t} ${who} ${e.track.padEnd(8)} emotion ${e.label.padEnd(8)} ${(e.confidence * 100).toFixed(0).padStart(3)}%  state ${e.state.label} ${(e.state.confidence * 100).toFixed(0)}%  (${e.latencyMs.toFixed(0)} ms)`;
    case 'speech-start':
    case 'speech-end':
      return `${t} ${who} ${e.track.padEnd(8)} ${e.type}${e.type === 'speech-end' ? ` (${(e.durationMs / 1000).toFixed(2)} s)` : ''}`;
    case 'call-end':
      return `${t} ${who} call-end (${e.reason}) ${JSON.stringify(e.summary)}`;
    case 'error':
      return `${t} ${who} error ${e.code}: ${e.message}`;
    case 'action':
      return `${t} ${who} action ${e.action}${e.level !== null ? ` level ${e.level}` : ''}${e.dryRun ? ' (dry run)' : ''}: ${e.reason}`;
    case 'action-result':
      return `${t} ${who} action-result ${e.action} ${e.outcome} (${e.detail})`;
    default:
      return `${t} ${who} ${e.type}`;
  }
}

/** `callmood simulate`: stream a recording to a callmood server as Twilio would, and print the events it sends back. */
export function simulateCommand(program: Command): void {
  program
    .command('simulate')
    .description('stream a recording to a callmood server as Twilio Media Streams (or Telnyx) would, and print its events')
    .requiredOption('--url <ws-url>', 'media WebSocket URL, e.g. ws://127.0.0.1:8080/media')
    .requiredOption('--file <audio>', 'recording: any format callmood reads; stereo = caller left, agent right')
    .addOption(new Option('--track <track>', 'inbound (caller only, as <Connect><Stream>) or both (as <Start><Stream track="both_tracks">)').choices(['inbound', 'both']).default('inbound'))
    .addOption(new Option('--pace <pace>', 'realtime: 20 ms chunks every 20 ms; fast: as fast as possible').choices(['realtime', 'fast']).default('realtime'))
    .option('--calls <n>', 'simultaneous calls with this recording', integer('--calls', 1, 10000), 1)
    .addOption(new Option('--provider <provider>', "whose messages to send: twilio, or telnyx (to the server's paths.telnyxMedia)").choices(['twilio', 'telnyx']).default('twilio'))
    .option('--auth-token <token>', 'Twilio auth token: sign the upgrade (default: $TWILIO_AUTH_TOKEN)')
    .option('--stream-token <token>', 'Telnyx stream token (default: $CALLMOOD_TELNYX_STREAM_TOKEN)')
    .addOption(new Option('--codec <codec>', 'Telnyx codec').choices(['PCMU', 'PCMA']).default('PCMU'))
    .option('--events-url <ws-url>', 'event feed URL (default: /events on the same host)')
    .option('--events-token <token>', 'event feed bearer token (default: $CALLMOOD_EVENTS_TOKEN)')
    .option('--no-events', 'do not follow the event feed')
    .option('--json', 'print events as JSON lines')
    .action(async (o) => {
      const audio = await loadChannels(o.file, 8000);
      const inbound = audio.channels[0];
      const outbound = o.track === 'both' ? (audio.channels[1] ?? new Float32Array(inbound.length)) : undefined;
      const authToken = o.authToken ?? process.env.TWILIO_AUTH_TOKEN;
      const eventsToken = o.eventsToken ?? process.env.CALLMOOD_EVENTS_TOKEN;
      const streamToken = o.streamToken ?? process.env.CALLMOOD_TELNYX_STREAM_TOKEN;
      const id = (i: number) => `${String(i + 1).padStart(4, '0')}${Date.now().toString(16).padStart(28, '0')}`;
      const calls = Array.from({ length: o.calls }, (_, i) => ({
        callSid: (o.provider === 'telnyx' ? 'v3:' : 'CA') + id(i),
        audio: outbound ? { inbound, outbound } : { inbound },
        customParameters: { simulated: 'true', file: o.file.split('/').pop() ?? o.file },
      }));
      const ended = new Set<string>();
      let allEnded: () => void = () => {};
      const done = new Promise<void>((r) => (allEnded = r));
      // Every socket this command opens is closed on the way out, whatever failed: an open feed or a call still
      // streaming would otherwise keep the process alive after the error was printed.
      const feeds: Array<{ close: () => void }> = [];
      const abort = new AbortController();
      try {
        if (o.events) {
          const opened = await Promise.allSettled(
            calls.map((c) =>
              followEvents(o.eventsUrl ?? eventsUrlFor(o.url), {
                token: eventsToken,
                callSid: c.callSid,
                onEvent: (e) => {
                  process.stdout.write((o.json ? JSON.stringify(e) : formatEvent(e)) + '\n');
                  if (e.type === 'call-end') {
                    ended.add(e.callSid);
                    if (ended.size === calls.length) allEnded();
                  }
                },
              }),
            ),
          );
          for (const r of opened) if (r.status === 'fulfilled') feeds.push(r.value);
          const failed = opened.find((r): r is PromiseRejectedResult => r.status === 'rejected');
          if (failed) throw failed.reason;
        }
        const results = await Promise.all(
          calls.map((c) =>
            simulateCall(c, { url: o.url, pace: o.pace, authToken, provider: o.provider, streamToken, codec: o.codec, signal: abort.signal }).catch((err: unknown) => {
              // One refused call stops the others: they would meet the same refusal.
              abort.abort();
              throw err;
            }),
          ),
        );
        if (feeds.length > 0) {
          const timeout = setTimeout(() => allEnded(), 10_000);
          await done;
          clearTimeout(timeout);
          if (ended.size < calls.length) {
            throw new CallmoodError(ErrorCodes.PROTOCOL, `${calls.length - ended.size} call(s) got no call-end event within 10 s after stop`, { permanent: false });
          }
        }
        const lag = Math.max(...results.map((r) => r.maxLagMs));
        process.stderr.write(`sent ${results.length} call(s), ${results.reduce((s, r) => s + r.chunks, 0)} chunks; worst send lag ${lag.toFixed(1)} ms\n`);
      } finally {
        abort.abort();
        for (const f of feeds) f.close();
      }
    });
}
